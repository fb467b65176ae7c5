"""Validation of what a caller asks for, before anything is saved: a job's name, its script (within
the size cap, UTF-8, and it compiles), its limits and its policies.

A refusal is a :class:`ValidationError` whose message says what to change. Limits left out are the
operator's (:class:`~runner.settings.Settings`, the one source of their defaults); policies left out
are the defaults :mod:`runner.settings` states.
"""

from __future__ import annotations

import re
from dataclasses import astuple, dataclass, fields
from typing import Any

from ..errors import ValidationError
from ..settings import DEFAULT_OVERLAP, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, Settings

NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")

OVERLAPS = ("skip", "queue")
MAX_GRACE = 7 * 86400
MAX_RETRIES = 10
MAX_RETRY_DELAY = 86400


def validate_name(name: str) -> str:
    """A job name is ``[a-z0-9_-]{1,64}``: it names files in the thread's directory."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(
            f"job name {name!r} is not allowed: use 1 to 64 lower-case letters, digits, '_' or '-', e.g. 'check_price'"
        )
    return name


def check_script(source: bytes, filename: str, cap: int) -> str:
    """Return the script as text if it is within ``cap`` bytes, UTF-8, and compiles; else ValidationError."""
    if len(source) > cap:
        raise ValidationError(f"{filename} is {len(source)} bytes; the limit is {cap} bytes: make it smaller")
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{filename} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    try:
        compile(text, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        if exc.lineno is None:  # e.g. a NUL byte (Python 3.11.4+ says so as a SyntaxError of no line)
            raise ValidationError(f"{filename} cannot be compiled: {exc.msg}") from None
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        raise ValidationError(f"{filename} has a syntax error at {where}: {exc.msg}; fix it and schedule again") from None
    except ValueError as exc:  # e.g. a NUL byte in the source
        raise ValidationError(f"{filename} cannot be compiled: {exc}") from None
    return text


@dataclass
class Policy:
    """Per-job policies; None means the documented default.

    ``grace_seconds``: a run missed while the runner was down still runs if less late than this
    (the operator's RUNNER_GRACE_SECONDS). ``overlap``: "skip" (default) skips slots that fall due while
    the previous run is running; "queue" runs the first of them right after it. ``retries``: failed runs
    are retried this often (0), waiting ``retry_delay_seconds`` (60), doubled each time; a timeout is a
    failure."""

    grace_seconds: int | None = None
    overlap: str | None = None
    retries: int | None = None
    retry_delay_seconds: int | None = None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Policy:
        """The policies a job row holds."""
        return cls(row["grace_seconds"], row["overlap"], row["retries"], row["retry_delay_seconds"])


@dataclass
class Limits:
    """Per-job limits; None means the operator's default."""

    timeout_seconds: int | None = None
    memory_mb: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Limits:
        """The limits a job row holds."""
        return cls(row["timeout_seconds"], row["memory_mb"], row["cpus"], row["pids_limit"])


def overlay(new: Limits | Policy, old: Limits | Policy) -> Any:
    """``new`` with what it leaves out (None) taken from ``old`` (of the same class)."""
    merged = {f.name: n if n is not None else o for f, n, o in zip(fields(new), astuple(new), astuple(old), strict=True)}
    return type(new)(**merged)


def resolve_limits(settings: Settings, limits: Limits) -> dict[str, Any]:
    """The limits to save: those given, else the operator's defaults; each within the operator's bounds."""
    s = settings
    timeout = limits.timeout_seconds or s.timeout_seconds
    memory = limits.memory_mb or s.memory_mb
    cpus = limits.cpus or s.cpus
    pids = limits.pids_limit or s.pids_limit
    if not 1 <= timeout <= s.max_timeout_seconds:
        raise ValidationError(f"timeout {timeout} s is outside 1..{s.max_timeout_seconds} s (the operator's maximum)")
    if not 16 <= memory <= s.max_memory_mb:
        raise ValidationError(f"memory {memory} MiB is outside 16..{s.max_memory_mb} MiB (the operator's maximum)")
    if not 0.01 <= cpus <= max(s.cpus, 1.0) * 4:
        raise ValidationError(f"cpus {cpus} is outside 0.01..{max(s.cpus, 1.0) * 4}")
    if not 8 <= pids <= max(s.pids_limit, 64) * 4:
        raise ValidationError(f"process limit {pids} is outside 8..{max(s.pids_limit, 64) * 4}")
    return {"timeout_seconds": timeout, "memory_mb": memory, "cpus": cpus, "pids_limit": pids}


def resolve_policy(settings: Settings, policy: Policy) -> dict[str, Any]:
    """The policies to save: those given, else the defaults; each within its bounds."""
    grace = settings.grace_seconds if policy.grace_seconds is None else policy.grace_seconds
    overlap = policy.overlap or DEFAULT_OVERLAP
    retries = DEFAULT_RETRIES if policy.retries is None else policy.retries
    delay = DEFAULT_RETRY_DELAY if policy.retry_delay_seconds is None else policy.retry_delay_seconds
    if overlap not in OVERLAPS:
        raise ValidationError(f"overlap {overlap!r} is not 'skip' or 'queue'")
    if not 0 <= grace <= MAX_GRACE:
        raise ValidationError(f"grace period {grace} s is outside 0..{MAX_GRACE} s (a week)")
    if not 0 <= retries <= MAX_RETRIES:
        raise ValidationError(f"retries {retries} is outside 0..{MAX_RETRIES}")
    if not 0 <= delay <= MAX_RETRY_DELAY:
        raise ValidationError(f"retry delay {delay} s is outside 0..{MAX_RETRY_DELAY} s")
    return {"grace_seconds": grace, "overlap": overlap, "retries": retries, "retry_delay_seconds": delay}
