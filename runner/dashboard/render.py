"""Rendering the dashboard's pages: the Jinja2 templates (shipped in the package, autoescape on), the
filters that show a job's text safely, the lateness histogram as inline SVG, and the response headers
every page carries (no script may run: the Content-Security-Policy allows none, and no page needs any)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse

from ..schedule import zone
from ..store.overview import LATENESS_EDGES
from ..text import visible
from .words import duration, recurrence_words

HEADERS = {
    # Nothing but the dashboard's own stylesheet; no script at all, no frames, forms only to itself.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on its own forms
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def shown(text: str | None) -> str:
    """What a job wrote, with every terminal escape and invisible character made visible (``ESC`` as
    ``\\x1b``); the template's autoescape then makes any markup in it plain text."""
    return visible(text)


def one_line(text: str | None) -> str:
    return visible(text, one_line=True)


def when(value: datetime | None, tz: str | ZoneInfo | None = None) -> str:
    """A time in ``tz`` (a job's zone), with the zone's abbreviation: "2026-12-02 15:04:05 CET"."""
    if value is None:
        return "—"
    local = value.astimezone(zone(tz) if isinstance(tz, str) else tz) if tz else value
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def _label(ms: float) -> str:
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


BUCKET_LABELS = [f"< {_label(LATENESS_EDGES[0])}"] + [
    f"{_label(a)}–{_label(b)}" for a, b in zip(LATENESS_EDGES, LATENESS_EDGES[1:], strict=False)
] + [f"≥ {_label(LATENESS_EDGES[-1])}"]


def histogram_svg(counts: list[int], width: int = 560, height: int = 160) -> Markup:
    """The lateness histogram as an inline SVG: one bar per bucket, its count above, its range below
    (every number and label written here, none from a job)."""
    n = max(len(counts), 1)
    top, bottom = 18, 40
    bar_w = (width - 10) / n
    peak = max(counts or [0]) or 1
    parts = [f'<svg class="histogram" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-labelledby="hist-title"><title id="hist-title">Lateness of the runs of the last '
             f'24 hours: {escape(", ".join(f"{c} {lab}" for c, lab in zip(counts, BUCKET_LABELS, strict=False)))}'
             f'</title>']
    for i, count in enumerate(counts):
        h = (height - top - bottom) * count / peak
        x, y = 5 + i * bar_w, height - bottom - h
        parts.append(f'<rect class="bar" x="{x + 2:.1f}" y="{y:.1f}" width="{bar_w - 4:.1f}" height="{h:.1f}"/>')
        parts.append(f'<text class="count" x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle">{count}</text>')
        label = escape(BUCKET_LABELS[i] if i < len(BUCKET_LABELS) else "")
        parts.append(f'<text class="label" x="{x + bar_w / 2:.1f}" y="{height - bottom + 14 + (i % 2) * 13:.1f}" '
                     f'text-anchor="middle">{label}</text>')
    parts.append(f'<line class="axis" x1="5" y1="{height - bottom}" x2="{width - 5}" y2="{height - bottom}"/></svg>')
    return Markup("".join(parts))


def environment() -> Environment:
    env = Environment(loader=PackageLoader("runner.dashboard", "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(shown=shown, one_line=one_line, when=when, duration=duration)
    env.globals.update(recurrence_words=recurrence_words, histogram_svg=histogram_svg)
    return env


class Pages:
    """Renders a template into a response with the dashboard's headers."""

    def __init__(self) -> None:
        self.env = environment()

    def render(self, template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=http_status, headers=HEADERS)
