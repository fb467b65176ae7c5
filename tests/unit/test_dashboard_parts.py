"""The dashboard's pure parts: recurrences and durations in words, the sessions (opaque ids, CSRF,
expiry, bound), the lateness histogram's SVG, and that the templates and the stylesheet ship in the
package with autoescape on."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from runner import tokens
from runner.dashboard import render, sessions
from runner.dashboard.words import cron_words, duration, recurrence_words
from runner.store.overview import LATENESS_EDGES

ROOT = Path(__file__).resolve().parents[2]
SCOPE = tokens.Scope(thread="telegram:42", admin=False, read_only=False)


@pytest.mark.parametrize(("cron", "words"), [
    ("0 9 * * *", "every day at 09:00"), ("30 8 * * 1-5", "on weekdays at 08:30"),
    ("0 10 * * 0,6", "at weekends at 10:00"), ("0 7 * * 1,3,5", "on Monday, Wednesday, Friday at 07:00"),
    ("*/15 * * * *", "every 15 minutes"), ("0 * * * *", "every hour"), ("5 * * * *", "every hour at :05"),
    ("0 */6 * * *", "every 6 hours"), ("* * * * *", "every minute"), ("0 9 1 * *", "monthly on day 1 at 09:00"),
])
def test_common_cron_lines_in_words(cron: str, words: str) -> None:
    assert cron_words(cron) == words


def test_a_recurrence_is_shown_as_given_or_as_words_with_its_cron_line() -> None:
    assert recurrence_words("daily 9am", "0 9 * * *") == "daily 9am"
    assert recurrence_words("30 8 * * 1-5", "30 8 * * 1-5") == "on weekdays at 08:30 (cron 30 8 * * 1-5)"
    assert recurrence_words("0 9 1-7 * 1", "0 9 1-7 * 1") == "cron 0 9 1-7 * 1"  # no words for it: as it is
    assert recurrence_words(None, None) == "once"


def test_durations_as_a_person_reads_them() -> None:
    assert [duration(v) for v in (None, 0, 850, 3200, 245_000, 7_800_000)] == [
        "—", "0 ms", "850 ms", "3.2 s", "4 min 05 s", "2 h 10 min"]


def test_a_session_is_an_opaque_id_with_its_own_csrf_secret() -> None:
    store = sessions.Sessions()
    sid, session = store.start(7, SCOPE)
    other_sid, other = store.start(7, SCOPE)
    assert len(sid) >= 40 and sid != other_sid and session.csrf != other.csrf and "rnr_" not in sid
    assert store.get(sid) is session and store.get("nope") is None and store.get(None) is None
    assert session.csrf_ok(session.csrf) and not session.csrf_ok(other.csrf)
    assert not session.csrf_ok("") and not session.csrf_ok(None)
    store.end(sid)
    assert store.get(sid) is None


def test_sessions_end_when_idle_or_too_old_and_are_bounded() -> None:
    now = [0.0]
    store = sessions.Sessions(clock=lambda: now[0], max_sessions=3)
    idle, _ = store.start(1, SCOPE)
    now[0] = sessions.IDLE_SECONDS + 1
    assert store.get(idle) is None
    kept, _ = store.start(1, SCOPE)
    started = now[0]
    while now[0] + sessions.IDLE_SECONDS - 1 - started <= sessions.MAX_SECONDS:  # used often: it lasts...
        now[0] += sessions.IDLE_SECONDS - 1
        assert store.get(kept) is not None
    now[0] = started + sessions.MAX_SECONDS + 1  # ...but only so long in all
    assert store.get(kept) is None
    ids = [store.start(token, SCOPE)[0] for token in range(10, 15)]  # five tokens: the bound holds
    assert len(store) == 3 and store.get(ids[0]) is None and store.get(ids[-1]) is not None


def test_one_tokens_sign_ins_end_only_its_own_older_sessions() -> None:
    store = sessions.Sessions(max_sessions=40)
    other, _ = store.start(2, SCOPE)
    mine = [store.start(1, SCOPE)[0] for _ in range(25)]
    assert store.per_token == 10 and len(store) == 11
    assert store.get(other) is not None  # another token's session is never pushed out by these
    assert store.get(mine[-1]) is not None and store.get(mine[0]) is None  # its own oldest went


def test_a_notice_is_shown_once() -> None:
    _, session = sessions.Sessions().start(1, SCOPE)
    session.notice = "done"
    assert session.take_notice() == "done" and session.take_notice() == ""


def test_the_histogram_is_svg_with_a_bar_and_a_label_per_bucket() -> None:
    counts = [0, 3, 1] + [0] * (len(LATENESS_EDGES) - 2)
    svg = str(render.histogram_svg(counts))
    assert svg.startswith("<svg") and svg.endswith("</svg>") and 'role="img"' in svg and "<title" in svg
    assert svg.count("<rect") == len(counts) == len(render.BUCKET_LABELS)
    assert "&lt; 10 ms" in svg and "≥ 60 s" in svg and "10 ms–50 ms" in svg
    assert render.histogram_svg([0] * len(counts))  # no runs: no division by zero


def test_templates_escape_and_make_terminal_escapes_visible() -> None:
    env = render.environment()
    out = env.from_string("{{ t | shown }}").render(t='<script>x</script>"\x1b[2J')
    assert out == "&lt;script&gt;x&lt;/script&gt;&#34;\\x1b[2J"
    assert env.from_string("{{ t | one_line }}").render(t="a\nb") == "a\\nb"
    for name in ("base", "signin", "overview", "jobs", "job", "cancel", "error"):
        env.get_template(f"{name}.html")  # each one parses


def test_the_templates_and_the_stylesheet_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["runner.dashboard"]
    folder = ROOT / "runner" / "dashboard"
    shipped = {p for pattern in patterns for p in folder.glob(pattern)}
    files = {p for p in folder.rglob("*") if p.is_file() and p.suffix in (".html", ".css")}
    assert files and files <= shipped, f"not shipped: {sorted(files - shipped)}"
    assert "runner.dashboard" in config["packages"]
