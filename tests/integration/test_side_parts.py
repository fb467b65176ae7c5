"""A side part of ``runner up`` that dies (the notifier, the Telegram service) is named by /healthz
(503) and started again with a backoff: the process never runs half-alive. The fault is injected in
the process; the database, the HTTP server and the fake Bot API are real."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.metrics import Health
from runner.outbox import ConsoleSender, OutboxLoop
from runner.settings import Settings
from runner.store import Database, Store
from runner.supervise import Part
from runner.telegram_part import TelegramService

from ..fakebotapi import FakeBotAPI
from .helpers import wait_for
from .test_telegram import queue


def _health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:  # the error holds the response and its socket
            return e.code, json.loads(e.read())


def _serve(settings: Settings, db: Database, parts: list[Any]) -> HttpServer:
    health = Health(loop_age=lambda: 0.0, max_loop_age=60, ping=lambda: db.ping(timeout=3.0),
                    parts=lambda: {p.name: p.status() for p in parts})
    http = HttpServer(create_app(settings, health=health), "127.0.0.1:0")
    http.start()
    return http


def _down(port: int, name: str) -> dict[str, Any] | None:
    code, body = _health(port)
    return body if code == 503 and name in body.get("down", []) else None


def _up(port: int) -> dict[str, Any] | None:
    code, body = _health(port)
    return body if code == 200 else None


def _console_message(db: Database, text: str) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO outbox (job_id, kind, thread_id, job_name, text, chat_id) "
                     "VALUES (NULL, 'message', 'console:1', 'direct', %s, NULL)", (text,))


def test_a_dead_notifier_is_named_by_healthz_and_restarted(db: Database, settings: Settings) -> None:
    out = io.StringIO()
    notifier = OutboxLoop(Store(db), ConsoleSender(out), settings.runner_id, poll_interval=0.5)
    broken = threading.Event()
    broken.set()
    real = notifier.dispatch

    async def faulty() -> int:
        if broken.is_set():
            raise RuntimeError("injected fault")
        return await real()

    notifier.dispatch = faulty  # type: ignore[method-assign]
    part = Part("notifier", notifier.run_blocking, notifier.stop, backoff_min=0.2, backoff_max=1.0)
    http = _serve(settings, db, [part])
    part.start()
    try:
        body = wait_for(lambda: _down(http.port, "notifier"), 30, "/healthz to name the dead notifier", 0.05)
        assert body["notifier"].startswith("dead: RuntimeError: injected fault; restarting in"), body
        assert body["status"] == "unhealthy" and body["database"] == "ok"
        assert part.deaths >= 1
        with urllib.request.urlopen(f"http://127.0.0.1:{http.port}/metrics", timeout=10) as r:
            assert 'runner_part_deaths_total{part="notifier"}' in r.read().decode()
        broken.clear()
        body = wait_for(lambda: _up(http.port), 30, "/healthz to be healthy once the notifier runs again")
        assert body["notifier"] == "ok"
        _console_message(db, "delivered by the restarted notifier")
        wait_for(lambda: "delivered by the restarted notifier" in out.getvalue(), 30, "the message")
    finally:
        part.stop(timeout=10)
        http.stop()
    assert not part.thread.is_alive()
    assert part.status() == "stopped"


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    fake = FakeBotAPI().start()
    yield fake
    fake.stop()


def test_a_dead_telegram_service_is_named_by_healthz_and_restarted(db: Database, settings: Settings, api: FakeBotAPI,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.service import Jobs

    tg = settings.with_(telegram_bot_token=api.token, telegram_api_url=api.url, telegram_allowed_users=frozenset({1}),
                        telegram_per_chat_interval=0.05, telegram_per_second=1000.0, poll_interval=1.0)
    broken = threading.Event()
    broken.set()
    real = OutboxLoop.run

    async def faulty(self: OutboxLoop) -> None:
        if broken.is_set():
            raise RuntimeError(f"injected fault near {api.token}")
        await real(self)

    monkeypatch.setattr(OutboxLoop, "run", faulty)
    svc = TelegramService(tg, Jobs(tg, db))
    svc.part.backoff_min, svc.part.backoff_max = 0.2, 1.0
    http = _serve(settings, db, [svc.part])
    svc.start()
    try:
        body = wait_for(lambda: _down(http.port, "telegram"), 30, "/healthz to name the dead Telegram service", 0.05)
        assert body["telegram"].startswith("dead: RuntimeError: its delivery task stopped: RuntimeError: injected"), body
        assert api.token not in json.dumps(body), "the token never reaches /healthz"
        broken.clear()
        wait_for(lambda: _up(http.port), 30, "/healthz to be healthy once the service runs again")
        queue(db, "4242", "delivered by the restarted service")
        api.wait_for(lambda: "delivered by the restarted service" in api.texts(4242), timeout=30)
    finally:
        svc.stop()
        http.stop()
    assert not svc.thread.is_alive()
