"""Issue 12, items 3 and 4: what a dead runner left is adopted, and a frozen runner touches nothing it lost.

Real `runner up` subprocesses (kill -9, SIGSTOP), the real engine and Postgres, a 6 s lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest

from runner import sandbox
from runner.scheduler import Scheduler
from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database
from runner.threads import jobs_dir

from .helpers import wait_for

LEASE = 6
ROOT = Path(__file__).parents[2]


def _script(name: str, sleep: float, message: str) -> str:
    return (f"import time\nwith open('jobs/{name}_runs.txt', 'a') as f:\n    f.write('x')\n"
            f"print('begin', flush=True)\ntime.sleep({sleep})\n"
            f"with open('jobs/{name}_message.txt', 'w') as f:\n    f.write({message!r})\nprint('end')\n")


class Runner:
    """A `runner up` subprocess on the test's database, its log in a file."""

    def __init__(self, settings: Settings, tmp: Path, runner_id: str, **env: str) -> None:
        self.log = tmp / f"{runner_id}-{os.urandom(3).hex()}.log"
        full = {**os.environ, "DATABASE_URL": settings.database_url or "", "RUNNER_DATA_DIR": str(settings.data_dir),
                "RUNNER_IMAGE": settings.image, "RUNNER_LEASE_SECONDS": str(LEASE), "RUNNER_ID": runner_id,
                "RUNNER_POLL_INTERVAL": "1", **env}
        full.pop("TELEGRAM_BOT_TOKEN", None)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "up", "--no-build"], env=full,
                                         stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    started: list[Runner] = []
    yield started
    for r in started:
        r.stop()


def _containers(dc: docker.DockerClient, store: str, job_id: int, status: str | None = None) -> list[Any]:
    return [c for c in sandbox.managed_containers(dc, store)
            if c.labels.get(sandbox.LABEL_JOB) == str(job_id) and c.labels.get(sandbox.LABEL_ROLE) == "job"
            and (status is None or c.status == status)]


def _status(jobs: Jobs, job_id: int) -> str:
    return jobs.get_job(job_id)["status"]


def _messages(db: Database, job_id: int) -> list[dict[str, Any]]:
    return db.all("messages_for_job", {"job_id": job_id})


def test_a_killed_runners_runs_are_adopted_with_their_results_and_messages(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str,
        tmp_path: Path, runners: list[Runner]) -> None:
    quick = jobs.schedule_job(thread_id="telegram:1", name="quick", at="now", script_text=_script("quick", 1, "quick done"))
    slow = jobs.schedule_job(thread_id="telegram:2", name="slow", at="now", limits=Limits(timeout_seconds=60),
                             script_text=_script("slow", 18, "slow done"))
    over = jobs.schedule_job(thread_id="telegram:3", name="over", at="now", limits=Limits(timeout_seconds=14),
                             script_text=_script("over", 300, "never"))
    doomed = Runner(settings, tmp_path, "doomed")
    runners.append(doomed)
    for job in (quick, slow, over):
        wait_for(lambda j=job: _containers(docker_client, store_id, j["id"], "running"), 90, f"{job['name']} running")
    doomed.kill()
    # The scripts go on without their runner: the quick one exits before anyone looks.
    wait_for(lambda: _containers(docker_client, store_id, quick["id"], "exited"), 30, "the quick script to exit")
    assert {_status(jobs, j["id"]) for j in (quick, slow, over)} == {"running"}

    runners.append(Runner(settings, tmp_path, "doomed"))  # the same runner, restarted
    for job in (quick, slow, over):
        wait_for(lambda j=job: _status(jobs, j["id"]) != "running", 90, f"{job['name']} to be recorded")
    rows = {j["name"]: jobs.get_job(j["id"]) for j in (quick, slow, over)}
    assert (rows["quick"]["status"], rows["quick"]["exit_code"]) == ("completed", 0), rows["quick"]["error_message"]
    assert "begin" in rows["quick"]["output_tail"] and "end" in rows["quick"]["output_tail"]
    assert (rows["slow"]["status"], rows["slow"]["exit_code"]) == ("completed", 0), rows["slow"]["error_message"]
    assert rows["over"]["status"] == "failed"
    assert rows["over"]["error_message"] == "timed out after 14 s"
    assert [(m["kind"], m["text"]) for m in _messages(db, quick["id"])] == [("message", "quick done")]
    assert [(m["kind"], m["text"]) for m in _messages(db, slow["id"])] == [("message", "slow done")]
    assert [m["kind"] for m in _messages(db, over["id"])] == ["failure"]
    for job in (quick, slow):
        d = jobs_dir(settings.data_dir, job["thread_id"])
        assert (d / f"{job['name']}_runs.txt").read_text() == "x", "ran once"
        assert not (d / f"{job['name']}_message.txt").exists(), "queued, then its file deleted"
    wait_for(lambda: not any(_containers(docker_client, store_id, j["id"]) for j in (quick, slow, over)), 30,
             "the adopted containers to be removed")


