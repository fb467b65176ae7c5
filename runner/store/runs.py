"""The store's part for runs: claim, lease, fence, finish, recur and recover.

The scheduler's loop, one run's execution and the janitor call these methods; none of them sees a
query (they are in ``sql/runs.sql``; the outbox's ``queue_message``, ``queue_attachment`` and
``prune_outbox`` in ``sql/outbox.sql``). :meth:`RunsStore.finish_run` is the end of a run as one
transaction: the result, its message and files, a failure notice once per streak, the jobs waiting for
it, its series' next instance (as :mod:`runner.policy` decides it), the history's pruning and the NOTIFY.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import psycopg

from .. import policy
from ..filerules import FileCaps
from ..schedule import AFTER_SENTINEL
from .base import StoreBase
from .database import QUERIES, translate_errors
from .files import FilesStore

Row = dict[str, Any]
Conn = psycopg.Connection[Row]
Finished = Literal["finished", "retried", "lost"]


@dataclasses.dataclass(frozen=True)
class Lease:
    """Who holds a claimed run: this runner (``owner``), under the claim's ``token``, renewed for ``seconds``."""

    owner: str
    token: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class RunEnd:
    """How a run ended, as :meth:`RunsStore.finish_run` records it (texts already fit for a text column)."""

    status: str
    error: str | None
    exit_code: int | None = None
    output_tail: str | None = None
    output_truncated: bool = False
    duration_ms: int | None = None
    started_at: datetime | None = None
    message: str = ""  # the text the job left for its chat ("" or blank: none)
    attachments: tuple[tuple[str, bytes], ...] = ()
    chat_id: str | None = None  # the thread's Telegram chat, for the queued messages
    ran: bool = False  # its container ran (only such a failure is retried)
    files: FileChanges | None = None  # a copied run's changes to jobs/, written in the same transaction


@dataclasses.dataclass(frozen=True)
class FileChanges:
    """A copied run's changes to its thread's files (RUNNER_FILES=postgres), written with its result."""

    changed: Mapping[str, bytes]
    removed: frozenset[str]
    modified: Mapping[str, datetime]
    caps: FileCaps

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)


@dataclasses.dataclass(frozen=True)
class FinishOutcome:
    """What :meth:`RunsStore.finish_run` did: ``finished`` (recorded, ``queued`` messages), ``retried``
    (back to pending; ``note`` says when), or ``lost`` (the lease is not this runner's: nothing written)."""

    what: Finished
    queued: int = 0
    note: str | None = None


