"""The job commands of the command line: schedule, get, update, run/pause/resume, jobs, cancel, logs,
next and tools. Each is a thin adapter over the service layer (:mod:`runner.service`); what they print
is in the ``show_*`` functions, which the remote mode (:mod:`.remote`) prints with too."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..settings import Settings
from .format import block, cell, fmt_time, print_json

if TYPE_CHECKING:
    from ..service import Jobs

Command = Callable[[argparse.Namespace, Settings], int]


def open_jobs(settings: Settings, *, apply_migrations: bool = False) -> Jobs:
    """The job store. Only ``runner up`` migrates it; other commands refuse a schema not this runner's."""
    from ..service import connect

    return connect(settings, apply_migrations=apply_migrations)


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    from ..service import Limits, Policy, public_row

    text = sys.stdin.read() if args.script == "-" else None
    with open_jobs(settings) as jobs:
        row = jobs.schedule_job(
            thread_id=args.thread, name=args.name, script=None if text is not None else args.script,
            script_text=text, at=args.at, every=args.every, after=args.after,
            policy=Policy(grace_seconds=args.grace, overlap=args.overlap, retries=args.retries,
                          retry_delay_seconds=args.retry_delay),
            tz=args.tz, user_id=args.user or "",
            limits=Limits(timeout_seconds=args.timeout, memory_mb=args.memory, cpus=args.cpus, pids_limit=args.pids),
            allow_hosts=args.allow_host or (),
        )
    if args.json:
        print_json(public_row(row))
    else:
        show_scheduled(row)
    return 0


def show_scheduled(row: dict[str, Any]) -> None:
    if row["after_job"]:
        print(f"scheduled job {row['id']} ({row['name']}) to run each time {row['after_job']} completes")
    else:
        rec = f", then {row['recurrence']}" if row["recurrence"] else ""
        print(f"scheduled job {row['id']} ({row['name']}) for {fmt_time(row['due_time'], row['timezone'])}{rec}")


def job_action(method: str, said: str) -> Command:
    """The command that calls the service's ``method`` on one job and says ``said`` (run, pause, resume)."""
    def cmd(args: argparse.Namespace, settings: Settings) -> int:
        from ..service import public_row

        with open_jobs(settings) as jobs:
            row = getattr(jobs, method)(args.job_id, thread_id=args.thread)
        if args.json:
            print_json(public_row(row))
        else:
            print(f"job {row['id']} ({row['name']}) {said}")
        return 0
    return cmd


def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    from ..service import public_row

    with open_jobs(settings) as jobs:
        row = jobs.get_job(args.job_id, thread_id=args.thread)
        runs = jobs.job_runs(args.job_id, thread_id=args.thread, limit=args.runs)
    if args.json:
        print_json({"job": public_row(row), "runs": [public_row(r) for r in runs]})
        return 0
    show_job(public_row(row), [(r["id"], r["status"], r["completed_at"] or r["due_time"], r["timezone"],
                                r["error_message"]) for r in runs])
    return 0


RunLine = tuple[int, str, datetime | None, str, str | None]  # id, status, time, its zone, reason


def show_job(fields: dict[str, Any], runs: list[RunLine]) -> None:
    """A job's fields (the empty ones left out), then its runs."""
    for key, value in fields.items():
        if value not in (None, [], ""):
            print(f"{key:>20}: {cell(value)}")
    print("runs:")
    for run_id, status, when, tz, reason in runs:
        print(f"  {run_id:>6} {status:<10} {fmt_time(when, tz)} {cell(reason)}")


_SCHEDULE_OPTIONS = ("at", "every", "tz", "timeout", "memory", "cpus", "pids", "allow_host", "grace", "overlap",
                     "retries", "retry_delay")


def _approve(jobs: Jobs, args: argparse.Namespace) -> dict[str, Any]:
    text = sys.stdin.read() if args.script == "-" else None
    done = jobs.approve_script(args.job_id, thread_id=args.thread, sha256=args.approve or None,
                               script=args.script if args.script not in (None, "-") else None, script_text=text)
    if not args.json:
        show_approved(done["script_path"], done["sha256"], done["job"])
    job: dict[str, Any] = done["job"]
    return job


def show_approved(script_path: str, sha256: str, row: dict[str, Any]) -> None:
    print(f"approved {script_path} (sha256 {sha256}) for job {row['id']} ({row['name']}): its runs run this version")


