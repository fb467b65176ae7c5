"""The store's part for jobs as the service layer sees them: schedule, list, change, cancel, approve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from .base import StoreBase
from .database import QUERIES

Row = dict[str, Any]
MAX_ID = 2**63 - 1  # the cursor of a first page: below every id (bigserial)


class JobsStore(StoreBase):
    """Reads and writes of scheduled jobs for the service layer (queries in ``sql/jobs.sql``).

    Every method takes and returns plain values (rows as dicts); a change that must commit together is
    one method (:meth:`schedule_job`, :meth:`approve_series`)."""

    # --- threads' settings -----------------------------------------------------------------------------

    def thread_timezone(self, thread_id: str) -> str | None:
        """The zone a thread set (/tz), or None."""
        row = self.db.one("thread_timezone", {"thread_id": thread_id})
        return row["timezone"] if row else None

    def set_thread_timezone(self, thread_id: str, timezone: str) -> None:
        """Record the zone of a thread's schedules that name none."""
        self.db.all("set_thread_timezone", {"thread_id": thread_id, "timezone": timezone})

    # --- scheduling ------------------------------------------------------------------------------------

    def schedule_job(self, job: Row) -> Row:
        """Insert a new job (the first run of its series), recording its thread, in one transaction.

        ``job`` holds every column of ``insert_job`` (``thread_id`` and ``user_id`` among them)."""
        with self.db.transaction() as conn:
            conn.execute(QUERIES["ensure_thread"], {"thread_id": job["thread_id"], "user_id": job["user_id"]})
            row = conn.execute(QUERIES["insert_job"], job).fetchone()
        assert row is not None
        return row

    def has_job_named(self, thread_id: str, name: str) -> bool:
        """True if the thread has a job (any run) of that name."""
        return self.db.one("job_named", {"thread_id": thread_id, "name": name}) is not None

    def update_pending(self, job_id: int, fields: Row) -> Row | None:
        """Change a pending run's schedule, limits, grant and policies; None if it is not pending any more."""
        return self.db.one("update_pending", {"id": job_id, **fields})

    def approve_series(self, series_id: Any, sha256: str,
                       before_commit: Callable[[psycopg.Connection[Row]], None] | None = None) -> bool:
        """Approve ``sha256`` as the script of every run of a series, with its rows locked so that none
        is claimed meanwhile. False (and nothing changed) if one of them is running. ``before_commit``
        runs inside the transaction, given its connection (writing the script: in the database, in the
        same transaction, after the rows' locks as runner.store.files orders them): if it raises,
        nothing is approved."""
        with self.db.transaction() as conn:
            rows = conn.execute(QUERIES["lock_series"], {"series_id": series_id}).fetchall()
            if any(r["status"] == "running" for r in rows):
                return False
            conn.execute(QUERIES["approve_series"], {"series_id": series_id, "script_sha256": sha256})
            if before_commit is not None:
                before_commit(conn)
        return True

    # --- reading ---------------------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Row | None:
        """One run of a job by id, or None."""
        return self.db.one("get_job", {"id": job_id})

    def list_jobs(self, thread_id: str | None, status: str | None, limit: int) -> list[Row]:
        """Runs newest first, optionally of one thread and of one status."""
        if thread_id is not None:  # read on the thread's index, whatever the other threads hold
            return self.thread_jobs_page(thread_id, status, limit, None)
        return self.db.all("list_jobs", {"thread_id": None, "status": status, "limit": limit})

    def job_messages(self, job_id: int) -> list[Row]:
        """The outbox messages a run queued, oldest first."""
        return self.db.all("messages_for_job", {"job_id": job_id})

    def thread_jobs_page(self, thread_id: str, status: str | None, limit: int, before: int | None) -> list[Row]:
        """Up to ``limit`` of a thread's runs with ids below ``before`` (None: from the newest), newest
        first, optionally of one status."""
        params = {"thread_id": thread_id, "status": status, "limit": limit, "before": before or MAX_ID}
        return self.db.all("thread_jobs_page_status" if status else "thread_jobs_page", params)

    def runs_of_series(self, series_id: Any, limit: int, before: int | None = None) -> list[Row]:
        """The latest runs of a series with ids below ``before`` (None: from the newest), newest first."""
        return self.db.all("runs_of_series", {"series_id": series_id, "limit": limit, "before": before or MAX_ID})

    def live_run_of_series(self, series_id: Any) -> Row | None:
        """The series' pending or running run (the newest), or None."""
        return self.db.one("pending_of_series", {"series_id": series_id})

    # --- changing --------------------------------------------------------------------------------------

    def cancel_pending(self, job_id: int) -> Row | None:
        """Cancel a pending run; None if it is not pending (any more)."""
        return self.db.one("cancel_pending", {"id": job_id})

    def stop_recurring(self, job_id: int) -> Row | None:
        """A running run finishes but its series ends with it; None if it is not running."""
        return self.db.one("stop_recurring", {"id": job_id})

    def set_paused(self, job_id: int, paused: bool) -> Row | None:
        """Pause or resume a pending run; None if it is not pending."""
        return self.db.one("set_paused", {"id": job_id, "paused": paused})

    def run_pending_now(self, job_id: int) -> Row | None:
        """Move a pending run to now (unpaused); None if it is not pending."""
        return self.db.one("run_now", {"id": job_id})

    def copy_as_one_off(self, job_id: int) -> Row:
        """A new one-off run, due now, of a run's script, limits and grant."""
        row = self.db.one("copy_as_one_off", {"id": job_id})
        assert row is not None
        return row
