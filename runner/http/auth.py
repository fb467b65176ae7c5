"""Who is calling: a bearer token, checked against the hashes the store keeps, and what it reaches.

A thread token reaches one thread: any other thread's path answers 404, exactly as for a thread with
nothing in it, so a token cannot tell which other threads exist. A read-only token gets 403 on every
write. Failed authentications are counted per client address and slowed down (429 with Retry-After)
before the token is even looked at; the comparison of the secret is constant-time (runner.tokens)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from .. import tokens
from ..errors import ValidationError
from ..store import Store
from ..threads import ThreadId
from .problems import Problem, problem

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="runner"'}
NOTE_EVERY = 60.0  # seconds: how often a token's use is written (the store's query writes at most this often)


@dataclass(frozen=True)
class Caller:
    """An authenticated request's token: its row id and its scope."""

    token_id: int
    scope: tokens.Scope

    def thread(self, text: str) -> ThreadId:
        """The thread ``text`` names, if this caller reaches it; 404 otherwise (also when malformed for
        a thread token, so that nothing about other threads is told)."""
        if not self.scope.admin:
            if text != self.scope.thread:
                raise Problem(404, f"there is no thread {text!r} for this token: it reaches {self.scope.thread}")
            return ThreadId.parse(text)
        try:
            return ThreadId.parse(text)
        except ValidationError as exc:
            raise Problem(404, str(exc)) from None

    def writing(self) -> None:
        """Refuse a write to a read-only token."""
        if not self.scope.may_write:
            raise Problem(403, "this token is read-only: create one without --read-only to change anything")


class Authenticator:
    """Turns ``Authorization: Bearer …`` into a :class:`Caller`, before the request's body is read
    (:class:`AuthGate`). A valid token is always let in; a failed sign-in is counted against the client's
    address, and past the limit failures get 429 instead of 401 (so a flood costs the database nothing
    more than a lookup by primary key, and a valid user behind the same address is never locked out)."""

    def __init__(self, store: Store, limiter: tokens.FailureLimiter | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.clock = store, clock
        self.limiter = limiter if limiter is not None else tokens.FailureLimiter()  # (an empty one is falsy)
        self._lock = threading.Lock()
        self._noted: dict[int, float] = {}  # token row id -> when its use was last written

    def authenticate(self, header: str, address: str) -> Caller:
        found = self._check(header)
        if found is not None:
            token_id, scope = found
            self._note_used(token_id)
            return Caller(token_id, scope)
        now = self.clock()
        with self._lock:
            allowed = self.limiter.allowed(address, now)
            self.limiter.failed(address, now)
            wait = max(1, round(self.limiter.retry_after(address, now)))
        if not allowed:
            raise Problem(429, f"too many failed sign-ins from this address: try again in {wait} s",
                          {"Retry-After": str(wait)})
        raise Problem(401, "a valid token is needed: send 'Authorization: Bearer <token>' with a token from "
                      "`runner token create` (a revoked or expired token is refused)", CHALLENGE)

    def _note_used(self, token_id: int) -> None:
        """Write the token's last use at most once every NOTE_EVERY seconds from this process: the
        store would skip a more frequent write anyway, and asking it costs every request a round trip."""
        now = self.clock()
        with self._lock:
            due = now - self._noted.get(token_id, now - NOTE_EVERY) >= NOTE_EVERY
            if due:
                self._noted[token_id] = now
                if len(self._noted) > 10_000:  # bounded: forget what the next use would write anyway
                    self._noted = {t: at for t, at in self._noted.items() if now - at < NOTE_EVERY}
        if due:
            self.store.note_token_used(token_id)

    def still_live(self, caller: Caller) -> None:
        """Refuse, at once, a caller whose token was revoked or expired while its request waited."""
        if not self.store.token_is_live(caller.token_id):
            raise Problem(401, "this token was revoked or has expired", CHALLENGE)

    def _check(self, header: str) -> tuple[int, tokens.Scope] | None:
        kind, _, text = header.partition(" ")
        if kind.lower() != "bearer" or not text.strip():
            return None
        return self.store.token_scope(text.strip())


class AuthGate:
    """ASGI middleware: every /v1 and /mcp request but the OpenAPI document is authenticated before any
    of its body is read (an unauthenticated client cannot make the server buffer a body); the caller is
    put in the request's state for the routes."""

    OPEN = ("/v1/openapi.json",)

    def __init__(self, app: Any, authenticator: Authenticator) -> None:
        self.app, self.authenticator = app, authenticator

    def guarded(self, path: str) -> bool:
        mcp = path == "/mcp" or path.startswith("/mcp/")
        return (path.startswith("/v1/") and path not in self.OPEN) or mcp

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not self.guarded(path):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"").decode("latin-1")
        address = (scope.get("client") or ("unknown", 0))[0]
        try:
            caller = await run_in_threadpool(self.authenticator.authenticate, header, address)
        except Problem as exc:
            await problem(exc.status, exc.detail, path, exc.headers)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, _private(send))


def _private(send: Any) -> Any:
    """``send``, with every authenticated answer marked ``Cache-Control: no-store``: a thread's jobs, files,
    messages or a webhook secret just made are never kept by a cache between the runner and its client."""
    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", []) if h[0].lower() != b"cache-control"]
            message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
        await send(message)

    return sending


def current_caller(request: Request) -> Caller:
    """The caller :class:`AuthGate` found for this request."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise Problem(401, "a valid token is needed: send 'Authorization: Bearer <token>'", CHALLENGE)
    return caller


async def _caller(request: Request) -> Caller:
    """The dependency of every authenticated route: :func:`current_caller`. Async, as it waits for
    nothing (FastAPI runs a plain function on its thread pool: a hop per request, per dependency)."""
    return current_caller(request)


CallerDep = Annotated[Caller, Depends(_caller)]
