"""The per-run egress proxy of a job granted network: its container and socket volume, started before the
job and removed after it (the squid configuration itself is runner/egress.py's, pure)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Mount

from .. import egress
from ..errors import ImageMissing, SandboxError
from .diagnosis import last_line
from .engine import remove_container, remove_volume
from .hosts import host_networks
from .policy import refuse_unsafe_proxy
from .spec import RunSpec, labels_for

CPU_PERIOD = 100_000  # microseconds: the CFS period of the egress proxy's CPU quota


class EgressProxy:
    """The per-run egress proxy: a squid (on its own loopback) and socat, whose Unix socket in a small
    per-run volume is the job's one way out. The proxy alone is on a network (the outer one)."""

    READY = ("Accepting HTTP Socket connections", "runner-egress: socket ready")
    # A tmpfs: the socket never touches the disk; owned by the image's proxy user (Debian's uid 13).
    VOLUME_OPTIONS = {"type": "tmpfs", "device": "tmpfs", "o": "size=64k,nr_inodes=16,uid=13,gid=13,mode=0755"}

    def __init__(self, dc: docker.DockerClient, spec: RunSpec) -> None:
        self.dc, self.spec = dc, spec
        self.name = f"runner-job-{spec.job_id}-{uuid.uuid4().hex[:8]}"
        self.volume: Any = None
        self.proxy: Any = None

    def start(self) -> str:
        """Start the proxy and return the name of the volume holding its socket."""
        spec, labels = self.spec, labels_for(self.spec, "egress")
        refuse_unsafe_proxy(spec.egress_network)
        self._check_image()
        self._check_runtime()
        try:
            blocked = (*spec.egress_blocked, *host_networks(self.dc, spec))
            conf = egress.squid_config(spec.allow_hosts, blocked, spec.egress_allowed)
            pins = dict(egress.parse_pins(spec.egress_hosts))
        except ValueError as exc:
            raise SandboxError(f"could not configure the job's egress proxy: {exc}") from exc
        try:
            self.volume = self.dc.volumes.create(self.name, driver="local", driver_opts=self.VOLUME_OPTIONS,
                                                 labels=labels)
            self.proxy = self.dc.containers.create(
                spec.egress_image, name=f"{self.name}-proxy", labels=labels, detach=True,
                environment={"RUNNER_SQUID_CONF": conf}, network=spec.egress_network, read_only=True,
                cap_drop=["ALL"], security_opt=["no-new-privileges:true"], mem_limit="96m", memswap_limit="96m",
                cpu_period=CPU_PERIOD, cpu_quota=CPU_PERIOD,  # one CPU to start; the job's share once ready
                pids_limit=64, tmpfs={"/tmp": "size=8m", "/var/spool/squid": "size=8m", "/run": "size=1m"},
                mounts=[Mount(target=egress.PROXY_SOCKET_DIR, source=self.name, type="volume", no_copy=True)],
                extra_hosts=pins or None,
                log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            )
            self.proxy.start()
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(f"egress proxy image {spec.egress_image} not found: run make images "
                               "(or runner image build --egress)") from exc
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"could not set up the job's egress proxy: {getattr(exc, 'explanation', None) or exc}") from exc
        self._wait_ready()
        self._limit_cpu()
        return self.name

    def _limit_cpu(self) -> None:
        """The proxy works on the job's behalf, so it gets the job's CPU share: a job must not make it
        spend more of the host than the job itself may (squid starts at a full CPU, then this)."""
        try:
            self.proxy.update(cpu_quota=max(1000, int(self.spec.cpus * CPU_PERIOD)))
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"could not limit the egress proxy's CPU: {getattr(exc, 'explanation', None) or exc}") from exc

    def _check_runtime(self) -> None:
        """gVisor lets a sandbox connect to a socket on a mount only with --host-uds: say so up front."""
        name = self.spec.runtime
        if not name:
            return
        try:
            runtime = (self.dc.info().get("Runtimes") or {}).get(name) or {}
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"cannot reach the Docker engine: {exc}") from exc
        if not gvisor_blocks_sockets(runtime):
            return
        raise SandboxError(f"a job granted network under {name} connects to its proxy's Unix socket, which gVisor "
                           "allows only with --host-uds=open: register the runtime with it (make gvisor does)")

    def _check_image(self) -> None:
        image = self.spec.egress_image
        try:
            labels = self.dc.images.get(image).labels or {}
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(f"egress proxy image {image} not found: run make images "
                               "(or runner image build --egress)") from exc
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"could not inspect the egress proxy image {image}: {exc}") from exc
        if labels.get("io.runner.egress-version") != egress.IMAGE_VERSION:
            raise ImageMissing(f"egress proxy image {image} is older than this runner (it must serve a Unix socket): "
                               "rebuild it with make images (or runner image build --egress)")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            logs = self.proxy.logs(tail=200).decode("utf-8", "replace")
            if all(marker in logs for marker in self.READY):
                return
            self.proxy.reload()
            if self.proxy.status not in ("created", "running"):
                raise SandboxError(f"the egress proxy stopped: {last_line(logs)}")
            time.sleep(0.05)
        raise SandboxError("the egress proxy did not start within 15 s")

    def remove(self, volume: bool = True) -> None:
        """Remove the proxy, and its volume unless ``volume`` is False: a kept job container still mounts
        it, and whoever removes that container removes the volume after it (``remove_kept``)."""
        if self.proxy is not None:
            remove_container(self.proxy)
        if self.volume is not None and volume:
            remove_volume(self.volume)


def gvisor_blocks_sockets(runtime: dict[str, Any]) -> bool:
    """True if ``runtime`` (an entry of the engine's Runtimes) is runsc without host socket access."""
    if not str(runtime.get("path", "")).endswith("runsc"):
        return False
    args = runtime.get("runtimeArgs") or []
    return not any(a in ("--host-uds=open", "--host-uds=all", "--fsgofer-host-uds") for a in args)
