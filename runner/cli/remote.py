"""The command line against a remote runner: with ``runner --url https://… --token …`` (or ``RUNNER_URL``
and ``RUNNER_TOKEN``) the person's and agent's commands go through the typed client
(:mod:`runner.client`) instead of the database, and print what the local commands print (the ``show_*``
functions of :mod:`.jobs`). A refusal of the API is its problem's ``detail``, the same sentence the local
command would say, on one line, with the same exit code.

The thread is the token's own for a thread token; an admin token names one with ``--thread``. The token
is never printed: not in an error, not in a log line. Given as ``--token`` it shows in ``ps`` (every
process's arguments are public on a host), so ``RUNNER_TOKEN`` is the way to give it."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import tokens
from ..errors import ConfigError, RunnerError, ValidationError
from ..settings import Settings
from . import files as file_commands
from .format import print_json
from .jobs import (
    RunLine,
    show_approved,
    show_cancelled,
    show_job,
    show_jobs,
    show_logs,
    show_scheduled,
    show_updated,
)

if TYPE_CHECKING:
    from ..client import Client, Job

LOCAL_ONLY = {"up": "runs the scheduler beside the database", "migrate": "changes the database's schema",
              "doctor": "checks the engine, the database and the data directory of this host",
              "image": "builds images on this host's engine", "token": "keeps the tokens in the database",
              "files migrate": "copies between this host's data directory and the database"}
NO_THREAD = "-"  # the thread of a client that asks nothing of a thread (runner next): no /v1/me is asked
SCRIPT_READ_CAP = 4 * 1024 * 1024  # bytes of a script read to send; the runner's own limit is checked there


class RemoteRefusal(RunnerError):
    """The remote runner refused a command (or could not be reached): the sentence it said."""


@dataclass(frozen=True)
class Remote:
    """Where the remote runner is and the token to give it (``token_from`` names where it came from)."""

    url: str
    token: str = field(repr=False)
    token_from: str
    url_from: str


def remote_of(args: argparse.Namespace, environ: Mapping[str, str]) -> Remote | None:
    """The remote runner the command line is to talk to, or None for the local mode (no URL given)."""
    url = args.remote_url or environ.get("RUNNER_URL") or ""
    url_from = "--url" if args.remote_url else "RUNNER_URL"
    token = args.remote_token or environ.get("RUNNER_TOKEN") or ""
    token_from = "--token" if args.remote_token else "RUNNER_TOKEN"
    if not url:
        if args.remote_token:
            raise ConfigError("--token is for a remote runner: give its address too, with --url https://… or "
                              "RUNNER_URL")
        return None
    _check_url(url, url_from)
    if not token:
        raise ConfigError(f"the runner at {url} needs a token: set RUNNER_TOKEN (better than --token, which "
                          "any user of this host sees in ps) to one from `runner token create`")
    if tokens.parse(token) is None:  # never echoed: it may be a secret pasted wrong
        raise ConfigError(f"the token given by {token_from} is not a runner token (rnr_<id>_<secret>, as "
                          "`runner token create` prints it): copy it again, whole")
    return Remote(url=url.rstrip("/"), token=token, token_from=token_from, url_from=url_from)


def _check_url(url: str, url_from: str) -> None:
    shown = f"{url_from} {url!r}" if "@" not in url else f"the URL given by {url_from}"  # "@": maybe a password
    try:
        parts = urlsplit(url)
        fine = parts.scheme in ("http", "https") and bool(parts.hostname) and not (parts.query or parts.fragment)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        fine = False
    if fine and (parts.username is not None or parts.password is not None):
        raise ConfigError(f"{shown} holds a user name or password: give it without them (the token authenticates)")
    if not fine:
        raise ConfigError(f"{shown} is not the address of a runner: give it as https://host[:port] "
                          "(the runner's RUNNER_HTTP, or the reverse proxy in front of it)")


def run(args: argparse.Namespace, remote: Remote, settings: Settings) -> int:
    """Run the parsed command against ``remote``; the commands with nothing remote about them (tools,
    health) run as they do locally."""
    verb = "files migrate" if args.command == "files" and args.files_command == "migrate" else args.command
    if verb in LOCAL_ONLY:
        raise ConfigError(f"`{verb}` {LOCAL_ONLY[verb]}: it needs the database, not a URL; "
                          f"run it on the runner's host without {remote.url_from}")
    command = COMMANDS.get(args.command)
    if command is None:
        return int(args.func(args, settings))
    if not settings.log_level == "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    from ..client import ApiError

    try:
        with _client(args, remote) as client:
            return command(args, client)
    except ApiError as exc:
        raise RemoteRefusal(_sentence(exc, remote)) from None


@contextmanager
def _client(args: argparse.Namespace, remote: Remote) -> Iterator[Client]:
    from ..client import ApiError, Client

    thread = getattr(args, "thread", None) or (NO_THREAD if args.command == "next" else None)
    try:
        client = Client(remote.url, remote.token, thread=thread)
    except ApiError as exc:
        if exc.status == 400 and thread is None:  # an admin token, which reaches every thread
            raise ValidationError("this token is an admin token, which reaches every thread: name one with "
                                  "--thread THREAD (e.g. --thread telegram:42)") from None
        raise
    with client:
        yield client


def _sentence(exc: Any, remote: Remote) -> str:
    if exc.status == 401:
        return f"{exc.detail} (the token given by {remote.token_from})"
    return str(exc.detail)


# --- the commands -------------------------------------------------------------------------------------


def _row(job: Job) -> dict[str, Any]:
    """A job of the API as the dict the ``show_*`` functions print."""
    return job.model_dump()


def _show(job: Job, args: argparse.Namespace, show: Callable[[dict[str, Any]], None]) -> int:
    if args.json:
        print_json(job.model_dump(mode="json"))
    else:
        show(_row(job))
    return 0


def read_script(path: str) -> str:
    """A script to send: the file ``path`` of this host (``-``: standard input), as text."""
    from ..service.scripts import read_script_file

    if path == "-":
        return sys.stdin.read()
    data = read_script_file(path, SCRIPT_READ_CAP)
    if len(data) > SCRIPT_READ_CAP:  # never sent cut short
        raise ValidationError(f"{path} is over {SCRIPT_READ_CAP // 1024 // 1024} MiB: too long for a job script")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{path} is not UTF-8 text: save it as UTF-8") from None


def cmd_schedule(args: argparse.Namespace, client: Client) -> int:
    if args.user:
        raise ValidationError("--user is recorded only beside the database: through the API a job belongs to the "
                              "token's thread; leave --user out")
    if args.after and args.at:
        raise ValidationError("--after starts a job when another completes: give it no --at or --every")
    job = client.schedule_job(
        args.name, read_script(args.script), when=args.at or "now", every=args.every, tz=args.tz,
        timeout_seconds=args.timeout, memory_mb=args.memory, allow_hosts=args.allow_host or (), after=args.after,
        cpus=args.cpus, pids_limit=args.pids, grace_seconds=args.grace, overlap=args.overlap,
        retries=args.retries, retry_delay_seconds=args.retry_delay)
    return _show(job, args, show_scheduled)


def action(method: str, said: str) -> Callable[[argparse.Namespace, Client], int]:
    """``run``, ``pause`` or ``resume``: the client's ``method`` on one job, saying ``said``."""
    def cmd(args: argparse.Namespace, client: Client) -> int:
        job = getattr(client, method)(args.job_id)
        return _show(job, args, lambda row: print(f"job {row['id']} ({row['name']}) {said}"))
    return cmd


