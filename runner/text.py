"""Text a job wrote, made safe to show a person.

A job controls its output, its message, its exit reason's quoted line and its attachments' names. Shown
raw on a terminal, an escape sequence in any of them can retitle the window, clear the screen, plant a
link (OSC 8) or rewrite what the operator sees; a bidi override can make text read differently from
what it is, and a newline can forge a log line or a delivery header. :func:`visible` replaces every
such character with an escape that shows it (``ESC`` becomes the four characters ``\\x1b``); it is
applied at each human-facing output, never to what is stored.

What is replaced: every C0 control but newline and tab (so carriage return, backspace, BEL, ESC),
DEL, every C1 control (U+0080-U+009F, which include the one-byte CSI and OSC), the line and paragraph
separators, lone surrogates (bytes that were not UTF-8, decoded with ``surrogateescape``) and every
Unicode format character (category Cf: the bidi embeddings, overrides, isolates and marks, zero-width
spaces, the BOM, invisible operators, tag characters) except the zero-width joiner and non-joiner,
which emoji sequences and several scripts need and which cannot reorder or hide text.

A backslash is left as it is: a job can write the four characters ``\\x1b`` itself, which then look like
an escaped ESC, but can never make the terminal act on them.
"""

from __future__ import annotations

import re

# The format characters (Cf) of Unicode 15.1, less U+200C/U+200D; tests/unit/test_text.py checks this
# list against the running interpreter's unicodedata.
_FORMAT = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f"
           "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
           "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
           "\U000e0001\U000e0020-\U000e007f")
_OTHER = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
_UNSAFE = re.compile(f"[{_OTHER}{_FORMAT}]")
_UNSAFE_LINE = re.compile(f"[\n{_OTHER}{_FORMAT}]")
_NAMED = {"\r": "\\r", "\n": "\\n"}


def _shown(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): show the byte
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str | None, *, one_line: bool = False) -> str:
    """``text`` with every character that could act on a terminal or disguise text replaced by an
    escape that shows it. Newlines and tabs are kept, unless ``one_line``: then a newline is shown as
    ``\\n`` too, so the result is one line (a log event, a table cell)."""
    if not text:
        return ""
    return (_UNSAFE_LINE if one_line else _UNSAFE).sub(_shown, text)


def visible_name(name: str | bytes) -> str:
    """A file name a job chose, as one visible line: bytes that are not UTF-8 are shown as ``\\xNN``."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "surrogateescape")
    return visible(name, one_line=True)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON spells a character beyond the BMP as a UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_safe(dumped: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with the same characters :func:`visible`
    replaces written as ``\\uXXXX`` escapes instead: the same JSON value, safe on a terminal. The
    newlines of indented JSON are left alone (``json.dumps`` already escapes those inside strings)."""
    return _UNSAFE.sub(_json_escape, dumped)
