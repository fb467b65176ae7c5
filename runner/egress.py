"""Network grants: which host names a job may reach, and the squid configuration that enforces it.

Pure functions only (the containers and networks are made in ``sandbox.py``).

A job with no grant has no network at all. A job granted ``--allow-host api.example.com`` (or
``*.example.com``) runs on an *internal* Docker network whose only other member is a squid proxy made
for that run; the job's ``HTTP(S)_PROXY`` points at it, and there is no route around it. The proxy
allows HTTP and HTTPS (CONNECT to port 443) to the granted names only, and refuses any destination
that resolves to a private, loopback, link-local (cloud metadata) or otherwise special address, plus
the networks the operator lists (the Postgres and Docker hosts, for example).

The operator's maximum, ``RUNNER_EGRESS_ALLOW``, is a list of patterns a grant must fall within
(default ``*``: any public host name; empty: no job may be granted network).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from .errors import ValidationError

PROXY_ALIAS = "proxy"
PROXY_PORT = 3128
MAX_HOSTS = 20

# Never reachable through the proxy, whatever the grant.
BLOCKED_NETS = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
)  # fmt: skip

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})+")


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


def squid_config(hosts: Sequence[str], extra_blocked: Sequence[str] = ()) -> str:
    """The squid.conf of one run: allow ``hosts`` over HTTP(S), nothing else."""
    if not hosts:
        raise ValueError("a proxy is only made for a job with a grant")
    lines = [
        f"http_port {PROXY_PORT}",
        "pid_filename none",
        "pinger_enable off",
        "cache deny all",
        "cache_mem 8 MB",
        "access_log stdio:/dev/stdout",
        "cache_log stdio:/dev/stderr",
        "logfile_rotate 0",
        "coredump_dir /tmp",
        "via off",
        "forwarded_for delete",
        "httpd_suppress_version_string on",
        "shutdown_lifetime 0 seconds",
        "acl CONNECT method CONNECT",
        "acl web_ports port 80 443",
        "acl tls_port port 443",
    ]
    names = [h for h in hosts if not h.startswith("*.")]
    patterns = [_domain_acl(h)[1] for h in hosts if h.startswith("*.")]
    # squid wants one type per ACL name; a name that matches nothing keeps the rules below simple.
    lines.append("acl granted_names dstdomain " + " ".join(names or ["granted.invalid"]))
    lines.append("acl granted_patterns dstdom_regex -i " + " ".join(patterns or ["^granted\\.invalid$"]))
    for net in (*BLOCKED_NETS, *extra_blocked):
        ipaddress.ip_network(net, strict=False)  # refuse a malformed operator entry loudly
        lines.append(f"acl blocked dst {net}")
    lines += [
        "http_access deny !web_ports",
        "http_access deny CONNECT !tls_port",
        "http_access deny !granted_names !granted_patterns",
        "http_access deny blocked",
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
    url = f"http://{PROXY_ALIAS}:{PROXY_PORT}"
    return {"HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url, "NO_PROXY": "", "no_proxy": ""}
