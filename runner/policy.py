"""Recurrence policy, pure: what follows a run, and what to do with a run that is late.

Every function here takes a job row (a ``scheduled_jobs`` row as a dict) and ``now``, and returns a
decision; none reads the clock, the database or anything else. The store writes what was decided
(``RunsStore.finish_run``, ``RunsStore.note_missed``), the executor acts on it.

* :func:`next_run`: the due time of a series' next instance once a run ended, and the slots an
  overlapping run made the series skip (overlap ``skip``) or run late, once (overlap ``queue``);
  a job that waits for another (``after``) gets the far-future sentinel until that one completes.
* :func:`missed_runs`: a recurring run found late (its runner was down) runs once, for the latest
  slot it missed, if that slot is within the job's grace period; otherwise it is skipped.
* :func:`retry_at`: a failed attempt with retries left goes again, after a doubling delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .schedule import AFTER_SENTINEL, Recurrence, zone

LATE_AFTER = timedelta(seconds=2)  # a run claimed later than this after its due time was missed
SKIP_SCAN = 10_000  # slots counted while a run overlapped them
MISSED_SCAN = 100_000  # slots counted while the runner was down


@dataclass(frozen=True)
class NextRun:
    """What follows a finished run: the next instance's due time (None: the series ends here), and a
    note on the finished row about the slots skipped because it was still running (None: none)."""

    due_time: datetime | None
    skipped_note: str | None = None


@dataclass(frozen=True)
class Missed:
    """A late recurring run: whether it runs now (once, for the latest missed slot) or is skipped, how
    many slots it missed, and the note that says so on its row."""

    run: bool
    count: int
    note: str


def next_run(row: dict[str, Any], now: datetime) -> NextRun:
    """The series' next instance after ``row`` (a run that has just ended, with its status) at ``now``.

    Overlap ``queue``: the slot after the run's own, even if it is past (it runs at once, once).
    Overlap ``skip`` (the default): the first slot after now; the slots that fell due while the run
    was running (from when it began to now) are skipped and noted, unless the run was cancelled."""
    if row.get("after_job") and not row.get("cron"):
        return NextRun(AFTER_SENTINEL)
    if not row.get("cron"):
        return NextRun(None)
    rec, tz = Recurrence(text=row["recurrence"], cron=row["cron"]), zone(row["timezone"])
    due: datetime = row["due_time"]
    if row.get("overlap") == "queue":
        return NextRun(rec.next_after(due, tz))
    began = max(due, row.get("started_at") or due)
    skipped = rec.between(began, now, tz, limit=SKIP_SCAN) if row["status"] != "cancelled" else []
    note = (f"{len(skipped)} later run(s) skipped: this run was still running when they fell due"
            if skipped else None)
    return NextRun(rec.next_after(max(due, now), tz), note)


def missed_runs(job: dict[str, Any], now: datetime) -> Missed | None:
    """The missed-run policy for a claimed recurring run at ``now``; None when it is on time (or not
    recurring): it just runs.

    Every slot between its due time and now was missed. If the latest of them is less than the job's
    grace period ago, the job runs once now (for that slot); otherwise it is skipped (and the next run
    is scheduled). Either way the missed slots are counted and noted."""
    if not job.get("cron") or now - job["due_time"] < LATE_AFTER:
        return None
    rec, tz = Recurrence(text=job["recurrence"], cron=job["cron"]), zone(job["timezone"])
    due: datetime = job["due_time"]
    slots = rec.between(due, now, tz, limit=MISSED_SCAN)
    latest = slots[-1] if slots else due
    missed = len(slots)  # slots after the due time; the due time itself is the one this row stands for
    if now - latest <= timedelta(seconds=job["grace_seconds"]):
        return Missed(True, missed, f"{missed} run(s) missed while the runner was down; ran once for the latest, "
                                    f"{latest.astimezone(tz).isoformat()}")
    return Missed(False, missed + 1, (
        f"missed {missed + 1} run(s) while the runner was down (from {due.astimezone(tz).isoformat()}"
        f" to {latest.astimezone(tz).isoformat()}); the latest is more than {job['grace_seconds']} s late, "
        "so it was skipped"))


def retry_delay(job: dict[str, Any]) -> float:
    """Seconds before the next attempt of a run that failed its ``attempts``-th time: doubling."""
    return float(job["retry_delay_seconds"] * 2 ** (job["attempts"] - 1))


def retry_at(job: dict[str, Any], *, status: str, ran: bool, now: datetime) -> datetime | None:
    """When a run that ended with ``status`` at ``now`` is attempted again; None: it is not.

    Only a run whose container ran (``ran``) and failed is retried, while attempts are left (a run
    that could not be prepared, was refused or was stopped with the runner is not)."""
    if status != "failed" or not ran or job["attempts"] > (job.get("retries") or 0):
        return None
    return now + timedelta(seconds=retry_delay(job))


def retry_note(job: dict[str, Any], error: str | None, due: datetime) -> str:
    """What a retried attempt's row says (its error, and when it goes again)."""
    return (f"attempt {job['attempts']} of {job['retries'] + 1} failed: {error}; "
            f"retrying at {due.isoformat(timespec='seconds')}")
