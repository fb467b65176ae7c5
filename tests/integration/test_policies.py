"""Per-job policies against real Postgres and real containers: missed runs across a runner's
downtime, overlap, retries, chaining, pause/resume, edits and history pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import docker

from runner.schedule import AFTER_SENTINEL
from runner.scheduler import Scheduler
from runner.service import Jobs, Limits, Policy
from runner.settings import Settings
from runner.store import Database
from runner.store.runs import RunsStore

from .helpers import run_burst

THREAD = "telegram:31"


def _series(jobs: Jobs, row: dict) -> list[dict]:
    return sorted((r for r in jobs.list_jobs(thread_id=THREAD) if r["series_id"] == row["series_id"]),
                  key=lambda r: r["id"])


def _set_due(db: Database, job_id: int, due: datetime) -> None:
    with db.transaction() as conn:
        conn.execute("UPDATE scheduled_jobs SET due_time = %s WHERE id = %s", (due, job_id))


def test_missed_runs_within_grace_run_once_and_are_recorded(jobs: Jobs, settings: Settings, db: Database,
                                                            docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="tick", every="* * * * *", script_text="print('tick')\n")
    # The runner was down for five minutes: the pending run is five minutes overdue.
    _set_due(db, job["id"], (datetime.now(UTC) - timedelta(minutes=5)).replace(second=0, microsecond=0))
    run_burst(settings, db, docker_client)
    rows = _series(jobs, job)
    assert [r["status"] for r in rows] == ["completed", "pending"], "one run, never a burst of backlog runs"
    assert rows[0]["missed_runs"] >= 4 and "missed while the runner was down" in rows[0]["skipped_note"]
    assert rows[1]["due_time"] > datetime.now(UTC) - timedelta(seconds=5)


def test_missed_run_beyond_grace_is_skipped(jobs: Jobs, settings: Settings, db: Database,
                                            docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="yearly", every="0 0 1 1 *", tz="UTC",
                            script_text="open('jobs/ran', 'w').write('x')\n", policy=Policy(grace_seconds=600))
    _set_due(db, job["id"], datetime(2026, 1, 1, tzinfo=UTC))  # down since new year
    run_burst(settings, db, docker_client)
    rows = _series(jobs, job)
    assert [r["status"] for r in rows] == ["cancelled", "pending"]
    assert rows[0]["error_message"].startswith("missed 1 run(s) while the runner was down")
    assert rows[0]["exit_code"] is None, "no container ran"
    assert rows[1]["due_time"] == datetime(2027, 1, 1, tzinfo=UTC)
    assert not (settings.data_dir / "telegram_31" / "jobs" / "ran").exists()


def test_overlap_skip_with_a_run_that_spans_a_slot(jobs: Jobs, settings: Settings, db: Database,
                                                   docker_client: docker.DockerClient) -> None:
    # Every minute; the run sleeps past the next minute boundary, so that slot falls due while it runs.
    script = "import time\ntime.sleep(60 - time.time() % 60 + 1.5)\n"
    job = jobs.schedule_job(thread_id=THREAD, name="long", every="* * * * *", at="now", script_text=script,
                            limits=Limits(timeout_seconds=90))
    run_burst(settings, db, docker_client)
    rows = _series(jobs, job)
    assert [r["status"] for r in rows] == ["completed", "pending"]
    assert rows[0]["skipped_note"] == "1 later run(s) skipped: this run was still running when they fell due"
    assert rows[1]["due_time"] > rows[0]["completed_at"], "the overlapped slot is not run late"


def test_overlap_queue_runs_the_overlapped_slot_next(jobs: Jobs, db: Database) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="q", every="* * * * *", script_text="pass\n",
                            policy=Policy(overlap="queue"))
    now = datetime.now(UTC)
    slot = (now - timedelta(minutes=3)).replace(second=0, microsecond=0)
    finished = {**job, "due_time": slot, "started_at": slot, "status": "completed"}
    RunsStore(db).schedule_next(finished, now)
    rows = _series(jobs, job)
    assert rows[-1]["due_time"] == slot + timedelta(minutes=1), "queue: the first overlapped slot runs next"


def test_retries_with_backoff_then_success(jobs: Jobs, settings: Settings, db: Database,
                                           docker_client: docker.DockerClient) -> None:
    script = ("import os\nn = len(open('jobs/tries').read()) if os.path.exists('jobs/tries') else 0\n"
              "open('jobs/tries', 'a').write('x')\nif n < 2:\n    raise SystemExit(f'try {n} fails')\n")
    job = jobs.schedule_job(thread_id=THREAD, name="flaky", at="now", script_text=script,
                            policy=Policy(retries=2, retry_delay_seconds=0))
    printed = run_burst(settings, db, docker_client)
    row = jobs.get_job(job["id"])
    assert row["status"] == "completed" and row["attempts"] == 3
    assert (settings.data_dir / "telegram_31" / "jobs" / "tries").read_text() == "xxx"
    assert "failure notice" not in printed, "a failure that a retry fixed is not reported"


def test_retries_exhausted_fail_once(jobs: Jobs, settings: Settings, db: Database,
                                     docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="bad", at="now", script_text="import time\ntime.sleep(5)\n",
                            limits=Limits(timeout_seconds=1), policy=Policy(retries=1, retry_delay_seconds=0))
    printed = run_burst(settings, db, docker_client)
    row = jobs.get_job(job["id"])
    assert row["status"] == "failed" and row["attempts"] == 2 and row["error_message"] == "timed out after 1 s"
    assert printed.count("failure notice") == 1


def test_chaining_runs_after_success_only(jobs: Jobs, settings: Settings, db: Database,
                                          docker_client: docker.DockerClient) -> None:
    first = jobs.schedule_job(thread_id=THREAD, name="fetch", at="in 1 hour",
                              script_text="import json\njson.dump({'n': 7}, open('jobs/fetch_output.json', 'w'))\n")
    second = jobs.schedule_job(thread_id=THREAD, name="report", after="fetch", script_text=(
        "import json\nn = json.load(open('jobs/fetch_output.json'))['n']\n"
        "open('jobs/report_message.txt', 'w').write(f'fetched {n}')\n"))
    assert second["due_time"] == AFTER_SENTINEL
    run_burst(settings, db, docker_client)
    assert jobs.get_job(second["id"])["status"] == "pending", "nothing ran: fetch has not completed"
    jobs.run_job_now(first["id"])
    printed = run_burst(settings, db, docker_client)
    assert "fetched 7" in printed
    chain = _series(jobs, second)
    assert [r["status"] for r in chain] == ["completed", "pending"] and chain[1]["due_time"] == AFTER_SENTINEL


def test_chained_job_does_not_run_after_a_failure(jobs: Jobs, settings: Settings, db: Database,
                                                  docker_client: docker.DockerClient) -> None:
    jobs.schedule_job(thread_id=THREAD, name="up", at="now", script_text="raise SystemExit(1)\n")
    down = jobs.schedule_job(thread_id=THREAD, name="down", after="up", script_text="print('ran')\n")
    run_burst(settings, db, docker_client)
    assert [r["status"] for r in _series(jobs, down)] == ["pending"]


def test_pause_resume_update_keep_history(jobs: Jobs, settings: Settings, db: Database,
                                          docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="p", at="now", every="hourly", script_text="print(1)\n")
    jobs.pause_job(job["id"])
    run_burst(settings, db, docker_client)
    assert jobs.get_job(job["id"])["status"] == "pending", "a paused job is not run"
    jobs.resume_job(job["id"])
    run_burst(settings, db, docker_client)
    rows = _series(jobs, job)
    assert [r["status"] for r in rows] == ["completed", "pending"]
    updated = jobs.update_job(rows[0]["id"], every="daily 7am", limits=Limits(timeout_seconds=45), tz="Europe/Berlin")
    assert updated["id"] == rows[1]["id"] and updated["recurrence"] == "daily 7am" and updated["timeout_seconds"] == 45
    assert updated["due_time"].astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")).hour == 7
    assert len(_series(jobs, job)) == 2, "history is kept"


def test_history_is_pruned_to_the_last_n_runs(jobs: Jobs, settings: Settings, db: Database,
                                              docker_client: docker.DockerClient) -> None:
    s = settings.with_(history_keep=3)
    job = jobs.schedule_job(thread_id=THREAD, name="h", at="now", every="hourly", script_text="pass\n")
    for _ in range(5):
        pending = [r for r in _series(jobs, job) if r["status"] == "pending"][0]
        jobs.run_job_now(pending["id"])
        Scheduler(s, db, docker_client).run(burst=True)
    rows = _series(jobs, job)
    assert len(rows) == 3 and rows[-1]["status"] == "pending"
