"""Formatting shared by the routers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from ..schedule import zone
from ..text import visible
from ..threads import ThreadId
from .callbacks import Action, JobButton


def thread_of(chat_id: int) -> ThreadId:
    """The thread of a Telegram chat, parsed once; the handlers pass it to the service as it is."""
    return ThreadId.telegram(chat_id)


def when(value: datetime | None, tz: str) -> str:
    """A time in the user's zone, e.g. '2026-11-28 09:00 CET'."""
    if value is None:
        return "-"
    return value.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


def job_card(row: dict[str, Any], runs: list[dict[str, Any]], tz: str) -> str:
    """One job in detail."""
    lines = [
        f"Job {row['id']}: {row['name']}",
        f"status: {row['status']}{' (paused)' if row.get('paused') else ''}",
        f"due: {when(row['due_time'], tz)}",
        f"repeats: {row['recurrence'] or 'no'}",
        f"limits: {row['timeout_seconds']} s, {row['memory_mb']} MiB",
    ]
    if row.get("allow_hosts"):
        lines.append("network: " + ", ".join(row["allow_hosts"]))
    if runs:
        lines.append("last runs:")
        for r in runs:
            what = visible(r["error_message"], one_line=True) or (
                f"exit {r['exit_code']}" if r["exit_code"] is not None else "")
            lines.append(f"  #{r['id']} {r['status']} {when(r['completed_at'] or r['due_time'], tz)} {what}".rstrip())
    return "\n".join(lines)


def job_buttons(row: dict[str, Any]) -> InlineKeyboardMarkup:
    """Run now / pause or resume / cancel, on a job's card."""
    jid = row["id"]
    pause = ("Resume", Action.RESUME) if row.get("paused") else ("Pause", Action.PAUSE)
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=text, callback_data=JobButton(action=action, job_id=jid).pack())
        for text, action in (("Run now", Action.RUN), pause, ("Cancel", Action.CANCEL))
    ]])


def clip(text: str, limit: int = 3500) -> str:
    """Keep a reply within one Telegram message."""
    return text if len(text) <= limit else "…" + text[-limit:]
