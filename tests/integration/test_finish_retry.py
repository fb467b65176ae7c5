"""Issue 12, item 2 (first half): a run that ends while the database is away keeps its result and message.

The outage is real for the runner: its database refuses connections and every session to it is
terminated (the server, shared by this session's other tests, stays up)."""

from __future__ import annotations

import logging
import threading

import docker
import psycopg
import pytest
from psycopg import sql

from runner import sandbox
from runner.errors import DatabaseError
from runner.scheduler import Scheduler
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database
from runner.threads import jobs_dir

from .helpers import wait_for


def _cut(admin_url: str, dbname: str, allow: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(dbname), sql.SQL("true" if allow else "false")))
        if not allow:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))


def _status(jobs: Jobs, job_id: int) -> str | None:
    try:
        return jobs.get_job(job_id)["status"]
    except DatabaseError:  # this test's own pool had its sessions cut too: asked again
        return None


def test_a_run_that_ends_during_an_outage_is_recorded_with_its_message_once_the_database_is_back(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str,
        pg_admin_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    dbname = (settings.database_url or "").rpartition("/")[2]
    job = jobs.schedule_job(thread_id="telegram:9", name="during", at="now", script_text=(
        "import time\nprint('begin', flush=True)\ntime.sleep(3)\n"
        "open('jobs/during_message.txt', 'w').write('written during the outage')\n"))
    runner_db = Database(settings.database_url or "", max_size=6)
    sched = Scheduler(settings, runner_db, docker_client)
    # The worker alone (the loop's own survival of an outage is another test's): claimed, then run.
    [claimed] = sched.claim(1)
    worker = threading.Thread(target=sched.run_claimed, args=(claimed,))
    worker.start()
    try:
        wait_for(lambda: [c for c in sandbox.managed_containers(docker_client, store_id) if c.status == "running"],
                 60, "the job running")
        _cut(pg_admin_url, dbname, allow=False)
        try:
            wait_for(lambda: [c for c in sandbox.managed_containers(docker_client, store_id) if c.status == "exited"],
                     30, "the script to end during the outage")
            wait_for(lambda: "recording its result" in caplog.text, 60, "the runner to retry recording the result")
        finally:
            _cut(pg_admin_url, dbname, allow=True)
        wait_for(lambda: _status(jobs, job["id"]) not in (None, "running"), 120, "the result to be recorded")
    finally:
        worker.join(timeout=120)
        sched.pool.shutdown()
        runner_db.close()
    row = jobs.get_job(job["id"])
    assert (row["status"], row["exit_code"]) == ("completed", 0), row["error_message"]
    assert "begin" in row["output_tail"]
    assert [(m["kind"], m["text"]) for m in db.all("messages_for_job", {"job_id": job["id"]})] == [
        ("message", "written during the outage")]
    assert not (jobs_dir(settings.data_dir, "telegram:9") / "during_message.txt").exists()
    assert "unexpected error" not in caplog.text
    wait_for(lambda: not sandbox.managed_containers(docker_client, store_id), 30, "its container removed")