def cmd_update(args: argparse.Namespace, settings: Settings) -> int:
    from ..service import Limits, Policy, public_row

    approving = args.approve is not None or args.script is not None
    with open_jobs(settings) as jobs:
        row = _approve(jobs, args) if approving else None
        if row is None or any(getattr(args, k) is not None for k in _SCHEDULE_OPTIONS):
            row = jobs.update_job(
                args.job_id, thread_id=args.thread, at=args.at, every=args.every, tz=args.tz,
                limits=Limits(timeout_seconds=args.timeout, memory_mb=args.memory, cpus=args.cpus,
                              pids_limit=args.pids),
                allow_hosts=args.allow_host, policy=Policy(grace_seconds=args.grace, overlap=args.overlap,
                                                           retries=args.retries, retry_delay_seconds=args.retry_delay))
        elif not args.json:
            return 0
    if args.json:
        print_json(public_row(row))
    else:
        show_updated(row)
    return 0


def show_updated(row: dict[str, Any]) -> None:
    print(f"job {row['id']} ({row['name']}) updated: next {fmt_time(row['due_time'], row['timezone'])}"
          + (f", then {row['recurrence']}" if row["recurrence"] else ""))


def cmd_tools(args: argparse.Namespace, settings: Settings) -> int:
    from ..agent import system_prompt, tool_definitions

    if args.prompt:
        print(system_prompt(settings))
    else:
        print_json(tool_definitions(args.style))
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from ..service import public_row

    with open_jobs(settings) as jobs:
        rows = jobs.list_jobs(thread_id=args.thread, status=args.status, limit=args.limit)
    if args.json:
        print_json([public_row(r) for r in rows])
    else:
        show_jobs(rows, args.thread)
    return 0


def show_jobs(rows: list[dict[str, Any]], thread: str | None) -> None:
    """The job table (one row per run), or that there are none (in ``thread``)."""
    if not rows:
        print("no jobs" + (f" in thread {thread}" if thread else ""))
        return
    header = f"{'ID':>6}  {'NAME':<20} {'STATUS':<10} {'DUE':<25} {'RECURRENCE':<16} {'THREAD':<16} RESULT"
    print(header)
    for r in rows:
        result = r["error_message"] or (f"exit {r['exit_code']}, {r['duration_ms']} ms" if r["exit_code"] is not None else "")
        print(f"{r['id']:>6}  {cell(r['name'], 20):<20} {r['status']:<10} {fmt_time(r['due_time'], r['timezone']):<25} "
              f"{cell(r['recurrence'] or '-', 16):<16} {cell(r['thread_id'], 16):<16} {cell(result)}")


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    with open_jobs(settings) as jobs:
        row = jobs.cancel_job(args.job_id, thread_id=args.thread)
    if args.json:
        from ..service import public_row

        print_json(public_row(row))
    else:
        show_cancelled(row)
    return 0


def show_cancelled(row: dict[str, Any]) -> None:
    if row["status"] == "cancelled":
        print(f"job {row['id']} ({row['name']}) cancelled")
    else:
        print(f"job {row['id']} ({row['name']}) is running; it will finish and not recur")


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    with open_jobs(settings) as jobs:
        info = jobs.get_job_logs(args.job_id, thread_id=args.thread)
    if args.json:
        print_json(info)
    else:
        show_logs(info)
    return 0


def show_logs(info: dict[str, Any]) -> None:
    """A run (the shape of ``Jobs.get_job_logs``): status, reason, its messages, its output tail."""
    print(f"job {info['id']} ({cell(info['name'])}): {info['status']}"
          + (f", exit code {info['exit_code']}" if info["exit_code"] is not None else "")
          + (f", {info['duration_ms']} ms" if info["duration_ms"] is not None else ""))
    if info["error_message"]:
        print(f"reason: {cell(info['error_message'])}")
    for m in info["messages"]:
        print(f"message {m['id']} ({m['kind']}, {m['status']}{': ' + cell(m['error']) if m['error'] else ''}):")
        print(block(m["text"]))
    print("output" + (" (truncated, last part shown)" if info["output_truncated"] else "") + ":")
    print(block(info["output_tail"]) if info["output_tail"] else "  (none)")


def cmd_next(args: argparse.Namespace, settings: Settings) -> int:
    from ..schedule import parse_recurrence, zone

    tz = zone(args.tz or settings.default_timezone)
    rec = parse_recurrence(args.schedule)
    times = [t.isoformat() for t in rec.upcoming(datetime.now(UTC), tz, args.n)]
    if args.json:
        print_json({"schedule": rec.text, "cron": rec.cron, "timezone": tz.key, "next": times})
    else:
        print("\n".join(times))
    return 0
