"""The JSON views of jobs every interface shows (``runner jobs --json``, the agent's tools, the HTTP API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..schedule import AFTER_SENTINEL

# The columns `jobs --json` shows: the seed's names first, then the runner's.
PUBLIC_COLUMNS = (
    "id", "user_id", "thread_id", "name", "status", "due_time", "script_path", "recurrence",
    "created_at", "started_at", "completed_at", "error_message", "timezone", "cron", "attempts",
    "exit_code", "duration_ms", "timeout_seconds", "memory_mb", "cpus", "pids_limit", "allow_hosts", "paused",
    "after_job", "grace_seconds", "overlap", "retries", "retry_delay_seconds", "missed_runs", "skipped_note",
    "series_id", "script_sha256",
)


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A job row as JSON-ready data (ISO 8601 times with their offset)."""
    out: dict[str, Any] = {}
    for col in PUBLIC_COLUMNS:
        v = row.get(col)
        if col == "due_time" and row.get("after_job") and v is not None and v >= AFTER_SENTINEL:
            v = None  # waits for another job, not for a time
        elif isinstance(v, datetime):
            v = v.isoformat()
        elif col == "series_id" and v is not None:
            v = str(v)
        out[col] = v
    return out


def logs_view(row: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's status, exit code, reason, output tail and the messages it queued."""
    return {
        "id": row["id"], "name": row["name"], "status": row["status"], "exit_code": row["exit_code"],
        "error_message": row["error_message"], "duration_ms": row["duration_ms"],
        "output_tail": row["output_tail"], "output_truncated": row["output_truncated"],
        "messages": [{"id": m["id"], "kind": m["kind"], "status": m["status"], "text": m["text"],
                      "error": m["last_error"]} for m in messages],
    }
