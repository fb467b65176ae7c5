"""The runner's periodic duties: the lease heartbeat never waits behind Docker, and a runner that was
cut off from the database judges no other runner dead before it has been connected a full lease."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import docker

from runner import sandbox
from runner.scheduler import Scheduler
from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database
from runner.threads import jobs_dir
from tests.faultproxy import FaultProxy

from .helpers import ROOT, RUNNER_CLI, cli_env, wait_for

LEASE = 6
ONCE = ("import time\nwith open('jobs/once_runs.txt', 'a') as f:\n    f.write('x')\n"
        "time.sleep(8)\nwith open('jobs/once_message.txt', 'w') as f:\n    f.write('done once')\n")


def _docker_socket() -> Path:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    assert host.startswith("unix://"), f"this test proxies a Unix socket, not {host}"
    return Path(host.removeprefix("unix://"))


def _containers(dc: docker.DockerClient, store: str, job_id: int) -> list[Any]:
    return [c for c in sandbox.managed_containers(dc, store) if c.labels.get(sandbox.LABEL_JOB) == str(job_id)]


def test_a_docker_engine_stalled_past_the_lease_hands_no_live_run_to_another_runner(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str,
        tmp_path: Path) -> None:
    """Runner A reaches Docker through a proxy that holds back the engine's answers for three leases
    while A's job runs; runner B shares the database. A's heartbeat goes on, so B takes nothing over:
    the job runs once, and its result and message are recorded once."""
    job = jobs.schedule_job(thread_id="telegram:5", name="once", at="now", limits=Limits(timeout_seconds=90),
                            script_text=ONCE)
    sock_dir = Path(tempfile.mkdtemp(prefix="dk", dir="/tmp"))  # a Unix socket's path must be short
    proxy = FaultProxy(sock_dir / "docker.sock", _docker_socket()).start()
    out, err = (tmp_path / "a.out").open("wb"), (tmp_path / "a.err").open("wb")
    env = cli_env(settings, RUNNER_LEASE_SECONDS=str(LEASE), RUNNER_POLL_INTERVAL="2", RUNNER_ID="stalled-runner",
                  DOCKER_HOST=f"unix://{sock_dir / 'docker.sock'}")
    a = subprocess.Popen([*RUNNER_CLI, "up", "--no-build"], env=env, stdout=out, stderr=err, cwd=ROOT)
    b = Scheduler(settings.with_(runner_id="judge", lease_seconds=LEASE), db, docker_client)
    tb = threading.Thread(target=b.run, name="runner-b")
    try:
        wait_for(lambda: jobs.get_job(job["id"])["lease_owner"] == "stalled-runner"
                 and [c for c in _containers(docker_client, store_id, job["id"]) if c.status == "running"],
                 90, "runner A's job container to run")
        tb.start()
        proxy.stall()
        stalled = time.monotonic()
        leases: set[datetime] = set()
        ended = False  # the script ends during the stall; A cannot learn it until the engine answers again
        while time.monotonic() - stalled < 3 * LEASE:
            row = jobs.get_job(job["id"])
            assert row["status"] == "running" and row["lease_owner"] == "stalled-runner", (
                f"runner B took over a live run while A's engine was stalled: {row['status']}, "
                f"{row['error_message']!r}")
            leases.add(row["lease_expires_at"])
            ended = ended or any(c.status == "exited" for c in _containers(docker_client, store_id, job["id"]))
            time.sleep(0.2)  # sampling the row during the stall, not synchronising with anything
        assert ended, "the script should have ended during the stall"
        assert len(leases) >= 5, f"A's heartbeat renewed its lease only {len(leases)} time(s) in {3 * LEASE} s"
        proxy.release()
        row = wait_for(lambda: (r := jobs.get_job(job["id"]))["status"] != "running" and r, 60,
                       "runner A to record the result once the engine answers")
        assert (row["status"], row["exit_code"], row["error_message"]) == ("completed", 0, None)
        assert (jobs_dir(settings.data_dir, "telegram:5") / "once_runs.txt").read_text() == "x", "ran more than once"
        msgs = db.all("messages_for_job", {"job_id": job["id"]})
        assert [(m["kind"], m["text"]) for m in msgs] == [("message", "done once")]
        wait_for(lambda: db.all("messages_for_job", {"job_id": job["id"]})[0]["status"] == "sent", 30,
                 "the message to be delivered")
        wait_for(lambda: (tmp_path / "a.out").read_text().count("done once") == 1, 10, "the message printed once")
    finally:
        proxy.release()
        b.stop()
        if tb.is_alive():
            tb.join(timeout=90)
        a.send_signal(signal.SIGTERM)
        try:
            a.wait(timeout=90)
        except subprocess.TimeoutExpired:
            a.kill()
            a.wait(timeout=10)
        out.close()
        err.close()
        proxy.close()
        (sock_dir / "docker.sock").unlink(missing_ok=True)
        sock_dir.rmdir()
    log = (tmp_path / "a.err").read_text()
    assert "Traceback" not in log
    assert "sweep is slow" in log, "the orphan sweep should have hung on the stalled engine, beside the heartbeat"
    assert (tmp_path / "a.out").read_text().count("done once") == 1


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"))


def _taken_from(jobs: Jobs, job_id: int, owner: str) -> bool:
    row = jobs.get_job(job_id)
    return row["status"] != "running" or row["lease_owner"] != owner


def _as_run_of(db: Database, job_id: int, owner: str, seconds: float) -> None:
    """Make a pending row a run of another runner whose lease runs out in ``seconds``."""
    with db.transaction() as conn:
        conn.execute("UPDATE scheduled_jobs SET status = 'running', lease_owner = %(owner)s, attempts = attempts + 1,"
                     " lease_expires_at = clock_timestamp() + make_interval(secs => %(s)s) WHERE id = %(id)s",
                     {"owner": owner, "s": seconds, "id": job_id})


def test_a_runner_cut_off_from_the_database_judges_others_only_after_a_full_lease_connected(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str) -> None:
    """Runner R reaches Postgres through a proxy; its link freezes for longer than the lease, so every
    lease, its own and another runner's, runs out. Once the link is back, R renews its own lease
    first and takes the other runner's run only after a full lease of being connected."""
    parts = urlsplit(settings.database_url or "")
    proxy = FaultProxy(0, (parts.hostname or "127.0.0.1", parts.port or 5432)).start()
    r_db = Database(_via(settings.database_url or "", proxy.port), max_size=8)
    mine = jobs.schedule_job(thread_id="telegram:1", name="mine", at="now", limits=Limits(timeout_seconds=90),
                             script_text="import time\ntime.sleep(80)\n")
    before = jobs.schedule_job(thread_id="telegram:2", name="before", at="in 1 hour", script_text="pass\n")
    theirs = jobs.schedule_job(thread_id="telegram:3", name="theirs", at="in 1 hour", script_text="pass\n")
    _as_run_of(db, before["id"], "dead-before", -1)  # a dead runner's run, expired already
    r = Scheduler(settings.with_(runner_id="judge", lease_seconds=LEASE), r_db, docker_client)
    tr = threading.Thread(target=r.run, name="runner-r")
    tr.start()
    try:
        # R judges a dead runner's expired run once connected a lease: R is up and trusted now.
        wait_for(lambda: _taken_from(jobs, before["id"], "dead-before"), 60, "R to take the dead runner's run")
        wait_for(lambda: jobs.get_job(mine["id"])["lease_owner"] == "judge"
                 and [c for c in _containers(docker_client, store_id, mine["id"]) if c.status == "running"],
                 60, "R's own job to run")
        _as_run_of(db, theirs["id"], "also-cut-off", 2)  # another runner, cut off by the same outage
        proxy.stall(both=True)
        wait_for(lambda: db.one("get_job", {"id": theirs["id"]})["lease_expires_at"] < _db_now(db)
                 and db.one("get_job", {"id": mine["id"]})["lease_expires_at"] < _db_now(db),
                 3 * LEASE, "both leases to run out during the outage")
        expired = jobs.get_job(mine["id"])["lease_expires_at"]
        assert not _taken_from(jobs, theirs["id"], "also-cut-off")
        proxy.release()
        renewed = wait_for(lambda: jobs.get_job(mine["id"])["lease_expires_at"] > expired and time.monotonic(),
                           3 * LEASE, "R to renew its own lease")
        taken = wait_for(lambda: _taken_from(jobs, theirs["id"], "also-cut-off") and time.monotonic(),
                         6 * LEASE, "R to take the other runner's run in the end")
        assert taken - renewed >= LEASE - 0.5, (
            f"R judged the other runner dead {taken - renewed:.1f} s after reconnecting, before a full lease ({LEASE} s)")
        row = jobs.get_job(mine["id"])
        assert (row["status"], row["lease_owner"]) == ("running", "judge"), "R lost its own live run"
    finally:
        proxy.release()
        r.stop()
        for c in _containers(docker_client, store_id, mine["id"]):
            c.kill()
        tr.join(timeout=90)
        r_db.close()
        proxy.close()
    assert not tr.is_alive()


def _db_now(db: Database) -> datetime:
    return db.query("SELECT clock_timestamp() AS now")[0]["now"]
