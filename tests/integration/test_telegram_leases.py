"""Telegram delivery and the outbox lease (issue 12, item 5): a sender keeps its lease while it sends
and stops the moment it has lost it, a Bot API request never outlives the lease, and a request whose
outcome is unknown is the one documented window, counted.

Real parts: the aiogram client against the fake Bot API on 127.0.0.1, a real Postgres, and for the
frozen runner two real ``runner up`` processes, one stopped with SIGSTOP."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import metrics
from runner.outbox import split_text
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database
from runner.store.outbox import OutboxStore
from runner.telegram_part import TelegramService

from ..fakebotapi import FakeBotAPI
from .helpers import ROOT, RUNNER_CLI, cli_env, wait_for
from .test_telegram import CHAT, USER, _rows, outbox, queue

LEASE = 6


def three_parts(tag: str) -> tuple[str, list[str]]:
    """A text that splits into three parts, and those parts."""
    text = "\n".join(f"{tag} line {i:04d} " + "z" * 90 for i in range(100))
    parts = split_text(text)
    assert len(parts) == 3
    return text, parts


def unknown_outcomes() -> float:
    return metrics.REGISTRY.get_sample_value("runner_telegram_unknown_outcomes_total") or 0.0


@pytest.fixture
def bot_api() -> Iterator[FakeBotAPI]:
    fake = FakeBotAPI().start()
    yield fake
    fake.stop()


@pytest.fixture
def tg_settings(settings: Settings, bot_api: FakeBotAPI) -> Settings:
    return settings.with_(telegram_bot_token=bot_api.token, telegram_api_url=bot_api.url,
                          telegram_allowed_users=frozenset({USER}), telegram_per_chat_interval=0.05,
                          telegram_per_second=1000.0, telegram_backoff_max=0.5, poll_interval=1.0)


@pytest.fixture
def tg_jobs(tg_settings: Settings, db: Database) -> Jobs:
    return Jobs(tg_settings, db)


@pytest.fixture
def short(tg_settings: Settings) -> Settings:
    """Delivery settings with a 6 s lease."""
    return tg_settings.with_(lease_seconds=LEASE)


def _service(settings: Settings, jobs: Jobs, name: str) -> TelegramService:
    svc = TelegramService(settings.with_(runner_id=name), jobs, polling=False)
    svc.start()
    return svc


@pytest.fixture
def two_services(short: Settings, tg_jobs: Jobs) -> Iterator[list[TelegramService]]:
    services = [_service(short, tg_jobs, f"{short.runner_id}-{n}") for n in ("a", "b")]
    yield services
    for svc in services:
        svc.stop()
        assert svc.error is None, svc.error


def heads(texts: list[str]) -> list[str]:
    """The first line of each text, for readable failures."""
    return [t.split("\n", 1)[0] for t in texts]


def all_sent(db: Database, n: int) -> bool:
    rows = outbox(db)
    return len(rows) == n and all(r["status"] == "sent" for r in rows)


# --- (b) a slow Bot API, two runners --------------------------------------------------------------


def test_a_send_held_longer_than_the_lease_is_not_sent_twice(two_services: list[TelegramService], bot_api: FakeBotAPI,
                                                             db: Database) -> None:
    """The Bot API holds the first two sends 8 s (the lease is 6 s) before it would accept them."""
    bot_api.slow_next, bot_api.slow_seconds = 2, 8.0
    text, parts = three_parts("held")
    queue(db, str(CHAT), text)
    queue(db, str(CHAT), "the next message")
    wait_for(lambda: all_sent(db, 2), 90, "both messages recorded as sent")
    wait_for(lambda: bot_api.holding == 0 and bot_api.slow_next == 0, 30, "no send held any more")
    assert heads(bot_api.texts(CHAT)) == heads([*parts, "the next message"]), "every part once, in order"
    assert bot_api.abandoned and all(a.after < LEASE for a in bot_api.abandoned), "a request gives up within the lease"
    assert not any(a.accepted for a in bot_api.abandoned)


def test_a_message_that_takes_longer_than_the_lease_keeps_it(two_services: list[TelegramService], bot_api: FakeBotAPI,
                                                             db: Database) -> None:
    """Every send takes 1.5 s: a text and six attachments take about 11 s, nearly twice the lease. The
    sender renews its lease while it sends, so the other runner never takes the message over."""
    bot_api.slow_next, bot_api.slow_seconds = 1000, 1.5
    queue(db, str(CHAT), "a text with six attachments")
    with db.transaction() as conn:
        for i in range(6):
            conn.execute("INSERT INTO outbox_attachments (outbox_id, filename, content) "
                         "SELECT id, %s, %s FROM outbox", (f"file{i}.csv", f"a,b\n{i},2\n".encode()))
    wait_for(lambda: all_sent(db, 1), 90, "the message recorded as sent")
    wait_for(lambda: bot_api.holding == 0, 30, "no send held any more")
    sent = [(s.method, s.text or s.filename) for s in bot_api.sent if s.chat_id == str(CHAT)]
    assert sent == [("sendMessage", "a text with six attachments")] + [("sendDocument", f"file{i}.csv")
                                                                       for i in range(6)]
    assert not bot_api.abandoned


# --- (c) an answer later than the request timeout, one runner -------------------------------------


def test_an_unanswered_send_is_sent_again_once_and_counted(short: Settings, tg_jobs: Jobs, bot_api: FakeBotAPI,
                                                           db: Database) -> None:
    """The Bot API accepts the first part at once but answers only after 8 s, longer than the lease."""
    bot_api.silent_next, bot_api.silent_seconds = 1, 8.0
    text, parts = three_parts("silent")
    queue(db, str(CHAT), text)
    before = unknown_outcomes()
    svc = _service(short, tg_jobs, short.runner_id)
    try:
        wait_for(lambda: all_sent(db, 1), 60, "the message recorded as sent")
    finally:
        svc.stop()
    assert svc.error is None, svc.error
    assert len(bot_api.abandoned) == 1 and bot_api.abandoned[0].accepted
    assert bot_api.abandoned[0].after < LEASE, "the request gave up before the lease could run out"
    assert unknown_outcomes() - before == 1, "the unknown outcome is counted"
    assert heads(bot_api.texts(CHAT)) == heads([parts[0], *parts]), "the window: that part once more, nothing else"


# --- (a) a frozen runner, two `runner up` processes -----------------------------------------------


def _runner_up(tg_settings: Settings, bot_api: FakeBotAPI, name: str, log: Path) -> subprocess.Popen[bytes]:
    env = cli_env(tg_settings, RUNNER_ID=name, RUNNER_LEASE_SECONDS=str(LEASE), RUNNER_POLL_INTERVAL="1",
                  TELEGRAM_BOT_TOKEN=bot_api.token, TELEGRAM_API_URL=bot_api.url,
                  TELEGRAM_ALLOWED_USERS=str(USER), TELEGRAM_PER_CHAT_INTERVAL="2")
    with log.open("wb") as out:
        return subprocess.Popen([*RUNNER_CLI, "up", "--no-build"], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def test_a_frozen_runner_sends_no_part_twice(tg_settings: Settings, bot_api: FakeBotAPI, db: Database, tmp_path: Path) -> None:
    """One runner is stopped (SIGSTOP) right after the first part of a three-part message went out, for
    longer than the lease; the other takes the message over. The frozen one, woken, must send nothing
    more of it."""
    messages = [three_parts(f"m{n}") for n in range(3)]
    for text, _ in messages:
        queue(db, str(CHAT), text)
    names = [f"{tg_settings.runner_id}-a", f"{tg_settings.runner_id}-b"]
    logs = {n: tmp_path / f"{n}.log" for n in names}
    procs = {n: _runner_up(tg_settings, bot_api, n, logs[n]) for n in names}
    frozen = None
    try:
        head = wait_for(lambda: _rows(db, "SELECT id, lease_owner FROM outbox WHERE status = 'sending' "
                                          "AND parts_sent = 1"), 60, "a first part recorded as sent")[0]
        frozen = head["lease_owner"]
        procs[frozen].send_signal(signal.SIGSTOP)
        wait_for(lambda: all_sent(db, 3), 90, "the other runner delivering every message")
        procs[frozen].send_signal(signal.SIGCONT)

        def duplicates() -> list[str]:
            return [t for t, n in Counter(bot_api.texts(CHAT)).items() if n > 1]

        wait_for(lambda: duplicates() or f"message {head['id']} " in logs[frozen].read_text()
                 and "lost its lease" in logs[frozen].read_text(), 30, "the woken runner to act")
    finally:
        for name, proc in procs.items():
            if name == frozen:
                proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert heads(bot_api.texts(CHAT)) == heads([p for _, parts in messages for p in parts]), "every part once, in order"
    lost = [line for line in logs[frozen].read_text().splitlines() if "lost its lease" in line]
    assert len(lost) == 1 and f"message {head['id']} " in lost[0], lost


# --- a chat's order while its head is being renewed -----------------------------------------------


def test_a_chat_head_locked_by_its_sender_is_not_overtaken(db: Database) -> None:
    """While the sender of a chat's oldest message holds that row locked (renewing its lease, recording a
    part), another runner's claim must not skip to the chat's next message: it claims nothing."""
    queue(db, str(CHAT), "first")
    queue(db, str(CHAT), "second")
    with db.transaction() as conn:
        conn.execute("UPDATE outbox SET status = 'sending', lease_owner = 'a', "
                     "lease_expires_at = now() + interval '1 minute' WHERE text = 'first'")
    with db.transaction() as holder:  # runner a renewing its lease, its transaction still open
        holder.execute("UPDATE outbox SET lease_expires_at = now() + interval '1 minute' WHERE text = 'first'")
        claimed = OutboxStore(db).claim_chat_head(str(CHAT), owner="b", lease=LEASE)
    assert claimed is None, "the second message overtook the first"
    assert [r["status"] for r in outbox(db)] == ["sending", "pending"]


def test_a_runner_frozen_with_a_part_in_flight_doubles_that_part_only(tg_settings: Settings, bot_api: FakeBotAPI,
                                                                      db: Database, tmp_path: Path) -> None:
    """The crash window, made real: the only runner is stopped the moment Telegram accepts the first
    part, before it can record it. A second runner takes over after the lease and sends that part
    again (the documented window); the first, woken, finds its record of the part refused (it lost
    the lease) and sends nothing more."""
    text, parts = three_parts("inflight")
    queue(db, str(CHAT), text)
    a, b = f"{tg_settings.runner_id}-a", f"{tg_settings.runner_id}-b"
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def freeze_a(sent: object) -> None:
        bot_api.on_accept = None
        procs[a].send_signal(signal.SIGSTOP)

    bot_api.on_accept = freeze_a
    procs[a] = _runner_up(tg_settings, bot_api, a, tmp_path / "a.log")
    try:
        wait_for(lambda: bot_api.on_accept is None, 60, "the first part accepted and its sender stopped")
        procs[b] = _runner_up(tg_settings, bot_api, b, tmp_path / "b.log")
        wait_for(lambda: all_sent(db, 1), 90, "the second runner delivering the message")
        procs[a].send_signal(signal.SIGCONT)
        wait_for(lambda: len(bot_api.texts(CHAT)) > 4 or "lost its lease" in (tmp_path / "a.log").read_text(),
                 30, "the woken runner to act")
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert heads(bot_api.texts(CHAT)) == heads([parts[0], *parts]), "the window: the part in flight once more"
    assert (tmp_path / "a.log").read_text().count("lost its lease") == 1
