"""The ``runner`` command line. Every failure is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from .errors import ConfigError, RunnerError
from .logsetup import setup_logging
from .settings import DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, Settings
from .text import json_safe, visible

log = logging.getLogger("runner")

HEALTH_DB_TIMEOUT = 3.0  # seconds /healthz and /metrics wait for a database connection: an outage is a quick 503
FIRST_JOB_HINT = ("{runner} schedule examples/check_price.py --thread telegram:42 --name check_price "
                  "--at 'in 1 minute' --every 'daily 9am'")


def _runner_command() -> str:
    """How the user can call this program again: ``runner`` if it is on PATH, else its path."""
    me = os.path.abspath(sys.argv[0])
    found = shutil.which("runner")
    if found and os.path.abspath(found) == me:
        return "runner"
    rel = os.path.relpath(me)
    return rel if not rel.startswith("..") else me


def _jobs(settings: Settings, *, apply_migrations: bool = False) -> Any:
    """The job store. Only ``runner up`` migrates it; other commands refuse a schema not this runner's."""
    from .service import connect

    return connect(settings, apply_migrations=apply_migrations)


def _fmt_time(value: datetime | None, tz: str) -> str:
    if value is None:
        return "-"
    from .schedule import zone

    return value.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _print_json(data: Any) -> None:
    print(json_safe(json.dumps(data, indent=2, ensure_ascii=False, default=str)))


def _cell(value: Any, width: int | None = None) -> str:
    """A value that may hold what a job wrote, as one visible line (cut to ``width``)."""
    text = visible("" if value is None else str(value), one_line=True)
    return text if width is None else text[:width]


def _block(text: str | None, indent: str = "  ") -> str:
    """A job's text on a terminal: its control characters shown, every line indented under its heading."""
    return indent + visible(text).rstrip("\n").replace("\n", "\n" + indent)


def _describe_db(settings: Settings) -> str:
    if not settings.database_url:
        return f"embedded Postgres in {settings.embedded_pg_dir}"
    u = urlsplit(settings.database_url)
    return f"Postgres at {u.hostname or 'local socket'}{':' + str(u.port) if u.port else ''}{u.path or ''}"


# --- commands ---------------------------------------------------------------------------------------


