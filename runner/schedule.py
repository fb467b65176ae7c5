"""The schedule language: pure functions, no I/O and no clock reads (``now`` is passed in).

Two kinds of text:

* a *when* (``parse_when``) is a single instant: ``now``, ISO 8601 with or without a zone,
  ``in 90 seconds``, ``in 2 hours``, ``tomorrow 9am``, ``today 18:30``, ``next monday 8:30``, ``monday 9am``;
* a *recurrence* (``parse_recurrence``) is a repeating rule. Every recurrence is translated to one
  5-field cron line with crontab's meaning and evaluated by ``cronsim`` in the job's time zone.

A schedule is understood exactly or refused with a :class:`ScheduleError` that says what was
understood and gives an example; nothing ever falls back to a default time.

DST: a wall time that does not exist (spring) runs once at the first valid instant after it; a wall
time that occurs twice (autumn) runs once, at its first occurrence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import ScheduleError

# The due time of a job that waits for another (--after): far in the future until that job completes.
AFTER_SENTINEL = datetime(9999, 1, 1, tzinfo=UTC)

WHEN_EXAMPLES = "'now', 'in 10 minutes', 'tomorrow 9am', 'next monday 8:30', 'dec 24 18:00', '2026-12-01T09:00+01:00'"
EVERY_EXAMPLES = "'hourly', 'daily 9am', 'weekdays 8:30', 'every monday 9am', 'weekly', '0 9 * * 1-5'"

_DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
_DAY_ALIASES = {d[:3]: i for i, d in enumerate(_DAYS)} | {d: i for i, d in enumerate(_DAYS)}
_DAY_ALIASES |= {"tue": 2, "tues": 2, "wed": 3, "thu": 4, "thur": 4, "thurs": 4}
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_UNITS = {
    "second": 1, "seconds": 1, "sec": 1, "secs": 1, "s": 1,
    "minute": 60, "minutes": 60, "min": 60, "mins": 60, "m": 60,
    "hour": 3600, "hours": 3600, "hr": 3600, "hrs": 3600, "h": 3600,
    "day": 86400, "days": 86400, "d": 86400,
    "week": 604800, "weeks": 604800, "w": 604800,
}  # fmt: skip
_TIME_RE = r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>am|pm)?"


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` or a :class:`ScheduleError` that says how to spell one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: a directory of the zone database
        raise ScheduleError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def parse_time_of_day(text: str) -> time:
    """``9am``, ``9:30pm``, ``09:00``, ``21:15`` -> :class:`time`. A bare ``9`` is refused as ambiguous."""
    m = re.fullmatch(_TIME_RE, text.strip().lower())
    if not m or (m["m"] is None and m["ampm"] is None):
        raise ScheduleError(f"{text!r} is not a time of day: write it as '9am', '9:30pm' or '21:30'")
    return _time_from_match(m, text)


def _time_from_match(m: re.Match[str], text: str) -> time:
    hour, minute = int(m["h"]), int(m["m"] or 0)
    if m["ampm"]:
        if not 1 <= hour <= 12:
            raise ScheduleError(f"{text!r}: with am/pm the hour must be 1 to 12")
        hour = hour % 12 + (12 if m["ampm"] == "pm" else 0)
    if hour > 23 or minute > 59:
        raise ScheduleError(f"{text!r} is not a valid time of day (hours 0-23, minutes 0-59)")
    return time(hour, minute)


def localize(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The instant of wall time ``day at`` in ``tz``, with the DST rules above, as an aware UTC datetime."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive:
        return first.astimezone(UTC)  # exists (first occurrence if it is ambiguous)
    # In a gap: find the first instant whose wall time is at or after ``naive`` (the transition).
    lo = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    hi = first.astimezone(UTC)
    lo, hi = min(lo, hi), max(lo, hi)
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def parse_when(text: str, now: datetime, tz: ZoneInfo) -> datetime:
    """Parse a one-off time. Returns an aware UTC datetime. A time in the past is refused, except ``now``."""
    _require_aware(now)
    raw = text
    text = " ".join(str(text).strip().lower().split())
    if not text:
        raise ScheduleError(f"an empty time was given: try {WHEN_EXAMPLES}")
    if text == "now":
        return now.astimezone(UTC)
    try:
        result = _parse_when(text, raw, now, tz)
    except OverflowError:
        raise ScheduleError(f"{raw!r} is too far in the future: give a time before the year 9999") from None
    if result < now - timedelta(seconds=1):
        shown = result.astimezone(tz).isoformat()
        raise ScheduleError(f"{raw!r} means {shown}, which is in the past: give a future time or 'now'")
    return result


def _parse_when(text: str, raw: str, now: datetime, tz: ZoneInfo) -> datetime:
    for form in (_when_in, _when_day_word, _when_weekday, _when_month_day, _when_iso):
        found = form(text, raw, now, tz)
        if found is not None:
            return found
    raise ScheduleError(f"could not understand the time {raw!r}: try {WHEN_EXAMPLES}")


def _needs_clock_time(m: re.Match[str], raw: str) -> None:
    if m["m"] is None and m["ampm"] is None:
        raise ScheduleError(f"{raw!r}: write the time as '9am', '9:30pm' or '21:30'")


def _when_in(text: str, raw: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """``in 10 minutes``."""
    m = re.fullmatch(r"in (?P<n>\d+(?:\.\d+)?) ?(?P<unit>[a-z]+)", text)
    if not m:
        return None
    unit = _UNITS.get(m["unit"])
    if unit is None:
        raise ScheduleError(f"{raw!r}: unknown unit {m['unit']!r}; use seconds, minutes, hours, days or weeks")
    return (now + timedelta(seconds=float(m["n"]) * unit)).astimezone(UTC)


def _when_day_word(text: str, raw: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """``today 5pm``, ``tomorrow at 9:30``."""
    m = re.fullmatch(r"(?P<day>today|tomorrow)(?: at)? " + _TIME_RE, text)
    if not m:
        return None
    day = now.astimezone(tz).date() + timedelta(days=1 if m["day"] == "tomorrow" else 0)
    _needs_clock_time(m, raw)
    return localize(day, _time_from_match(m, raw), tz)


def _when_weekday(text: str, raw: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """``monday 8am``, ``next friday at 17:00``: the next such day whose time is still ahead."""
    m = re.fullmatch(r"(?P<next>next )?(?P<dow>[a-z]+)(?: at)? " + _TIME_RE, text)
    if not (m and m["dow"] in _DAY_ALIASES):
        return None
    _needs_clock_time(m, raw)
    at, local_today = _time_from_match(m, raw), now.astimezone(tz).date()
    ahead = (_DAY_ALIASES[m["dow"]] - (local_today.isoweekday() % 7)) % 7
    candidate = localize(local_today + timedelta(days=ahead), at, tz)
    if candidate <= now:
        candidate = localize(local_today + timedelta(days=ahead + 7), at, tz)
    return candidate


def _when_month_day(text: str, raw: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """``dec 24 18:00``, ``24 december 2027 at 6pm``: this year's if still ahead, else next year's."""
    m = re.fullmatch(r"(?:(?P<mon>[a-z]{3})[a-z]* (?P<day>\d{1,2})|(?P<day2>\d{1,2}) (?P<mon2>[a-z]{3})[a-z]*)"
                     r"(?:st|nd|rd|th)?,?(?: (?P<year>\d{4}))?(?: at)? " + _TIME_RE, text)
    if not (m and (m["mon"] or m["mon2"]) in _MONTHS):
        return None
    _needs_clock_time(m, raw)
    month, day_of_month = _MONTHS[m["mon"] or m["mon2"]], int(m["day"] or m["day2"])
    at, this_year = _time_from_match(m, raw), now.astimezone(tz).year
    for year in [int(m["year"])] if m["year"] else [this_year, this_year + 1]:
        try:
            candidate = localize(date(year, month, day_of_month), at, tz)
        except ValueError:
            raise ScheduleError(f"{raw!r}: there is no day {day_of_month} in that month") from None
        if candidate > now or m["year"]:
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def _when_iso(text: str, raw: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """ISO 8601, with or without an offset (without: in ``tz``)."""
    if not re.match(r"\d{4}-\d{2}-\d{2}", text):
        return None
    iso = text.upper().replace(" ", "T", 1).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise ScheduleError(f"{raw!r} looks like a date but is not valid ISO 8601: e.g. '2026-12-01T09:00' or "
                            "'2026-12-01 09:00+01:00'") from None
    if parsed.tzinfo is None:
        return localize(parsed.date(), parsed.time(), tz)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class Recurrence:
    """A repeating rule as given (``text``) and as the cron line it means (``cron``)."""

    text: str
    cron: str

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime:
        """The first fire time strictly after ``after``, computed in ``tz``, as aware UTC."""
        _require_aware(after)
        start = after.astimezone(tz)
        return next(iter(CronSim(self.cron, start))).astimezone(UTC)

    def between(self, start: datetime, end: datetime, tz: ZoneInfo, limit: int = 10_000) -> list[datetime]:
        """Fire times strictly after ``start`` and at or before ``end`` (at most ``limit``), as aware UTC."""
        out: list[datetime] = []
        for t in CronSim(self.cron, start.astimezone(tz)):
            t = t.astimezone(UTC)
            if t > end or len(out) >= limit:
                break
            out.append(t)
        return out

    def upcoming(self, after: datetime, tz: ZoneInfo, count: int) -> list[datetime]:
        """The next ``count`` fire times after ``after``, in ``tz``."""
        out: list[datetime] = []
        try:
            for _ in range(count):
                after = self.next_after(after, tz)
                out.append(after.astimezone(tz))
        except (OverflowError, StopIteration):
            if not out:
                raise ScheduleError(f"{self.text!r} has no run before the year 9999 from "
                                    f"{after.isoformat(timespec='minutes')}") from None
        return out


_NICKNAMES = {
    "@hourly": "0 * * * *", "hourly": "0 * * * *",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "daily": "0 0 * * *",
    "@weekly": "0 0 * * 0", "weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *", "monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "yearly": "0 0 1 1 *",
}  # fmt: skip


def _cron_time(m: re.Match[str], raw: str) -> str:
    if m["m"] is None and m["ampm"] is None:
        raise ScheduleError(f"{raw!r}: the time is ambiguous; write it as '9am', '9:30pm' or '21:30'")
    at = _time_from_match(m, raw)
    return f"{at.minute} {at.hour}"


def _day_list(text: str, raw: str) -> str:
    days = []
    for part in re.split(r"\s*,\s*|\s+and\s+|\s+", text.strip()):
        if part not in _DAY_ALIASES:
            raise ScheduleError(f"{raw!r}: {part!r} is not a day of the week (mon, tue, ..., sunday)")
        days.append(_DAY_ALIASES[part])
    return ",".join(str(d) for d in sorted(set(days)))


def parse_recurrence(text: str) -> Recurrence:
    """Parse a repeating rule into a :class:`Recurrence` (always a cron line underneath)."""
    raw = text
    text = " ".join(str(text).strip().lower().split())
    if not text:
        raise ScheduleError(f"an empty recurrence was given: try {EVERY_EXAMPLES}")
    cron = _recurrence_to_cron(text, raw)
    try:
        CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ScheduleError(f"{raw!r} is not a valid cron line ({exc}): e.g. '30 8 * * 1-5'") from None
    return Recurrence(text=str(raw).strip(), cron=cron)


def _recurrence_to_cron(text: str, raw: str) -> str:
    if text in _NICKNAMES:
        return _NICKNAMES[text]
    for form in (_cron_line, _every_n, _daily_like, _on_days, _monthly):
        found = form(text, raw)
        if found is not None:
            return found
    if re.fullmatch(r"(daily|weekdays|weekends|every \w+)( at)? \d+", text):
        raise ScheduleError(f"{raw!r}: the time is ambiguous; write it as '9am', '9:30pm' or '21:30'")
    raise ScheduleError(f"could not understand the recurrence {raw!r}: try {EVERY_EXAMPLES}")


_AT = r"(?: at)? " + _TIME_RE
_DAILY_LIKE = (("daily", "*"), ("every day", "*"), ("weekdays", "1-5"), ("every weekday", "1-5"),
               ("weekends", "0,6"), ("every weekend", "0,6"))


def _cron_line(text: str, raw: str) -> str | None:
    """A crontab line as it is (cronsim validates it in the caller)."""
    fields = text.split()
    if len(fields) == 5 and all(re.fullmatch(r"[0-9*/,\-]+", f) for f in fields[:2]) \
            and re.fullmatch(r"[0-9a-z*/,\-? ]+", text):
        return text
    return None


def _every_n(text: str, raw: str) -> str | None:
    """``every 15 minutes``, ``every 2 hours``, ``every minute``, ``every hour``."""
    if text == "every minute":
        return "* * * * *"
    if text == "every hour":
        return "0 * * * *"
    m = re.fullmatch(r"every (?P<n>\d+) ?(?P<unit>minutes?|mins?|hours?|hrs?)", text)
    if not m:
        return None
    n, minutes = int(m["n"]), m["unit"].startswith("m")
    span = 60 if minutes else 24
    if n < 1 or span % n:
        raise ScheduleError(f"{raw!r}: {n} does not divide the {'hour' if minutes else 'day'} evenly, so the "
                            f"runs would drift; pick a divisor of {span} or write a cron line")
    return f"*/{n} * * * *" if minutes else f"0 */{n} * * *"


def _daily_like(text: str, raw: str) -> str | None:
    """``daily 9am``, ``weekdays 8:30``, ``every weekend at 10am``."""
    for word, dow in _DAILY_LIKE:
        m = re.fullmatch(re.escape(word) + _AT, text)
        if m:
            return f"{_cron_time(m, raw)} * * {dow}"
    return None


def _on_days(text: str, raw: str) -> str | None:
    """``every monday 9am``, ``mon,wed,fri 7:00``, ``weekly on tuesday and thursday at 18:00``."""
    m = re.fullmatch(r"(?:weekly|every week) on (?P<days>[a-z, ]+?)" + _AT, text) or re.fullmatch(
        r"(?:every |on )?(?P<days>[a-z]+(?:\s*(?:,|and)\s*[a-z]+)*)" + _AT, text
    )
    if m and all(p in _DAY_ALIASES for p in re.split(r"\s*,\s*|\s+and\s+|\s+", m["days"].strip())):
        return f"{_cron_time(m, raw)} * * {_day_list(m['days'], raw)}"
    return None


def _monthly(text: str, raw: str) -> str | None:
    """``monthly on the 1st 9am``."""
    m = re.fullmatch(r"(?:monthly|every month) on the (?P<dom>\d{1,2})(?:st|nd|rd|th)?" + _AT, text)
    if not m:
        return None
    dom = int(m["dom"])
    if not 1 <= dom <= 31:
        raise ScheduleError(f"{raw!r}: the day of the month must be 1 to 31")
    return f"{_cron_time(m, raw)} {dom} * *"