def test_a_claimed_run_whose_script_never_started_runs_again(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str,
        tmp_path: Path, runners: list[Runner]) -> None:
    due = datetime.now(UTC) + timedelta(seconds=25)
    created = jobs.schedule_job(thread_id="telegram:4", name="ahead", at=due.isoformat(),
                                script_text=_script("ahead", 0, "ahead done"))
    doomed = Runner(settings, tmp_path, "doomed", RUNNER_PREPARE_SECONDS="30")
    runners.append(doomed)
    [ahead] = wait_for(lambda: _containers(docker_client, store_id, created["id"], "created"), 60,
                       "the container created ahead")
    doomed.kill()
    # Claimed by a runner that died before it made a container at all.
    bare = jobs.schedule_job(thread_id="telegram:5", name="bare", at="now", script_text=_script("bare", 0, "bare done"))
    db.query("UPDATE scheduled_jobs SET status = 'running', lease_owner = 'ghost', attempts = 1, "
             f"started_at = now(), lease_expires_at = now() + interval '2 seconds' WHERE id = {int(bare['id'])}")
    assert _status(jobs, created["id"]) == "running"

    runners.append(Runner(settings, tmp_path, "survivor"))
    for job in (created, bare):
        wait_for(lambda j=job: _status(jobs, j["id"]) not in ("running", "pending"), 90, f"{job['name']} to run again")
        row = jobs.get_job(job["id"])
        assert (row["status"], row["exit_code"]) == ("completed", 0), row["error_message"]
        assert [(m["kind"], m["text"]) for m in _messages(db, job["id"])] == [("message", f"{job['name']} done")]
        assert (jobs_dir(settings.data_dir, job["thread_id"]) / f"{job['name']}_runs.txt").read_text() == "x"
    assert ahead.id not in {c.id for c in _containers(docker_client, store_id, created["id"])}, "never started, removed"
    # The run's own container goes right after its result is committed.
    wait_for(lambda: not _containers(docker_client, store_id, created["id"]), 30, "no container of the run left")


def test_a_run_whose_container_is_gone_fails_and_its_chat_is_told(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str,
        tmp_path: Path, runners: list[Runner]) -> None:
    job = jobs.schedule_job(thread_id="telegram:6", name="lost", at="now", every="hourly",
                            limits=Limits(timeout_seconds=120), script_text=_script("lost", 120, "never"))
    doomed = Runner(settings, tmp_path, "doomed")
    runners.append(doomed)
    container = wait_for(lambda: _containers(docker_client, store_id, job["id"], "running"), 90, "the job running")[0]
    doomed.kill()
    container.remove(force=True)  # the script had started; its container (and its result) are gone

    runners.append(Runner(settings, tmp_path, "survivor"))
    wait_for(lambda: _status(jobs, job["id"]) != "running", 60, "the run to be recovered")
    row = jobs.get_job(job["id"])
    assert (row["status"], row["error_message"]) == ("failed", "runner stopped during the run")
    notices = _messages(db, job["id"])
    assert [(m["kind"], m["text"]) for m in notices] == [("failure", "Job lost failed: runner stopped during the run")]
    series = [r for r in jobs.list_jobs(thread_id=job["thread_id"]) if r["series_id"] == job["series_id"]]
    assert sorted(r["status"] for r in series) == ["failed", "pending"], "the recurring job keeps its next run"


