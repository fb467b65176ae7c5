"""The scheduling loop: wake, claim, dispatch to a bounded pool, drain.

The loop sleeps until the next due time (read from the database's clock) or until a NOTIFY says the
table changed, whichever is first; ``poll_interval`` is only the fallback. Due rows are claimed with
``FOR UPDATE SKIP LOCKED`` and a lease that a heartbeat renews, so two runners never run one job and a
dead runner's jobs are recovered once its leases run out.

The parts around the loop have modules of their own: one run's execution (runner/execute.py), the
recurrence policy (runner/policy.py, pure), the runs' reads and writes (runner/store/runs.py), and the
heartbeat, lease recovery and sweeps (runner/janitor.py, with runner/adoption.py and runner/duties.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any

from . import metrics, sandbox
from .errors import DatabaseError, DatabaseUnavailable
from .execute import Executor, Job, lease_lost
from .janitor import Janitor
from .settings import Settings
from .store import JOBS_CHANNEL, Database, Waker
from .threads import secure_data_dir

log = logging.getLogger(__name__)

Work = Callable[[Job], None]


class Scheduler:
    """Claims due jobs and runs them, up to ``settings.concurrency`` at once."""

    wake_after_job = True  # a finished job frees a slot: look for due work at once

    def __init__(self, settings: Settings, db: Database, docker_client: Any = None) -> None:
        self.settings = settings
        self.db = db
        secure_data_dir(settings.data_dir)  # refuse, or close, a data directory other users can reach
        self.dc = docker_client or sandbox.client()
        self.owner = settings.runner_id
        self.active: dict[int, Future[None]] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="job")
        self.waker: Waker | None = None
        self.last_loop = time.monotonic()
        self._tokens: dict[int, str] = {}  # job id -> the lease token this runner holds it under
        self.executor = Executor(settings, db, stopping=self.stopping, on_start=lambda job, at: self._started(job, at),
                                 engine=sandbox.clients_like(self.dc))  # the worker threads' clients: the same engine
        self.runs = self.executor.runs
        self.store_id = self.executor.store_id  # labels our containers; other databases' containers are not ours
        self.janitor = Janitor(self.executor, self, self.dc)

    # --- the loop ------------------------------------------------------------------------------------

    def run(self, *, burst: bool = False) -> None:
        """Run until :meth:`stop` (or, with ``burst``, until nothing is due or running)."""
        self.waker = Waker(self.db, JOBS_CHANNEL)
        try:
            self.janitor.start()  # the heartbeat, lease recovery, sweeps and pruning, each on its own
            while not self.stopping.is_set():
                self.last_loop = time.monotonic()
                try:
                    if not self._turn(burst):
                        break
                except DatabaseUnavailable:  # an outage is waited out, however long (logged once)
                    self.db.wait_until_reachable(self.stopping, tick=self._alive)
            self._drain()
        finally:
            self.pool.shutdown(wait=True)
            self.janitor.shutdown()  # after the runs: their leases are renewed to the end
            self.waker.close()

    def _turn(self, burst: bool) -> bool:
        """One pass of the loop: claim, then sleep. False when a burst is done."""
        claimed = self.claim_and_dispatch()
        if burst and not claimed and not self.active and not self._due_now():
            return False
        assert self.waker is not None
        self.waker.sleep(self._sleep_seconds(burst))
        return True

    def _alive(self) -> None:
        """The loop is alive while it waits for the database (/healthz reports the database apart)."""
        self.last_loop = time.monotonic()

    def stop(self) -> None:
        """Stop claiming; running jobs finish (each is bounded by its timeout)."""
        self.stopping.set()
        if self.waker:
            self.waker.wake()

    def _drain(self) -> None:
        """Let running jobs finish within the shutdown grace period, then stop them (recording why)."""
        with self._lock:
            futures = dict(self.active)
        if not futures:
            return
        grace = self.settings.shutdown_grace
        log.info("waiting up to %g s for %d running job(s) to finish", grace, len(futures))
        _done, late = wait(list(futures.values()), timeout=grace)
        if late:
            ids = {jid for jid, f in futures.items() if f in late}
            self.executor.stopped_for_shutdown(ids)
            tokens = {self._tokens.get(i) for i in ids} - {None}
            for c in sandbox.managed_containers(self.dc, self.store_id):
                if c.labels.get(sandbox.LABEL_ROLE) == "job" and c.labels.get(sandbox.LABEL_LEASE) in tokens:
                    log.warning("stopping job %s: the grace period is over", c.labels.get(sandbox.LABEL_JOB))
                    sandbox.kill_container(c)  # its run then reads the logs and removes it as usual
        wait(list(futures.values()))

    def _due_now(self) -> bool:
        secs = self.runs.seconds_until_next_due(self.settings.thread_concurrency)
        return secs is not None and secs <= 0

    def _sleep_seconds(self, burst: bool) -> float:
        if self.free_slots() == 0:
            return self.settings.poll_interval  # a finishing job wakes us
        secs = self.runs.seconds_until_next_due(self.settings.thread_concurrency)
        wait = self.settings.poll_interval if secs is None else max(0.0, secs - self.settings.prepare_seconds)
        if burst:
            wait = min(wait, 0.5)
        return min(wait, self.settings.poll_interval)

    def free_slots(self) -> int:
        """How many more runs this runner may run at once now."""
        with self._lock:
            return self.settings.concurrency - len(self.active)

    def active_ids(self) -> list[int]:
        """The runs this runner is running (or settling) now: the heartbeat renews their leases."""
        with self._lock:
            return list(self.active)

    def runs_itself(self, job_id: int, token: str) -> bool:
        """Whether this runner is running ``job_id`` itself, under the claim ``token``."""
        with self._lock:
            return self._tokens.get(job_id) == token and job_id in self.active

    def claim_and_dispatch(self) -> int:
        """Claim as many due jobs as there are free slots and start them. Returns how many."""
        free = self.free_slots()
        if free <= 0 or self.stopping.is_set():
            return 0
        rows = self.claim(free)
        metrics.RUNS_STARTED.inc(len(rows))
        for job in rows:
            log.info("claimed job %s (%s, thread %s, due %s)", job["id"], job["name"], job["thread_id"],
                     job["due_time"].isoformat())
            self.dispatch(job, self.run_job)
        return len(rows)

    def dispatch(self, job: Job, work: Work) -> None:
        """Run ``work(job)`` in the pool; the job's lease is renewed while it is active."""
        with self._lock:
            self._tokens[job["id"]] = str(job["lease_token"])
            self.active[job["id"]] = self.pool.submit(self.run_claimed, job, work)

    def claim(self, limit: int) -> list[Job]:
        """Claim up to ``limit`` due jobs, at most ``thread_concurrency`` running per thread."""
        s = self.settings
        return self.runs.claim_due(limit=limit, owner=self.owner, lease=s.lease_seconds, lead=s.prepare_seconds,
                                   per_thread=s.thread_concurrency)

    def run_claimed(self, job: Job, work: Work | None = None) -> None:
        """Run ``work(job)`` (by default :meth:`run_job`) for a claimed job in this thread, as a worker of
        the pool does: nothing it raises escapes, and its slot is freed at the end."""
        try:
            self._until_started(job, work or self.run_job)
        except sandbox.LeaseLost:
            lease_lost(job, "(the run is left to the runner that holds it now)")
        except DatabaseError as exc:  # before the start: nothing ran, the run is recovered (and runs again)
            log.warning("job %s: left for lease recovery, the database is away: %s", job["id"], exc)
        except Exception:  # a bug must not kill the worker thread or leave the slot taken
            log.exception("job %s: unexpected error while running it", job["id"])
        finally:
            with self._lock:
                if self._tokens.get(job["id"]) == str(job.get("lease_token")):
                    self.active.pop(job["id"], None)
                    self._tokens.pop(job["id"], None)
                    self.executor.forget(job["id"])
            if self.waker and self.wake_after_job:
                self.waker.wake()

    def _until_started(self, job: Job, work: Work) -> None:
        """Run ``work(job)``; if the database goes away before the script was started, wait for it and
        begin again (nothing has happened yet: the start's fence still checks that the run is ours).
        Once the start was asked for, a database error is not retried here (record() waits it out)."""
        while True:
            try:
                work(job)
                return
            except DatabaseUnavailable:
                launched = self.executor.launched(job["id"])
                if launched or self.stopping.is_set() or not self.db.wait_until_reachable(self.stopping):
                    raise
                log.info("job %s: the database is back; preparing its run again", job["id"])

    # --- what the executor and the janitor do, for the callers of a Scheduler --------------------------

    def run_job(self, job: Job) -> None:
        """Run one claimed job and record its result (runner/execute.py)."""
        self.executor.run_job(job)

    def _started(self, job: Job, at: datetime) -> None:
        """A run's script began (``at``): how late after its due time."""
        late = (at - job["due_time"]).total_seconds()
        metrics.LATENESS.observe(max(0.0, late))
        log.info("job %s (%s) started, %.0f ms after its due time", job["id"], job["name"], late * 1000)

    def housekeeping(self) -> None:
        """Every duty of the janitor once, now, in this thread (they run on their own while :meth:`run` runs)."""
        self.janitor.housekeeping()

