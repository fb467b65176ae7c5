"""Recurrence policy (runner/policy.py): tables of cases, ``now`` passed in, no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runner.policy import Missed, NextRun, missed_runs, next_run, retry_at, retry_delay, retry_note
from runner.schedule import AFTER_SENTINEL, parse_recurrence

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SKIP_NOTE = "{} later run(s) skipped: this run was still running when they fell due"


def _job(every: str | None = None, *, due: datetime = T0, tz: str = "UTC", **fields: Any) -> dict[str, Any]:
    """A scheduled_jobs row as the store returns it (only the columns policy reads)."""
    rec = parse_recurrence(every) if every else None
    row: dict[str, Any] = {"id": 1, "recurrence": every, "cron": rec.cron if rec else None, "timezone": tz,
                           "due_time": due, "started_at": due, "status": "completed", "overlap": "skip",
                           "after_job": None, "grace_seconds": 300, "attempts": 1, "retries": 0,
                           "retry_delay_seconds": 60}
    return {**row, **fields}


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(("row", "now", "expected"), [
    # one-off: the series ends with its run
    (_job(), T0 + timedelta(seconds=5), NextRun(None)),
    (_job(status="failed"), T0, NextRun(None)),
    # a job after another waits at the sentinel again; with a schedule of its own, the schedule wins
    (_job(after_job="fetch"), T0, NextRun(AFTER_SENTINEL)),
    (_job("hourly", after_job="fetch"), T0 + timedelta(minutes=1), NextRun(_utc(2026, 11, 27, 11, 0))),
    # a run that ended before the next slot: that slot, nothing skipped
    (_job("hourly"), T0 + timedelta(minutes=20), NextRun(_utc(2026, 11, 27, 11, 0))),
    (_job("* * * * *"), T0 + timedelta(seconds=59), NextRun(T0 + timedelta(minutes=1))),
    # overlap skip: slots that fell due while it ran are skipped and noted; the next is after now
    (_job("* * * * *"), T0 + timedelta(minutes=2, seconds=30), NextRun(T0 + timedelta(minutes=3), SKIP_NOTE.format(2))),
    (_job("* * * * *"), T0 + timedelta(minutes=1), NextRun(T0 + timedelta(minutes=2), SKIP_NOTE.format(1))),
    (_job("hourly"), T0 + timedelta(hours=5, minutes=1), NextRun(_utc(2026, 11, 27, 16, 0), SKIP_NOTE.format(5))),
    # skipped slots count from when the script began, not from the due time
    (_job("* * * * *", started_at=T0 + timedelta(minutes=2, seconds=10)), T0 + timedelta(minutes=2, seconds=20),
     NextRun(T0 + timedelta(minutes=3))),
    # a cancelled run (missed beyond grace, or stopped) notes nothing
    (_job("* * * * *", status="cancelled"), T0 + timedelta(minutes=3, seconds=1), NextRun(T0 + timedelta(minutes=4))),
    # overlap queue: the slot after the run's own, even if it is past (it runs at once, once)
    (_job("* * * * *", overlap="queue"), T0 + timedelta(minutes=3), NextRun(T0 + timedelta(minutes=1))),
    (_job("hourly", overlap="queue"), T0 + timedelta(minutes=5), NextRun(_utc(2026, 11, 27, 11, 0))),
    # time zones: the job's wall clock
    (_job("daily 9am", tz="Europe/Berlin", due=_utc(2026, 11, 27, 8, 0)), _utc(2026, 11, 27, 8, 1),
     NextRun(_utc(2026, 11, 28, 8, 0))),
    (_job("daily 9am", tz="America/New_York", due=_utc(2026, 11, 27, 14, 0)), _utc(2026, 11, 27, 14, 1),
     NextRun(_utc(2026, 11, 28, 14, 0))),
    # DST, spring: 2:30 does not exist on 2027-03-28 in Berlin; it runs once at 03:00 CEST
    (_job("daily 2:30am", tz="Europe/Berlin", due=_utc(2027, 3, 27, 1, 30)), _utc(2027, 3, 27, 1, 31),
     NextRun(_utc(2027, 3, 28, 1, 0))),
    # DST, autumn: 2:30 happens twice on 2026-10-25 in Berlin; it runs once, at the first (CEST)
    (_job("daily 2:30am", tz="Europe/Berlin", due=_utc(2026, 10, 24, 0, 30)), _utc(2026, 10, 24, 0, 31),
     NextRun(_utc(2026, 10, 25, 0, 30))),
    (_job("daily 2:30am", tz="Europe/Berlin", due=_utc(2026, 10, 25, 0, 30)), _utc(2026, 10, 25, 0, 31),
     NextRun(_utc(2026, 10, 26, 1, 30))),
    # DST in New York: weekly across the November change keeps the wall time
    (_job("every monday 9am", tz="America/New_York", due=_utc(2026, 10, 26, 13, 0)), _utc(2026, 10, 26, 13, 1),
     NextRun(_utc(2026, 11, 2, 14, 0))),
])
def test_next_run(row: dict[str, Any], now: datetime, expected: NextRun) -> None:
    assert next_run(row, now) == expected


def test_a_repeated_next_run_is_the_same_decision() -> None:
    row = _job("daily 9am", tz="Europe/Berlin", due=_utc(2026, 11, 27, 8, 0))
    now = _utc(2026, 11, 27, 8, 0, 3)
    assert next_run(row, now) == next_run(row, now), "pure: the store's insert of it is then idempotent"


MISSED_MIN = "{} run(s) missed while the runner was down; ran once for the latest, {}"


@pytest.mark.parametrize(("job", "now", "expected"), [
    # not recurring, or on time: it just runs
    (_job(), T0 + timedelta(hours=3), None),
    (_job(after_job="fetch"), T0 + timedelta(hours=3), None),
    (_job("* * * * *"), T0, None),
    (_job("* * * * *"), T0 + timedelta(seconds=1, microseconds=999_999), None),
    # late, but no later slot has passed and it is within grace: runs, nothing missed to note
    (_job("hourly", grace_seconds=60), T0 + timedelta(seconds=30), Missed(True, 0, MISSED_MIN.format(0, T0.isoformat()))),
    # five minutes down, every minute: runs once for the latest slot, five missed
    (_job("* * * * *", grace_seconds=60), T0 + timedelta(minutes=5, seconds=10),
     Missed(True, 5, MISSED_MIN.format(5, (T0 + timedelta(minutes=5)).isoformat()))),
    # the latest slot exactly at the grace boundary still runs
    (_job("* * * * *", grace_seconds=30), T0 + timedelta(minutes=2, seconds=30),
     Missed(True, 2, MISSED_MIN.format(2, (T0 + timedelta(minutes=2)).isoformat()))),
    # the latest missed slot shown in the job's zone
    (_job("hourly", tz="Europe/Berlin", grace_seconds=600), T0 + timedelta(hours=2, minutes=1),
     Missed(True, 2, MISSED_MIN.format(2, "2026-11-27T13:00:00+01:00"))),
])
def test_missed_runs_that_still_run(job: dict[str, Any], now: datetime, expected: Missed | None) -> None:
    assert missed_runs(job, now) == expected


@pytest.mark.parametrize(("job", "now", "count", "span"), [
    # down since new year, yearly, grace 10 min: its one slot is skipped (and counted)
    (_job("0 0 1 1 *", due=_utc(2026, 1, 1, 0, 0), grace_seconds=600), _utc(2026, 3, 1, 0, 0), 1,
     ("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00")),
    # every minute, the latest slot 31 s ago with a grace of 30 s: all skipped
    (_job("* * * * *", grace_seconds=30), T0 + timedelta(minutes=2, seconds=31), 3,
     (T0.isoformat(), (T0 + timedelta(minutes=2)).isoformat())),
    # daily in Berlin across the autumn change, down three days
    (_job("daily 9am", tz="Europe/Berlin", due=_utc(2026, 10, 24, 7, 0), grace_seconds=60), _utc(2026, 10, 27, 9, 0), 4,
     ("2026-10-24T09:00:00+02:00", "2026-10-27T09:00:00+01:00")),
])
def test_missed_runs_beyond_grace_are_skipped(job: dict[str, Any], now: datetime, count: int,
                                              span: tuple[str, str]) -> None:
    got = missed_runs(job, now)
    assert got == Missed(False, count, (
        f"missed {count} run(s) while the runner was down (from {span[0]} to {span[1]}); the latest is more "
        f"than {job['grace_seconds']} s late, so it was skipped"))


@pytest.mark.parametrize(("job", "status", "ran", "after"), [
    (_job(retries=2, attempts=1, retry_delay_seconds=10), "failed", True, 10),
    (_job(retries=2, attempts=2, retry_delay_seconds=10), "failed", True, 20),  # doubling
    (_job(retries=5, attempts=4, retry_delay_seconds=3), "failed", True, 24),
    (_job(retries=2, attempts=1, retry_delay_seconds=0), "failed", True, 0),
    (_job(retries=2, attempts=3, retry_delay_seconds=10), "failed", True, None),  # attempts used up
    (_job(retries=0, attempts=1), "failed", True, None),
    (_job(retries=None, attempts=1), "failed", True, None),
    (_job(retries=2, attempts=1), "failed", False, None),  # never ran (refused, not prepared): not retried
    (_job(retries=2, attempts=1), "completed", True, None),
    (_job(retries=2, attempts=1), "cancelled", False, None),
])
def test_retry_at(job: dict[str, Any], status: str, ran: bool, after: float | None) -> None:
    expected = None if after is None else T0 + timedelta(seconds=after)
    assert retry_at(job, status=status, ran=ran, now=T0) == expected


def test_retry_delay_and_note() -> None:
    job = _job(retries=2, attempts=2, retry_delay_seconds=30)
    assert retry_delay(job) == 60
    assert retry_note(job, "exit 1", T0 + timedelta(seconds=60)) == (
        "attempt 2 of 3 failed: exit 1; retrying at 2026-11-27T10:01:00+00:00")
