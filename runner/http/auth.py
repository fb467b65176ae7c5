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
from typing import Annotated

from fastapi import Depends, Request

from .. import tokens
from ..errors import ValidationError
from ..store import Store
from ..threads import ThreadId
from .problems import Problem

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="runner"'}


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
    """The FastAPI dependency that turns ``Authorization: Bearer …`` into a :class:`Caller`."""

    def __init__(self, store: Store, limiter: tokens.FailureLimiter | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.clock = store, clock
        self.limiter = limiter if limiter is not None else tokens.FailureLimiter()  # (an empty one is falsy)
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Caller:
        address = request.client.host if request.client else "unknown"
        now = self.clock()
        with self._lock:
            if not self.limiter.allowed(address, now):
                wait = max(1, round(self.limiter.retry_after(address, now)))
                raise Problem(429, f"too many failed sign-ins from {address}: try again in {wait} s",
                              {"Retry-After": str(wait)})
        found = self._check(request.headers.get("authorization", ""))
        if found is None:
            with self._lock:
                self.limiter.failed(address, now)
            raise Problem(401, "a valid token is needed: send 'Authorization: Bearer <token>' with a token from "
                          "`runner token create` (a revoked or expired token is refused)", CHALLENGE)
        token_id, scope = found
        self.store.note_token_used(token_id)
        return Caller(token_id, scope)

    def _check(self, header: str) -> tuple[int, tokens.Scope] | None:
        kind, _, text = header.partition(" ")
        if kind.lower() != "bearer" or not text.strip():
            return None
        return self.store.token_scope(text.strip())


def current_caller(request: Request) -> Caller:
    """The dependency of every authenticated route: the app's :class:`Authenticator` on this request."""
    caller: Caller = request.app.state.authenticate(request)
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
