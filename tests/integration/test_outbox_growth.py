"""The database does not grow without bound (red team finding 7): attachment bytes go once their
message is delivered (or has failed for good), and the outbox is pruned with the run history.

Real job containers write the attachments; they are delivered through the console sender and through
the real aiogram client against the fake Bot API."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import psycopg
import pytest
from psycopg import sql

from runner.scheduler import Scheduler
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database
from runner.telegram_part import TelegramService

from ..fakebotapi import FakeBotAPI
from .helpers import run_burst, wait_for

RUNS = 5
MIB = 1024 * 1024
# Two 1 MiB attachments and a message per run (random bytes: Postgres cannot compress them away).
SCRIPT = ("import os\nos.makedirs('jobs/chart_attachments', exist_ok=True)\n"
          "for name in ('plot.png', 'data.bin'):\n"
          "    open(f'jobs/chart_attachments/{name}', 'wb').write(os.urandom(1024 * 1024))\n"
          "open('jobs/chart_message.txt', 'w').write('chart attached')\n")


def _one(db: Database, sql: str) -> dict:
    with db.transaction() as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row


def attachment_bytes(db: Database) -> tuple[int, int]:
    row = _one(db, "SELECT count(*) AS n, coalesce(sum(length(content)), 0) AS bytes FROM outbox_attachments")
    return row["n"], row["bytes"]


def outbox_rows(db: Database) -> list[dict]:
    with db.transaction() as conn:
        return conn.execute("SELECT id, job_id, status FROM outbox ORDER BY id").fetchall()


def _run_series(jobs: Jobs, run: object, thread: str) -> dict:
    """Schedule the job and run it RUNS times (a recurring series, started with run_job_now)."""
    job = jobs.schedule_job(thread_id=thread, name="chart", script_text=SCRIPT, every="daily 9am")
    for _ in range(RUNS):
        pending = jobs.db.one("pending_of_series", {"series_id": job["series_id"]})
        assert pending is not None and pending["status"] == "pending"
        jobs.run_job_now(pending["id"])
        run()  # type: ignore[operator]
    return job


def table_bytes(db: Database, table: str) -> int:
    """The table's size on disk with its TOAST and indexes, after a VACUUM has freed what was deleted."""
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(table)))
        row = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()
    assert row is not None
    return int(row[0])


def _assert_bounded(db: Database, settings: Settings) -> None:
    assert attachment_bytes(db) == (0, 0), "delivered attachments must not keep their bytes"
    assert table_bytes(db, "outbox_attachments") < MIB // 4  # not RUNS * 2 MiB
    rows = outbox_rows(db)
    assert all(r["status"] == "sent" for r in rows), rows
    # What the history still shows (at most RUNNER_HISTORY runs per job), plus the message of the run
    # that finished last, whose run left the history after it was queued; it goes at the next run's end.
    assert len(rows) <= settings.history_keep + 1, rows


def test_console_delivery_leaves_no_attachment_bytes_and_prunes_the_outbox(
        settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    s = settings.with_(history_keep=1)
    jobs = Jobs(s, db)
    printed: list[str] = []
    _run_series(jobs, lambda: printed.append(run_burst(s, db, docker_client)), "telegram:42")
    assert sum("[attachment: plot.png, 1048576 bytes]" in p for p in printed) == RUNS  # each was delivered
    _assert_bounded(db, s)


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    fake = FakeBotAPI().start()
    yield fake
    fake.stop()


def test_telegram_delivery_leaves_no_attachment_bytes_and_prunes_the_outbox(
        settings: Settings, db: Database, docker_client: docker.DockerClient, api: FakeBotAPI) -> None:
    s = settings.with_(history_keep=1, telegram_bot_token=api.token, telegram_api_url=api.url,
                       telegram_allowed_users=frozenset({1}), telegram_per_chat_interval=0.01,
                       telegram_per_second=1000.0, poll_interval=1.0)
    jobs = Jobs(s, db)
    svc = TelegramService(s, jobs, polling=False)
    svc.start()
    try:
        def run() -> None:
            Scheduler(s, db, docker_client).run(burst=True)
            wait_for(lambda: all(r["status"] == "sent" for r in outbox_rows(db)), 30, "the run's message delivered")

        _run_series(jobs, run, "telegram:43")
    finally:
        svc.stop()
    files = [m for m in api.sent if m.chat_id == "43" and m.method in ("sendPhoto", "sendDocument")]
    assert len(files) == 2 * RUNS and all(m.size == MIB for m in files)
    _assert_bounded(db, s)


def test_a_message_that_failed_for_good_drops_its_attachment_bytes(
        settings: Settings, db: Database, docker_client: docker.DockerClient, api: FakeBotAPI) -> None:
    s = settings.with_(telegram_bot_token=api.token, telegram_api_url=api.url,
                       telegram_allowed_users=frozenset({1}), telegram_per_chat_interval=0.01,
                       telegram_per_second=1000.0, poll_interval=1.0)
    api.blocked.add("44")
    jobs = Jobs(s, db)
    jobs.schedule_job(thread_id="telegram:44", name="chart", script_text=SCRIPT, at="now")
    Scheduler(s, db, docker_client).run(burst=True)
    assert attachment_bytes(db)[1] == 2 * MIB  # queued with the message
    svc = TelegramService(s, jobs, polling=False)
    svc.start()
    try:
        wait_for(lambda: [r["status"] for r in outbox_rows(db)] == ["failed"], 30, "the blocked chat's failure")
    finally:
        svc.stop()
    assert attachment_bytes(db) == (0, 0)
