"""The engine host's own addresses: the egress proxy refuses every one of them, and ``runner doctor``
tries them from a sample granted job."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig

from .. import egress
from ..errors import SandboxError
from .engine import remove_container
from .spec import RunSpec, labels_for

log = logging.getLogger("runner.sandbox")


HOST_PROBE_TTL = 60.0  # seconds the engine host's interface addresses are reused before looking again
_HOST_PROBE = "cat /proc/net/fib_trie; cat /proc/net/if_inet6 2>/dev/null; true"
_host_cache: dict[str, tuple[float, list[str]]] = {}
_host_lock = threading.Lock()


def host_networks(dc: docker.DockerClient, spec: RunSpec) -> list[str]:
    """Every address of the engine's host and of this runner, as networks for the proxy's block list:
    the subnets, gateways and reserved addresses of the engine's networks, the runner's own
    interfaces, and the engine host's interfaces (read in a short-lived container on the host's
    network). Found afresh each time a proxy starts (the host's interfaces at most once a minute)."""
    nets = set(_engine_network_addresses(dc, subnets=True))
    nets |= set(egress.parse_local_addresses(_read_local_addresses()))
    nets |= set(engine_host_addresses(dc, spec))
    return sorted(nets)


def host_addresses(dc: docker.DockerClient, spec: RunSpec) -> list[str]:
    """The single addresses of the engine's host (gateways and interfaces, loopback left out), for
    ``runner doctor`` to try from a sample job."""
    nets = [*_engine_network_addresses(dc, subnets=False), *egress.parse_local_addresses(_read_local_addresses()),
            *engine_host_addresses(dc, spec)]
    out = {str(ipaddress.ip_network(n).network_address) for n in nets if ipaddress.ip_network(n).num_addresses == 1}
    return sorted(a for a in out if not ipaddress.ip_address(a).is_loopback)


def _engine_network_addresses(dc: docker.DockerClient, *, subnets: bool) -> list[str]:
    out = []
    for net in dc.networks.list():
        for conf in (net.attrs.get("IPAM") or {}).get("Config") or []:
            addresses = [conf.get("Gateway") or _first_host(conf.get("Subnet")),  # some engines omit the default's
                         *(conf.get("AuxiliaryAddresses") or {}).values()]
            if subnets:
                addresses.append(conf.get("Subnet"))
            for a in filter(None, addresses):
                try:
                    out.append(str(ipaddress.ip_network(a, strict=False)))
                except ValueError:
                    log.warning("network %s has an address Docker reports as %r; ignored", net.name, a)
    return out


def _first_host(subnet: str | None) -> str | None:
    try:
        return str(next(ipaddress.ip_network(subnet or "", strict=False).hosts(), None) or "") or None
    except ValueError:
        return None


def _read_local_addresses() -> str:
    text = []
    for path in ("/proc/net/fib_trie", "/proc/net/if_inet6"):  # kernel files, this process's own namespace
        try:
            with open(path, "rb") as f:
                text.append(f.read(8 << 20).decode("ascii", "replace"))
        except OSError:
            continue
    return "\n".join(text)


def engine_host_addresses(dc: docker.DockerClient, spec: RunSpec) -> list[str]:
    """The engine host's interface addresses, read from /proc/net in a container on the host's network
    (the egress image, no capabilities, read-only, as nobody), cached for HOST_PROBE_TTL seconds."""
    key = str(dc.api.base_url)
    with _host_lock:
        hit = _host_cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < HOST_PROBE_TTL:
            return hit[1]
        try:
            text = _run_host_probe(dc, spec)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxError(f"could not read the engine host's addresses (the egress proxy must refuse them): "
                               f"{getattr(exc, 'explanation', None) or exc}") from exc
        found = egress.parse_local_addresses(text)
        if not found:
            raise SandboxError("could not read the engine host's addresses: /proc/net showed none")
        _host_cache[key] = (time.monotonic(), found)
        return found


def _run_host_probe(dc: docker.DockerClient, spec: RunSpec) -> str:
    probe = dc.containers.create(
        spec.egress_image, entrypoint=["sh", "-c", _HOST_PROBE], network_mode="host", user="65534:65534",
        read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges:true"], mem_limit="32m",
        memswap_limit="32m", pids_limit=8, labels=labels_for(spec, "probe"), detach=True,
        log_config=LogConfig(type="json-file", config={"max-size": "8m", "max-file": "1"}),
    )
    try:
        probe.start()
        status = probe.wait(timeout=30)
        if status.get("StatusCode") != 0:
            raise SandboxError(f"the host address probe exited with {status.get('StatusCode')}")
        return probe.logs(stdout=True, stderr=False).decode("ascii", "replace")
    finally:
        remove_container(probe)
