"""Network grants: which host names a job may reach, and the squid configuration that enforces it.

Pure functions only (the proxy container and its volume are made in ``runner/sandbox/proxy.py``; the relay
in the job is ``runner/sandbox/relay.py``).

A job with no grant has no network at all. A job granted ``--allow-host api.example.com`` (or
``*.example.com``) has no network either (``network_mode: none``: only its own loopback, no route, no
DNS). Its one way out is a Unix socket in a small per-run volume, mounted read-only into the job: a
squid proxy made for that run listens on its own container's loopback only, and socat in the same
container makes the socket. A relay started by the job's launcher listens on the job's 127.0.0.1:3128
and forwards each connection to the socket; ``HTTP(S)_PROXY`` points there. So the job can reach no
address at all (not the host's, not the gateway's, over no protocol), and the proxy decides the rest.

The proxy allows HTTP and HTTPS (CONNECT to port 443) to the granted names only, and refuses any
destination that resolves (in any of its addresses) into an IANA special-purpose range (private,
loopback, link-local and cloud metadata, documentation, benchmarking, the IPv4-mapped and translated
IPv6 forms, ...), any address of the engine's host (its interfaces, the gateways and subnets of the
engine's networks, found when the proxy starts), and the networks the operator lists; the operator
may allow single addresses back (``RUNNER_EGRESS_ALLOW_ADDRESSES``).

The operator's maximum, ``RUNNER_EGRESS_ALLOW``, is a list of patterns a grant must fall within
(default ``*``: any public host name; empty: no job may be granted network).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import TypeVar

from .errors import ValidationError

PROXY_PORT = 3128
IMAGE_VERSION = "2"  # the io.runner.egress-version label of the image this code needs (docker/egress)
MAX_HOSTS = 20
SOCKET_NAME = "proxy.sock"
PROXY_SOCKET_DIR = "/egress"  # in the proxy container (docker/egress/entrypoint.sh)
JOB_SOCKET_DIR = "/run/egress"  # in the job container, read-only

# The IANA special-purpose address registries (IPv4 and IPv6), plus multicast and the deprecated
# site-local and IPv4-compatible IPv6 ranges: never reachable through the proxy, whatever the grant.
SPECIAL_NETS = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
    "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "2002::/16", "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10",
    "ff00::/8",
)  # fmt: skip


def blocked_networks(extra: Iterable[str] = (), allowed: Iterable[str] = ()) -> list[str]:
    """The special ranges plus ``extra`` (networks or addresses), less the ``allowed`` addresses.

    An allowed address is cut out of every blocked network exactly (the rest of its range stays
    blocked), so a name that also resolves to another blocked address is still refused."""
    nets = [ipaddress.ip_network(n, strict=False) for n in (*SPECIAL_NETS, *extra)]
    holes = [ipaddress.ip_network(a) for a in allowed]
    v4, v6 = ipaddress.IPv4Network, ipaddress.IPv6Network
    kept4 = _cut([n for n in nets if isinstance(n, v4)], [h for h in holes if isinstance(h, v4)])
    kept6 = _cut([n for n in nets if isinstance(n, v6)], [h for h in holes if isinstance(h, v6)])
    return [str(n) for n in (*kept4, *kept6)]


_Net = TypeVar("_Net", ipaddress.IPv4Network, ipaddress.IPv6Network)


def _cut(nets: list[_Net], holes: list[_Net]) -> list[_Net]:
    """Networks of one IP version, collapsed, with each hole cut out exactly."""
    todo = list(ipaddress.collapse_addresses(nets))
    for hole in holes:
        todo = [piece for net in todo for piece in _without(net, hole)]
    return list(ipaddress.collapse_addresses(todo))


def _without(net: _Net, hole: _Net) -> list[_Net]:
    if not hole.subnet_of(net):
        return [net]
    return list(net.address_exclude(hole))


def parse_pins(entries: Iterable[str]) -> list[tuple[str, str]]:
    """``RUNNER_EGRESS_HOSTS`` entries as (name, address): ``name=address`` (IPv4 or IPv6), or the older
    ``name:IPv4``. Raises ValueError saying what is wrong with a bad entry."""
    out = []
    for raw in entries:
        entry = raw.strip()
        name, sep, address = entry.partition("=")
        if not sep:
            name, sep, address = entry.partition(":")
            if sep and ":" in address:
                raise ValueError(f"{raw!r}: write an IPv6 pin as name=address (e.g. api.example.com=2001:db8::1)")
        if not sep:
            raise ValueError(f"{raw!r} is not name=address (e.g. api.example.com=203.0.113.7)")
        name, address = name.strip().lower().rstrip("."), address.strip()
        if not _PIN_NAME_RE.fullmatch(name) or len(name) > 253:
            raise ValueError(f"{raw!r}: {name!r} is not a host name")
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise ValueError(f"{raw!r}: {address!r} is not an IP address") from None
        out.append((name, address))
    return out


def parse_local_addresses(text: str) -> list[str]:
    """The local addresses in the text of /proc/net/fib_trie and /proc/net/if_inet6 (either or both):
    every IPv4 "host LOCAL" entry (an address, or a local range such as 127.0.0.0/8) and every IPv6
    interface address."""
    out: list[str] = []
    leaf = None
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 6 and _INET6_RE.fullmatch(words[0]):
            out.append(f"{ipaddress.IPv6Address(int(words[0], 16))}/128")
        elif len(words) == 2 and words[0] in ("|--", "+--"):
            leaf = words[1].split("/")[0]
        elif leaf and len(words) >= 3 and words[0].startswith("/") and words[-1] == "LOCAL":
            out.append(str(ipaddress.ip_network(f"{leaf}{words[0]}", strict=False)))
    return sorted(set(out))


_INET6_RE = re.compile(r"[0-9a-f]{32}")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})+")
_PIN_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def validate_hosts(hosts: Iterable[str], operator_allow: Sequence[str]) -> list[str]:
    """Normalise a job's grant; refuse IP literals, malformed names and names outside the operator's list."""
    out: list[str] = []
    for raw in hosts:
        host = raw.strip().lower().rstrip(".")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        else:
            raise ValidationError(f"--allow-host {raw!r}: grant host names, not IP addresses")
        if not _HOST_RE.fullmatch(host) or len(host) > 253:
            raise ValidationError(
                f"--allow-host {raw!r} is not a host name: use e.g. 'api.example.com' or '*.example.com'"
            )
        if not any(covered(host, pattern) for pattern in operator_allow):
            allowed = ", ".join(operator_allow) or "nothing (RUNNER_EGRESS_ALLOW is empty)"
            raise ValidationError(f"--allow-host {raw!r} is outside what the operator allows: {allowed}")
        if host not in out:
            out.append(host)
    if len(out) > MAX_HOSTS:
        raise ValidationError(f"at most {MAX_HOSTS} hosts can be granted to one job")
    return out


def covered(host: str, pattern: str) -> bool:
    """True if the grant ``host`` (maybe a wildcard) falls within the operator's ``pattern``."""
    pattern = pattern.strip().lower()
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".example.com"
        return host.endswith(suffix) and host != pattern[2:]
    return host == pattern


