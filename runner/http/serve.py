"""Serve an ASGI app with uvicorn on a thread of its own, as the runner's other parts run: start()
returns once the socket listens (so the port is known, also for port 0), stop() closes it."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import ConfigError

log = logging.getLogger("runner.http")
MAX_BODY = 2 * 1024 * 1024  # bytes: a script is at most RUNNER_SCRIPT_CAP, far below
HEAD_SECONDS = 10.0  # a request's line and headers must arrive within this of connecting or of the last answer
BODY_SECONDS = 10.0  # the longest wait for the next piece of a request's body
MAX_CONNECTIONS = 500  # at once (held long polls count); past it the server answers 503


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's head: a connection that has not sent a
    whole request line and headers within HEAD_SECONDS of connecting (or of its last answer) is closed,
    so clients that trickle headers (slowloris) cannot hold sockets open. The deadline counts from the
    last answer only: a connection that keeps asking is never cut between two requests.

    Each connection's socket gets TCP_NODELAY. asyncio sets it only on sockets made with the protocol
    number IPPROTO_TCP, and the listening socket here comes from socket.create_server (protocol 0): without
    it, Nagle's algorithm held an answer's body (written after its head) until the client's delayed ACK,
    and every request took 40 ms more on Linux whatever it did (the benchmark's `api` section)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        # One deadline at a time: the one armed at connecting (or at an earlier answer) would otherwise
        # fire later between two requests of a busy kept-alive connection and close it under the client.
        earlier: asyncio.TimerHandle | None = getattr(self, "_head_timer", None)
        if earlier is not None:
            earlier.cancel()
        self._head_timer = self.loop.call_later(HEAD_SECONDS, self._head_overdue)

    def _head_overdue(self) -> None:
        waiting = self.cycle is None or self.cycle.response_complete  # no request of which the head came
        if waiting and not self.transport.is_closing():
            self.transport.close()


class BodyLimit:
    """Refuse a request body larger than ``limit`` bytes with 413, counting what arrives (a wrong or
    missing Content-Length gets no more through), before the app reads any of it. The body is read
    whole (it is at most ``limit``) and handed to the app as one message."""

    def __init__(self, app: Any, limit: int = MAX_BODY, page: Callable[[dict[str, Any]], Any] | None = None) -> None:
        """``page``: for a request outside the API, the ASGI response to refuse it with (the dashboard's
        page), or None for the problem document."""
        self.app, self.limit, self.page = app, limit, page

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await self._refuse(scope, receive, send)
            return
        given = False

        async def replay() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            message: dict[str, Any] = await receive()  # after the body: only a disconnect comes
            return message

        await self.app(scope, replay, send)

    async def _read(self, receive: Any) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), BODY_SECONDS)
            except TimeoutError:
                return None  # a body that trickles in is refused like one too large
            if message["type"] != "http.request":
                return b"".join(parts)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            parts.append(chunk)
            if not message.get("more_body"):
                return b"".join(parts)

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from .problems import MEDIA_TYPE

        page = self.page(scope) if self.page is not None else None
        if page is not None:
            await page(scope, receive, send)
            return

        body = (b'{"type":"about:blank","title":"Content too large","status":413,"detail":"the request body is '
                b'larger than ' + str(self.limit).encode() + b' bytes, or arrived too slowly: send a smaller script or '
                b'file, at once"}')
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class HttpServer:
    """uvicorn serving ``app`` on ``addr`` (``host:port``) in a thread."""

    def __init__(self, app: Any, addr: str, trusted_proxies: Sequence[str] = ()) -> None:
        host, _, port = addr.rpartition(":")
        try:
            self.sock = socket.create_server((host.strip("[]") or "127.0.0.1", int(port)),
                                             family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"cannot serve HTTP on {addr}: {reason}; set RUNNER_HTTP to a free host:port "
                              "(or leave it empty for no HTTP server)") from None
        # X-Forwarded-For is believed only from the operator's reverse proxies (RUNNER_HTTP_TRUSTED_PROXIES):
        # from anyone else it would let a client choose the address its failed sign-ins count against.
        # uvicorn then takes the nearest address in the chain that is not a trusted proxy.
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                server_header=False, timeout_graceful_shutdown=5,
                                proxy_headers=bool(trusted_proxies), forwarded_allow_ips=list(trusted_proxies),
                                http=_Protocol, limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = self.sock.getsockname()[0]
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def _serve(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
