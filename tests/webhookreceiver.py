"""A webhook receiver on 127.0.0.1 for the delivery tests: real HTTP, a script of faults, and the
de-duplication a receiver is told to do (by ``Idempotency-Key``).

Each request is answered by the first fault left in ``faults`` (``500``, ``hang``: hold the request
past the sender's timeout and answer nothing, ``down``: close the port, ``302``, ``422``..., ``ok``: no
fault), else by verifying the signature
with the receiver's secret: 200 if it verifies (a key seen before is answered 200 again and counted in
``duplicates``), 401 if not. :meth:`stop` closes the port (connections are then refused) and
:meth:`start` opens the same port again, as a receiver restarting mid-stream."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runner import webhook


class Receiver:
    def __init__(self, secret: str, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.secret, self.port, self.tls = secret, port, tls
        self.sni: list[str | None] = []  # the server name each TLS client asked for
        self.faults: deque[str] = deque()
        self.always: dict[str, str] = {}  # path -> fault answered every time (a receiver that always hangs)
        self.accepted: list[dict[str, Any]] = []  # bodies answered 200 the first time, in arrival order
        self.duplicates: list[int] = []
        self.arrived: dict[int, float] = {}  # id -> time.monotonic() when its 200 was answered
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every request
        self.release = threading.Event()  # set: hanging requests end
        self.went_down = threading.Event()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.handle(self, body)

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        if self.tls is not None:
            self.tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)  # type: ignore[assignment,func-returns-value]
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.lock:
            server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        with self.lock:
            self.requests.append((h.path, dict(h.headers)))
            fault = self.always.get(h.path) or (self.faults.popleft() if self.faults else None)
        if fault == "hang":
            self.release.wait(timeout=30)
            return
        if fault == "down":  # the receiver goes away: this request unanswered, the port closed
            threading.Thread(target=self.stop, daemon=True).start()
            self.went_down.set()
            return
        if fault == "302":
            self._answer(h, 302, b"moved", {"Location": "/elsewhere"})
            return
        if fault is not None and fault != "ok":  # "ok": answered as a receiver does
            self._answer(h, int(fault), f"receiver says {fault}".encode(), {"Retry-After": "0"})
            return
        if not webhook.verify(self.secret, h.headers.get("Runner-Signature", ""), body):
            self._answer(h, 401, b"bad signature")
            return
        doc = json.loads(body)
        with self.lock:
            if int(h.headers["Idempotency-Key"]) in {d["id"] for d in self.accepted}:
                self.duplicates.append(doc["id"])
            else:
                self.accepted.append(doc)
        self.arrived.setdefault(doc["id"], time.monotonic())
        self._answer(h, 200, b"ok")

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, text: bytes, headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(text)))
        h.end_headers()
        h.wfile.write(text)

    def ids(self, thread: str | None = None) -> list[int]:
        with self.lock:
            return [d["id"] for d in self.accepted if thread is None or d["thread"] == thread]
