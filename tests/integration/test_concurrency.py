"""Two runners on one database, and a runner killed in the middle of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

import docker

from runner import sandbox
from runner.scheduler import Scheduler
from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database
from runner.threads import jobs_dir

from .helpers import ROOT, RUNNER_CLI, cli_env, wait_for

THREAD = "telegram:7"


SPAN = ("import time\nt0 = time.time()\ntime.sleep(0.5)\n"
        "with open('jobs/{name}_span.txt', 'w') as f:\n    f.write(f'{{t0}} {{time.time()}}')\n")


def _spans(settings: Settings, thread: str, names: list[str]) -> list[tuple[float, float]]:
    d = jobs_dir(settings.data_dir, thread)
    return sorted(tuple(map(float, (d / f"{n}_span.txt").read_text().split())) for n in names)  # type: ignore[misc]


def _burst_side_by_side(runners: list[Scheduler]) -> None:
    """Run the schedulers' bursts at once, each in a thread of its own, and wait until all are done."""
    threads = [threading.Thread(target=r.run, kwargs={"burst": True}) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
        assert not t.is_alive()


def test_runs_of_one_thread_never_overlap_across_two_runners(jobs: Jobs, settings: Settings, db: Database,
                                                             docker_client: docker.DockerClient) -> None:
    names = [f"s{i}" for i in range(6)]
    for name in names:
        jobs.schedule_job(thread_id=THREAD, name=name, at="now", script_text=SPAN.format(name=name))
    other = [jobs.schedule_job(thread_id="telegram:8", name=f"o{i}", at="now", script_text=SPAN.format(name=f"o{i}"))
             for i in range(2)]
    _burst_side_by_side([Scheduler(settings.with_(runner_id=f"r{i}", concurrency=4), db, docker_client)
                         for i in range(2)])
    assert {r["status"] for r in jobs.list_jobs()} == {"completed"}
    spans = _spans(settings, THREAD, names)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"two runs of one thread overlapped: {spans}"
    # Another thread is not held up by this one: its runs went beside this thread's.
    first, last = spans[0][0], spans[-1][1]
    assert any(first < s < last for s, _ in _spans(settings, "telegram:8", [o["name"] for o in other])), spans


def test_more_runs_of_one_thread_at_once_when_the_operator_allows(jobs: Jobs, settings: Settings, db: Database,
                                                                  docker_client: docker.DockerClient) -> None:
    names = [f"p{i}" for i in range(3)]
    for name in names:
        jobs.schedule_job(thread_id=THREAD, name=name, at="now", script_text=SPAN.format(name=name))
    Scheduler(settings.with_(concurrency=3, thread_concurrency=3), db, docker_client).run(burst=True)
    spans = _spans(settings, THREAD, names)
    assert spans[1][0] < spans[0][1], f"the runs should have overlapped: {spans}"


def test_two_runners_run_each_of_50_due_jobs_exactly_once(jobs: Jobs, settings: Settings, db: Database,
                                                          docker_client: docker.DockerClient) -> None:
    names = [f"j{i:02d}" for i in range(50)]
    for name in names:
        jobs.schedule_job(thread_id=THREAD, name=name, at="now",
                          script_text=f"with open('jobs/{name}_runs.txt', 'a') as f:\n    f.write('x')\n")
    # Runs of one thread side by side (allowed here): the race between the two runners' claims is the point.
    _burst_side_by_side([Scheduler(settings.with_(runner_id=f"r{i}", concurrency=3, thread_concurrency=6), db,
                                   docker_client) for i in range(2)])

    rows = jobs.list_jobs(thread_id=THREAD)
    assert len(rows) == 50
    assert {r["status"] for r in rows} == {"completed"}, [r["error_message"] for r in rows if r["error_message"]]
    assert {r["attempts"] for r in rows} == {1}
    d = jobs_dir(settings.data_dir, THREAD)
    for name in names:
        assert (d / f"{name}_runs.txt").read_text() == "x", f"{name} ran more or less than once"


def test_killed_runner_is_recovered_and_its_container_removed(jobs: Jobs, settings: Settings, db: Database,
                                                              docker_client: docker.DockerClient, store_id: str) -> None:
    # Its container outlives the runner: the survivor adopts it and stops it at its time limit.
    job = jobs.schedule_job(thread_id=THREAD, name="long", at="now", every="hourly",
                            limits=Limits(timeout_seconds=15),
                            script_text="import time\nprint('working', flush=True)\ntime.sleep(120)\n")
    env = cli_env(settings, RUNNER_LEASE_SECONDS="5", RUNNER_ID="doomed-runner")
    proc = subprocess.Popen([*RUNNER_CLI, "up", "--no-build"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        def running_container() -> list:
            return [c for c in sandbox.managed_containers(docker_client, store_id)
                    if c.labels.get(sandbox.LABEL_JOB) == str(job["id"]) and c.status == "running"]

        wait_for(running_container, 60, "the doomed runner's job container to run")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert jobs.get_job(job["id"])["status"] == "running"
    assert running_container(), "the orphan container must still be there before recovery"

    survivor = Scheduler(settings.with_(runner_id="survivor", lease_seconds=5), db, docker_client)
    t = threading.Thread(target=survivor.run)
    t.start()
    try:
        wait_for(lambda: jobs.get_job(job["id"])["status"] == "failed", 60, "lease recovery")
        wait_for(lambda: not [c for c in sandbox.managed_containers(docker_client, store_id)
                              if c.labels.get(sandbox.LABEL_JOB) == str(job["id"])], 30, "the orphan to be removed")
    finally:
        survivor.stop()
        t.join(timeout=60)
    row = jobs.get_job(job["id"])
    assert row["error_message"] == "timed out after 15 s"
    assert "working" in row["output_tail"], "the adopted container's output is the run's"
    series = [r for r in jobs.list_jobs(thread_id=THREAD) if r["series_id"] == job["series_id"]]
    assert sorted(r["status"] for r in series) == ["failed", "pending"], "the recurring job keeps its next run"


def test_runners_of_two_databases_leave_each_others_containers_alone(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str, pg_admin_url: str) -> None:
    import psycopg
    from psycopg import sql

    from tests.conftest import TEMPLATE, _with_db

    other_name = f"other_{os.getpid()}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(other_name), sql.Identifier(TEMPLATE)))
    other_db = Database(_with_db(pg_admin_url, other_name))
    try:
        other = Jobs(settings.with_(runner_id="other"), other_db)
        done = other.schedule_job(thread_id=THREAD, name="quick", at="now", script_text="pass\n")
        Scheduler(settings.with_(runner_id="other"), other_db, docker_client).run(burst=True)
        assert other.get_job(done["id"])["status"] == "completed"
        # In our database the same job id is a long run, now running.
        mine = jobs.schedule_job(thread_id=THREAD, name="long", at="now", limits=Limits(timeout_seconds=60),
                                 script_text="import time\ntime.sleep(60)\n")
        assert mine["id"] == done["id"]
        ours = Scheduler(settings, db, docker_client)
        t = threading.Thread(target=ours.run, kwargs={"burst": True})
        t.start()
        try:
            wait_for(lambda: [c for c in sandbox.managed_containers(docker_client, store_id) if c.status == "running"], 30,
                     "our job's container")
            removed = Scheduler(settings.with_(runner_id="other"), other_db, docker_client).janitor.remove_orphans()
            assert removed == 0, "another database's runner must not remove our container"
            assert jobs.get_job(mine["id"])["status"] == "running"
        finally:
            for c in sandbox.managed_containers(docker_client, store_id):
                c.kill()
            t.join(timeout=60)
    finally:
        row = other_db.one("ensure_store_id")
        other_db.close()
        if row is not None:  # the other database is dropped: its uids on the engine go with it
            sandbox.release_uids(docker_client, row["value"])
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(other_name)))