def _discover_host_addresses(settings: Settings, dc: Any) -> None:
    """Find the engine host's addresses once at start-up (each proxy start looks again), so that a
    runner whose granted jobs could not be kept off the host says so now, not at the first grant."""
    from . import sandbox
    from .runspec import run_spec, sample_job

    if not settings.egress_allow or not sandbox.image_present(settings.egress_image, dc):
        return
    spec = run_spec(settings, sample_job(settings), owner=settings.runner_id, jobs_dir=settings.data_dir,
                    user="65534:65534")
    try:
        found = sandbox.host_networks(dc, spec)
    except RunnerError as exc:
        log.warning("%s; granted jobs will fail until it can", exc)
        return
    log.info("the egress proxy refuses the engine host's %d addresses and networks (found again at each proxy "
             "start)", len(found))


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from . import images, sandbox
    from .notify import ConsoleSender, Notifier
    from .scheduler import Scheduler

    if args.concurrency is not None:
        if args.concurrency < 1:
            raise ConfigError(f"--concurrency {args.concurrency} is too small: run at least 1 job at once")
        settings = settings.with_(concurrency=args.concurrency)
    if args.http:
        settings = settings.with_(http_addr=args.http)
    dc = sandbox.client()
    if not sandbox.image_present(settings.image, dc):
        if args.no_build:
            raise RunnerError(f"image {settings.image} not found: run make image (or runner image build)")
        log.info("job image %s is missing: building it", settings.image)
        images.build_sandbox(settings.image)
    jobs = _jobs(settings, apply_migrations=True)
    _discover_host_addresses(settings, dc)
    telegram = None
    if settings.telegram_bot_token:
        from .logsetup import install_redaction
        from .notify import NoChannelSender
        from .telegram_part import TelegramService

        install_redaction(settings.telegram_bot_token)
        if not settings.telegram_allowed_users:
            log.warning("TELEGRAM_ALLOWED_USERS is empty: the bot will answer nobody (messages are still sent)")
        telegram = TelegramService(settings, jobs, polling=not args.burst)
        sender: Any = NoChannelSender()  # the console notifier then only fails non-Telegram threads
        where = "Messages go to Telegram" + (f" via {settings.telegram_api_url}" if settings.telegram_api_url else "")
    else:
        sender = ConsoleSender()
        where = "Messages print here (no TELEGRAM_BOT_TOKEN)"
    print(f"runner {__version__}: database {_describe_db(settings)}, data directory {settings.data_dir}, "
          f"image {settings.image}, up to {settings.concurrency} jobs at once"
          f"{' (burst: run what is due, then exit)' if args.burst else ''}. {where}. "
          f"Schedule a first job from another terminal: {FIRST_JOB_HINT.format(runner=_runner_command())}", flush=True)
    scheduler = Scheduler(settings, jobs.db, dc)
    notifier = Notifier(jobs.db, sender, settings.runner_id, lease_seconds=settings.lease_seconds,
                        poll_interval=settings.poll_interval, without_chat=telegram is not None)

    with stop_on_signals(scheduler.stop):  # the notifier delivers until the scheduler has drained
        return _serve(args, settings, jobs, scheduler, notifier, telegram)


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``stop`` (a second SIGINT raises KeyboardInterrupt, to force); on the way
    out the handlers that were there before are put back, so ``runner up`` run in-process (tests, an
    embedding program) leaves its caller's signal handling as it found it."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping (running jobs finish first; again to force)", signum)
        stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in previous:
        signal.signal(sig, _stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _serve(args: argparse.Namespace, settings: Settings, jobs: Any, scheduler: Any, notifier: Any,
           telegram: Any) -> int:
    """Run the scheduler (and the side parts) until it stops; close everything on the way out."""
    from .supervise import Part

    parts: list[Any] = [telegram.part] if telegram is not None else []  # side parts, restarted if they die
    http = None
    if settings.http_addr:
        from .metrics import HealthServer

        http = HealthServer(settings.http_addr, loop_age=lambda: time.monotonic() - scheduler.last_loop,
                            max_loop_age=settings.poll_interval + 30,
                            db_query=lambda q: jobs.db.query(q, timeout=HEALTH_DB_TIMEOUT),
                            parts=lambda: {p.name: p.status() for p in parts})
        http.start()
        log.info("health and metrics on http://%s:%s/healthz and /metrics", settings.http_addr.rpartition(":")[0],
                 http.port)
    try:
        if telegram is not None:
            telegram.start()
        if args.burst:
            scheduler.run(burst=True)
            notifier.deliver_due()
            if telegram is not None:
                telegram.drain()
        else:
            notifier_part = Part("notifier", notifier.run, notifier.stop)
            parts.append(notifier_part)
            notifier_part.start()
            scheduler.run()
    finally:
        for part in parts:
            if part.name == "notifier":
                part.stop(timeout=10)
        if telegram is not None:
            telegram.stop()
        if http is not None:
            http.stop()
        jobs.close()
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from .store import embedded_url, migrate

    url = settings.database_url or embedded_url(settings.embedded_pg_dir)
    applied = migrate(url)
    print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ' (up to date)'}")
    return 0


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    from .service import Limits, Policy, public_row

    text = sys.stdin.read() if args.script == "-" else None
    with _jobs(settings) as jobs:
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
        _print_json(public_row(row))
    elif row["after_job"]:
        print(f"scheduled job {row['id']} ({row['name']}) to run each time {row['after_job']} completes")
    else:
        rec = f", then {row['recurrence']}" if row["recurrence"] else ""
        print(f"scheduled job {row['id']} ({row['name']}) for {_fmt_time(row['due_time'], row['timezone'])}{rec}")
    return 0


def _job_action(method: str, said: str) -> Any:
    def cmd(args: argparse.Namespace, settings: Settings) -> int:
        from .service import public_row

        with _jobs(settings) as jobs:
            row = getattr(jobs, method)(args.job_id, thread_id=args.thread)
        if args.json:
            _print_json(public_row(row))
        else:
            print(f"job {row['id']} ({row['name']}) {said}")
        return 0
    return cmd