def _domain_acl(host: str) -> tuple[str, str]:
    if host.startswith("*."):
        # one or more labels before the suffix; the bare suffix itself is not included
        return "dstdom_regex", "^([a-z0-9-]+\\.)+" + host[2:].replace(".", "\\.") + "$"
    return "dstdomain", host


def squid_config(hosts: Sequence[str], extra_blocked: Sequence[str] = (), allowed_addresses: Sequence[str] = ()) -> str:
    """The squid.conf of one run: allow ``hosts`` over HTTP(S), nothing else.

    ``extra_blocked``: more networks or addresses refused (the operator's list, the engine host's
    addresses); ``allowed_addresses``: single addresses the operator allows back."""
    if not hosts:
        raise ValueError("a proxy is only made for a job with a grant")
    lines = [
        f"http_port 127.0.0.1:{PROXY_PORT}",  # its own loopback: socat's Unix socket is the way in
        "icp_port 0", "htcp_port 0", "pid_filename none", "pinger_enable off", "visible_hostname proxy",
        "cache deny all", "cache_mem 8 MB", "global_internal_static off",
        "access_log stdio:/dev/stdout", "cache_log stdio:/dev/stderr", "logfile_rotate 0", "coredump_dir /tmp",
        "via off", "forwarded_for delete", "httpd_suppress_version_string on", "shutdown_lifetime 0 seconds",
        # A name's addresses stay cached at least this long: the addresses checked below are the
        # ones squid then connects to (no rebinding between the check and the connection).
        "negative_dns_ttl 1 minute",
        "acl CONNECT method CONNECT", "acl web_ports port 80 443", "acl tls_port port 443",
        "acl plain_http proto HTTP",
    ]
    names = [h for h in hosts if not h.startswith("*.")]
    patterns = [_domain_acl(h)[1] for h in hosts if h.startswith("*.")]
    # squid wants one type per ACL name; a name that matches nothing keeps the rules below simple.
    # -n: a URL with an IP address is never matched by reverse lookup of that address.
    lines.append("acl granted_names dstdomain -n " + " ".join(names or ["granted.invalid"]))
    lines.append("acl granted_patterns dstdom_regex -n -i " + " ".join(patterns or ["^granted\\.invalid$"]))
    lines += [f"acl blocked dst {net}" for net in blocked_networks(extra_blocked, allowed_addresses)]
    lines += [
        "http_access deny manager",
        "http_access deny !web_ports",
        "http_access deny CONNECT !tls_port",
        "http_access deny !CONNECT !plain_http",
        "http_access deny !granted_names !granted_patterns",
        "http_access deny blocked",  # any one of the name's addresses
        "http_access allow all",
    ]
    return "\n".join(lines) + "\n"


def unusable_outer_network(network: str) -> str | None:
    """Why the proxy must not leave through ``network``, or None: never the host's or another
    container's network namespace (and "none" reaches nothing)."""
    if network == "host" or network.startswith("container:"):
        return f"network {network!r} would put the egress proxy in another namespace's network"
    if network == "none":
        return f"network {network!r} reaches nothing"
    return None


def proxy_environment() -> dict[str, str]:
    """The variables that send a job's HTTP(S) through the proxy (urllib, requests and curl read them)."""
    url = f"http://127.0.0.1:{PROXY_PORT}"  # the relay in the job (sandbox.RELAY), not the proxy itself
    return {"HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url, "NO_PROXY": "", "no_proxy": ""}
