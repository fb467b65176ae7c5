"""The HTTP server's deadline on a request's head (runner.http.serve): a client that trickles its
headers is cut off, and a keep-alive client that keeps asking is not, however long it goes on (an
MCP session's tool calls, a client polling a job's runs). Real uvicorn on loopback, the deadline
shortened for the test."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from runner.http import serve
from runner.http.serve import HttpServer

HEAD = 0.3
REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpServer]:
    monkeypatch.setattr(serve, "HEAD_SECONDS", HEAD)
    app = FastAPI()

    @app.get("/x")
    def x() -> dict[str, bool]:
        return {"ok": True}

    srv = HttpServer(app, "127.0.0.1:0")
    srv.start()
    yield srv
    srv.stop()


def _answer(sock: socket.socket) -> bytes:
    """One whole response (headers and a Content-Length body), or b"" if the server closed."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            return b""
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_a_keep_alive_client_that_keeps_asking_is_not_cut_off(server: HttpServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started, answered = time.monotonic(), 0
        while time.monotonic() - started < 6 * HEAD:  # many deadlines set by earlier answers come due meanwhile
            sock.sendall(REQUEST)
            head = _answer(sock)
            assert head.startswith(b"HTTP/1.1 200"), f"cut off after {answered} answers, {time.monotonic() - started:.2f} s"
            answered += 1
            time.sleep(HEAD / 6)  # the client's own pause between two requests: the load's shape, not a wait


def test_a_client_that_trickles_its_head_is_still_cut_off(server: HttpServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(REQUEST)
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sock.sendall(b"GET /x HTTP/1.1\r\n")  # and the rest never comes
        assert sock.recv(1) == b""
        assert time.monotonic() - started < HEAD + 2
