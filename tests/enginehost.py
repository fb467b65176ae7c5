"""The host side of the tests' second Docker engine (tests/engines.py): a free /24 for its bridge and the
``ip`` command, TLS certificates for an engine reached as a remote one would be, and the readiness probe."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import subprocess
from pathlib import Path

POOL = ipaddress.IPv4Network("198.19.0.0/16")


class EngineError(RuntimeError):
    """The second engine could not be started, stopped or removed; the text says why."""


# --- TLS, as for a remote engine ------------------------------------------------------------------------

def make_certificates(where: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (client/{ca,cert,key}.pem, the
    names DOCKER_CERT_PATH holds), valid for a day."""
    (where / "client").mkdir(parents=True, mode=0o700)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca",
             cwd=where)
    for key, cert, subject, ext in (
            ("server-key.pem", "server-cert.pem", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
            ("client/key.pem", "client/cert.pem", "/CN=client", "extendedKeyUsage=clientAuth")):
        (where / "ext.cnf").write_text(ext + "\n")
        _openssl("req", *ec, "-keyout", key, "-out", "req.csr", "-subj", subject, cwd=where)
        _openssl("x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                 "-out", cert, "-days", "1", "-extfile", "ext.cnf", cwd=where)
    (where / "client" / "ca.pem").write_bytes((where / "ca.pem").read_bytes())


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EngineError(f"openssl {args[0]}: {done.stderr.strip()[-300:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the host's network -----------------------------------------------------------------------------------

def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EngineError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of POOL that no route or address of this host overlaps."""
    used = []
    for cmd in (["ip", "-j", "-4", "route", "show", "table", "all"], ["ip", "-j", "-4", "addr"]):
        for entry in json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout or "[]"):
            nets = [entry.get("dst")] + [f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", [])]
            for net in filter(None, nets):
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.ip_network("0.0.0.0/0" if net == "default" else net, strict=False))
    for candidate in POOL.subnets(new_prefix=24):
        if not any(candidate.overlaps(u) for u in used if u.prefixlen > 0):
            return candidate
    raise EngineError(f"no /24 of {POOL} is free on this host")


def ping(path: Path) -> bool:
    """True if the engine at the socket ``path`` answers GET /_ping with OK."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(path))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
            reply = b""
            while len(reply) < 65536 and (chunk := s.recv(4096)):  # HTTP/1.0: the engine closes after it
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0] and reply.endswith(b"OK")
