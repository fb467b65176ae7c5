"""Rows of the store as the API's response models."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ..schedule import AFTER_SENTINEL, Recurrence, zone
from . import models

NEXT_RUNS = 5


def next_runs(row: dict[str, Any], now: datetime | None = None) -> list[datetime]:
    """The next run times of a recurring job's series, in its zone (none for a one-off or a chain)."""
    if not row.get("cron") or row.get("status") in ("cancelled",):
        return []
    start = now or datetime.now(UTC)
    due = row.get("due_time")
    if row.get("status") == "pending" and due is not None and due < AFTER_SENTINEL:
        return [due.astimezone(zone(row["timezone"])), *_upcoming(row, max(due, start), NEXT_RUNS - 1)]
    return _upcoming(row, start, NEXT_RUNS)


def _upcoming(row: dict[str, Any], start: datetime, count: int) -> list[datetime]:
    """``count`` fire times after ``start``, remembered: a page of jobs asks for them a hundred times,
    at some 30 µs of cron arithmetic each. Fire times fall on whole minutes of the zone, so the times
    after ``start`` are those after its minute, and the minute is the key (exact, and shared by the
    rows of one series and by the requests of one minute)."""
    tz = zone(row["timezone"])
    minute = start.astimezone(tz).replace(second=0, microsecond=0)
    return list(_upcoming_after(row["recurrence"] or "", row["cron"], row["timezone"], minute, count))


@lru_cache(maxsize=4096)
def _upcoming_after(text: str, cron: str, tz_name: str, minute: datetime, count: int) -> tuple[datetime, ...]:
    return tuple(Recurrence(text=text, cron=cron).upcoming(minute, zone(tz_name), count))


def job(row: dict[str, Any], now: datetime | None = None) -> models.Job:
    due = row.get("due_time")
    if row.get("after_job") and due is not None and due >= AFTER_SENTINEL:
        due = None  # waits for another job, not for a time
    fields = {name: row.get(name) for name in models.Job.model_fields if name in row}
    fields.update(due_time=due, allow_hosts=list(row.get("allow_hosts") or []), paused=bool(row.get("paused")),
                  attempts=row.get("attempts") or 0, next_runs=next_runs(row, now))
    return models.Job.model_validate(fields)


def run(row: dict[str, Any], delivery: str | None = None) -> models.Run:
    started, due = row.get("started_at"), row.get("due_time")
    lateness = None
    if started is not None and due is not None and due < AFTER_SENTINEL:
        lateness = max(0, round((started - due).total_seconds() * 1000))
    return models.Run.model_validate(dict(id=row["id"], status=row["status"], reason=row.get("error_message"),
                      exit_code=row.get("exit_code"), output=row.get("output_tail"),
                      output_truncated=bool(row.get("output_truncated")),
                      due_time=due if due is not None and due < AFTER_SENTINEL else None, started_at=started,
                      completed_at=row.get("completed_at"), duration_ms=row.get("duration_ms"), lateness_ms=lateness,
                      message_queued=delivery is not None, delivery=delivery))
