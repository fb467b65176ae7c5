"""Cron lines, differentially: our evaluation (cronsim underneath, plus our translation of the
language) against croniter, an independent implementation, over a few thousand generated lines.

Compared in UTC, where there is no DST to disagree about: this checks crontab's meaning (ranges,
steps, lists, names, Sunday as 0 and 7, and day-of-month OR day-of-week when both are restricted).

One known divergence: crontab (Vixie/Debian cron) counts a day field that *starts* with '*' (such as
'*/12') as unrestricted when it decides between OR and AND, so '0 9 */12 * 5' means "every 12th day
that is also a Friday". croniter applies OR there unless asked for AND (day_or=False). We follow
crontab, so those lines are compared with croniter's AND."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from runner.schedule import parse_recurrence

UTC_ZONE = ZoneInfo("UTC")
DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MON_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def _field(rng: random.Random, lo: int, hi: int, names: list[str] | None = None, star_weight: float = 0.4) -> str:
    kind = rng.random()
    if kind < star_weight:
        return "*"
    if kind < star_weight + 0.1:
        return f"*/{rng.randint(2, max(2, (hi - lo) // 2))}"

    def value() -> str:
        v = rng.randint(lo, hi)
        if names and rng.random() < 0.3:
            return names[v - lo] if len(names) == hi - lo + 1 else names[v % len(names)]
        return str(v)

    if kind < 0.7:
        return value()
    if kind < 0.85:
        a, b = sorted(rng.sample(range(lo, hi + 1), 2))
        step = f"/{rng.randint(2, 3)}" if rng.random() < 0.3 else ""
        return f"{a}-{b}{step}"
    return ",".join(sorted({value() for _ in range(rng.randint(2, 4))}, key=lambda x: (len(x), x)))


def generate(rng: random.Random) -> str:
    minute = _field(rng, 0, 59, star_weight=0.2)
    hour = _field(rng, 0, 23)
    dom = _field(rng, 1, 28, star_weight=0.6)
    month = _field(rng, 1, 12, MON_NAMES, star_weight=0.7)
    dow = _field(rng, 0, 7, DOW_NAMES + ["sun"], star_weight=0.6)
    return f"{minute} {hour} {dom} {month} {dow}"


LINES = [generate(random.Random(seed)) for seed in range(3000)]
START = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("chunk", range(10))
def test_cron_lines_agree_with_croniter(chunk: int) -> None:
    disagreements = []
    for line in LINES[chunk::10]:
        ours = parse_recurrence(line).upcoming(START, UTC_ZONE, 5)
        dom, dow = line.split()[2], line.split()[4]
        it = croniter(line, START, day_or=not (dom.startswith("*") or dow.startswith("*")))
        theirs = [it.get_next(datetime) for _ in range(5)]
        if [t.astimezone(UTC) for t in ours] != [t.astimezone(UTC) for t in theirs]:
            disagreements.append((line, ours[:2], theirs[:2]))
    assert not disagreements, disagreements[:5]


@pytest.mark.parametrize(("text", "cron"), [
    ("daily 9am", "0 9 * * *"), ("weekdays 8:30", "30 8 * * 1-5"), ("mon,wed,fri 7:00", "0 7 * * 1,3,5"),
    ("weekends 10am", "0 10 * * 0,6"), ("monthly on the 1st 9am", "0 9 1 * *"), ("every 15 minutes", "*/15 * * * *"),
])
def test_language_means_the_same_as_its_cron_line_in_croniter(text: str, cron: str) -> None:
    ours = parse_recurrence(text).upcoming(START, UTC_ZONE, 10)
    it = croniter(cron, START)
    assert [t.astimezone(UTC) for t in ours] == [it.get_next(datetime) for _ in range(10)]
