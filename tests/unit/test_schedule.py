"""The schedule language: tables of cases, ``now`` passed in, no sleeping."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from runner.errors import ScheduleError
from runner.schedule import localize, parse_recurrence, parse_time_of_day, parse_when

BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)  # a Friday; 11:00 in Berlin


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("now", BERLIN, NOW),
        ("NOW", BERLIN, NOW),
        ("in 1 minute", BERLIN, NOW + timedelta(minutes=1)),
        ("in 90 seconds", BERLIN, NOW + timedelta(seconds=90)),
        ("in 2 hours", BERLIN, NOW + timedelta(hours=2)),
        ("in 3 days", BERLIN, NOW + timedelta(days=3)),
        ("tomorrow 9am", BERLIN, datetime(2026, 11, 28, 8, 0, tzinfo=UTC)),
        ("tomorrow at 9:30pm", BERLIN, datetime(2026, 11, 28, 20, 30, tzinfo=UTC)),
        ("tomorrow 09:00", NY, datetime(2026, 11, 28, 14, 0, tzinfo=UTC)),
        ("today 18:00", BERLIN, datetime(2026, 11, 27, 17, 0, tzinfo=UTC)),
        ("next monday 8:30", BERLIN, datetime(2026, 11, 30, 7, 30, tzinfo=UTC)),
        ("friday 9am", BERLIN, datetime(2026, 12, 4, 8, 0, tzinfo=UTC)),  # today 9am is past: next week
        ("friday 12:00", BERLIN, datetime(2026, 11, 27, 11, 0, tzinfo=UTC)),
        ("2026-12-01T09:00", BERLIN, datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
        ("2026-12-01 09:00+01:00", NY, datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
        ("2026-12-01T09:00Z", BERLIN, datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
        ("dec 24 18:00", BERLIN, datetime(2026, 12, 24, 17, 0, tzinfo=UTC)),
        ("24 december 6pm", NY, datetime(2026, 12, 24, 23, 0, tzinfo=UTC)),
        ("jan 2 9am", BERLIN, datetime(2027, 1, 2, 8, 0, tzinfo=UTC)),  # already past this year: next year
        ("mar 28 2:30am", BERLIN, datetime(2027, 3, 28, 1, 0, tzinfo=UTC)),  # 2027's spring gap: 03:00 CEST
    ],
)
def test_when(text: str, tz: ZoneInfo, expected: datetime) -> None:
    got = parse_when(text, NOW, tz)
    assert got == expected
    assert got.tzinfo is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("soon", "could not understand the time 'soon'"),
        ("yesterday 9am", "could not understand"),
        ("tomorrow 9", "write the time as"),
        ("tomorrow 25:00", "not a valid time of day"),
        ("tomorrow 13pm", "am/pm the hour must be 1 to 12"),
        ("in 5 fortnights", "unknown unit"),
        ("2020-01-01T09:00", "in the past"),
        ("2026-13-01 09:00", "not valid ISO 8601"),
        ("feb 30 9am", "no day 30 in that month"),
        ("dec 24", "could not understand"),
    ],
)
def test_when_refusals_say_what_to_do(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_when(text, NOW, BERLIN)


def test_when_needs_an_aware_now() -> None:
    with pytest.raises(ValueError):
        parse_when("now", datetime(2026, 1, 1), BERLIN)  # noqa: DTZ001 - the point of the test


@pytest.mark.parametrize(
    ("text", "cron"),
    [
        ("hourly", "0 * * * *"),
        ("@hourly", "0 * * * *"),
        ("daily", "0 0 * * *"),
        ("@daily", "0 0 * * *"),
        ("daily 9am", "0 9 * * *"),
        ("daily at 9:30pm", "30 21 * * *"),
        ("weekdays 8:30", "30 8 * * 1-5"),
        ("weekends 10am", "0 10 * * 0,6"),
        ("every monday 9am", "0 9 * * 1"),
        ("mon,wed,fri 7:00", "0 7 * * 1,3,5"),
        ("weekly", "0 0 * * 0"),
        ("@weekly", "0 0 * * 0"),
        ("monthly", "0 0 1 * *"),
        ("@monthly", "0 0 1 * *"),
        ("monthly on the 1st 9am", "0 9 1 * *"),
        ("every 15 minutes", "*/15 * * * *"),
        ("every 2 hours", "0 */2 * * *"),
        ("30 2 * * *", "30 2 * * *"),
        ("0 9 * * mon-fri", "0 9 * * mon-fri"),
    ],
)
def test_recurrence_to_cron(text: str, cron: str) -> None:
    assert parse_recurrence(text).cron == cron


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sometimes", "could not understand the recurrence"),
        ("every 7 minutes", "does not divide the hour"),
        ("daily 9", "ambiguous"),
        ("61 * * * *", "not a valid cron line"),
        ("every funday 9am", "could not understand"),
        ("", "empty"),
    ],
)
def test_recurrence_refusals(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_recurrence(text)


def test_daily_next_time_in_zone() -> None:
    rec = parse_recurrence("daily 9am")
    assert rec.next_after(NOW, BERLIN) == datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    assert rec.next_after(datetime(2026, 11, 27, 7, 59, tzinfo=UTC), BERLIN) == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def test_cron_sunday_is_0_and_7() -> None:
    a = parse_recurrence("0 9 * * 0").upcoming(NOW, BERLIN, 3)
    b = parse_recurrence("0 9 * * 7").upcoming(NOW, BERLIN, 3)
    assert a == b and all(t.isoweekday() == 7 for t in a)


def test_weekdays_skip_the_weekend() -> None:
    days = [t.strftime("%a") for t in parse_recurrence("weekdays 8:30").upcoming(NOW, BERLIN, 5)]
    assert days == ["Mon", "Tue", "Wed", "Thu", "Fri"]


def _run_times(text: str, tz: ZoneInfo, start: datetime, n: int) -> list[datetime]:
    return [t.astimezone(UTC) for t in parse_recurrence(text).upcoming(start, tz, n)]


@pytest.mark.parametrize(
    ("tz", "autumn_night", "expected_utc"),
    [
        # 02:30 occurs twice on the autumn night: it runs once, at the first occurrence.
        (BERLIN, datetime(2026, 10, 24, 12, tzinfo=UTC),
         [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]),
        (NY, datetime(2026, 10, 31, 12, tzinfo=UTC),
         [datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 2, 6, 30, tzinfo=UTC)]),
    ],
)
def test_dst_autumn_runs_once(tz: ZoneInfo, autumn_night: datetime, expected_utc: list[datetime]) -> None:
    rec = "30 1 * * *" if tz is NY else "30 2 * * *"
    assert _run_times(rec, tz, autumn_night, 2) == expected_utc
    # Asked again just after the first run, it never returns the same instant (no loop).
    again = parse_recurrence(rec).next_after(expected_utc[0] + timedelta(seconds=1), tz)
    assert again == expected_utc[1]


@pytest.mark.parametrize(
    ("tz", "spring_day", "expected_local"),
    [
        # 02:30 does not exist on the spring night: it runs once, at the first valid instant (03:00).
        (BERLIN, datetime(2026, 3, 28, 12, tzinfo=UTC), ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
        (NY, datetime(2026, 3, 7, 12, tzinfo=UTC), ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    ],
)
def test_dst_spring_runs_once_at_first_valid_instant(tz: ZoneInfo, spring_day: datetime, expected_local: list[str]) -> None:
    got = [t.isoformat() for t in parse_recurrence("30 2 * * *").upcoming(spring_day, tz, 2)]
    assert got == expected_local


def test_localize_gap_and_fold() -> None:
    # Spring gap in Berlin: 02:30 -> 03:00 CEST (01:00 UTC).
    assert localize(date(2026, 3, 29), parse_time_of_day("2:30am"), BERLIN) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    # Autumn fold: first occurrence (CEST).
    assert localize(date(2026, 10, 25), parse_time_of_day("2:30am"), BERLIN) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_hourly_across_autumn_fold_has_no_duplicate() -> None:
    times = _run_times("hourly", BERLIN, datetime(2026, 10, 24, 22, 30, tzinfo=UTC), 6)
    assert len(set(times)) == 6 and times == sorted(times)
