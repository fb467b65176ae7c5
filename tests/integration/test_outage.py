"""A Postgres outage under a real ``runner up``: the process waits it out and work resumes by itself.

The Postgres here is a container of its own (testcontainers), bound to a fixed host port so that a
``docker stop`` / ``docker start`` brings it back at the same address: the runner keeps its
``DATABASE_URL``. The session's shared server is left alone.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from psycopg import sql

from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import QUERIES, Database, migrate

from ..conftest import EGRESS_IMAGE, JOB_IMAGE, PG_IMAGE, STORE_KEY
from ..fakebotapi import FakeBotAPI
from .helpers import ROOT, RUNNER_CLI, cli_env, wait_for

CHAT = 7301
THREAD = f"telegram:{CHAT}"
RECOVERY_BOUND = 20.0  # s from Postgres answering again to a healthy runner: backoff (5 s) + pool retry (5 s), with room


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """A Postgres container on a fixed loopback port that a test can stop and start."""

    def __init__(self, dc: docker.DockerClient) -> None:
        from testcontainers.community.postgres import PostgresContainer

        self.port = _free_port()
        self.tc = PostgresContainer(PG_IMAGE, username="runner", password="runner", dbname="postgres", driver=None)
        self.tc.with_bind_ports(5432, self.port)
        self.tc.with_command("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self.tc.start()
        self.container = dc.containers.get(self.tc.get_wrapped_container().id)
        self.admin_url = f"postgresql://runner:runner@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://runner:runner@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        self.container.stop(timeout=10)

    def start(self) -> None:
        self.container.start()
        wait_for(self._answers, 60, "Postgres to accept connections again", interval=0.25)

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def remove(self) -> None:
        self.tc.stop()


@pytest.fixture(scope="module")
def outage_pg(docker_client: docker.DockerClient) -> Iterator[Postgres]:
    pg = Postgres(docker_client)
    try:
        wait_for(pg._answers, 60, "Postgres to start", interval=0.25)
        yield pg
    finally:
        pg.remove()


@pytest.fixture
def odb_url(outage_pg: Postgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database on the stoppable server, for one test."""
    name = f"o_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(outage_pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = outage_pg.url(name)
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(QUERIES["ensure_store_id"]).fetchone()
        assert row is not None
        request.node.stash[STORE_KEY] = row[0]  # the leftover-container check covers this database
    yield url
    if not outage_pg._answers():
        outage_pg.start()  # a failed test may have left it stopped
    with psycopg.connect(outage_pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def osettings(odb_url: str, tmp_path: Path) -> Settings:
    return Settings.from_env({
        "DATABASE_URL": odb_url, "RUNNER_DATA_DIR": str(tmp_path / "files"), "RUNNER_IMAGE": JOB_IMAGE,
        "RUNNER_EGRESS_IMAGE": EGRESS_IMAGE, "RUNNER_ID": f"outage-{uuid.uuid4().hex[:8]}",
        "RUNNER_POLL_INTERVAL": "2", "RUNNER_LEASE_SECONDS": "60", "RUNNER_TIMEOUT": "20",
    })


@pytest.fixture
def ojobs(osettings: Settings) -> Iterator[Jobs]:
    db = Database(osettings.database_url or "", max_size=4)
    yield Jobs(osettings, db)
    db.close()


class Up:
    """A ``runner up --http`` subprocess whose stderr is collected as it goes."""

    def __init__(self, settings: Settings, **env: str) -> None:
        self.port = _free_port()
        self.log = settings.data_dir.parent / "runner.log"
        full = cli_env(settings, RUNNER_ID=settings.runner_id, RUNNER_POLL_INTERVAL="2", RUNNER_LEASE_SECONDS="60",
                       RUNNER_LOG_FORMAT="json", **env)
        self._err = self.log.open("w")
        self.proc = subprocess.Popen(
            [*RUNNER_CLI, "up", "--no-build", "--http", f"127.0.0.1:{self.port}"],
            env=full, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._err, text=True)

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait_health(self, code: int, timeout: float) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            assert self.proc.poll() is None, f"runner up exited with rc {self.proc.returncode}: {self.tail()}"
            try:
                got, body = self.health()
            except OSError:
                return None  # not serving yet
            return body if got == code else None

        return wait_for(check, timeout, f"/healthz to answer {code}", interval=0.25)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return r.read().decode()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()
        return self.proc.returncode


def _status(jobs: Jobs, job_id: int) -> str | None:
    try:
        return str(jobs.get_job(job_id)["status"])
    except Exception:  # noqa: BLE001 - the test's own pool may still be reconnecting
        return None


def _outage_lines(up: Up) -> tuple[list[str], list[str]]:
    msgs = [e["message"] for e in up.events()]
    began = [m for m in msgs if m.startswith("the database is unreachable")]
    ended = [m for m in msgs if m.startswith("the database is reachable again")]
    return began, ended


def _outage(pg: Postgres, up: Up, seconds: float, jobs: Jobs) -> None:
    """Stop Postgres for ``seconds`` (the fault's length, not a synchronisation), checking the
    runner stays up and unhealthy all along, then start it again."""
    pg.stop()
    body = up.wait_health(503, 30)
    assert body["database"] != "ok", body
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert up.proc.poll() is None, f"runner up exited during the outage: {up.tail()}"
        code, _ = up.health()
        assert code == 503
        time.sleep(0.5)  # sampling health through the outage, not a wait for anything
    pg.start()
    jobs.db.pool.check()  # the test's own pooled connections did not survive the restart either


@pytest.mark.parametrize("seconds", [3, 20])
def test_an_idle_runner_waits_out_an_outage(outage_pg: Postgres, osettings: Settings, ojobs: Jobs,
                                           seconds: float) -> None:
    up = Up(osettings)
    try:
        up.wait_health(200, 60)
        _outage(outage_pg, up, seconds, ojobs)
        t0 = time.monotonic()
        body = up.wait_health(200, 60)
        assert body["database"] == "ok"
        back = time.monotonic() - t0
        print(f"healthy {back:.2f} s after a {seconds} s outage ended")
        assert back < RECOVERY_BOUND, f"{back:.1f} s to notice the database is back"
        job = ojobs.schedule_job(thread_id="console:1", name="after", at="now",
                                 script_text="open('jobs/after_message.txt','w').write('after')\n")
        wait_for(lambda: _status(ojobs, job["id"]) == "completed", 90, "the job scheduled after the outage")
        assert up.proc.poll() is None
        assert "runner_database_outages_total 1.0" in up.metrics()
        began, ended = _outage_lines(up)
        assert len(began) == 1 and len(ended) == 1, (began, ended)
    finally:
        rc = up.stop()
    assert rc == 0, up.tail()


@pytest.mark.parametrize("seconds", [3, 20])
def test_a_busy_runner_waits_out_an_outage_and_delivers(outage_pg: Postgres, osettings: Settings, ojobs: Jobs,
                                                       seconds: float) -> None:
    api = FakeBotAPI().start()
    up = Up(osettings, TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_URL=api.url, TELEGRAM_ALLOWED_USERS="1")
    try:
        up.wait_health(200, 60)
        running = ojobs.schedule_job(
            thread_id=THREAD, name="long", at="now", limits=Limits(timeout_seconds=120),
            script_text=f"import time\ntime.sleep({seconds + 15})\nopen('jobs/long_message.txt','w').write('long')\n")
        wait_for(lambda: _status(ojobs, running["id"]) == "running", 60, "the long job to start")
        due = ojobs.schedule_job(thread_id="telegram:7302", name="due", at="in 2 seconds",
                                 script_text="open('jobs/due_message.txt','w').write('due')\n")
        _outage(outage_pg, up, seconds, ojobs)
        t0 = time.monotonic()
        up.wait_health(200, 60)
        after = ojobs.schedule_job(thread_id="telegram:7303", name="after", at="now",
                                   script_text="open('jobs/after_message.txt','w').write('after')\n")
        for job, what in ((due, "due during the outage"), (after, "scheduled after it"), (running, "running across it")):
            wait_for(lambda j=job: _status(ojobs, j["id"]) == "completed", 120, f"the job {what}")
        print(f"three jobs completed {time.monotonic() - t0:.2f} s after a {seconds} s outage ended")
        api.wait_for(lambda: {"long", "due", "after"} <= {s.text for s in api.sent}, timeout=60)
        assert sorted(s.text for s in api.sent if s.text in {"long", "due", "after"}) == ["after", "due", "long"]
        assert up.proc.poll() is None
        began, ended = _outage_lines(up)
        assert len(began) == 1 and len(ended) == 1, (began, ended)
    finally:
        rc = up.stop()
        api.stop()
    assert rc == 0, up.tail()


def test_sigterm_during_an_outage_stops_the_runner_cleanly(outage_pg: Postgres, osettings: Settings) -> None:
    api = FakeBotAPI().start()
    up = Up(osettings, TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_URL=api.url, TELEGRAM_ALLOWED_USERS="1")
    try:
        up.wait_health(200, 60)
        outage_pg.stop()
        up.wait_health(503, 30)
        t0 = time.monotonic()
        up.proc.send_signal(signal.SIGTERM)
        up.proc.wait(timeout=60)
        took = time.monotonic() - t0
    finally:
        rc = up.stop()
        api.stop()
        outage_pg.start()
    assert rc == 0, up.tail()
    assert took < 40, f"stopping took {took:.1f} s"
    assert "Traceback" not in up.log.read_text()


def test_the_waker_sleeps_through_an_outage_and_listens_again(outage_pg: Postgres, odb_url: str) -> None:
    from runner.store import JOBS_CHANNEL, Waker

    db = Database(odb_url, max_size=2)
    waker = Waker(db, JOBS_CHANNEL)
    try:
        outage_pg.stop()
        t0 = time.monotonic()
        waker.sleep(1.0)  # the LISTEN connection breaks: no exception, and no busy loop either
        waker.sleep(1.0)  # reconnecting fails: it sleeps on its own clock
        assert time.monotonic() - t0 >= 1.0
        assert waker.conn is None
        outage_pg.start()
        waker.sleep(0)  # listens again
        assert waker.conn is not None
        with psycopg.connect(odb_url, autocommit=True) as conn:
            conn.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(JOBS_CHANNEL)))
        t1 = time.monotonic()
        waker.sleep(30)
        assert time.monotonic() - t1 < 10, "the NOTIFY after the outage woke it"
        t2 = time.monotonic()
        waker.sleep(1.0)
        assert time.monotonic() - t2 >= 1.0, "the notification was consumed: no busy loop"
    finally:
        waker.close()
        db.close()
