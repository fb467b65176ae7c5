"""The operator's commands: up (the :class:`~runner.app.Application` under the signal handlers),
migrate, doctor, health and the image tools."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .. import __version__
from ..errors import ConfigError, RunnerError
from ..settings import Settings
from .format import print_json

if TYPE_CHECKING:
    from ..app import Application

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


def _describe_db(settings: Settings) -> str:
    if not settings.database_url:
        return f"embedded Postgres in {settings.embedded_pg_dir}"
    u = urlsplit(settings.database_url)
    return f"Postgres at {u.hostname or 'local socket'}{':' + str(u.port) if u.port else ''}{u.path or ''}"


def banner(settings: Settings, *, burst: bool, telegram: bool) -> str:
    """The first line of ``runner up``: what it uses, where messages go, and how to schedule a first job."""
    if telegram:
        where = "Messages go to Telegram" + (f" via {settings.telegram_api_url}" if settings.telegram_api_url else "")
    else:
        where = "Messages print here (no TELEGRAM_BOT_TOKEN)"
    return (f"runner {__version__}: database {_describe_db(settings)}, data directory {settings.data_dir}, "
            f"image {settings.image}, up to {settings.concurrency} jobs at once"
            f"{' (burst: run what is due, then exit)' if burst else ''}. {where}. "
            f"{_api_hint(settings)}"
            f"Schedule a first job from another terminal: {FIRST_JOB_HINT.format(runner=_runner_command())}")


def _api_hint(settings: Settings) -> str:
    """Where the HTTP API listens and how to get a token for it, when it is on."""
    if not settings.http_addr:
        return ""
    return (f"API on {_http_base(settings)}/v1 (docs: /v1/openapi.json; a token: "
            f"{_runner_command()} token create --thread console:1). ")


def _http_base(settings: Settings) -> str:
    """The URL a person on this machine opens for ``RUNNER_HTTP``."""
    host, _, port = (settings.http_addr or "").rpartition(":")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)  # noqa: S104 - a hint
    return f"http://{host}:{port}"


def _dashboard_hint(settings: Settings, app: Application) -> str:
    """How to sign in to the dashboard (a first admin token on embedded defaults), when HTTP is on."""
    from ..dashboard.firstrun import first_admin_token, sign_in_hint

    if not settings.http_addr or app.store is None:
        return ""
    return sign_in_hint(_http_base(settings), _runner_command(), first_admin_token(settings, app.store))


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from ..app import Application, stop_on_signals

    if args.concurrency is not None:
        if args.concurrency < 1:
            raise ConfigError(f"--concurrency {args.concurrency} is too small: run at least 1 job at once")
        settings = settings.with_(concurrency=args.concurrency)
    if args.http:
        settings = settings.with_(http_addr=args.http)
    with Application(settings, burst=args.burst, build_image=not args.no_build) as app:
        app.open()
        print(banner(settings, burst=args.burst, telegram=app.telegram is not None), flush=True)
        dashboard = _dashboard_hint(settings, app)  # its own lines: a token, if one is made, alone on one
        if dashboard:
            print(dashboard, flush=True)
        with stop_on_signals(app.stop):
            app.run()
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ..store import embedded_url, migrate

    url = settings.database_url or embedded_url(settings.embedded_pg_dir)
    applied = migrate(url)
    print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ' (up to date)'}")
    return 0


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from ..doctor import run_checks

    failed = 0
    results = []
    for check in run_checks(settings, hardening=not args.quick):
        failed += not check.ok
        results.append(check)
        if not args.json:
            print(check.line(), flush=True)
    if args.json:
        print_json([{"check": c.name, "ok": c.ok, "detail": c.detail} for c in results])
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
    from .. import images

    count = images.fill_wheelhouse()
    print(f"wheelhouse: {count} wheels in {images.WHEELHOUSE} (Python {images.BASE_PYTHON}, the offline base's)")
    return 0


def cmd_image_build(args: argparse.Namespace, settings: Settings) -> int:
    from .. import images

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
