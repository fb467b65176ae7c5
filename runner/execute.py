"""One run of a claimed job: prepare, run its container, read what it left, record it, clean up.

:class:`Executor` is what the scheduler's workers (and lease recovery, runner/adoption.py) call for one
run. Its result, message and next instance are recorded by ``RunsStore.finish_run`` in one
transaction, retried while the database is away (:meth:`Executor.finish_durably`).

Fencing: every step with an effect (starting the container, recording the result, deleting the run's
files, removing its container) first checks in one indexed UPDATE that this runner still holds the
run under its claim's token; a runner that finds it gone says so once and touches nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
)

from . import artifacts, copied, diskspace, jobsquota, jobtree, metrics, pinning, policy, sandbox
from .copied import CopyIn
from .errors import DatabaseError, DatabaseUnavailable, RunnerError
from .filerules import FileCaps
from .outage import patiently
from .runspec import run_spec
from .settings import Settings
from .store import Database
from .store.files import FilesStore
from .store.runs import FileChanges, Lease, RunEnd, RunsStore
from .threads import UidRegistry, chat_id, prepare_jobs_dir, thread_dir_name, thread_uid

log = logging.getLogger(__name__)

FAILURE_TEXT_LIMIT = 500
WATCH_SECONDS = 5.0  # one walk of jobs/ while the job runs; one that cannot finish stops the job
FINAL_SECONDS = 10.0  # the walk after the run, which also repairs modes and over-deep trees
FINAL_ENTRIES = 10  # ... may visit this many times RUNNER_MAX_FILES, so modes are repaired past the limit
Job = dict[str, Any]


class Executor:
    """Runs claimed jobs for one runner (``settings.runner_id``) on one database (its ``store_id``).

    It knows which runs' start was asked for (their script may have run: never prepared again) and
    which were stopped because the runner shut down; ``on_start(job, at)`` is told when each script
    begins. The engine's start-up estimate (:class:`sandbox.StartLatency`) is its own."""

    def __init__(self, settings: Settings, db: Database, *, stopping: threading.Event,
                 on_start: Callable[[Job, datetime], None], engine: Callable[[], Any] | None = None) -> None:
        self.settings, self.db, self.stopping = settings, db, stopping
        self._engine = engine or sandbox.client  # makes a client of the runner's engine (one per worker thread)
        self.runs = RunsStore(db)
        self.files = FilesStore(db)
        self.copied = settings.files == "postgres"  # the thread's files in the store: copied in and out
        self.store_id = self.runs.store_id()  # labels our containers; other databases' containers are not ours
        self.owner = settings.runner_id
        self.on_start = on_start
        self.start_latency = sandbox.StartLatency()
        self._lock = threading.Lock()
        self._launched: set[int] = set()  # runs whose start was asked for (their script may have run)
        self._shut_down: set[int] = set()  # runs stopped because the grace period of a shutdown ran out
        self._local = threading.local()
        self.uids = UidRegistry(self.docker, self.store_id)  # job uids no other database on the engine has

    # --- what the loop asks ---------------------------------------------------------------------------

    def launched(self, job_id: int) -> bool:
        """Whether the start of this run's container was asked for (its script may have run)."""
        with self._lock:
            return job_id in self._launched

    def forget(self, job_id: int) -> None:
        """The run's worker is done with it."""
        with self._lock:
            self._launched.discard(job_id)

    def stopped_for_shutdown(self, ids: set[int]) -> None:
        """These runs are being stopped: the shutdown's grace period is over (their result says so)."""
        with self._lock:
            self._shut_down |= ids

    def docker(self) -> Any:
        """A Docker client of this worker thread's own. docker-py keys its connection pools by URL and
        closes the least recently used one; shared by many threads, it closed pools still in use."""
        dc = getattr(self._local, "dc", None)
        if dc is None:
            dc = self._local.dc = self._engine()
        return dc

    # --- one run ---------------------------------------------------------------------------------------

    def run_job(self, job: Job) -> None:
        """Run one claimed job and record its result (and its message, and its next instance)."""
        if self._skip_if_missed(job):
            return
        try:
            result, went_in = self._run_container(job)
        except (sandbox.LeaseLost, DatabaseError):
            raise  # nothing ran: left alone, or to lease recovery (it runs again)
        except sandbox.NeverStarted as exc:
            self._run_again(job, str(exc))
            return
        except (RunnerError, OSError, artifacts.UnsafeFile) as exc:
            reason = str(exc) if isinstance(exc, RunnerError) else f"could not prepare the run: {exc}"
            if diskspace.is_no_space(exc):  # the host's disk, not the job: say so, and what to do
                reason = diskspace.full_reason(self.settings.data_dir, known_full=True) or reason
            if self.finish_durably(job, status="failed", error=reason, result=None, message=None):
                log.warning("job %s (%s) failed before running: %s", job["id"], job["name"], reason)
            return
        self.record(job, result, went_in)

    def _run_again(self, job: Job, why: str) -> None:
        """Its script never started: back to pending, to run again (as adoption does for a dead runner's)."""
        self.forget(job["id"])
        if self.runs.requeue_unstarted(job["id"], self.lease(job)):
            log.warning("%s; it runs again", why)
        else:
            lease_lost(job, "before it could be run again")

    def _run_container(self, job: Job) -> tuple[sandbox.RunResult, CopyIn | None]:
        """Prepare the run's files and script (fenced), then run its container, kept for :meth:`record`;
        with the files in the store, also what was copied in (what the run's changes are measured against)."""
        s = self.settings
        uid = thread_uid(self.db, job["thread_id"], s.uid_range, self.uids)  # gid: the same number
        extra: dict[str, Any] = {}
        went_in: CopyIn | None = None
        if self.copied:
            self.fence(job, patient=True)
            files = self.files.thread_files(job["thread_id"])
            went_in = copied.copy_in(files, job["name"], uid)
            source = self._approved_source(job, pinning.stored_script(files, Path(job["script_path"]).name,
                                                                      s.script_cap, job))
            extra.update(jobs_dir=None, files_in=went_in.archive)
        else:
            directory = prepare_jobs_dir(s.data_dir, job["thread_id"], uid, jobsquota.from_settings(s))
            self.fence(job, patient=True)
            with artifacts.open_dir(s.data_dir, thread_dir_name(job["thread_id"]), "jobs") as dfd:
                # Files present before the run are not this run's: queued already, or from a lost run.
                artifacts.discard_message(dfd, job["name"])
                artifacts.remove_attachments(dfd, job["name"])
                source = self._approved_source(job, pinning.read_script(
                    dfd, Path(job["script_path"]).name, s.script_cap, job))
            extra.update(jobs_dir=directory, watchdog=disk_watchdog(s, job["thread_id"]))
        spec = run_spec(
            s, job, owner=self.owner, user=f"{uid}:{uid}",
            extra_labels={sandbox.LABEL_STORE: self.store_id, sandbox.LABEL_LEASE: str(job["lease_token"])},
            on_start=lambda at: self.on_start(job, at), source=source,
            fence=lambda: self._holds_patiently(job, starting=True), keep=True, **extra,
        )
        metrics.CONTAINERS.inc()
        try:
            return sandbox.run(spec, self.docker(), self.start_latency), went_in
        finally:
            metrics.CONTAINERS.dec()

    def record(self, job: Job, result: sandbox.RunResult, went_in: CopyIn | None = None) -> None:
        """Record a finished container's run: its files read, the result and message committed (retried
        while the database is away), then the files and the container removed, if the lease still held.
        ``went_in``: what was copied into a copied run (None for an adopted one: the store's files now)."""
        s = self.settings
        if not self._still_held(job):
            lease_lost(job, "when its run ended; its files and container are left to the runner that holds it")
            return
        metrics.DURATION.observe(result.duration_ms / 1000)
        with self._lock:
            shut_down = job["id"] in self._shut_down
        if shut_down:
            result = dataclasses.replace(result, error=(
                f"stopped: the runner shut down and the job did not finish within the "
                f"{s.shutdown_grace:g} s grace period"))
        if self.copied:
            self._record_copied(job, result, went_in)
            return
        try:
            with artifacts.open_dir(s.data_dir, thread_dir_name(job["thread_id"]), "jobs") as dfd:
                over = final_check(s, dfd)
                message = artifacts.collect_message(dfd, job["name"], s.message_cap)
                attached = artifacts.collect_attachments(
                    dfd, job["name"], file_cap=s.attachment_cap, max_files=s.max_attachments,
                    total_cap=s.attachments_total_cap)
        except (OSError, artifacts.UnsafeFile) as exc:
            if self.finish_durably(job, status="failed", error=f"could not read the run's files: {exc}",
                                   result=result, message=None):
                _remove_container(result)
            return
        error = diskspace.explain_failure(s.data_dir, worse(result.error, over))
        notes = [n for n in (result.note, *attached.problems) if n]
        if message is not None and message.problem:
            error = error or message.problem
            message = None
        status = "completed" if error is None else "failed"
        if self.finish_durably(job, status=status, error=error or ("; ".join(notes) or None), result=result,
                               message=message, attachments=attached.files):
            self._clean_up(job, result, message is not None)
        # else: not ours any more: its files and container are the new holder's

    def _record_copied(self, job: Job, result: sandbox.RunResult, went_in: CopyIn | None) -> None:
        """:meth:`record` for a run whose jobs/ was copied in: its jobs/ read back from the kept container
        (hostile, capped), and its changes written by the finish, with its result and message."""
        s = self.settings
        if went_in is None:  # adopted: the dead runner copied in what the store holds (runs of a thread are serial)
            went_in = copied.baseline(self.files.thread_files(job["thread_id"]), job["name"])
        try:
            got = copied.collect(result.container, s, job["name"], went_in) if result.container is not None \
                else copied.Collected(error="the run's container is gone; its files could not be read back")
        except RunnerError as exc:
            got = copied.Collected(error=str(exc))
        error = result.error or got.error
        notes = [n for n in (result.note, *got.problems) if n]
        status = "completed" if error is None else "failed"
        changes = FileChanges(got.changed, frozenset(got.removed), got.modified, FileCaps.of(s))
        if self.finish_durably(job, status=status, error=error or ("; ".join(notes) or None), result=result,
                               message=got.message, attachments=got.attachments, files=changes):
            _remove_container(result)

    def _clean_up(self, job: Job, result: sandbox.RunResult, had_message: bool) -> None:
        """Queued (committed): now the run's message files and its container may go."""
        try:
            with artifacts.open_dir(self.settings.data_dir, thread_dir_name(job["thread_id"]), "jobs") as dfd:
                if had_message:
                    artifacts.discard_message(dfd, job["name"])
                artifacts.remove_attachments(dfd, job["name"])
        except (OSError, artifacts.UnsafeFile) as exc:
            log.warning("job %s: could not remove its message files: %s", job["id"], exc)
        _remove_container(result)

    # --- fencing ---------------------------------------------------------------------------------------

    def lease(self, job: Job) -> Lease:
        """The lease this runner holds ``job`` under (its claim's token)."""
        return Lease(self.owner, str(job.get("lease_token")), self.settings.lease_seconds)

    def _holds(self, job: Job, starting: bool = False) -> bool:
        return self.runs.holds(job["id"], self.lease(job), starting=starting)

    def _still_held(self, job: Job) -> bool:
        """False only when the lease is known lost; with the database away, True: the finish that
        follows is fenced itself, and retried until the database is back."""
        try:
            return self._holds(job)
        except DatabaseError:
            return True

    def _holds_patiently(self, job: Job, starting: bool = False) -> bool:
        """:meth:`_holds`, waiting out a database outage: asked before the script starts, when waiting
        loses nothing (the run starts late, once the database answers and the lease is still ours).
        Raises DatabaseUnavailable only when the runner stops meanwhile: the run is left for adoption."""
        held = patiently(self._holds, self.stopping, job, starting)
        if held and starting:
            with self._lock:
                self._launched.add(job["id"])  # the start is asked for now: never prepared again
        return held

    def fence(self, job: Job, *, patient: bool = False) -> None:
        """Raise LeaseLost unless this runner still holds the run (before a step with an effect)."""
        if not (self._holds_patiently(job) if patient else self._holds(job)):
            raise sandbox.LeaseLost(f"job {job['id']}: the lease is no longer this runner's")

    # --- the end of a run --------------------------------------------------------------------------------

    def finish(self, job: Job, *, status: str, error: str | None, result: sandbox.RunResult | None,
               message: artifacts.Message | None, attachments: list[tuple[str, bytes]] | None = None,
               files: FileChanges | None = None) -> bool:
        """Record the end of a run, queue its message (and a failure notice) and create its next
        instance, all in one transaction (``RunsStore.finish_run``).

        Returns False when this runner no longer holds the lease (the run was recovered elsewhere)."""
        end = dataclasses.replace(self._end(job, status, error, result, message, attachments), files=files)
        outcome = self.runs.finish_run(job, self.lease(job), end, now=datetime.now(UTC),
                                       history_keep=self.settings.history_keep)
        if outcome.what == "lost":
            lease_lost(job, "before it finished; its result is not recorded, its files are left alone")
            return False
        if outcome.what == "retried":  # retries left: back to pending, later; nothing is told or scheduled yet
            log.info("job %s (%s) %s", job["id"], job["name"], outcome.note)
            return True
        metrics.MESSAGES.labels("queued").inc(outcome.queued)
        metrics.RUNS_FINISHED.labels(status).inc()
        took = f" in {result.duration_ms} ms" if result else ""
        log.info("job %s (%s) %s%s%s", job["id"], job["name"], status, took, f": {end.error}" if end.error else "")
        return True

    def _end(self, job: Job, status: str, error: str | None, result: sandbox.RunResult | None,
             message: artifacts.Message | None, attachments: list[tuple[str, bytes]] | None) -> RunEnd:
        """The run's end as the store records it, its texts fit for a text column."""
        text = column_text(message.text) if message is not None else ""
        if message is not None and message.truncated:
            text += f"\n[message truncated at {self.settings.message_cap // 1024} KiB]"
        files = tuple((column_text(name), content) for name, content in attachments or [])
        end = RunEnd(status=status, error=column_text(error)[:FAILURE_TEXT_LIMIT * 4] if error else None,
                     message=text, attachments=files, chat_id=chat_id(job["thread_id"]))
        if result is None:
            return end
        return dataclasses.replace(
            end, ran=True, exit_code=result.exit_code, output_tail=column_text(result.output) if result.output else None,
            output_truncated=bool(result.output_truncated), duration_ms=result.duration_ms,
            started_at=result.started_at)

    def finish_durably(self, job: Job, **kw: Any) -> bool:
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
            return bool(retrying(self.finish, job, **kw))
        except DatabaseError as exc:
            log.warning("job %s: its result is not recorded (%s); the run is left for adoption", job["id"], exc)
            return False

    # --- before the run ----------------------------------------------------------------------------------

    def _approved_source(self, job: Job, source: bytes) -> str:
        """The script's bytes, if they are the ones approved for this job (pinned on first run for a row
        from before pinning); the container is given these, never the file. RunnerError otherwise."""
        script = Path(job["script_path"]).name
        refused = pinning.check(job, source)
        if refused:
            raise RunnerError(refused)
        if job.get("script_sha256") is None:
            self.runs.pin_first_run(job["series_id"], pinning.digest(source))
            log.info("job %s (%s): pinned its script on first run (sha256 %s)", job["id"], job["name"],
                     pinning.digest(source)[:pinning.SHORT])
        return pinning.as_text(source, script)

    def _skip_if_missed(self, job: Job) -> bool:
        """The missed-run policy (policy.missed_runs) for a recurring run that is late (its runner was
        down): the missed slots are recorded, and the run either goes on or is cancelled (True)."""
        missed = policy.missed_runs(job, datetime.now(UTC))
        if missed is None:
            return False
        if missed.count:
            self.runs.note_missed(job["id"], missed.count, missed.note)
        if missed.run:
            return False
        log.warning("job %s (%s): %s", job["id"], job["name"], missed.note)
        self.finish(job, status="cancelled", error=missed.note, result=None, message=None)
        return True