def test_a_frozen_runner_does_nothing_with_the_runs_it_lost(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str,
        tmp_path: Path, runners: list[Runner]) -> None:
    # 'busy' is running when the runner freezes; 'ahead' has its container created, to start at its due time.
    busy = jobs.schedule_job(thread_id="telegram:7", name="busy", at="now", limits=Limits(timeout_seconds=60),
                             script_text=_script("busy", 14, "busy done"))
    due = datetime.now(UTC) + timedelta(seconds=20)
    ahead = jobs.schedule_job(thread_id="telegram:8", name="ahead", at=due.isoformat(),
                              script_text=_script("ahead", 0, "ahead done"))
    frozen = Runner(settings, tmp_path, "frozen", RUNNER_PREPARE_SECONDS="30")
    runners.append(frozen)
    wait_for(lambda: _containers(docker_client, store_id, busy["id"], "running"), 90, "busy running")
    wait_for(lambda: _containers(docker_client, store_id, ahead["id"], "created"), 60, "ahead's container created")
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        other = Scheduler(settings.with_(runner_id="other", lease_seconds=LEASE, poll_interval=1.0), db, docker_client)
        loop = threading.Thread(target=other.run)
        loop.start()
        try:
            for job in (busy, ahead):
                wait_for(lambda j=job: _status(jobs, j["id"]) not in ("running", "pending"), 120,
                         f"{job['name']} recorded by the other runner")
            assert (jobs_dir(settings.data_dir, ahead["thread_id"]) / "ahead_runs.txt").read_text() == "x"
        finally:
            frozen.proc.send_signal(signal.SIGCONT)
        # Woken, the frozen runner finds both leases gone, says so, and does nothing else.
        for job in (busy, ahead):
            wait_for(lambda j=job: f"job {j['id']}: lease lost" in frozen.text(), 60,
                     f"the woken runner to notice it lost {job['name']}'s lease")
        wait_for(lambda: not any(_containers(docker_client, store_id, j["id"]) for j in (busy, ahead)), 60,
                 "no container of either run left")
    finally:
        other.stop()
        loop.join(timeout=90)
    for job in (busy, ahead):
        row = jobs.get_job(job["id"])
        assert (row["status"], row["exit_code"], row["lease_owner"]) == ("completed", 0, None), row["error_message"]
        assert [(m["kind"], m["text"]) for m in _messages(db, job["id"])] == [("message", f"{job['name']} done")]
        d = jobs_dir(settings.data_dir, job["thread_id"])
        assert (d / f"{job['name']}_runs.txt").read_text() == "x", f"{job['name']} ran more or less than once"
    assert "end" in jobs.get_job(busy["id"])["output_tail"], "busy ran to its end, not killed mid-run"
    log = frozen.text()
    assert "removed orphaned container" not in log
    assert "runner stopped during the run" not in log
    for job in (busy, ahead):
        said = [ln for ln in log.splitlines() if f"job {job['id']}" in ln and "lease" in ln]
        assert len(said) == 1, f"the frozen runner says once that it lost job {job['id']}: {said}"


def test_kill_9_in_the_middle_of_many_short_runs_loses_no_result_and_no_message(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str,
        tmp_path: Path, runners: list[Runner]) -> None:
    # The chaos run's case: scripts that write their message and exit, the runner killed wherever it is.
    made = [jobs.schedule_job(thread_id=f"telegram:{20 + i % 3}", name=f"m{i:02d}", at="now",
                              script_text=_script(f"m{i:02d}", 0.3, f"message {i}")) for i in range(12)]

    def done() -> int:
        return sum(_status(jobs, j["id"]) == "completed" for j in made)

    doomed = Runner(settings, tmp_path, "doomed")
    runners.append(doomed)
    wait_for(lambda: done() >= 4, 120, "a few runs to finish")
    doomed.kill()
    assert done() < len(made), "killed in the middle"
    runners.append(Runner(settings, tmp_path, "doomed"))
    wait_for(lambda: all(_status(jobs, j["id"]) not in ("pending", "running") for j in made), 180,
             "every run to be recorded")
    for i, job in enumerate(made):
        row = jobs.get_job(job["id"])
        assert (row["status"], row["exit_code"]) == ("completed", 0), row["error_message"]
        assert [(m["kind"], m["text"]) for m in _messages(db, job["id"])] == [("message", f"message {i}")]
        assert (jobs_dir(settings.data_dir, job["thread_id"]) / f"{job['name']}_runs.txt").read_text() == "x"


def test_a_container_removed_before_its_start_runs_again_instead_of_failing(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The 60-minute soak of 2026-12-02 recorded one run as failed, 'could not start the job container:
    No such container': its container, created ahead, was gone when its runner started it. Its script
    never ran, so (issue 12, item 3) the run goes again instead of failing."""
    from runner.execute import Executor

    job = jobs.schedule_job(thread_id="telegram:7", name="twice", at="now", script_text=_script("twice", 0, "ran once"))
    real = Executor._holds_patiently
    removed: list[str] = []

    def fence_then_lose_the_container(self: Executor, j: dict[str, Any], starting: bool = False) -> bool:
        held = real(self, j, starting)
        if starting and not removed:  # right after the start fence, before the start: the container goes
            for c in _containers(docker_client, store_id, j["id"], "created"):
                c.remove(force=True)
                removed.append(c.short_id)
        return held

    monkeypatch.setattr(Executor, "_holds_patiently", fence_then_lose_the_container)
    Scheduler(settings, db, docker_client).run(burst=True)
    assert removed, "the container was removed between the start fence and the start"
    row = jobs.get_job(job["id"])
    assert (row["status"], row["exit_code"]) == ("completed", 0), row["error_message"]
    assert (jobs_dir(settings.data_dir, "telegram:7") / "twice_runs.txt").read_text() == "x", "its script ran once"
    assert [(m["kind"], m["text"]) for m in _messages(db, job["id"])] == [("message", "ran once")]
