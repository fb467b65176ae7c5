"""The scheduling loop: wake, claim, dispatch to a bounded pool, finish, recover stale leases.

The loop sleeps until the next due time (read from the database's clock) or until a NOTIFY says the
table changed, whichever is first; ``poll_interval`` is only the fallback. Due rows are claimed with
``FOR UPDATE SKIP LOCKED`` and a lease that a heartbeat renews, so two runners never run one job and a
dead runner's jobs are recovered once its leases run out.

Lease recovery policy (runner/adoption.py): a run whose lease ran out is adopted (this runner becomes
its owner; the claim's token, which labels its container, stays). Its container tells what happened: exited, its real result is recorded and its message queued;
still running, it is waited for within its time limit; never started (or never made), the run goes
back to pending and runs again. Only a run whose script may have started and whose container is gone
is failed "runner stopped during the run" (its chat is told), and not retried.

Fencing: every step with an effect (starting the container, recording the result, deleting the run's
files, removing its container) first checks in one indexed UPDATE that this runner still holds the
run under its claim's token; a runner that finds it gone says so once and touches nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
)

from . import adoption, artifacts, diskspace, jobsquota, jobtree, metrics, pinning, sandbox
from .duties import Duties, Duty, Link
from .errors import DatabaseError, DatabaseUnavailable, RunnerError
from .outage import patiently
from .runspec import run_spec
from .schedule import AFTER_SENTINEL, Recurrence, zone
from .settings import Settings
from .store import JOBS_CHANNEL, QUERIES, Database, Waker, translate_errors
from .threads import UidRegistry, chat_id, prepare_jobs_dir, secure_data_dir, thread_dir_name, thread_uid

log = logging.getLogger(__name__)

FAILURE_TEXT_LIMIT = 500
WATCH_SECONDS = 5.0  # one walk of jobs/ while the job runs; one that cannot finish stops the job
FINAL_SECONDS = 10.0  # the walk after the run, which also repairs modes and over-deep trees
FINAL_ENTRIES = 10  # ... may visit this many times RUNNER_MAX_FILES, so modes are repaired past the limit
PRUNE_SECONDS = 300.0  # the outbox's delivered messages of runs pruned from the history, between runs' own pruning
FRESH_SECONDS = 1.0  # a round trip to the database slower than this, just before judging others, puts it off


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
        row = db.one("ensure_store_id")
        assert row is not None
        self.store = row["value"]  # labels our containers; other databases' containers are not ours
        self.last_loop = time.monotonic()
        self._killed_for_shutdown: set[int] = set()
        self._launched: set[int] = set()  # runs whose start was asked for (their script may have run)
        self._tokens: dict[int, str] = {}  # job id -> the lease token this runner holds it under
        self._local = threading.local()
        self.uids = UidRegistry(self._docker, self.store)  # job uids no other database on the engine has
        self.duties = self._duties()

    # --- the loop ------------------------------------------------------------------------------------

    def run(self, *, burst: bool = False) -> None:
        """Run until :meth:`stop` (or, with ``burst``, until nothing is due or running)."""
        self.waker = Waker(self.db, JOBS_CHANNEL)
        try:
            self.duties.start()  # the heartbeat, lease recovery, sweeps and pruning, each on its own
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
            self.duties.shutdown()  # after the runs: their leases are renewed to the end
            self._close_beat()
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
            self._killed_for_shutdown |= ids
            tokens = {self._tokens.get(i) for i in ids} - {None}
            for c in sandbox.managed_containers(self.dc, self.store):
                if c.labels.get(sandbox.LABEL_ROLE) == "job" and c.labels.get(sandbox.LABEL_LEASE) in tokens:
                    log.warning("stopping job %s: the grace period is over", c.labels.get(sandbox.LABEL_JOB))
                    sandbox.kill_container(c)  # its run then reads the logs and removes it as usual
        wait(list(futures.values()))

    def _due_now(self) -> bool:
        row = self.db.one("seconds_until_next_due", {"per_thread": self.settings.thread_concurrency})
        return bool(row and row["seconds"] is not None and row["seconds"] <= 0)

    def _sleep_seconds(self, burst: bool) -> float:
        if self._free_slots() == 0:
            return self.settings.poll_interval  # a finishing job wakes us
        row = self.db.one("seconds_until_next_due", {"per_thread": self.settings.thread_concurrency})
        secs = row["seconds"] if row else None
        wait = self.settings.poll_interval if secs is None else max(0.0, secs - self.settings.prepare_seconds)
        if burst:
            wait = min(wait, 0.5)
        return min(wait, self.settings.poll_interval)

    def _free_slots(self) -> int:
        with self._lock:
            return self.settings.concurrency - len(self.active)

    def claim_and_dispatch(self) -> int:
        """Claim as many due jobs as there are free slots and start them. Returns how many."""
        free = self._free_slots()
        if free <= 0 or self.stopping.is_set():
            return 0
        rows = self._claim(free)
        metrics.RUNS_STARTED.inc(len(rows))
        for job in rows:
            log.info("claimed job %s (%s, thread %s, due %s)", job["id"], job["name"], job["thread_id"],
                     job["due_time"].isoformat())
            self._dispatch(job, self.run_job)
        return len(rows)

    def _dispatch(self, job: dict[str, Any], work: Any) -> None:
        """Run ``work(job)`` in the pool; the job's lease is renewed while it is active."""
        with self._lock:
            self._tokens[job["id"]] = str(job["lease_token"])
            self.active[job["id"]] = self.pool.submit(self._run_guarded, job, work)

    def _claim(self, limit: int) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due jobs, at most ``thread_concurrency`` running per thread (two
        statements in one transaction: the threads' locks first, then the claim with a fresh view)."""
        s = self.settings
        params = {"limit": limit, "owner": self.owner, "lease": s.lease_seconds, "lead": s.prepare_seconds,
                  "per_thread": s.thread_concurrency, "scan": max(64, 8 * limit)}
        with self.db.transaction() as conn:
            ids = [r["id"] for r in conn.execute(QUERIES["lock_due_threads"], params).fetchall()]
            if not ids:
                return []
            return conn.execute(QUERIES["claim_due"], {**params, "ids": ids}).fetchall()

    def _run_guarded(self, job: dict[str, Any], work: Any = None) -> None:
        try:
            self._until_started(job, work or self.run_job)
        except sandbox.LeaseLost:
            self.lease_lost(job, "(the run is left to the runner that holds it now)")
        except DatabaseError as exc:  # before the start: nothing ran, the run is recovered (and runs again)
            log.warning("job %s: left for lease recovery, the database is away: %s", job["id"], exc)
        except Exception:  # a bug must not kill the worker thread or leave the slot taken
            log.exception("job %s: unexpected error while running it", job["id"])
        finally:
            with self._lock:
                if self._tokens.get(job["id"]) == str(job.get("lease_token")):
                    self.active.pop(job["id"], None)
                    self._tokens.pop(job["id"], None)
                    self._launched.discard(job["id"])
            if self.waker and self.wake_after_job:
                self.waker.wake()

    def _until_started(self, job: dict[str, Any], work: Any) -> None:
        """Run ``work(job)``; if the database goes away before the script was started, wait for it and
        begin again (nothing has happened yet: the start's fence still checks that the run is ours).
        Once the start was asked for, a database error is not retried here (record() waits it out)."""
        while True:
            try:
                work(job)
                return
            except DatabaseUnavailable:
                with self._lock:
                    launched = job["id"] in self._launched
                if launched or self.stopping.is_set() or not self.db.wait_until_reachable(self.stopping):
                    raise
                log.info("job %s: the database is back; preparing its run again", job["id"])

    # --- one run -------------------------------------------------------------------------------------

    def run_job(self, job: dict[str, Any]) -> None:
        """Run one claimed job and record its result (and its message, and its next instance)."""
        s = self.settings
        script = Path(job["script_path"]).name
        parts = (thread_dir_name(job["thread_id"]), "jobs")
        if self._skip_if_missed(job):
            return
        try:
            uid = thread_uid(self.db, job["thread_id"], s.uid_range, self.uids)  # gid: the same number
            directory = prepare_jobs_dir(s.data_dir, job["thread_id"], uid, jobsquota.from_settings(s))
            self.fence(job, patient=True)
            with artifacts.open_dir(s.data_dir, *parts) as dfd:
                # Files present before the run are not this run's: queued already, or from a lost run.
                artifacts.discard_message(dfd, job["name"])
                artifacts.remove_attachments(dfd, job["name"])
                source = self._approved_source(job, dfd, script)
            spec = run_spec(
                s, job, owner=self.owner, jobs_dir=directory, user=f"{uid}:{uid}",
                watchdog=self._disk_watchdog(job["thread_id"]),
                extra_labels={sandbox.LABEL_STORE: self.store, sandbox.LABEL_LEASE: str(job["lease_token"])},
                on_start=lambda at: self._started(job, at), source=source,
                fence=lambda: self._holds_patiently(job, "fence_start"), keep=True,
            )
            metrics.CONTAINERS.inc()
            try:
                result = sandbox.run(spec, self._docker())
            finally:
                metrics.CONTAINERS.dec()
        except (sandbox.LeaseLost, DatabaseError):
            raise  # nothing ran: left alone, or to lease recovery (it runs again)
        except (RunnerError, OSError, artifacts.UnsafeFile) as exc:
            reason = str(exc) if isinstance(exc, RunnerError) else f"could not prepare the run: {exc}"
            if diskspace.is_no_space(exc):  # the host's disk, not the job: say so, and what to do
                reason = diskspace.full_reason(s.data_dir, known_full=True) or reason
            if self.finish_durably(job, status="failed", error=reason, result=None, message=None):
                log.warning("job %s (%s) failed before running: %s", job["id"], job["name"], reason)
            return
        self.record(job, result)

    def record(self, job: dict[str, Any], result: sandbox.RunResult) -> None:
        """Record a finished container's run: its files read, the result and message committed (retried
        while the database is away), then the files and the container removed, if the lease still held."""
        s = self.settings
        parts = (thread_dir_name(job["thread_id"]), "jobs")
        if not self._still_held(job):
            self.lease_lost(job, "when its run ended; its files and container are left to the runner that holds it")
            return
        metrics.DURATION.observe(result.duration_ms / 1000)
        if job["id"] in self._killed_for_shutdown:
            result = dataclasses.replace(result, error=(
                f"stopped: the runner shut down and the job did not finish within the "
                f"{s.shutdown_grace:g} s grace period"))
        try:
            with artifacts.open_dir(s.data_dir, *parts) as dfd:
                over = self._final_check(dfd)
                message = artifacts.collect_message(dfd, job["name"], s.message_cap)
                attached = artifacts.collect_attachments(
                    dfd, job["name"], file_cap=s.attachment_cap, max_files=s.max_attachments,
                    total_cap=s.attachments_total_cap)
        except (OSError, artifacts.UnsafeFile) as exc:
            if self.finish_durably(job, status="failed", error=f"could not read the run's files: {exc}",
                                   result=result, message=None):
                self._remove_container(result)
            return
        error = diskspace.explain_failure(s.data_dir, _worse(result.error, over))
        notes = [n for n in (result.note, *attached.problems) if n]
        if message is not None and message.problem:
            error = error or message.problem
            message = None
        status = "completed" if error is None else "failed"
        if not self.finish_durably(job, status=status, error=error or ("; ".join(notes) or None), result=result,
                                   message=message, attachments=attached.files):
            return  # not ours any more: its files and container are the new holder's
        try:  # queued (committed): now the files may go
            with artifacts.open_dir(s.data_dir, *parts) as dfd:
                if message is not None:
                    artifacts.discard_message(dfd, job["name"])
                artifacts.remove_attachments(dfd, job["name"])
        except (OSError, artifacts.UnsafeFile) as exc:
            log.warning("job %s: could not remove its message files: %s", job["id"], exc)
        self._remove_container(result)

    def _remove_container(self, result: sandbox.RunResult) -> None:
        """The kept container, once its result is recorded, and the proxy volume it held (a granted run)."""
        if result.container is not None:
            sandbox.remove_kept(result.container)  # and the run's proxy volume, once the container is gone

    # --- fencing -------------------------------------------------------------------------------------

    def _holds(self, job: dict[str, Any], query: str = "hold_lease") -> bool:
        """One indexed UPDATE: is the run still this runner's, under this claim's token (renewed so)?"""
        return self.db.one(query, {"id": job["id"], "owner": self.owner, "token": str(job["lease_token"]),
                                   "lease": self.settings.lease_seconds}) is not None

    def _still_held(self, job: dict[str, Any]) -> bool:
        """False only when the lease is known lost; with the database away, True: the finish that
        follows is fenced itself, and retried until the database is back."""
        try:
            return self._holds(job)
        except DatabaseError:
            return True

    def _holds_patiently(self, job: dict[str, Any], query: str = "hold_lease") -> bool:
        """:meth:`_holds`, waiting out a database outage: asked before the script starts, when waiting
        loses nothing (the run starts late, once the database answers and the lease is still ours).
        Raises DatabaseUnavailable only when the runner stops meanwhile: the run is left for adoption."""
        held = patiently(self._holds, self.stopping, job, query)
        if held and query == "fence_start":
            with self._lock:
                self._launched.add(job["id"])  # the start is asked for now: never prepared again
        return held

    def fence(self, job: dict[str, Any], *, patient: bool = False) -> None:
        """Raise LeaseLost unless this runner still holds the run (before a step with an effect)."""
        if not (self._holds_patiently(job) if patient else self._holds(job)):
            raise sandbox.LeaseLost(f"job {job['id']}: the lease is no longer this runner's")

    def lease_lost(self, job: dict[str, Any], what: str) -> None:
        """Said once per run: the lease is gone, so this runner stops and touches nothing more."""
        metrics.LEASES_LOST.inc()
        log.warning("job %s: lease lost %s", job["id"], what)

    def finish_durably(self, job: dict[str, Any], **kw: Any) -> bool:
        """:meth:`finish`, retried with backoff while the database is unreachable, until it is back (or
        the lease is found lost: False). On shutdown it gives up after the grace period; the result
        then stays in the kept container, which the next runner adopts."""
        retrying = Retrying(
            retry=retry_if_exception_type(DatabaseUnavailable), reraise=True,
            wait=wait_exponential(multiplier=0.5, max=10),
            stop=stop_when_event_set(self.stopping) & stop_after_delay(self.settings.shutdown_grace),
            before_sleep=lambda rs: log.warning("job %s: recording its result: %s; retrying", job["id"],
                                                rs.outcome.exception() if rs.outcome else "?"),
        )
        try:
            return retrying(self.finish, job, **kw)
        except DatabaseError as exc:
            log.warning("job %s: its result is not recorded (%s); the run is left for adoption", job["id"], exc)
            return False

    def _approved_source(self, job: dict[str, Any], dfd: int, script: str) -> str:
        """The script's bytes, if they are the ones approved for this job (pinned on first run for a row
        from before pinning); the container is given these, never the file. RunnerError otherwise."""
        source = pinning.read_script(dfd, script, self.settings.script_cap, job)
        refused = pinning.check(job, source)
        if refused:
            raise RunnerError(refused)
        if job.get("script_sha256") is None:
            self.db.all("pin_first_run", {"series_id": job["series_id"], "script_sha256": pinning.digest(source)})
            log.info("job %s (%s): pinned its script on first run (sha256 %s)", job["id"], job["name"],
                     pinning.digest(source)[:pinning.SHORT])
        return pinning.as_text(source, script)

    def _docker(self) -> Any:
        """A Docker client of this worker thread's own. docker-py keys its connection pools by URL and
        closes the least recently used one; shared by many threads, it closed pools still in use."""
        dc = getattr(self._local, "dc", None)
        if dc is None:
            dc = self._local.dc = sandbox.client()
        return dc

    def _started(self, job: dict[str, Any], at: datetime) -> None:
        late = (at - job["due_time"]).total_seconds()
        metrics.LATENESS.observe(max(0.0, late))
        log.info("job %s (%s) started, %.0f ms after its due time", job["id"], job["name"], late * 1000)

    def _skip_if_missed(self, job: dict[str, Any]) -> bool:
        """The missed-run policy for a recurring run that is late (its runner was down).

        Every slot between its due time and now was missed. If the latest of them is less than the
        job's grace period ago, the job runs once now (for that slot); otherwise it is skipped and the
        next run is scheduled. Either way the missed slots are recorded on the row."""
        if not job.get("cron"):
            return False
        now = datetime.now(UTC)
        if now - job["due_time"] < timedelta(seconds=2):
            return False
        rec, tz = Recurrence(text=job["recurrence"], cron=job["cron"]), zone(job["timezone"])
        slots = rec.between(job["due_time"], now, tz, limit=100_000)
        latest = slots[-1] if slots else job["due_time"]
        missed = len(slots)  # slots after the due time; the due time itself is the one this row stands for
        if now - latest <= timedelta(seconds=job["grace_seconds"]):
            if missed:
                self.db.all("note_skipped", {"id": job["id"], "missed_runs": missed, "note": (
                    f"{missed} run(s) missed while the runner was down; ran once for the latest, "
                    f"{latest.astimezone(tz).isoformat()}")})
            return False
        note = (f"missed {missed + 1} run(s) while the runner was down (from {job['due_time'].astimezone(tz).isoformat()}"
                f" to {latest.astimezone(tz).isoformat()}); the latest is more than {job['grace_seconds']} s late, "
                "so it was skipped")
        self.db.all("note_skipped", {"id": job["id"], "missed_runs": missed + 1, "note": note})
        log.warning("job %s (%s): %s", job["id"], job["name"], note)
        self.finish(job, status="cancelled", error=note, result=None, message=None)
        return True

    def _disk_watchdog(self, thread_id: str) -> Any:
        """A check, polled while the job runs, that its jobs/ directory stays within the disk limits:
        a bounded walk (entries, depth, time) that never follows a link or blocks."""
        s = self.settings

        def check() -> str | None:
            with artifacts.open_dir(s.data_dir, thread_dir_name(thread_id), "jobs") as dfd:
                found = jobtree.scan(dfd, max_entries=s.max_files + 1, seconds=WATCH_SECONDS)
            return artifacts.check_limits(found, disk_mb=s.disk_mb, max_files=s.max_files)

        return check

    def _final_check(self, dfd: int) -> str | None:
        """After the run: the limits again (a job may write past them in its last moments), setuid,
        setgid and world-write modes cleared, trees deeper than the limit removed."""
        s = self.settings
        found = jobtree.scan(dfd, max_entries=FINAL_ENTRIES * s.max_files + 1, seconds=FINAL_SECONDS, repair=True)
        if found.unfixed or found.problem:
            log.warning("jobs/ after the run: %s", artifacts.check_limits(found, disk_mb=s.disk_mb, max_files=s.max_files))
        return artifacts.check_limits(found, disk_mb=s.disk_mb, max_files=s.max_files)

    def finish(self, job: dict[str, Any], *, status: str, error: str | None,
               result: sandbox.RunResult | None, message: artifacts.Message | None,
               attachments: list[tuple[str, bytes]] | None = None) -> bool:
        """Record the end of a run, queue its message (and a failure notice) and create its next
        instance, all in one transaction.

        Returns False when this runner no longer holds the lease (the run was recovered elsewhere)."""
        text = _text(message.text) if message is not None else ""
        if message is not None and message.truncated:
            text += f"\n[message truncated at {self.settings.message_cap // 1024} KiB]"
        output = _text(result.output) if result and result.output else None
        error = _text(error)[:FAILURE_TEXT_LIMIT * 4] if error else None
        attachments = [(_text(name), content) for name, content in attachments or []]
        params = {
            "id": job["id"], "owner": self.owner, "status": status, "token": str(job.get("lease_token")),
            "error_message": error,
            "exit_code": result.exit_code if result else None,
            "output_tail": output,
            "output_truncated": bool(result and result.output_truncated),
            "duration_ms": result.duration_ms if result else None,
            "started_at": result.started_at if result else None,
        }
        retry = status == "failed" and result is not None and job["attempts"] <= job.get("retries", 0)
        with self.db.transaction() as conn:
            if retry:  # retries left: back to pending, later; nothing is told or scheduled yet
                delay = job["retry_delay_seconds"] * 2 ** (job["attempts"] - 1)
                due = datetime.now(UTC) + timedelta(seconds=delay)
                params["error_message"] = (f"attempt {job['attempts']} of {job['retries'] + 1} failed: {error}; "
                                           f"retrying at {due.isoformat(timespec='seconds')}")
                row = conn.execute(QUERIES["retry_run"], {**params, "due_time": due}).fetchone()
                if row is not None:
                    log.info("job %s (%s) %s", job["id"], job["name"], params["error_message"])
                    return True
                self.lease_lost(job, "before it finished; its result is not recorded, its files are left alone")
                return False
            row = conn.execute(QUERIES["finish_run"], params).fetchone()
            if row is None:
                self.lease_lost(job, "before it finished; its result is not recorded, its files are left alone")
                return False
            if text.strip() or attachments:
                self._queue(conn, job, "message", text, attachments or [])
            if status == "failed":
                prev = conn.execute(QUERIES["previous_run_status"],
                                    {"series_id": row["series_id"], "id": row["id"]}).fetchone()
                if prev is None or prev["status"] != "failed":  # told once per streak of failures
                    self._queue(conn, job, "failure", f"Job {job['name']} failed: {error}", [])
            if status == "completed":
                conn.execute(QUERIES["trigger_after"], {"thread_id": row["thread_id"], "name": row["name"],
                                                        "sentinel": AFTER_SENTINEL})
            self._schedule_next(conn, row)
            conn.execute(QUERIES["prune_history"], {"series_id": row["series_id"], "keep": self.settings.history_keep})
            conn.execute(QUERIES["prune_outbox"])  # the delivered messages of the runs just pruned
            conn.execute(QUERIES["notify_jobs"])  # a job of this thread may have waited for this run
        metrics.RUNS_FINISHED.labels(status).inc()
        took = f" in {result.duration_ms} ms" if result else ""
        log.info("job %s (%s) %s%s%s", job["id"], job["name"], status, took, f": {error}" if error else "")
        return True

    @staticmethod
    def _queue(conn: Any, job: dict[str, Any], kind: str, text: str, attachments: list[tuple[str, bytes]]) -> None:
        row = conn.execute(QUERIES["queue_message"], {
            "job_id": job["id"], "kind": kind, "thread_id": job["thread_id"], "job_name": job["name"],
            "text": _text(text), "chat_id": chat_id(job["thread_id"]),
        }).fetchone()
        if row is not None:
            metrics.MESSAGES.labels("queued").inc()
            for filename, content in attachments:
                conn.execute(QUERIES["queue_attachment"], {"outbox_id": row["id"], "filename": filename,
                                                           "content": content})

    @staticmethod
    def _schedule_next(conn: Any, row: dict[str, Any]) -> None:
        """Insert the series' next run (a no-op if it exists). Slots that fell due while this run was
        running are skipped and recorded (overlap "skip"), or the first of them runs next ("queue")."""
        if row.get("after_job") and not row.get("cron"):
            conn.execute(QUERIES["insert_next"], {"id": row["id"], "due_time": AFTER_SENTINEL})
            return
        if not row.get("cron"):
            return
        rec, tz = Recurrence(text=row["recurrence"], cron=row["cron"]), zone(row["timezone"])
        now = datetime.now(UTC)
        if row.get("overlap") == "queue":
            nxt = rec.next_after(row["due_time"], tz)  # may be in the past: it runs at once, once
        else:
            nxt = rec.next_after(max(row["due_time"], now), tz)
            began = max(row["due_time"], row.get("started_at") or row["due_time"])
            skipped = rec.between(began, now, tz, limit=10_000) if row["status"] != "cancelled" else []
            if skipped:
                conn.execute(QUERIES["note_skipped"], {"id": row["id"], "missed_runs": row.get("missed_runs") or 0,
                                                       "note": f"{len(skipped)} later run(s) skipped: this run was "
                                                               "still running when they fell due"})
        conn.execute(QUERIES["insert_next"], {"id": row["id"], "due_time": nxt})

    # --- housekeeping: the periodic duties (runner/duties.py) -----------------------------------------

    def _duties(self) -> Duties:
        """The heartbeat, lease recovery, the orphan sweep and pruning, each a job of its own on
        APScheduler (its own trigger and thread), so none waits behind another's slow call."""
        every = max(1.0, self.settings.lease_seconds / 3)
        self.link = Link(self.settings.lease_seconds, gap=2 * every)
        self._beat_conn: Any = None  # the heartbeat's own connection, opened at its first beat
        return Duties([
            Duty("heartbeat", self.heartbeat, every),
            Duty("recovery", self._recovery, every),
            Duty("sweep", self._sweep, every),
            Duty("prune", self._prune, PRUNE_SECONDS),
        ])

    def housekeeping(self) -> None:
        """Every duty once, now, in this thread (they run on their own while :meth:`run` runs)."""
        try:
            for name in self.duties.duties:
                self.duties.run_once(name)
        finally:
            if not self.duties.scheduler.running:
                self._close_beat()

    def heartbeat(self) -> None:
        """Renew the leases of our running jobs, on a connection of its own (not the pool's: nothing
        else is ever in its way). With none running it still asks the database: the link's health is
        what it also reports."""
        with self._lock:
            ids = list(self.active)
        try:
            if self._beat_conn is None or self._beat_conn.closed:
                self._beat_conn = self.db.connect(timeout=self.link.gap / 2)
            with translate_errors("renewing the leases"):
                if ids:
                    self._beat_conn.execute(QUERIES["renew_leases"], {
                        "ids": ids, "owner": self.owner, "lease": self.settings.lease_seconds})
                else:
                    self._beat_conn.execute("SELECT 1")
        except DatabaseError:
            self.link.lost()
            self._close_beat()  # a new one next time
            raise
        self.link.beat()

    def _close_beat(self) -> None:
        if self._beat_conn is not None:
            self._beat_conn.close()
            self._beat_conn = None

    def judging(self) -> bool:
        """Whether this runner may judge other runners dead now: connected for a full lease (so they
        have renewed theirs since any outage), and the database answers at once, so the judgement is
        not a statement held up by an outage that then lands after it."""
        if not self.link.trusted():
            return False
        t0 = time.monotonic()
        self.db.query("SELECT 1 AS ok")
        return time.monotonic() - t0 <= FRESH_SECONDS

    def _recovery(self) -> None:
        if self.judging():
            self.recover_expired()

    def _sweep(self) -> None:
        if self.judging():  # a container is an orphan when its run's lease ran out: a judgement too
            self.remove_orphans()
        self.remove_orphan_networks()

    def _prune(self) -> None:
        self.db.all("prune_outbox")  # the delivered messages of runs since pruned from the history

    def recover_expired(self) -> list[int]:
        """Adopt runs whose lease ran out (runner/adoption.py): taken over (this runner becomes the owner),
        each is then settled from its container in a worker (waiting for a running one may take its time
        limit). A run this runner is still running itself (its heartbeat was late) is only renewed."""
        free = max(0, self._free_slots())
        if free == 0 or self.stopping.is_set():  # adopted later (by us when a slot frees, or by another)
            return []
        rows = self.db.all("adopt_expired", {"owner": self.owner, "lease": self.settings.lease_seconds,
                                             "limit": free})
        for row in rows:
            with self._lock:
                ours = self._tokens.get(row["id"]) == str(row["lease_token"]) and row["id"] in self.active
            if ours and row["dead_owner"] == self.owner:
                log.warning("job %s (%s): its lease ran out while this runner ran it; renewed", row["id"], row["name"])
                continue
            log.warning("job %s (%s): its runner %s stopped holding its lease; adopting the run",
                        row["id"], row["name"], row["dead_owner"])
            self._dispatch(row, lambda job: adoption.adopt(self, job))
        return [r["id"] for r in rows]

    def remove_orphans(self) -> int:
        """Remove job containers that no run holds: their run is over, or it is running under another
        claim (a later token). A container of a running run under its own claim is never removed here,
        even if the lease ran out: lease recovery adopts it (its runner may be alive, or just woken)."""
        try:
            containers = sandbox.managed_containers(self.dc, self.store)
        except Exception as exc:  # docker down: try again at the next housekeeping
            log.warning("could not list job containers: %s", exc)
            return 0
        by_job: dict[int, list[Any]] = {}
        for c in containers:
            try:
                by_job.setdefault(int(c.labels.get(sandbox.LABEL_JOB, "")), []).append(c)
            except ValueError:
                continue
        if not by_job:
            return 0
        states = {r["id"]: r for r in self.db.all("job_states", {"ids": list(by_job)})}
        removed = 0
        for job_id, cs in by_job.items():
            st = states.get(job_id)
            for c in cs:
                if adoption.held(st, c):
                    continue
                # A run that ended since the listing has removed its own container: say nothing then.
                if sandbox.remove_container(c):
                    log.warning("removed orphaned container %s of job %s", c.short_id, job_id)
                    removed += 1
        return removed

    def remove_orphan_networks(self) -> None:
        """Remove per-run networks whose job containers are all gone (their run ended or was recovered)."""
        try:
            live = {c.labels.get(sandbox.LABEL_JOB) for c in sandbox.managed_containers(self.dc, self.store)}
            for net in sandbox.managed_networks(self.dc, self.store):
                if net.attrs.get("Labels", {}).get(sandbox.LABEL_JOB) not in live:
                    sandbox.remove_network(net)
            sandbox.remove_orphan_volumes(self.dc, self.store, live)  # the per-run proxy sockets
        except Exception as exc:
            log.warning("could not sweep job networks: %s", exc)


def _text(value: str) -> str:
    """Text fit for a text column whatever a job put in it: no NUL, no lone surrogate (a file name that
    was not UTF-8, decoded with surrogate escapes, would make the database driver raise)."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "\ufffd")


def _worse(during: str | None, after: str | None) -> str | None:
    """The run's reason given the watchdog's (or the sandbox's) and the final walk's: the final one
    when both name the same limit (it saw the job's last writes, and what was repaired)."""
    if during and after and during.split(" in jobs/")[0] == after.split(" in jobs/")[0]:
        return after
    return during or after