class RunsStore(StoreBase):
    """Reads and writes of the scheduler's runs (queries in ``sql/runs.sql``)."""

    # --- the loop ------------------------------------------------------------------------------------

    def store_id(self) -> str:
        """This database's own id (made on first use): it labels the runner's containers."""
        row = self.db.one("ensure_store_id")
        assert row is not None
        return str(row["value"])

    def seconds_until_next_due(self, per_thread: int) -> float | None:
        """Seconds, by the database's clock, until the next claimable run is due (None: none is pending;
        a thread already running ``per_thread`` runs does not count)."""
        row = self.db.one("seconds_until_next_due", {"per_thread": per_thread})
        return None if row is None or row["seconds"] is None else float(row["seconds"])

    def claim_due(self, *, limit: int, owner: str, lease: float, lead: float, per_thread: int) -> list[Row]:
        """Claim up to ``limit`` runs due within ``lead`` seconds, at most ``per_thread`` running per thread
        (two statements in one transaction: the threads' locks first, then the claim with a fresh view)."""
        params = {"limit": limit, "owner": owner, "lease": lease, "lead": lead, "per_thread": per_thread,
                  "scan": max(64, 8 * limit)}
        with self.db.transaction() as conn:
            ids = [r["id"] for r in conn.execute(QUERIES["lock_due_threads"], params).fetchall()]
            if not ids:
                return []
            return conn.execute(QUERIES["claim_due"], {**params, "ids": ids}).fetchall()

    def renew_leases(self, conn: Conn, *, ids: list[int], owner: str, lease: float) -> None:
        """The heartbeat, on its own connection ``conn``: renew the leases of ``ids``; with none, still
        ask the database (the link's health is what the heartbeat also reports)."""
        with translate_errors("renewing the leases"):
            if ids:
                conn.execute(QUERIES["renew_leases"], {"ids": ids, "owner": owner, "lease": lease})
            else:
                conn.execute("SELECT 1")

    def round_trip(self) -> float:
        """Seconds one trivial statement takes, connection included (is the database answering at once?)."""
        t0 = time.monotonic()
        self.db.query("SELECT 1 AS ok")
        return time.monotonic() - t0

    # --- one run -------------------------------------------------------------------------------------

    def holds(self, job_id: int, lease: Lease, *, starting: bool = False) -> bool:
        """The fence before a step with an effect, one indexed UPDATE: is the run still this runner's under
        this claim (renewed if so)? ``starting``: right before its container starts, also recording that
        its script may have started."""
        query = "fence_start" if starting else "hold_lease"
        return self.db.one(query, {"id": job_id, "owner": lease.owner, "token": lease.token,
                                   "lease": lease.seconds}) is not None

    def pin_first_run(self, series_id: int, sha256: str) -> None:
        """Pin a series from before script pinning to the script its first run found."""
        self.db.all("pin_first_run", {"series_id": series_id, "script_sha256": sha256})

    def note_missed(self, job_id: int, missed_runs: int, note: str) -> None:
        """Record on a run the slots it missed (policy.missed_runs) and the note that says so."""
        self.db.all("note_skipped", {"id": job_id, "missed_runs": missed_runs, "note": note})

    def finish_run(self, job: Row, lease: Lease, end: RunEnd, *, now: datetime, history_keep: int) -> FinishOutcome:
        """Record the end of a run in one transaction (fenced by ``lease``).

        A failed attempt with retries left (policy.retry_at) goes back to pending, later, and nothing is
        told or scheduled yet. Otherwise the result is recorded, its message and attachments queued, a
        failure told once per streak of failures, the jobs waiting for a completed one started, the
        series' next instance inserted (policy.next_run at ``now``), its history pruned to
        ``history_keep`` runs (and the delivered messages of pruned runs), and the loop notified."""
        params = _finish_params(job, lease, end)
        retry = policy.retry_at(job, status=end.status, ran=end.ran, now=now)
        with self.db.transaction() as conn:
            if retry is not None:
                note = policy.retry_note(job, end.error, retry)
                row = conn.execute(QUERIES["retry_run"], {**params, "error_message": note, "due_time": retry}).fetchone()
                if row is not None:
                    self._keep_files(conn, job, end)
                return FinishOutcome("retried", note=note) if row is not None else FinishOutcome("lost")
            row = conn.execute(QUERIES["finish_run"], params).fetchone()
            if row is None:
                return FinishOutcome("lost")
            refused = self._keep_files(conn, job, end)
            if refused is not None:  # the run's writes break the thread's limits now: it failed, and says why
                end = dataclasses.replace(end, status="failed", error=refused)
                failed = conn.execute(QUERIES["fail_finished_run"], {"id": row["id"], "error_message": refused}).fetchone()
                row = failed if failed is not None else row
            queued = self._tell(conn, job, row, end)
            self._follow(conn, row, end.status, now)
            conn.execute(QUERIES["prune_history"], {"series_id": row["series_id"], "keep": history_keep})
            conn.execute(QUERIES["prune_outbox"])  # the delivered messages of the runs just pruned
            conn.execute(QUERIES["notify_jobs"])  # a job of this thread may have waited for this run
        return FinishOutcome("finished", queued=queued)

    def _keep_files(self, conn: Conn, job: Row, end: RunEnd) -> str | None:
        """Write a copied run's changes to its thread's files (after the run's row: the lock order of
        runner/store/files.py); the sentence if the thread's limits refuse them (then none is written)."""
        if not end.files:
            return None
        c = end.files
        problem = FilesStore(self.db).replace_changed(conn, job["thread_id"], c.changed, c.removed, c.caps,
                                                      modified=c.modified)
        return None if problem is None else f"the run's changes to jobs/ were not kept: {problem}"

    def _tell(self, conn: Conn, job: Row, row: Row, end: RunEnd) -> int:
        """Queue the run's message (if it left one) and, for the first failure of a streak, a notice."""
        queued = 0
        if end.message.strip() or end.attachments:
            queued += _queue(conn, job, "message", end.message, end.chat_id, end.attachments)
        if end.status == "failed":
            prev = conn.execute(QUERIES["previous_run_status"], {"series_id": row["series_id"], "id": row["id"]}).fetchone()
            if prev is None or prev["status"] != "failed":  # told once per streak of failures
                queued += _queue(conn, job, "failure", f"Job {job['name']} failed: {end.error}", end.chat_id, ())
        return queued

    def _follow(self, conn: Conn, row: Row, status: str, now: datetime) -> None:
        """What follows a finished run: the jobs waiting for it, if it completed, and its next instance."""
        if status == "completed":
            conn.execute(QUERIES["trigger_after"], {"thread_id": row["thread_id"], "name": row["name"],
                                                    "sentinel": AFTER_SENTINEL})
        _insert_next(conn, row, now)

    def schedule_next(self, row: Row, now: datetime) -> None:
        """Insert the next instance of the series of the finished run ``row`` (a no-op if it exists)."""
        with self.db.transaction() as conn:
            _insert_next(conn, row, now)

    # --- recovery and sweeps -------------------------------------------------------------------------

    def adopt_expired(self, *, owner: str, lease: float, limit: int) -> list[Row]:
        """Become the owner of up to ``limit`` runs whose lease ran out (each row also says its
        ``dead_owner`` and ``dead_token``; the claim's token stays: it labels the run's container)."""
        return self.db.all("adopt_expired", {"owner": owner, "lease": lease, "limit": limit})

    def requeue_unstarted(self, job_id: int, lease: Lease) -> bool:
        """An adopted run whose script never started goes back to pending (False: the lease is lost)."""
        return self.db.one("requeue_unstarted", {"id": job_id, "owner": lease.owner, "token": lease.token}) is not None

    def job_states(self, ids: list[int]) -> dict[int, Row]:
        """The status and lease of each of the runs ``ids`` (those that still exist), by id."""
        return {r["id"]: r for r in self.db.all("job_states", {"ids": ids})}

    def prune_messages_of_pruned_runs(self) -> None:
        """Delete the delivered (or failed) messages whose run has since been pruned from the history."""
        self.db.all("prune_outbox")