def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    from .service import public_row

    with _jobs(settings) as jobs:
        row = jobs.get_job(args.job_id, thread_id=args.thread)
        runs = jobs.job_runs(args.job_id, thread_id=args.thread, limit=args.runs)
    if args.json:
        _print_json({"job": public_row(row), "runs": [public_row(r) for r in runs]})
        return 0
    for key, value in public_row(row).items():
        if value not in (None, [], ""):
            print(f"{key:>20}: {_cell(value)}")
    print("runs:")
    for r in runs:
        print(f"  {r['id']:>6} {r['status']:<10} {_fmt_time(r['completed_at'] or r['due_time'], r['timezone'])} "
              f"{_cell(r['error_message'])}")
    return 0


_SCHEDULE_OPTIONS = ("at", "every", "tz", "timeout", "memory", "cpus", "pids", "allow_host", "grace", "overlap",
                     "retries", "retry_delay")


def _approve(jobs: Any, args: argparse.Namespace) -> dict[str, Any]:
    text = sys.stdin.read() if args.script == "-" else None
    done = jobs.approve_script(args.job_id, thread_id=args.thread, sha256=args.approve or None,
                               script=args.script if args.script not in (None, "-") else None, script_text=text)
    if not args.json:
        print(f"approved {done['script_path']} (sha256 {done['sha256']}) for job {done['job']['id']} "
              f"({done['job']['name']}): its runs run this version")
    return done["job"]  # type: ignore[no-any-return]


def cmd_update(args: argparse.Namespace, settings: Settings) -> int:
    from .service import Limits, Policy, public_row

    approving = args.approve is not None or args.script is not None
    with _jobs(settings) as jobs:
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
        _print_json(public_row(row))
    else:
        print(f"job {row['id']} ({row['name']}) updated: next {_fmt_time(row['due_time'], row['timezone'])}"
              + (f", then {row['recurrence']}" if row["recurrence"] else ""))
    return 0


def cmd_tools(args: argparse.Namespace, settings: Settings) -> int:
    from .agent import system_prompt, tool_definitions

    if args.prompt:
        print(system_prompt(settings))
    else:
        _print_json(tool_definitions(args.style))
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from .service import public_row

    with _jobs(settings) as jobs:
        rows = jobs.list_jobs(thread_id=args.thread, status=args.status, limit=args.limit)
    if args.json:
        _print_json([public_row(r) for r in rows])
        return 0
    if not rows:
        print("no jobs" + (f" in thread {args.thread}" if args.thread else ""))
        return 0
    header = f"{'ID':>6}  {'NAME':<20} {'STATUS':<10} {'DUE':<25} {'RECURRENCE':<16} {'THREAD':<16} RESULT"
    print(header)
    for r in rows:
        result = r["error_message"] or (f"exit {r['exit_code']}, {r['duration_ms']} ms" if r["exit_code"] is not None else "")
        print(f"{r['id']:>6}  {_cell(r['name'], 20):<20} {r['status']:<10} {_fmt_time(r['due_time'], r['timezone']):<25} "
              f"{_cell(r['recurrence'] or '-', 16):<16} {_cell(r['thread_id'], 16):<16} {_cell(result)}")
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    with _jobs(settings) as jobs:
        row = jobs.cancel_job(args.job_id, thread_id=args.thread)
    if args.json:
        from .service import public_row

        _print_json(public_row(row))
    elif row["status"] == "cancelled":
        print(f"job {row['id']} ({row['name']}) cancelled")
    else:
        print(f"job {row['id']} ({row['name']}) is running; it will finish and not recur")
    return 0


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    with _jobs(settings) as jobs:
        info = jobs.get_job_logs(args.job_id, thread_id=args.thread)
    if args.json:
        _print_json(info)
        return 0
    print(f"job {info['id']} ({_cell(info['name'])}): {info['status']}"
          + (f", exit code {info['exit_code']}" if info["exit_code"] is not None else "")
          + (f", {info['duration_ms']} ms" if info["duration_ms"] is not None else ""))
    if info["error_message"]:
        print(f"reason: {_cell(info['error_message'])}")
    for m in info["messages"]:
        print(f"message {m['id']} ({m['kind']}, {m['status']}{': ' + _cell(m['error']) if m['error'] else ''}):")
        print(_block(m["text"]))
    print("output" + (" (truncated, last part shown)" if info["output_truncated"] else "") + ":")
    print(_block(info["output_tail"]) if info["output_tail"] else "  (none)")
    return 0


