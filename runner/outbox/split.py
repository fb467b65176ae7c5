"""Splitting a message's text into parts a channel accepts: Telegram takes at most 4,096 characters,
counted in UTF-16 code units, per message."""

from __future__ import annotations

TEXT_LIMIT = 4096


def utf16_len(text: str) -> int:
    """The length of ``text`` in UTF-16 code units (a character beyond the BMP counts two)."""
    return len(text.encode("utf-16-le")) // 2


def _longest_prefix(line: str, limit: int) -> int:
    """How many characters of ``line`` fit in ``limit`` UTF-16 units (never splitting a character)."""
    cut = limit
    while utf16_len(line[:cut]) > limit:
        cut -= 1
    return cut


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters (UTF-16 units, as Telegram counts),
    on line boundaries where possible; a line longer than ``limit`` is cut."""
    if utf16_len(text) <= limit:
        return [text] if text else []
    parts: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while utf16_len(line) > limit:  # a single overlong line is cut
            cut = _longest_prefix(line, limit)
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:cut])
            line = line[cut:]
        if utf16_len(current + line) > limit:
            parts.append(current)
            current = line
        else:
            current += line
    if current:
        parts.append(current)
    return [p.rstrip("\n") or p for p in parts]
