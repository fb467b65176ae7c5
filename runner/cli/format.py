"""How the command line prints: times in a zone, JSON, and what a job wrote, with its control characters
made visible (:func:`runner.text.visible`) so that no job can rewrite the operator's terminal."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..text import json_safe, visible


def fmt_time(value: datetime | None, tz: str) -> str:
    """``value`` in the zone ``tz`` (``-`` for none)."""
    if value is None:
        return "-"
    from ..schedule import zone

    return value.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def print_json(data: Any) -> None:
    """``data`` as indented JSON, its strings safe for a terminal."""
    print(json_safe(json.dumps(data, indent=2, ensure_ascii=False, default=str)))


def cell(value: Any, width: int | None = None) -> str:
    """A value that may hold what a job wrote, as one visible line (cut to ``width``)."""
    text = visible("" if value is None else str(value), one_line=True)
    return text if width is None else text[:width]


def block(text: str | None, indent: str = "  ") -> str:
    """A job's text on a terminal: its control characters shown, every line indented under its heading."""
    return indent + visible(text).rstrip("\n").replace("\n", "\n" + indent)
