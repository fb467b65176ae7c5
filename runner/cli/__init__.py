"""The ``runner`` command line. Every failure is one line on stderr and a non-zero exit, never a traceback.

The package holds the parser and :func:`main` (here), the job commands (:mod:`.jobs`), the files of a
thread (:mod:`.files`), the operator's commands, ``runner up`` among them (:mod:`.ops`), the tokens
(:mod:`.tokens`), how they print (:mod:`.format`), and the same job commands against a remote runner
through its HTTP API (:mod:`.remote`: ``runner --url … …`` or ``RUNNER_URL``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..errors import RunnerError
from ..logsetup import RedactingFilter, setup_logging
from ..settings import DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, Settings
from ..text import visible
from . import files as file_commands
from . import remote as remote_mode
from . import tokens as token_commands
from .jobs import (
    cmd_cancel,
    cmd_get,
    cmd_jobs,
    cmd_logs,
    cmd_next,
    cmd_schedule,
    cmd_tools,
    cmd_update,
    job_action,
)
from .ops import cmd_doctor, cmd_health, cmd_image_build, cmd_image_wheels, cmd_migrate, cmd_up

log = logging.getLogger("runner")

__all__ = ["build_parser", "main"]


# --- parser -----------------------------------------------------------------------------------------


def _policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retries", type=int, help=f"retry a failed run this often, with backoff (default {DEFAULT_RETRIES})")
    p.add_argument("--retry-delay", type=int,
                   help=f"seconds before the first retry, doubled each time (default {DEFAULT_RETRY_DELAY})")
    p.add_argument("--grace", type=int,
                   help=f"run a missed run if less than this many seconds late (default {Settings.grace_seconds})")
    p.add_argument("--overlap", choices=["skip", "queue"], help="when a run is still going at the next time")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, as argparse does, without the usage dump
        self.exit(2, f"runner: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = _Parser(prog="runner", description="Run scheduled Python job scripts in locked-down containers.")
    p.add_argument("--version", action="version", version=f"runner {__version__}")
    p.add_argument("--url", dest="remote_url", metavar="URL",
                   help="a remote runner's API (default RUNNER_URL): the job and file commands go through it, "
                        "not the database")
    p.add_argument("--token", dest="remote_token", metavar="TOKEN",
                   help="its token (default RUNNER_TOKEN; prefer that: an argument shows in ps)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    up = sub.add_parser("up", help="run the scheduler (and message delivery) until Ctrl-C")
    up.add_argument("--burst", action="store_true", help="run everything due now, deliver messages, exit")
    up.add_argument("--concurrency", type=int, help="jobs at once (default RUNNER_CONCURRENCY or 4)")
    up.add_argument("--no-build", action="store_true", help="fail instead of building a missing job image")
    up.add_argument("--http", metavar="HOST:PORT", help="serve /healthz and /metrics (default RUNNER_HTTP; off)")
    up.set_defaults(func=cmd_up)

    mg = sub.add_parser("migrate", help="apply database migrations")
    mg.set_defaults(func=cmd_migrate)

    sc = sub.add_parser("schedule", help="save a script into a thread's jobs/ and schedule it")
    sc.add_argument("script", help="path of the .py file to schedule ('-': read it from standard input)")
    sc.add_argument("--thread", help="thread id, e.g. telegram:42 (with --url: only for an admin token)")
    sc.add_argument("--name", required=True, help="job name: [a-z0-9_-]{1,64}")
    sc.add_argument("--at", help="first run: 'now' (default), 'in 5 minutes', 'tomorrow 9am', ISO 8601")
    sc.add_argument("--every", help="recurrence: 'hourly', 'daily 9am', 'weekly', a cron line")
    sc.add_argument("--tz", help="IANA time zone (default: the thread's, else RUNNER_TIMEZONE)")
    sc.add_argument("--timeout", type=int, help=f"seconds before the job is killed (default {Settings.timeout_seconds})")
    sc.add_argument("--memory", type=int, help=f"memory limit in MiB (default {Settings.memory_mb})")
    sc.add_argument("--cpus", type=float, help=f"CPU limit (default {Settings.cpus:g})")
    sc.add_argument("--pids", type=int, help=f"process limit (default {Settings.pids_limit})")
    sc.add_argument("--allow-host", action="append", metavar="HOST",
                    help="grant HTTP(S) to this host name through the egress proxy (repeat; '*.example.com' allowed)")
    sc.add_argument("--after", metavar="JOB", help="run each time this job of the thread completes successfully")
    sc.add_argument("--user", help="user id to record with the job")
    _policy_args(sc)
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=cmd_schedule)

    for name, method, said, text in (("run", "run_job_now", "will run now", "run a job now"),
                                     ("pause", "pause_job", "is paused", "pause a pending job"),
                                     ("resume", "resume_job", "is resumed", "resume a paused job")):
        ap = sub.add_parser(name, help=text)
        ap.add_argument("job_id", type=int)
        ap.add_argument("--thread", help="refuse unless the job belongs to this thread")
        ap.add_argument("--json", action="store_true")
        ap.set_defaults(func=job_action(method, said))

    gt = sub.add_parser("get", help="one job in detail, with its last runs")
    gt.add_argument("job_id", type=int)
    gt.add_argument("--thread")
    gt.add_argument("--runs", type=int, default=5)
    gt.add_argument("--json", action="store_true")
    gt.set_defaults(func=cmd_get)

    ud = sub.add_parser("update", help="change a job's schedule, limits, grant or policies (history is kept)")
    ud.add_argument("job_id", type=int)
    ud.add_argument("--thread")
    ud.add_argument("--at", help="new time of the next run")
    ud.add_argument("--every", help="new recurrence ('' makes it one-off)")
    ud.add_argument("--tz")
    ud.add_argument("--timeout", type=int)
    ud.add_argument("--memory", type=int)
    ud.add_argument("--cpus", type=float)
    ud.add_argument("--pids", type=int)
    ud.add_argument("--allow-host", action="append", metavar="HOST")
    ud.add_argument("--script", metavar="FILE",
                    help="a new version of the script ('-': standard input): checked, saved as jobs/<name>.py, approved")
    ud.add_argument("--approve", nargs="?", const="", metavar="SHA256",
                    help="approve the script now in jobs/<name>.py (a job runs only its approved script); give the "
                         "sha256 a refusal showed to approve exactly that version")
    _policy_args(ud)
    ud.add_argument("--json", action="store_true")
    ud.set_defaults(func=cmd_update)

    tl = sub.add_parser("tools", help="the agent's tool definitions (JSON Schema) or its system prompt text")
    tl.add_argument("--style", choices=["anthropic", "openai"], default="anthropic")
    tl.add_argument("--prompt", action="store_true", help="print the system prompt text instead")
    tl.set_defaults(func=cmd_tools)

    jb = sub.add_parser("jobs", help="list jobs (one row per run)")
    jb.add_argument("--thread", help="only this thread")
    jb.add_argument("--status", help="only this status")
    jb.add_argument("--limit", type=int, default=200)
    jb.add_argument("--json", action="store_true")
    jb.set_defaults(func=cmd_jobs)

    cn = sub.add_parser("cancel", help="cancel a pending job (a running one finishes and does not recur)")
    cn.add_argument("job_id", type=int)
    cn.add_argument("--thread", help="refuse unless the job belongs to this thread")
    cn.add_argument("--json", action="store_true")
    cn.set_defaults(func=cmd_cancel)

    lg = sub.add_parser("logs", help="a run's status, reason, messages and output tail")
    lg.add_argument("job_id", type=int)
    lg.add_argument("--thread", help="refuse unless the job belongs to this thread")
    lg.add_argument("--json", action="store_true")
    lg.set_defaults(func=cmd_logs)

    nx = sub.add_parser("next", help="print the next times of a recurrence")
    nx.add_argument("schedule")
    nx.add_argument("--tz")
    nx.add_argument("-n", type=int, default=5)
    nx.add_argument("--json", action="store_true")
    nx.set_defaults(func=cmd_next)

    dr = sub.add_parser("doctor", help="check the engine, images, database, data directory and job hardening")
    dr.add_argument("--quick", action="store_true", help="skip the sample job container")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=cmd_doctor)

    hl = sub.add_parser("health", help="ask a running runner's /healthz; exit 0 if healthy (compose health check)")
    hl.add_argument("--url", metavar="HOST:PORT", help="where runner up serves HTTP (default RUNNER_HTTP)")
    hl.add_argument("--timeout", type=float, default=5.0)
    hl.set_defaults(func=cmd_health)

    im = sub.add_parser("image", help="job image tools")
    imsub = im.add_subparsers(dest="image_command", required=True, parser_class=_Parser)
    ib = imsub.add_parser("build", help="build the job image (offline: on a Debian base made by mmdebstrap)")
    ib.add_argument("--tag", help="image tag (default RUNNER_IMAGE)")
    ib.add_argument("--base", help="base image (default python:3.12-slim if reachable, else a local Debian base)")
    ib.add_argument("--if-missing", action="store_true", help="do nothing if the image exists")
    ib.add_argument("--postgres", action="store_true", help="build the Debian-packaged Postgres image instead")
    ib.add_argument("--egress", action="store_true", help="build the egress proxy image (squid) instead")
    ib.set_defaults(func=cmd_image_build)
    iw = imsub.add_parser("wheels", help="download the runner image's wheels into docker/runner/wheels "
                                         "(for builds that cannot reach PyPI)")
    iw.set_defaults(func=cmd_image_wheels)

    file_commands.add_parser(sub)
    token_commands.add_parser(sub)
    from .mcp import add_parser as add_mcp_parser  # (imported here, beside its one use)

    add_mcp_parser(sub)
    return p


THREAD_NEEDED = ("schedule", "files")  # locally; remotely a thread token names its own


def _said(exc: BaseException, remote: remote_mode.Remote | None) -> str:
    """An error as one visible line, without the API token in it (whatever it came from)."""
    text = visible(str(exc), one_line=True)
    return text.replace(remote.token, "<token>") if remote is not None else text


def _said_trace(exc: BaseException, remote: remote_mode.Remote | None) -> str:
    """The traceback of a bug, for the debug log, without the API token (a log filter sees only messages)."""
    text = "".join(traceback.format_exception(exc))
    return text.replace(remote.token, "<token>") if remote is not None else text


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, remote: remote_mode.Remote | None) -> int:
    if remote is None and args.command in THREAD_NEEDED and args.thread is None \
            and not getattr(args, "thread_optional", False):
        parser.error("the following arguments are required: --thread (or, with --url, a thread's token)")
    settings = Settings.from_env()
    setup_logging(settings.log_level, settings.log_format)
    if remote is None:
        return int(args.func(args, settings))
    for handler in logging.getLogger().handlers:  # whatever a library logs, never the token
        handler.addFilter(RedactingFilter(remote.token))
    return remote_mode.run(args, remote, settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runner`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    remote = None
    try:
        remote = remote_mode.remote_of(args, os.environ)
        return _dispatch(parser, args, remote)
    except RunnerError as exc:
        print(f"runner: {_said(exc, remote)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line for the user, the traceback only in debug logs
        log.debug("unexpected error:\n%s", _said_trace(exc, remote))
        print(f"runner: unexpected error: {type(exc).__name__}: {_said(exc, remote)} "
              "(RUNNER_LOG_LEVEL=DEBUG shows more)",
              file=sys.stderr)
        return 1