def _remove_container(result: sandbox.RunResult) -> None:
    """The kept container, once its result is recorded, and the proxy volume it held (a granted run)."""
    if result.container is not None:
        sandbox.remove_kept(result.container)  # and the run's proxy volume, once the container is gone


def lease_lost(job: Job, what: str) -> None:
    """Said once per run: the lease is gone, so this runner stops and touches nothing more."""
    metrics.LEASES_LOST.inc()
    log.warning("job %s: lease lost %s", job["id"], what)


def column_text(value: str) -> str:
    """Text fit for a text column whatever a job put in it: no NUL, no lone surrogate (a file name that
    was not UTF-8, decoded with surrogate escapes, would make the database driver raise)."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "\ufffd")


# --- the disk limits of a run's jobs/ directory ---------------------------------------------------------

def disk_watchdog(settings: Settings, thread_id: str) -> Callable[[], str | None]:
    """A check, polled while the job runs, that its jobs/ directory stays within the disk limits:
    a bounded walk (entries, depth, time) that never follows a link or blocks."""
    s = settings

    def check() -> str | None:
        with artifacts.open_dir(s.data_dir, thread_dir_name(thread_id), "jobs") as dfd:
            found = jobtree.scan(dfd, max_entries=s.max_files + 1, seconds=WATCH_SECONDS)
        return artifacts.check_limits(found, disk_mb=s.disk_mb, max_files=s.max_files)

    return check


def final_check(settings: Settings, dfd: int) -> str | None:
    """After the run: the limits again (a job may write past them in its last moments), setuid,
    setgid and world-write modes cleared, trees deeper than the limit removed."""
    s = settings
    found = jobtree.scan(dfd, max_entries=FINAL_ENTRIES * s.max_files + 1, seconds=FINAL_SECONDS, repair=True)
    if found.unfixed or found.problem:
        log.warning("jobs/ after the run: %s", artifacts.check_limits(found, disk_mb=s.disk_mb, max_files=s.max_files))
    return artifacts.check_limits(found, disk_mb=s.disk_mb, max_files=s.max_files)


def worse(during: str | None, after: str | None) -> str | None:
    """The run's reason given the watchdog's (or the sandbox's) and the final walk's: the final one
    when both name the same limit (it saw the job's last writes, and what was repaired)."""
    if during and after and during.split(" in jobs/")[0] == after.split(" in jobs/")[0]:
        return after
    return during or after
