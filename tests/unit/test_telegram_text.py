"""Splitting long texts for Telegram, and keeping the token out of text."""

from __future__ import annotations

import pytest

from runner.bot.upload import split_when
from runner.logsetup import redact
from runner.outbox import split_text


def test_short_text_is_one_part() -> None:
    assert split_text("hello") == ["hello"]
    assert split_text("") == []


def test_split_on_line_boundaries() -> None:
    lines = [f"{i:03d} " + "a" * 95 for i in range(100)]
    parts = split_text("\n".join(lines), limit=1000)
    assert all(len(p) <= 1000 for p in parts)
    assert "\n".join(parts) == "\n".join(lines)
    assert all(p.startswith(tuple(f"{i:03d} " for i in range(100))) for p in parts)


def test_overlong_line_is_cut() -> None:
    parts = split_text("x" * 2500, limit=1000)
    assert [len(p) for p in parts] == [1000, 1000, 500]


def test_counts_utf16_units_as_telegram_does() -> None:
    parts = split_text("\U0001f600" * 600, limit=1000)  # each emoji is 2 UTF-16 units
    assert [len(p) for p in parts] == [500, 100]


def test_redact() -> None:
    token = "123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345678"
    assert token not in redact(f"POST /bot{token}/sendMessage failed", token)
    assert "bot<token>" in redact(f"url /bot{token}/x", None)


@pytest.mark.parametrize(("text", "at", "every"), [
    ("daily 9am", None, "daily 9am"), ("tomorrow 9am", "tomorrow 9am", None), ("now", "now", None),
    ("0 9 * * 1-5", None, "0 9 * * 1-5"), ("in 10 minutes", "in 10 minutes", None),
])
def test_schedule_caption_is_a_time_or_a_recurrence(text: str, at: str | None, every: str | None) -> None:
    assert split_when(text) == (at, every)
