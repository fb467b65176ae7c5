"""The dashboard's sign-in sessions, kept in the server's memory.

The cookie holds only an opaque random id (32 bytes); the token a person signed in with is never put in
it, nor kept here: a session knows the token's row id and scope, and every request checks that this
token is still live, so revoking it (or its expiry) ends the session at once. Each session has its own
CSRF secret, which every form carries and every POST must send back. Sessions end after
:data:`IDLE_SECONDS` unused or :data:`MAX_SECONDS` in all, and at most :data:`MAX_SESSIONS` are kept
(the least recently used go first), of which at most :data:`MAX_PER_TOKEN` (or a quarter of the
table, if smaller) per token: signing in again and again with one token ends that token's oldest
sessions, not other people's. A restart of the runner signs everyone out."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import tokens

COOKIE = "runner_session"
SIGNIN_COOKIE = "runner_signin"  # the sign-in form's own CSRF value (double submit), before any session
IDLE_SECONDS = 8 * 3600
MAX_SECONDS = 24 * 3600
MAX_SESSIONS = 10_000
MAX_PER_TOKEN = 20  # one token's sign-ins push out only its own older sessions, never another token's


@dataclass
class Session:
    """A signed-in browser: the token's row id and scope, its CSRF secret and a one-shot notice."""

    token_id: int
    scope: tokens.Scope
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = 0.0
    seen: float = 0.0
    notice: str = ""

    def csrf_ok(self, given: str | None) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self.csrf.encode())

    def take_notice(self) -> str:
        said, self.notice = self.notice, ""
        return said


class Sessions:
    """Session id → :class:`Session`, bounded in number and in age. The clock is passed in."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_sessions: int = MAX_SESSIONS) -> None:
        self.clock, self.max_sessions = clock, max_sessions
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_id)

    def start(self, token_id: int, scope: tokens.Scope) -> tuple[str, Session]:
        """A new session for a token just checked; returns its id (the cookie's value) and itself."""
        sid, now = secrets.token_urlsafe(32), self.clock()
        session = Session(token_id, scope, created=now, seen=now)
        with self._lock:
            own = [k for k, v in self._by_id.items() if v.token_id == token_id]  # least recently used first
            for old in own[: max(0, len(own) + 1 - self.per_token)]:
                del self._by_id[old]
            self._by_id[sid] = session
            while len(self._by_id) > self.max_sessions:
                self._by_id.popitem(last=False)
        return sid, session

    @property
    def per_token(self) -> int:
        """How many sessions one token may hold at once."""
        return max(1, min(MAX_PER_TOKEN, self.max_sessions // 4))

    def get(self, sid: str | None) -> Session | None:
        """The live session of ``sid``; None for an unknown, idle or too old one (which is dropped)."""
        if not sid:
            return None
        now = self.clock()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if now - session.seen > IDLE_SECONDS or now - session.created > MAX_SECONDS:
                del self._by_id[sid]
                return None
            session.seen = now
            self._by_id.move_to_end(sid)
            return session

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)
