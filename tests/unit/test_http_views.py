"""A job's next run times as the API shows them are remembered by the minute (a page of a hundred
recurring jobs spent 14 ms of CPU on cron arithmetic: the benchmark's `api` section). Remembered or
not, they are the times the schedule gives, to the second, across DST changes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from runner.http import views
from runner.schedule import AFTER_SENTINEL, Recurrence, zone

CRONS = [("daily 9am", "0 9 * * *"), ("every 7 minutes", "*/7 * * * *"), ("hourly", "0 * * * *"),
         ("2:30 on Sundays", "30 2 * * 0"), ("monthly", "0 0 1 * *")]


def _reference(row: dict[str, object], now: datetime) -> list[datetime]:
    """The next runs computed afresh, as before they were remembered."""
    rec, tz = Recurrence(text=str(row["recurrence"]), cron=str(row["cron"])), zone(str(row["timezone"]))
    due = row["due_time"]
    if row["status"] == "pending" and isinstance(due, datetime) and due < AFTER_SENTINEL:
        return [due.astimezone(tz), *rec.upcoming(max(due, now), tz, views.NEXT_RUNS - 1)]
    return rec.upcoming(now, tz, views.NEXT_RUNS)


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"])
def test_remembered_next_runs_are_the_schedules_own_times(tz: str) -> None:
    rng = random.Random(tz)
    # Around both of 2026's DST changes in Europe and America, and at random seconds of a minute.
    bases = [datetime(2026, 3, 29, 0, 0, tzinfo=UTC), datetime(2026, 3, 8, 6, 0, tzinfo=UTC),
             datetime(2026, 10, 25, 0, 0, tzinfo=UTC), datetime(2026, 11, 1, 5, 0, tzinfo=UTC)]
    for _ in range(400):
        now = rng.choice(bases) + timedelta(seconds=rng.uniform(-3 * 3600, 3 * 3600))
        text, cron = rng.choice(CRONS)
        status = rng.choice(["pending", "completed", "failed"])
        due = now + timedelta(seconds=rng.uniform(-7200, 7200))
        row = {"recurrence": text, "cron": cron, "timezone": tz, "status": status, "due_time": due}
        assert views.next_runs(row, now) == _reference(row, now), (row, now)
        assert views.next_runs(row, now) == _reference(row, now)  # the second time from memory


def test_a_one_off_a_cancelled_job_and_a_chain_have_no_next_runs() -> None:
    now = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
    assert views.next_runs({"cron": None, "status": "pending", "due_time": now}, now) == []
    assert views.next_runs({"cron": "0 9 * * *", "recurrence": "daily 9am", "timezone": "UTC",
                            "status": "cancelled", "due_time": now}, now) == []
