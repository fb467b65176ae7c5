"""A job's recurrence in words, and durations as a person reads them.

A recurrence is kept as the text it was given ("daily 9am") and as its cron line; a cron line given as
such ("30 8 * * 1-5") is put into words for the common shapes, and shown as it is otherwise."""

from __future__ import annotations

import re

_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_CRON_FIELD = re.compile(r"[0-9*/,\-]+")


def _days(field: str) -> str | None:
    if field in ("*", "?"):
        return "every day"
    if field == "1-5":
        return "on weekdays"
    if field in ("0,6", "6,0"):
        return "at weekends"
    if re.fullmatch(r"[0-7](,[0-7])*", field):
        return "on " + ", ".join(_DAYS[int(d)] for d in field.split(","))
    return None


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _clock(minute: str, hour: str) -> str | None:
    if _digits(minute) and _digits(hour) and int(minute) < 60 and int(hour) < 24:
        return f"{int(hour):02d}:{int(minute):02d}"
    return None


def _frequent(minute: str, hour: str) -> str | None:
    """Every n minutes, every hour at :mm, every n hours."""
    if hour == "*" and minute == "*":
        return "every minute"
    if hour == "*" and (m := re.fullmatch(r"\*/(\d+)", minute)):
        return f"every {int(m[1])} minutes"
    if hour == "*" and _digits(minute):
        return "every hour" + (f" at :{int(minute):02d}" if int(minute) else "")
    if _digits(minute) and (m := re.fullmatch(r"\*/(\d+)", hour)):
        return f"every {int(m[1])} hours" + (f" at :{int(minute):02d}" if int(minute) else "")
    return None


def cron_words(cron: str) -> str | None:
    """The common cron shapes in words ("every day at 09:00", "every 15 minutes"); None for others."""
    fields = cron.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) or f == "?" for f in fields):
        return None
    minute, hour, dom, month, dow = fields
    if month != "*":
        return None
    if dom == "*" and dow in ("*", "?") and (often := _frequent(minute, hour)):
        return often
    at = _clock(minute, hour)
    if at is None:
        return None
    if dom == "*":
        days = _days(dow)
        return f"{days} at {at}" if days else None
    if _digits(dom) and dow in ("*", "?"):
        return f"monthly on day {int(dom)} at {at}"
    return None


def recurrence_words(text: str | None, cron: str | None) -> str:
    """How a job repeats, for a person: its rule as given, a cron line put into words where it can be."""
    if not cron:
        return "once"
    given = (text or "").strip()
    if given and " ".join(given.split()) != cron:
        return given  # the schedule language is words already ("daily 9am", "every 15 minutes")
    words = cron_words(cron)
    return f"{words} (cron {cron})" if words else f"cron {cron}"


def duration(ms: float | int | None) -> str:
    """Milliseconds as "850 ms", "3.2 s", "4 min 05 s", "2 h 10 min"."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{round(ms)} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
