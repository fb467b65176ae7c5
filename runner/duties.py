"""The runner's own periodic duties (heartbeat, sweeps, pruning) as jobs on APScheduler.

Each duty is a job of one ``BackgroundScheduler`` with its own ``IntervalTrigger``, ``max_instances=1``
and ``coalesce=True``, run by a thread pool with a thread for every duty: a duty that hangs (a stalled
Docker engine under the orphan sweep) holds up only itself, never the lease heartbeat. A failure is
logged (the first of a streak as a warning, its end too) and counted in ``runner_duty_failures_total``;
a run that finds the previous one still going is skipped and counted in ``runner_duty_skipped_total``.

User schedules are not here: they are rows in the database, timed with cronsim (see schedule.py).

:class:`Link` is what the runner knows of its own connection to the database. A runner judges other
runners dead (their lease ran out) only once it has renewed its own leases and stayed connected for a
full lease period: after an outage every runner's lease has run out, and the others need that long to
renew theirs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from . import metrics
from .errors import RunnerError

log = logging.getLogger(__name__)


class Link:
    """Whether this runner has been connected to the database long enough to judge other runners.

    The heartbeat reports each success (:meth:`beat`) and failure (:meth:`lost`). The link counts as
    connected since the first success after a failure, or after a gap between successes longer than
    ``gap`` seconds (a heartbeat that hung is a cut-off too). :meth:`trusted` is true once that has
    lasted ``lease`` seconds and the last success is less than ``gap`` seconds old."""

    def __init__(self, lease: float, gap: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease, self.gap, self.clock = lease, gap, clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last_ok: float | None = None

    def beat(self) -> None:
        """The heartbeat reached the database (and renewed this runner's leases)."""
        with self._lock:
            now = self.clock()
            if self._since is None or self._last_ok is None or now - self._last_ok > self.gap:
                if self._last_ok is not None:
                    log.info("connected to the database again: other runners' expired leases are judged "
                             "after %g s of being connected (their runners renew theirs meanwhile)", self.lease)
                self._since = now
            self._last_ok = now

    def lost(self) -> None:
        """The heartbeat could not reach the database."""
        with self._lock:
            self._since = None

    def trusted(self) -> bool:
        """Connected for a full lease period, and recently heard from the database."""
        with self._lock:
            now = self.clock()
            return (self._since is not None and self._last_ok is not None
                    and now - self._since >= self.lease and now - self._last_ok <= self.gap)


@dataclasses.dataclass(frozen=True)
class Duty:
    """One periodic duty: ``run`` every ``every`` seconds (the first time at once if ``at_start``)."""

    name: str
    run: Callable[[], object]
    every: float
    at_start: bool = True


class Duties:
    """The duties on their own scheduler and threads, from :meth:`start` to :meth:`shutdown`."""

    def __init__(self, duties: list[Duty]) -> None:
        self.duties = {d.name: d for d in duties}
        self._failing: dict[str, int] = {}
        self._lock = threading.Lock()
        self._skipping: set[str] = set()
        # Not a line per beat, nor one per skipped run: the lines below say it once, in our words.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(duties))},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC)
        self.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        now = datetime.now(UTC)
        for d in duties:
            extra = {"next_run_time": now} if d.at_start else {}
            self.scheduler.add_job(self.run_once, IntervalTrigger(seconds=d.every, timezone=UTC), args=(d.name,),
                                   id=d.name, name=d.name, max_instances=1, coalesce=True, **extra)

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        """Stop scheduling, and wait for the duties running now (each is bounded by its own timeouts)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def run_once(self, name: str) -> bool:
        """Run one duty now, in this thread: a failure is logged and counted, never raised."""
        try:
            self.duties[name].run()
        except Exception as exc:  # a duty must never die of one failure: it runs again at its next time
            self._failed(name, exc)
            return False
        metrics.DUTY_LAST_SUCCESS.labels(name).set(time.time())
        with self._lock:
            streak = self._failing.pop(name, 0)
            self._skipping.discard(name)
        if streak:
            log.info("%s works again after %d failure(s)", name, streak)
        return True

    def _failed(self, name: str, exc: Exception) -> None:
        metrics.DUTY_FAILURES.labels(name).inc()
        with self._lock:
            streak = self._failing[name] = self._failing.get(name, 0) + 1
        if not isinstance(exc, RunnerError):
            log.exception("%s failed unexpectedly (it runs again in %g s)", name, self.duties[name].every)
        elif streak == 1:
            log.warning("%s failed (it runs again in %g s, quietly until it works): %s",
                        name, self.duties[name].every, exc)
        else:
            log.debug("%s failed again (%d in a row): %s", name, streak, exc)

    def _skipped(self, event: JobSubmissionEvent) -> None:
        """A duty fell due while its last run was still going (a slow Docker engine or database)."""
        metrics.DUTY_SKIPPED.labels(event.job_id).inc()
        with self._lock:
            first = event.job_id not in self._skipping
            self._skipping.add(event.job_id)
        if first:
            log.warning("%s is slow: its last run is still going, so later runs are skipped until it ends "
                        "(the other duties, the lease heartbeat among them, go on)", event.job_id)
