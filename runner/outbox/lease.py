"""The lease on one outbox message while a runner sends it (to Telegram, or any sender).

A message is claimed with a lease (``RUNNER_LEASE_SECONDS``). While it is being sent:

* a heartbeat renews the lease every third of it, whatever the sender is waiting for (a slow Bot API,
  the rate limits, a quick retry);
* recording a part (or an attachment) as sent renews it too;
* before each Bot API request the sender makes sure the lease outlasts the request: every request's
  timeout is shorter than half the lease, and a request leaves only with at least its timeout and a
  sixth of the lease still to run. A request therefore ends, answered or not, before the lease can
  run out, and no other runner can take the message over while a request of this one is in flight.

Every renewal is owner-checked in the database. One that changes no row means another runner holds the
message now (this one was frozen, or cut off, past its lease): the sender raises :class:`LeaseLost` and
sends nothing more of it; the new holder resumes after the last part recorded as sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another runner holds the message now: this one sends nothing more of it."""


class LeaseTooShort(Exception):
    """The database answered so slowly that the lease would not outlast the next request."""


Renewal = Callable[[], Awaitable[bool]]


class OutboxLease:
    """The lease on one claimed outbox row. ``renew`` runs an owner-checked renewal and says whether it
    changed the row; ``claimed_at`` is ``time.monotonic()`` taken just before the claim was sent."""

    def __init__(self, renew: Renewal, lease_seconds: float, request_timeout: float, claimed_at: float) -> None:
        if request_timeout >= lease_seconds / 2:
            raise ValueError(f"the Bot API request timeout ({request_timeout} s) must be shorter than half "
                             f"the outbox lease ({lease_seconds} s)")
        self._renew, self.lease, self.timeout = renew, lease_seconds, request_timeout
        self.margin = lease_seconds / 6
        self.valid_until = claimed_at + lease_seconds
        self.lost = False
        self._lock = asyncio.Lock()

    def remaining(self) -> float:
        """Seconds the lease is certain to run for (measured from before the last renewal was sent)."""
        return self.valid_until - time.monotonic()

    async def renew(self, step: Renewal | None = None) -> None:
        """Renew the lease, by ``step`` (an owner-checked update that also renews it) or by the plain
        renewal. Raises :class:`LeaseLost` when it changed no row."""
        async with self._lock:
            if self.lost:
                raise LeaseLost
            t0 = time.monotonic()
            if not await (step or self._renew)():
                self.lost = True
                raise LeaseLost
            self.valid_until = max(self.valid_until, t0 + self.lease)

    async def before_request(self) -> None:
        """Called right before a Bot API request leaves: the lease must outlast it."""
        if self.lost:
            raise LeaseLost
        if self.remaining() < self.timeout + self.margin:
            await self.renew()
        if self.remaining() < self.timeout + self.margin:
            raise LeaseTooShort(f"the database took too long to renew the message's lease "
                                f"({self.remaining():.1f} s left, a request may take {self.timeout:g} s)")

    async def heartbeat(self) -> None:
        """Renew every third of the lease until cancelled or lost. A database error is logged and the
        next beat tries again; meanwhile :meth:`before_request` lets no request leave uncovered."""
        while not self.lost:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.renew()
            except LeaseLost:
                return
            except Exception as exc:  # the database blinked: the next beat, or the next request, retries
                log.warning("renewing a message's lease: %s", exc)
