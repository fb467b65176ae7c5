"""visible(): every character that can act on a terminal or disguise text is shown, everything else kept."""

from __future__ import annotations

import json
import sys
import unicodedata

import pytest

from runner.text import json_safe, visible, visible_name

CASES = [
    ("plain text", "plain text"),
    ("", ""),
    ("line one\nline two\twith a tab", "line one\nline two\twith a tab"),
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # OSC 0: window title
    ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # clear screen, cursor home
    ("\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\", "\\x1b]8;;http://evil.example\\x1b\\click\\x1b]8;;\\x1b\\"),
    ("\x9b2J", "\\x9b2J"),  # one-byte CSI (C1)
    ("\x9d0;title\x9c", "\\x9d0;title\\x9c"),  # one-byte OSC ... ST
    ("\x85next", "\\x85next"),  # NEL, a C1 newline
    ("ok\rFAIL", "ok\\rFAIL"),  # carriage return overwrites the line
    ("abc\x08\x08\x08xyz", "abc\\x08\\x08\\x08xyz"),  # backspace
    ("\x00nul\x7fdel", "\\x00nul\\x7fdel"),
    ("\x0b\x0c\x1c\x1d\x1e", "\\x0b\\x0c\\x1c\\x1d\\x1e"),  # vertical tab, form feed, separators: str.splitlines breaks on them
    ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),  # line / paragraph separator
    ("invoice_\u202egnp.exe", "invoice_\\u202egnp.exe"),  # right-to-left override
    ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),  # isolates
    ("\u202a\u202b\u202c\u202d\u200e\u200f\u061c", "\\u202a\\u202b\\u202c\\u202d\\u200e\\u200f\\u061c"),
    ("ad\u200bmin\ufeff\u2060\u00ad", "ad\\u200bmin\\ufeff\\u2060\\xad"),  # invisible characters
    ("tag\U000e0041\U000e007f", "tag\\U000e0041\\U000e007f"),  # tag characters (invisible ASCII)
    ("bad byte \udcff\udc80", "bad byte \\xff\\x80"),  # surrogateescape'd bytes
    ("lone \ud800", "lone \\ud800"),
    ("Привет, 世界, مرحبا, שלום", "Привет, 世界, مرحبا, שלום"),  # real scripts, RTL included
    ("emoji 👨\u200d👩\u200d👧 and \u200cZWNJ", "emoji 👨\u200d👩\u200d👧 and \u200cZWNJ"),  # joiners kept
    ("price: 89.99 € ✓ \\x1b", "price: 89.99 € ✓ \\x1b"),  # a backslash stays
]


@pytest.mark.parametrize(("raw", "shown"), CASES)
def test_visible(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_none_is_empty() -> None:
    assert visible(None) == ""


def test_one_line_shows_newlines_too() -> None:
    forged = "done\n2026-12-01 10:00:00,000 INFO    runner.scheduler: job 1 (bank) completed"
    assert visible(forged, one_line=True) == forged.replace("\n", "\\n")
    assert "\n" not in visible("a\nb\r\n\x85\u2028", one_line=True)
    assert visible("a\tb", one_line=True) == "a\tb"


def test_visible_name_takes_bytes() -> None:
    assert visible_name(b"report\xff\x1b[31m.pdf") == "report\\xff\\x1b[31m.pdf"
    assert visible_name("a\nb.txt") == "a\\nb.txt"
    assert visible_name("r\u00e9sum\u00e9.pdf") == "résumé.pdf"


def _shown_literally(ch: str) -> bool:
    return visible(ch) == ch


def test_every_control_format_and_separator_character_is_shown() -> None:
    """Checked against this interpreter's Unicode database, so a new format character is noticed."""
    missed = []
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        cat = unicodedata.category(ch)
        if cat == "Cn":
            continue  # unassigned here; the list may already know a later Unicode's format characters
        unsafe = (cat in ("Cc", "Cs", "Zl", "Zp") and ch not in "\n\t") or (cat == "Cf" and ch not in "\u200c\u200d")
        if unsafe == _shown_literally(ch):
            missed.append(f"U+{code:04X} {cat}")
    assert not missed, missed[:20]


def test_what_is_shown_is_printable() -> None:
    for raw, _ in CASES:
        out = visible(raw, one_line=True)
        assert all(c.isprintable() or c in "\t\u200c\u200d" for c in out), out


@pytest.mark.parametrize("value", ["\x1b]0;t\x07", "\x9b2J \u202e x \U000e0041 \udcff", "ok\n\ttab", "Ωμέγα"])
def test_json_safe_keeps_the_value(value: str) -> None:
    for indent in (None, 2):
        dumped = json_safe(json.dumps({"text": value, "list": [value]}, indent=indent, ensure_ascii=False))
        assert json.loads(dumped) == {"text": value, "list": [value]}
        assert visible(dumped) == dumped, "nothing left for a terminal to act on"