def cmd_jobs(args: argparse.Namespace, client: Client) -> int:
    from ..statuses import STATUSES

    if args.status and args.status not in STATUSES:  # the local mode's sentence, before asking
        raise ValidationError(f"status {args.status!r} is not one of {', '.join(STATUSES)}")
    jobs = client.list_jobs(status=args.status, limit=args.limit)
    if args.json:
        print_json([j.model_dump(mode="json") for j in jobs])
    else:
        show_jobs([_row(j) for j in jobs], client.thread)
    return 0


def _fields(job: Job) -> dict[str, Any]:
    """A job's fields as the local ``runner get`` prints them (in its order, the API's own after them):
    times in ISO 8601, the next run times joined."""
    from ..service import PUBLIC_COLUMNS

    data = job.model_dump()
    out: dict[str, Any] = {}
    for key in sorted(data, key=lambda k: PUBLIC_COLUMNS.index(k) if k in PUBLIC_COLUMNS else len(PUBLIC_COLUMNS)):
        value = data[key]
        if isinstance(value, datetime):
            value = value.isoformat()
        elif key == "next_runs":
            value = ", ".join(t.isoformat() for t in value)
        out[key] = value
    return out


def cmd_get(args: argparse.Namespace, client: Client) -> int:
    job = client.get_job(args.job_id)
    runs = client.runs(args.job_id, limit=args.runs)
    if args.json:
        print_json({"job": job.model_dump(mode="json"), "runs": [r.model_dump(mode="json") for r in runs]})
        return 0
    lines: list[RunLine] = [(r.id, r.status, r.completed_at or r.due_time, job.timezone, r.reason) for r in runs]
    show_job(_fields(job), lines)
    return 0


