"""``run_script``: run a script once in the real sandbox, through the runner's HTTP API, and return what
the user would see (an :class:`Outcome`). A bad script gives an outcome, never an exception."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client import ApiError, Client, Job, Message

DONE = ("completed", "failed", "cancelled")
POLL = 0.2  # seconds between looks at a run that is still going
MARGIN = 60.0  # beyond the script's own time limit: the container's start and the result's recording


@dataclass
class Outcome:
    """What one run of a script gave, as its user would see it."""

    status: str  # "completed" or "failed"
    reason: str | None = None  # why it failed (the runner's words), None when it completed
    exit_code: int | None = None
    output: str = ""  # the tail of what it printed
    message: str | None = None  # the text it would have sent, or None
    # the message's attachments (name -> bytes), as the kit's webhook received them (runner.testing.hooks)
    attachments: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # what it left in jobs/ (not its inputs)
    output_json: Any = None  # its <name>_output.json, parsed, or None
    job_id: int | None = None
    duration_ms: int | None = None


def read_source(source_or_path: str | Path) -> str:
    """The script's text: a Path, or a string naming an existing .py file, is read; else it is the source."""
    if isinstance(source_or_path, Path):
        return source_or_path.read_text()
    text = str(source_or_path)
    if text.endswith(".py") and "\n" not in text and Path(text).is_file():
        return Path(text).read_text()
    return text


def _wait_done(client: Client, job_id: int, deadline: float) -> Job:
    job = client.get_job(job_id)
    while job.status not in DONE and time.monotonic() < deadline:
        time.sleep(POLL)  # polling the run's status, not a guess at how long it takes
        job = client.get_job(job_id)
    return job


def _message_of(client: Client, job_id: int, after: int, deadline: float) -> Message | None:
    """The run's message (kind "message"), waiting for it until ``deadline`` when the run queued one."""
    while True:
        for m in client.messages(after=after, wait=min(5.0, max(0.0, deadline - time.monotonic()))):
            if m.job_id == job_id and m.kind == "message":
                return m
            after = max(after, m.id)
        if time.monotonic() >= deadline:
            return None


def _last_message_id(client: Client) -> int:
    last, page = 0, client.messages(after=0)
    while page:
        last = page[-1].id
        page = client.messages(after=last)
    return last


def _left_files(client: Client, name: str, inputs: Mapping[str, bytes]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for fname in client.list_files():
        if fname == f"{name}.py":
            continue
        try:
            data = client.read_file(fname)
        except ApiError:
            continue  # larger than the API hands out (1 MiB), or gone since the listing: not readable
        if inputs.get(fname) != data:
            files[fname] = data
    return files


def run_script(client: Client, source_or_path: str | Path, name: str = "job", *,
               files: Mapping[str, bytes | str] | None = None, allow_hosts: Sequence[str] = (),
               timeout: int | None = None, memory_mb: int | None = None,
               attachments_of: Callable[[int], dict[str, bytes]] | None = None, **limits: Any) -> Outcome:
    """Write ``files`` to the thread's jobs/, schedule the script "now", wait for the run and read its
    run, message and files. ``timeout`` is the run's time limit in seconds (the operator's default when
    None); ``limits`` are the API's other per-job fields (``cpus``, ``pids_limit``, ...)."""
    inputs = {k: v.encode() if isinstance(v, str) else v for k, v in (files or {}).items()}
    try:
        source = read_source(source_or_path)
        for fname, data in inputs.items():
            client.write_file(fname, data)
        after = _last_message_id(client)
        job = client.schedule_job(name, source, timeout_seconds=timeout, memory_mb=memory_mb,
                                  allow_hosts=allow_hosts, **limits)
    except ApiError as exc:
        return Outcome(status="failed", reason=exc.detail)
    except OSError as exc:
        return Outcome(status="failed", reason=f"could not read the script {source_or_path}: {exc}")
    deadline = time.monotonic() + (timeout or client.limits().get("timeout_seconds") or 300) + MARGIN
    job = _wait_done(client, job.id, deadline)
    if job.status not in DONE:
        return Outcome(status="failed", reason=f"the run did not finish within its time limit plus {MARGIN:.0f} s "
                                               "(is the runner's scheduler running? see get_logs())", job_id=job.id)
    runs = client.runs(job.id, limit=1)
    run = runs[0] if runs else None
    message = _message_of(client, job.id, after, time.monotonic() + 10) if run and run.message_queued else None
    left = _left_files(client, name, inputs)
    output_json = None
    if f"{name}_output.json" in left:
        try:
            output_json = json.loads(left[f"{name}_output.json"])
        except ValueError:
            output_json = None
    return Outcome(
        status="completed" if job.status == "completed" else "failed",
        reason=(run.reason if run else None) or (job.error_message if job.status != "completed" else None),
        exit_code=run.exit_code if run else job.exit_code, output=(run.output if run else None) or "",
        message=message.text if message else None,
        attachments=attachments_of(message.id) if message and attachments_of else {},
        files=left, output_json=output_json, job_id=job.id, duration_ms=job.duration_ms)
