"""The application object that ``runner up`` is, started directly (as the HTTP API, MCP and the tests
start it): a burst runs what is due and delivers it; a long-running one serves /healthz and /metrics,
names a dead side part and restarts it, and stops when asked, closing everything. It never touches the
caller's signal handlers (the CLI installs its own around ``run()``)."""

from __future__ import annotations

import io
import json
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from runner.app import Application
from runner.service import Jobs
from runner.settings import Settings

from .helpers import wait_for

THREAD = "console:7"
MESSAGE = "open('jobs/hello_message.txt', 'w').write('hello from the app')\n"


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        with e:  # the error holds the response and its socket
            return e.code, e.read().decode()


def _health(port: int) -> tuple[int, dict[str, Any]]:
    code, body = _get(port, "/healthz")
    return code, json.loads(body)


def _status(jobs: Jobs, name: str) -> str:
    return str(next(r["status"] for r in jobs.list_jobs(thread_id=THREAD) if r["name"] == name))


def test_a_burst_runs_what_is_due_delivers_it_and_closes(settings: Settings, jobs: Jobs) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    jobs.schedule_job(thread_id=THREAD, name="hello", at="now", script_text=MESSAGE)
    out = io.StringIO()
    app = Application(settings, burst=True, build_image=False, console=out)
    app.run()
    assert "| hello from the app" in out.getvalue()
    assert _status(jobs, "hello") == "completed"
    assert app.jobs is None and app.http is None, "run() closed what it opened"
    assert {sig: signal.getsignal(sig) for sig in before} == before


@pytest.fixture
def running(settings: Settings) -> Iterator[tuple[Application, io.StringIO, threading.Thread]]:
    """An Application serving HTTP on a free loopback port, its run() on a thread; stopped afterwards."""
    out = io.StringIO()
    app = Application(settings.with_(http_addr="127.0.0.1:0"), build_image=False, console=out)
    app.start()
    errors: list[BaseException] = []

    def main() -> None:
        try:
            app.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the fixture
            errors.append(exc)

    thread = threading.Thread(target=main, name="app", daemon=True)
    thread.start()
    try:
        yield app, out, thread
    finally:
        app.stop()
        thread.join(timeout=60)
    assert not thread.is_alive(), "run() returns once stopped"
    assert not errors, errors


def test_a_running_application_serves_health_and_metrics_and_stops_when_asked(
        running: tuple[Application, io.StringIO, threading.Thread], jobs: Jobs) -> None:
    app, out, thread = running
    assert app.http is not None
    port = app.http.port
    code, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(_health(port)), 30, "a healthy /healthz")
    assert body["scheduler"] == "ok" and body["database"] == "ok" and body["notifier"] == "ok", body
    jobs.schedule_job(thread_id=THREAD, name="hello", at="now", script_text=MESSAGE)
    wait_for(lambda: "| hello from the app" in out.getvalue(), 60, "the message on the console")
    page = wait_for(lambda: (lambda p: p if 'runner_outbox_messages{status="sent"} 1.0' in p else None)(
        _get(port, "/metrics")[1]), 20, "the sent message in the table gauges")
    assert 'runner_jobs{status="completed"} 1.0' in page
    app.stop()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert app.jobs is None and app.http is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_a_dead_notifier_of_the_application_is_named_by_healthz_and_restarted(
        running: tuple[Application, io.StringIO, threading.Thread], jobs: Jobs) -> None:
    app, out, _thread = running
    assert app.http is not None and app.notifier is not None
    port = app.http.port
    broken = threading.Event()
    broken.set()
    real = app.notifier.dispatch

    async def faulty() -> int:
        if broken.is_set():
            raise RuntimeError("injected fault")
        return await real()

    app.notifier.dispatch = faulty  # type: ignore[method-assign]  # called at its next wake (poll interval)
    body = wait_for(lambda: (lambda r: r[1] if r[0] == 503 and "notifier" in r[1].get("down", []) else None)(
        _health(port)), 30, "/healthz to name the dead notifier", 0.05)
    assert body["notifier"].startswith("dead: RuntimeError: injected fault; restarting in"), body
    broken.clear()
    wait_for(lambda: _health(port)[0] == 200, 30, "/healthz to be healthy once the notifier runs again")
    jobs.schedule_job(thread_id=THREAD, name="hello", at="now", script_text=MESSAGE)
    wait_for(lambda: "| hello from the app" in out.getvalue(), 60, "the message, delivered by the restarted notifier")