def cmd_next(args: argparse.Namespace, settings: Settings) -> int:
    from .schedule import parse_recurrence, zone

    tz = zone(args.tz or settings.default_timezone)
    rec = parse_recurrence(args.schedule)
    times = [t.isoformat() for t in rec.upcoming(datetime.now(UTC), tz, args.n)]
    if args.json:
        _print_json({"schedule": rec.text, "cron": rec.cron, "timezone": tz.key, "next": times})
    else:
        print("\n".join(times))
    return 0


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from .doctor import run_checks

    failed = 0
    results = []
    for check in run_checks(settings, hardening=not args.quick):
        failed += not check.ok
        results.append(check)
        if not args.json:
            print(check.line(), flush=True)
    if args.json:
        _print_json([{"check": c.name, "ok": c.ok, "detail": c.detail} for c in results])
    elif failed:
        print(f"{failed} check(s) failed")
    return 1 if failed else 0


def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    """Ask a running ``runner up`` for /healthz (compose's health check): exit 0 only on 200."""
    import urllib.error
    import urllib.request

    addr = args.url or settings.http_addr
    if not addr:
        raise RunnerError("no address to ask: set RUNNER_HTTP (as runner up had it) or pass --url HOST:PORT")
    host, _, port = addr.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            body = resp.read(4096).decode("utf-8", "replace")
            code = resp.status
    except urllib.error.HTTPError as exc:
        body, code = exc.read(4096).decode("utf-8", "replace"), exc.code
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url} did not answer ({getattr(exc, 'reason', exc)})")
        return 1
    print(("healthy: " if code == 200 else f"unhealthy (HTTP {code}): ") + body.strip())
    return 0 if code == 200 else 1


def cmd_image_wheels(args: argparse.Namespace, settings: Settings) -> int:
    from . import images

    count = images.fill_wheelhouse()
    print(f"wheelhouse: {count} wheels in {images.WHEELHOUSE} (Python {images.BASE_PYTHON}, the offline base's)")
    return 0


def cmd_image_build(args: argparse.Namespace, settings: Settings) -> int:
    from . import images

    if args.postgres or args.egress:
        tag = images.build_postgres() if args.postgres else images.build_egress(settings.egress_image)
        print(f"built {tag}")
        return 0
    tag = args.tag or settings.image
    if args.if_missing and images.image_exists(tag):
        print(f"{tag} is present")
        return 0
    images.build_sandbox(tag, args.base)
    print(f"built {tag}")
    return 0


# --- parser -----------------------------------------------------------------------------------------


def _policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retries", type=int, help=f"retry a failed run this often, with backoff (default {DEFAULT_RETRIES})")
    p.add_argument("--retry-delay", type=int, help=f"seconds before the first retry, doubled each time (default {DEFAULT_RETRY_DELAY})")
    p.add_argument("--grace", type=int, help=f"run a missed run if less than this many seconds late (default {Settings.grace_seconds})")
    p.add_argument("--overlap", choices=["skip", "queue"], help="when a run is still going at the next time")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, as argparse does, without the usage dump
        self.exit(2, f"runner: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = _Parser(prog="runner", description="Run scheduled Python job scripts in locked-down containers.")
    p.add_argument("--version", action="version", version=f"runner {__version__}")
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
    sc.add_argument("--thread", required=True, help="thread id, e.g. telegram:42")
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
        ap.set_defaults(func=_job_action(method, said))

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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runner`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        setup_logging(settings.log_level, settings.log_format)
        return int(args.func(args, settings))
    except RunnerError as exc:
        print(f"runner: {visible(str(exc), one_line=True)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line for the user, the traceback only in debug logs
        log.debug("unexpected error", exc_info=True)
        print(f"runner: unexpected error: {type(exc).__name__}: {visible(str(exc), one_line=True)} "
              "(RUNNER_LOG_LEVEL=DEBUG shows more)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