_UPDATE_FIELDS = {"at": "when", "every": "every", "tz": "tz", "timeout": "timeout_seconds", "memory": "memory_mb",
                  "cpus": "cpus", "pids": "pids_limit", "allow_host": "allow_hosts", "grace": "grace_seconds",
                  "overlap": "overlap", "retries": "retries", "retry_delay": "retry_delay_seconds"}


def cmd_update(args: argparse.Namespace, client: Client) -> int:
    from .. import pinning

    if args.approve is not None and args.script is None:
        raise ValidationError("approving the script now in the runner's jobs/<name>.py needs its database: "
                              "through the API, send the version to run instead, with --script FILE")
    fields = {api: getattr(args, cli) for cli, api in _UPDATE_FIELDS.items() if getattr(args, cli) is not None}
    source = read_script(args.script) if args.script is not None else None
    if source is not None:
        fields["script"] = source
    job = client.update(args.job_id, **fields)
    if source is not None and not args.json:
        show_approved(f"jobs/{job.name}.py", pinning.digest(source.encode("utf-8")), _row(job))
        if len(fields) == 1:
            return 0
    return _show(job, args, show_updated)


def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    return _show(client.cancel(args.job_id), args, show_cancelled)


def _messages_of(client: Client, run_id: int) -> list[dict[str, Any]]:
    """The messages a run queued, from the thread's feed (paged through by its cursor)."""
    found, after = [], 0
    while page := client.messages(after=after):
        found += [{"id": m.id, "kind": m.kind, "status": m.status, "text": m.text, "error": None}
                  for m in page if m.job_id == run_id]
        after = page[-1].id
    return found


def cmd_logs(args: argparse.Namespace, client: Client) -> int:
    job = client.get_job(args.job_id)
    run = next((r for r in client.runs(args.job_id, limit=100) if r.id == job.id), None)
    said = run is None or run.message_queued or run.status == "failed"  # else no message to look for
    info = {"id": job.id, "name": job.name, "status": job.status, "exit_code": job.exit_code,
            "error_message": job.error_message, "duration_ms": job.duration_ms,
            "output_tail": run.output if run else None, "output_truncated": bool(run and run.output_truncated),
            "messages": _messages_of(client, job.id) if said else []}
    if args.json:
        print_json(info)
    else:
        show_logs(info)
    return 0


def cmd_next(args: argparse.Namespace, client: Client) -> int:
    from ..errors import ScheduleError
    from ..schedule import parse_recurrence, zone

    tz = zone(args.tz) if args.tz else None  # a one-off time comes back in UTC: shown in the zone asked for
    times = [(t.astimezone(tz) if tz else t).isoformat() for t in client.preview(args.schedule, tz=args.tz, n=args.n)]
    if not args.json:
        print("\n".join(times))
        return 0
    try:
        rec = parse_recurrence(args.schedule)
        text, cron = rec.text, rec.cron
    except ScheduleError:  # a one-off time, which the runner previews too
        text, cron = args.schedule, None
    print_json({"schedule": text, "cron": cron, "timezone": args.tz, "next": times})
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Client], int]] = {
    "schedule": cmd_schedule, "jobs": cmd_jobs, "get": cmd_get, "update": cmd_update, "cancel": cmd_cancel,
    "logs": cmd_logs, "next": cmd_next, "run": action("run_now", "will run now"),
    "pause": action("pause", "is paused"), "resume": action("resume", "is resumed"),
    "files": file_commands.remote,
}
