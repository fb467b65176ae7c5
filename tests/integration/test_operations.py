"""Operating the runner as a process: graceful shutdown on SIGTERM, /healthz and /metrics, JSON
logs, and refusing a database schema newer than the runner."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request

import docker

from runner import sandbox
from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database

from .helpers import ROOT, RUNNER_CLI, cli_env, wait_for
from .test_cli import cli

THREAD = "telegram:61"


def _runner(settings: Settings, *args: str, **env: str) -> subprocess.Popen[str]:
    full = cli_env(settings, RUNNER_ID=f"proc-{settings.runner_id}", **env)
    return subprocess.Popen([*RUNNER_CLI, "up", "--no-build", *args], env=full, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_lets_running_jobs_finish_within_the_grace_period(jobs: Jobs, settings: Settings,
                                                                 docker_client: docker.DockerClient, store_id: str) -> None:
    quick = jobs.schedule_job(thread_id=THREAD, name="quick", at="now", script_text="import time\ntime.sleep(3)\n")
    long = jobs.schedule_job(thread_id="telegram:62", name="long", at="now", limits=Limits(timeout_seconds=120),
                             script_text="import time\ntime.sleep(120)\n")
    proc = _runner(settings, RUNNER_SHUTDOWN_GRACE="6")
    try:
        wait_for(lambda: len([c for c in sandbox.managed_containers(docker_client, store_id) if c.status == "running"]) == 2,
                 60, "both jobs running")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert time.monotonic() - t0 < 30
    assert jobs.get_job(quick["id"])["status"] == "completed"
    row = jobs.get_job(long["id"])
    assert row["status"] == "failed"
    assert row["error_message"] == "stopped: the runner shut down and the job did not finish within the 6 s grace period"
    assert not sandbox.managed_containers(docker_client, store_id), "no container is left behind"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_healthz_metrics_and_json_logs(jobs: Jobs, settings: Settings) -> None:
    port = _free_port()
    jobs.schedule_job(thread_id=THREAD, name="m", at="now", script_text="open('jobs/m_message.txt','w').write('hi')\n")
    proc = _runner(settings, "--http", f"127.0.0.1:{port}", RUNNER_LOG_FORMAT="json")
    try:
        wait_for(lambda: [r for r in jobs.list_jobs(thread_id=THREAD) if r["status"] == "completed"], 60, "the run")

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        code, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(get("/healthz")), 20, "healthz")
        health = json.loads(body)
        assert health["status"] == "ok" and health["database"] == "ok" and health["scheduler"] == "ok"
        metrics = wait_for(lambda: (lambda r: r[1] if 'runner_messages_total{event="sent"} 1.0' in r[1] else None)(
            get("/metrics")), 20, "the message to be counted")
        for needle in ('runner_runs_started_total 1.0', 'runner_runs_finished_total{status="completed"} 1.0',
                       'runner_jobs{status="completed"} 1.0', "runner_lateness_seconds_bucket",
                       "runner_run_duration_seconds_count 1.0", "runner_containers_running 0.0",
                       'runner_messages_total{event="queued"} 1.0', 'runner_outbox_messages{status="sent"} 1.0',
                       "runner_telegram_retries_total 0.0", "runner_telegram_unknown_outcomes_total 0.0",
                       "runner_telegram_leases_lost_total 0.0"):
            assert needle in metrics, needle
        assert get("/nope")[0] == 404
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    messages = [e["message"] for e in events]
    assert any(m.startswith("claimed job 1 (m") for m in messages)
    assert any(m.startswith("job 1 (m) started") for m in messages)
    assert any(m.startswith("job 1 (m) completed in") for m in messages)
    assert any("message 1 for telegram:61 (job m) sent" in m for m in messages)


def test_a_newer_schema_is_refused(settings: Settings, db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (999, '999_future.sql')")
    for args in (("migrate",), ("up", "--burst", "--no-build")):
        r = cli(settings, *args)
        assert r.returncode == 1, r.stdout
        assert "the database schema is at version 999 but this runner knows only up to" in r.stderr
        assert "Traceback" not in r.stderr
