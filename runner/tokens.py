"""API tokens: how they look, how they are kept and checked, what they reach, and how failed sign-ins
are slowed down. Pure logic; the table is the store's (``runner.store.tokens``).

A token is ``rnr_<public id>_<secret>``: 8 random bytes in hex, which name the row, and 32 random bytes
in base64url, of which only the SHA-256 is stored. The secret has 256 bits of entropy, so a fast hash is
enough (no password stretching is needed: nothing can be guessed), and the stored hash is compared in
constant time. A token that does not have exactly this shape is refused before any lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta

from .errors import ValidationError

PREFIX = "rnr"
_TOKEN_RE = re.compile(r"rnr_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_EXPIRY_RE = re.compile(r"([1-9][0-9]{0,3})([mhdw])")
_NAME_RE = re.compile(r"[a-z0-9_.-]{1,64}")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_EXPIRY = timedelta(days=3660)


@dataclass(frozen=True)
class NewToken:
    """A token just made: its text is shown once and never stored."""

    text: str
    public_id: str
    secret_hash: bytes

    def __repr__(self) -> str:  # the text must not reach a log line through a repr
        return f"NewToken(public_id={self.public_id!r})"


def new_token() -> NewToken:
    public_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return NewToken(text=f"{PREFIX}_{public_id}_{secret}", public_id=public_id, secret_hash=hash_secret(secret))


def parse(text: str) -> tuple[str, str] | None:
    """``(public id, secret)`` of a well-formed token, else None."""
    m = _TOKEN_RE.fullmatch(text) if isinstance(text, str) and len(text) < 128 else None
    return (m[1], m[2]) if m else None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def matches(secret: str, stored_hash: bytes) -> bool:
    """Whether ``secret`` is the one whose hash is stored, compared in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def validate_name(name: str) -> str:
    """A token's name: what ``runner token revoke`` takes."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValidationError(f"token name {name!r} is not allowed: use 1 to 64 lower-case letters, digits, "
                              "'.', '_' or '-', e.g. laptop")
    return name


def parse_expiry(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w`` as a duration; anything else is refused with what to write."""
    m = _EXPIRY_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if m:
        span = timedelta(**{_UNITS[m[2]]: int(m[1])})
        if span <= MAX_EXPIRY:
            return span
    raise ValidationError(f"expiry {text!r} is not understood: write a number and a unit (m, h, d or w), "
                          "e.g. 90d or 12h, of at most 10 years")


@dataclass(frozen=True)
class Scope:
    """What a token reaches: one thread, or every thread (admin); read-only or not."""

    thread: str | None
    admin: bool
    read_only: bool

    def __post_init__(self) -> None:
        if self.admin == (self.thread is not None):
            raise ValueError("a token reaches either one thread or, as an admin token, every thread")

    def reaches(self, thread: str) -> bool:
        return self.admin or thread == self.thread

    @property
    def may_write(self) -> bool:
        return not self.read_only


class FailureLimiter:
    """Failed sign-ins per client address, as a leaky bucket: ``burst`` failures at once, then one per
    ``1/per_second`` seconds. Memory is bounded: past ``max_addresses`` the least recently seen go.
    The clock is passed in."""

    def __init__(self, *, burst: int = 10, per_second: float = 0.2, max_addresses: int = 10_000) -> None:
        self.burst, self.per_second, self.max_addresses = burst, per_second, max_addresses
        self._levels: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (level, at)

    def __len__(self) -> int:
        return len(self._levels)

    def _level(self, address: str, now: float) -> float:
        level, at = self._levels.get(address, (0.0, now))
        return max(0.0, level - (now - at) * self.per_second)

    def allowed(self, address: str, now: float) -> bool:
        """Whether a sign-in from ``address`` may be tried now."""
        return self._level(address, now) <= self.burst - 1

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until ``address`` may try again (0 if it may now)."""
        return max(0.0, (self._level(address, now) - (self.burst - 1)) / self.per_second)

    def failed(self, address: str, now: float) -> None:
        """Count a failed sign-in from ``address``."""
        self._levels[address] = (self._level(address, now) + 1.0, now)
        self._levels.move_to_end(address)
        while len(self._levels) > self.max_addresses:
            self._levels.popitem(last=False)
