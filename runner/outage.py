"""Waiting out a database outage.

An outage is a fault to wait out, never a reason to stop: the scheduling loop, the notifier and the
Telegram delivery retry what failed, with an exponential backoff (tenacity), until the database
answers again or the runner is stopped. :class:`Outage` says so in the log once when the database
becomes unreachable and once when it answers again, however many retries there were in between.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)

from . import metrics
from .errors import DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
BACKOFF = wait_exponential(multiplier=0.5, max=5.0) + wait_random(0, 0.5)  # a restarted server is found within ~5 s


class Outage:
    """Whether the database is unreachable now, logged once at each edge (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None

    @property
    def down(self) -> bool:
        return self.since is not None

    def began(self, reason: str) -> None:
        """The database did not answer (a no-op while it is already known to be down)."""
        with self._lock:
            if self.since is not None:
                return
            self.since = time.monotonic()
        metrics.DB_OUTAGES.inc()
        log.warning("the database is unreachable (%s): waiting for it; work resumes by itself when it is back",
                    reason)

    def ended(self) -> bool:
        """The database answered. True when that ends an outage (then logged)."""
        with self._lock:
            if self.since is None:
                return False
            took, self.since = time.monotonic() - self.since, None
        log.warning("the database is reachable again after %.1f s", took)
        return True


def patiently(fn: Callable[..., T], stopping: threading.Event, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, called again after each :class:`DatabaseUnavailable` with a backoff,
    until it succeeds; re-raises only once ``stopping`` is set."""

    def pause(seconds: float) -> None:
        stopping.wait(seconds)  # ends early once stopping is set

    retrying = Retrying(retry=retry_if_exception_type(DatabaseUnavailable), wait=BACKOFF,
                        stop=stop_when_event_set(stopping), sleep=pause, reraise=True)
    return retrying(fn, *args, **kwargs)


async def apatiently(fn: Callable[..., Awaitable[T]], stopping: asyncio.Event, *args: Any, **kwargs: Any) -> T:
    """The event loop's :func:`patiently`: awaits ``fn`` until it does not raise DatabaseUnavailable."""

    async def pause(seconds: float) -> None:
        try:
            await asyncio.wait_for(stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass

    retrying = AsyncRetrying(retry=retry_if_exception_type(DatabaseUnavailable), wait=BACKOFF,
                             stop=stop_when_event_set(stopping), sleep=pause, reraise=True)  # type: ignore[arg-type]
    return await retrying(fn, *args, **kwargs)