def _finish_params(job: Row, lease: Lease, end: RunEnd) -> dict[str, Any]:
    return {"id": job["id"], "owner": lease.owner, "status": end.status, "token": lease.token,
            "error_message": end.error, "exit_code": end.exit_code, "output_tail": end.output_tail,
            "output_truncated": end.output_truncated, "duration_ms": end.duration_ms, "started_at": end.started_at}


def _queue(conn: Conn, job: Row, kind: str, text: str, chat_id: str | None,
           attachments: tuple[tuple[str, bytes], ...]) -> int:
    """Queue one message of the run (1) with its attachments, unless it is queued already (0)."""
    row = conn.execute(QUERIES["queue_message"], {
        "job_id": job["id"], "kind": kind, "thread_id": job["thread_id"], "job_name": job["name"],
        "text": text, "chat_id": chat_id,
    }).fetchone()
    if row is None:
        return 0
    for filename, content in attachments:
        conn.execute(QUERIES["queue_attachment"], {"outbox_id": row["id"], "filename": filename, "content": content})
    return 1


def _insert_next(conn: Conn, row: Row, now: datetime) -> None:
    nxt = policy.next_run(row, now)
    if nxt.skipped_note is not None:
        conn.execute(QUERIES["note_skipped"], {"id": row["id"], "missed_runs": row.get("missed_runs") or 0,
                                               "note": nxt.skipped_note})
    if nxt.due_time is not None:
        conn.execute(QUERIES["insert_next"], {"id": row["id"], "due_time": nxt.due_time})
