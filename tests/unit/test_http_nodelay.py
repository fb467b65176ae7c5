"""The API server answers without Nagle's algorithm: every connection it accepts has TCP_NODELAY, which
asyncio sets only on sockets made with proto IPPROTO_TCP (socket.create_server makes proto 0). Without
it each answer's body waited for the client's delayed ACK: about 40 ms a request on loopback."""

from __future__ import annotations

import socket
from typing import Any

from runner.http.serve import HttpServer
from tests.waiting import wait_for


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_every_accepted_connection_has_nagle_turned_off() -> None:
    server = HttpServer(_ok, "127.0.0.1:0")
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
            connections = wait_for(lambda: list(server.server.server_state.connections), 10, "the connection")
            sockets = [c.transport.get_extra_info("socket") for c in connections]
            assert [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets] == [1]
    finally:
        server.stop()
