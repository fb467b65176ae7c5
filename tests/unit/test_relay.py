"""The egress relay a granted job's launcher starts (runner/sandbox/relay.py), run here with the host's
Python against Unix-socket servers standing in for the proxy: bytes both ways with half-closes passed
on (one connection or several at once), a proxy that is not there, and the relay ending with the job."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runner import sandbox


def _echo_server(path: str, connections: int) -> socket.socket:
    """A stand-in proxy on a Unix socket: echoes each of ``connections`` connections back until its
    client half-closes, then closes it."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(connections)

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        with server:
            for _ in range(connections):
                conn, _ = server.accept()
                threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def _job(path: str, client: str) -> subprocess.CompletedProcess[str]:
    """A job's process: the relay to ``path`` started as the launcher starts it, then ``client``. It
    returns only once the relay's own process has ended too (it holds the same stdout)."""
    return subprocess.run([sys.executable, "-c", sandbox.relay_code(path, 0) + client], capture_output=True,
                          text=True, timeout=30, check=False)


@pytest.mark.parametrize(("connections", "size"), [(1, 1 << 20), (8, 100_000)])
def test_relay_passes_bytes_both_ways_with_half_closes(tmp_path: Path, connections: int, size: int) -> None:
    """1 MiB each way on one connection, or eight connections open side by side and written in turn:
    every client's half-close is passed on to the proxy, and each gets its own bytes back after it."""
    path = str(tmp_path / "proxy.sock")
    _echo_server(path, connections)
    client = (
        "import socket\n"
        f"cs = [socket.create_connection(('127.0.0.1', _egress_port), timeout=10) for _ in range({connections})]\n"
        f"payloads = [bytes(range(256)) * ({size} // 256) + bytes([i]) * i for i in range({connections})]\n"
        "for c, p in zip(cs, payloads):\n"
        "    c.sendall(p[:len(p) // 2])\n"
        "for c, p in zip(cs, payloads):\n"
        "    c.sendall(p[len(p) // 2:])\n"
        "    c.shutdown(socket.SHUT_WR)\n"
        "same = 0\n"
        "for c, p in zip(cs, payloads):\n"
        "    got = b''\n"
        "    while chunk := c.recv(65536):\n"
        "        got += chunk\n"
        "    same += got == p\n"
        "print('same', same)\n"
    )
    r = _job(path, client)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"same {connections}", r.stdout


def test_a_connection_the_proxy_does_not_take_is_closed_and_the_relay_goes_on(tmp_path: Path) -> None:
    """No proxy listens on the socket: each connection the job makes is closed at once (it reads EOF),
    and the relay still accepts the next one."""
    path = str(tmp_path / "absent.sock")
    client = (
        "import socket\n"
        "seen = []\n"
        "for _ in range(2):\n"
        "    c = socket.create_connection(('127.0.0.1', _egress_port), timeout=10)\n"
        "    seen.append(c.recv(10))\n"
        "    c.close()\n"
        "print(seen)\n"
    )
    r = _job(path, client)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[b'', b'']", r.stdout


def test_the_relay_ends_with_the_job_and_leaves_no_name_behind(tmp_path: Path) -> None:
    """The job's process exits: so does the relay's (its port no longer listens), and the names relay.py
    defines are gone from the job's namespace once the relay has started."""
    path = str(tmp_path / "proxy.sock")
    r = _job(path, "print(_egress_port, sorted(n for n in dir() if 'elay' in n or n in ('os', 'socket', "
                   "'selectors')))\n")
    assert r.returncode == 0, r.stderr
    port, names = r.stdout.split(" ", 1)
    assert names.strip() == "[]", names
    probe = socket.socket()
    try:
        assert probe.connect_ex(("127.0.0.1", int(port))) != 0, "the relay still listens after its job ended"
    finally:
        probe.close()
