"""HttpServer's connections over loopback: an answer is not held back by Nagle's algorithm, and the
deadline on a request's head never cuts a kept-alive connection that keeps asking (both found by the
benchmark's `api` section: every request took 40 ms more, and a busy client's connection was closed
under it ten seconds after it connected)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runner.http import serve
from runner.http.serve import HttpServer


async def _client_port(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that answers with the port its caller connected from, head and body written apart (as
    uvicorn writes every answer)."""
    if scope["type"] != "http":
        return
    body = str(scope["client"][1]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server() -> Iterator[HttpServer]:
    srv = HttpServer(_client_port, "127.0.0.1:0")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_an_answer_written_in_two_parts_is_not_held_for_the_clients_delayed_ack(server: HttpServer) -> None:
    # Without TCP_NODELAY the body waits for the ACK of the head, which Linux delays by at least 40 ms.
    took = []
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for _ in range(6):
            t0 = time.perf_counter()
            assert c.get("/").status_code == 200
            took.append(time.perf_counter() - t0)
    assert min(took[1:]) < 0.03, took  # the first one also connects


def test_a_kept_alive_connection_that_keeps_asking_is_not_cut_at_the_head_deadline(
        server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "HEAD_SECONDS", 0.3)
    ports = set()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        end = time.monotonic() + 1.2  # four deadlines' worth of a client that asks every 50 ms
        while time.monotonic() < end:
            ports.add(c.get("/").text)
            time.sleep(0.05)  # the client's pace (idle between requests is the case under test), not a wait
    assert len(ports) == 1, f"the connection was cut and made again {len(ports) - 1} times"
