"""One line of ``runner doctor``'s report, and the guard that turns whatever a check raises into a failed line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import RunnerError


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def safe(name: str, fn: Callable[[], Check]) -> Check:
    """``fn()``, or a failed line saying what it raised: the report must finish whatever breaks."""
    try:
        return fn()
    except RunnerError as exc:
        return Check(name, False, str(exc))
    except Exception as exc:  # the report must finish whatever breaks
        return Check(name, False, f"{type(exc).__name__}: {exc}")
