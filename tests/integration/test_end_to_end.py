"""The foundation end to end: real Postgres, real containers, the seed's three patterns."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from runner.scheduler import Scheduler
from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import QUERIES, Database
from runner.store.runs import RunsStore
from runner.threads import jobs_dir

from .helpers import run_burst

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
THREAD = "telegram:42"


def _row(jobs: Jobs, job_id: int) -> dict:
    return jobs.get_job(job_id)


def test_price_check_message_delivered_and_removed_output_kept(jobs: Jobs, settings: Settings, db: Database,
                                                               docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="check_price", script=EXAMPLES / "check_price.py", at="now")
    printed = run_burst(settings, db, docker_client)

    row = _row(jobs, job["id"])
    assert row["status"] == "completed", row["error_message"]
    assert row["exit_code"] == 0 and row["error_message"] is None
    assert row["started_at"] is not None and row["completed_at"] >= row["started_at"]
    assert "price 89.99 (demo)" in row["output_tail"]
    assert "Price alert: $89.99" in printed and "telegram:42" in printed
    d = jobs_dir(settings.data_dir, THREAD)
    assert not (d / "check_price_message.txt").exists(), "the message file must be deleted after queueing"
    assert json.loads((d / "check_price_output.json").read_text()) == {"price": 89.99, "below_threshold": True}
    msgs = jobs.get_job_logs(job["id"])["messages"]
    assert [m["status"] for m in msgs] == ["sent"]


def test_price_check_above_threshold_sends_nothing(jobs: Jobs, settings: Settings, db: Database,
                                                   docker_client: docker.DockerClient) -> None:
    d = jobs_dir(settings.data_dir, THREAD)
    job = jobs.schedule_job(thread_id=THREAD, name="check_price", script=EXAMPLES / "check_price.py", at="now")
    (d / "price.json").write_text('{"price": 120}')
    printed = run_burst(settings, db, docker_client)
    assert _row(jobs, job["id"])["status"] == "completed"
    assert printed == ""
    assert json.loads((d / "check_price_output.json").read_text())["price"] == 120


def test_chained_jobs_read_previous_output(jobs: Jobs, settings: Settings, db: Database,
                                           docker_client: docker.DockerClient) -> None:
    first = jobs.schedule_job(thread_id=THREAD, name="chain_fetch", script=EXAMPLES / "chain_fetch.py", at="now")
    run_burst(settings, db, docker_client)
    second = jobs.schedule_job(thread_id=THREAD, name="chain_report", script=EXAMPLES / "chain_report.py", at="now")
    printed = run_burst(settings, db, docker_client)
    assert _row(jobs, first["id"])["status"] == "completed"
    assert _row(jobs, second["id"])["status"] == "completed"
    assert "Daily report: 5 orders, total $87.50" in printed
    out = json.loads((jobs_dir(settings.data_dir, THREAD) / "chain_report_output.json").read_text())
    assert out == {"orders": 5, "total": 87.5}


def test_loops_example(jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="loops", script=EXAMPLES / "loops.py", at="now")
    printed = run_burst(settings, db, docker_client)
    assert _row(jobs, job["id"])["status"] == "completed"
    # The console frames each line of a job's text with "| " (so none can pass for a header).
    assert "| Checked 3 times; shopping list:\n| - apples\n| - bread\n| - coffee" in printed


def test_failing_script_is_failed_with_the_exception(jobs: Jobs, settings: Settings, db: Database,
                                                     docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="boom", script_text="print('before')\n1 / 0\n", at="now")
    run_burst(settings, db, docker_client)
    row = _row(jobs, job["id"])
    assert row["status"] == "failed"
    assert row["exit_code"] == 1
    assert row["error_message"] == "exit code 1: ZeroDivisionError: division by zero"
    assert "before" in row["output_tail"] and "Traceback" in row["output_tail"]


def test_timeout_kills_the_job(jobs: Jobs, settings: Settings, db: Database,
                               docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="sleeper", at="now", limits=Limits(timeout_seconds=2),
                            script_text="import time\nprint('start', flush=True)\ntime.sleep(60)\n")
    t0 = datetime.now(UTC)
    run_burst(settings, db, docker_client)
    took = datetime.now(UTC) - t0
    row = _row(jobs, job["id"])
    assert row["status"] == "failed"
    assert row["error_message"] == "timed out after 2 s"
    assert "start" in row["output_tail"]
    assert took < timedelta(seconds=20)


def test_missing_script_fails_with_a_clear_reason(jobs: Jobs, settings: Settings, db: Database,
                                                  docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="gone", script_text="print(1)\n", at="now")
    (jobs_dir(settings.data_dir, THREAD) / "gone.py").unlink()
    run_burst(settings, db, docker_client)
    row = _row(jobs, job["id"])
    assert row["status"] == "failed"
    assert row["error_message"].startswith("script jobs/gone.py not found in thread telegram:42")


def test_missing_image_fails_with_make_image_hint(jobs: Jobs, settings: Settings, db: Database,
                                                  docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="x", script_text="print(1)\n", at="now")
    run_burst(settings.with_(image="runner-no-such-image:latest"), db, docker_client)
    row = _row(jobs, job["id"])
    assert row["status"] == "failed"
    assert row["error_message"] == "image runner-no-such-image:latest not found: run make image (or runner image build)"


def test_recurring_job_gets_exactly_one_next_instance(jobs: Jobs, settings: Settings, db: Database,
                                                      docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="tick", script_text="print('tick')\n", at="now",
                            every="daily 9am", tz="Europe/Berlin")
    run_burst(settings, db, docker_client)
    rows = [r for r in jobs.list_jobs(thread_id=THREAD) if r["series_id"] == job["series_id"]]
    assert sorted(r["status"] for r in rows) == ["completed", "pending"]
    nxt = next(r for r in rows if r["status"] == "pending")
    local = nxt["due_time"].astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (9, 0)
    assert nxt["due_time"] > datetime.now(UTC)
    assert nxt["recurrence"] == "daily 9am" and nxt["timezone"] == "Europe/Berlin"
    # Finishing the same run again (a second runner, a retry) cannot add a second next instance.
    done = next(r for r in rows if r["status"] == "completed")
    runs = RunsStore(db)
    runs.schedule_next(done, datetime.now(UTC))
    runs.schedule_next(done, datetime.now(UTC))
    again = [r for r in jobs.list_jobs(thread_id=THREAD) if r["series_id"] == job["series_id"]]
    assert len(again) == 2


def test_cancel_pending_job_stops_it(jobs: Jobs, settings: Settings, db: Database,
                                     docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="later", script_text="print(1)\n", at="now", every="hourly")
    cancelled = jobs.cancel_job(job["id"])
    assert cancelled["status"] == "cancelled"
    run_burst(settings, db, docker_client)
    rows = jobs.list_jobs(thread_id=THREAD)
    assert [r["status"] for r in rows] == ["cancelled"]


def test_message_is_queued_once_even_if_finish_is_repeated(jobs: Jobs, db: Database) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="m", script_text="print(1)\n", at="now")
    params = {"job_id": job["id"], "kind": "message", "thread_id": THREAD, "job_name": "m", "text": "hi",
              "chat_id": "42"}
    with db.transaction() as conn:
        first = conn.execute(QUERIES["queue_message"], params).fetchall()
        second = conn.execute(QUERIES["queue_message"], params).fetchall()
    assert len(first) == 1 and second == []


@pytest.mark.parametrize("bad", ["../x", "Telegram:1", "telegram:a_b", "telegram", ""])
def test_bad_thread_ids_are_refused_before_anything_is_saved(jobs: Jobs, bad: str) -> None:
    from runner.errors import ValidationError

    with pytest.raises(ValidationError, match="thread id"):
        jobs.schedule_job(thread_id=bad, name="x", script_text="print(1)\n")
    assert jobs.list_jobs() == []


def test_scripts_begin_at_their_due_time_never_before(jobs: Jobs, settings: Settings, db: Database,
                                                      docker_client: docker.DockerClient) -> None:
    """Containers are started ahead of time (the engine is slow to start them); the launcher inside
    holds the script until the due time, so a job due at midnight never sees the day before."""
    import threading

    from .helpers import wait_for

    script = "import time\nprint(repr(time.time()))\n"
    base = datetime.now(UTC) + timedelta(seconds=3)
    ids = [jobs.schedule_job(thread_id=THREAD, name=f"clock{i}", script_text=script,
                             at=(base + timedelta(seconds=0.7 * i)).isoformat())["id"] for i in range(5)]
    sched = Scheduler(settings, db, docker_client)
    t = threading.Thread(target=sched.run)
    t.start()
    try:
        wait_for(lambda: all(_row(jobs, i)["status"] == "completed" for i in ids), 40, "the five runs")
    finally:
        sched.stop()
        t.join(timeout=60)
    for i in ids:
        row = _row(jobs, i)
        late = float(row["output_tail"].split()[0]) - row["due_time"].timestamp()
        assert 0 <= late < 0.5, (i, late)
        assert row["started_at"] >= row["due_time"]  # recorded as the script's start, not the container's
        assert row["duration_ms"] < 5000
