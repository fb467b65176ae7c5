"""A job runs only the script that was approved for it (red team finding 9: one job borrowing
another's grant by rewriting its script in the thread's shared jobs/ directory).

Real containers, a real database. Each attack's new code would leave a marker file if it ran; the
marker's absence is the proof that it did not."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import docker
import pytest

from runner import sandbox
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database
from runner.threads import jobs_dir

from ..integration.helpers import ROOT, RUNNER_CLI, cli_env, run_burst

THREAD = "telegram:909"

BANK = "print('bank v1 ran')\nopen('jobs/bank_message.txt', 'w').write('balance: 10')\n"
# What another job writes in bank's place: if it ever runs, jobs/pwned exists.
HOSTILE = "open('jobs/pwned', 'w').write('the rewritten bank.py ran')\nprint('bank v2 ran')\n"
# bank.py belongs to the runner (mode 0644), but jobs/ is the thread's: a new file renamed over it wins.
SPOOFER = (f"import os\nopen('jobs/.bank.new', 'w').write({HOSTILE!r})\n"
           "os.replace('jobs/.bank.new', 'jobs/bank.py')\nprint('spoofer rewrote bank.py')\n")


def _bank(jobs: Jobs) -> dict:
    """A recurring job whose next run is far off; the tests start it with run_job_now."""
    return jobs.schedule_job(thread_id=THREAD, name="bank", script_text=BANK, every="daily 9am")


def _run_now(jobs: Jobs, settings: Settings, db: Database, dc: docker.DockerClient, job_id: int) -> tuple[dict, str]:
    jobs.run_job_now(job_id)
    printed = run_burst(settings, db, dc)
    return jobs.get_job(job_id), printed


def test_a_job_cannot_run_a_script_another_job_rewrote(jobs: Jobs, settings: Settings, db: Database,
                                                         docker_client: docker.DockerClient) -> None:
    bank = _bank(jobs)
    jobs.schedule_job(thread_id=THREAD, name="spoofer", script_text=SPOOFER, at="now")
    run_burst(settings, db, docker_client)
    d = jobs_dir(settings.data_dir, THREAD)
    assert (d / "bank.py").read_text() == HOSTILE, "the attack's first step (the rewrite) must have happened"

    row, printed = _run_now(jobs, settings, db, docker_client, bank["id"])

    assert not (d / "pwned").exists(), "the rewritten script ran"
    assert row["status"] == "failed"
    reason = row["error_message"]
    assert reason.startswith("jobs/bank.py changed since it was scheduled or last approved"), reason
    assert f"runner update {bank['id']} --approve" in reason
    assert "bank v2 ran" not in (row["output_tail"] or "")
    assert f"Job bank failed: {reason}" in printed  # the chat is told, like any failure
    # Nothing else of the job is lost: the series continues, still pinned to the approved script.
    nxt = jobs.store.live_run_of_series(row["series_id"])
    assert nxt is not None and nxt["status"] == "pending" and nxt["recurrence"] == "daily 9am"
    assert nxt["script_sha256"] == hashlib.sha256(BANK.encode()).hexdigest()


def test_a_rewrite_after_the_check_does_not_reach_the_container(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is replaced after the runner has checked it, right before the container is created
    and started: the container must still run the approved bytes, never the new ones."""
    bank = _bank(jobs)
    d = jobs_dir(settings.data_dir, THREAD)
    real_refuse = sandbox.refuse_unsafe
    swapped = []

    def rewrite_then_create(cfg: dict, jobs_dir_: Path) -> None:
        real_refuse(cfg, jobs_dir_)
        tmp = d / ".swap"
        tmp.write_text(HOSTILE)
        os.replace(tmp, d / "bank.py")
        swapped.append(True)

    monkeypatch.setattr(sandbox.lifecycle, "refuse_unsafe", rewrite_then_create)  # looked up by the run
    row, _ = _run_now(jobs, settings, db, docker_client, bank["id"])
    monkeypatch.undo()

    assert swapped, "the hook must have rewritten the script between the check and the start"
    assert not (d / "pwned").exists(), "the script rewritten after the check ran"
    assert row["status"] == "completed", row["error_message"]
    assert "bank v1 ran" in row["output_tail"]
    # The next run sees the changed file and is refused.
    nxt = jobs.store.live_run_of_series(row["series_id"])
    assert nxt is not None
    again, _ = _run_now(jobs, settings, db, docker_client, nxt["id"])
    assert again["status"] == "failed" and "changed since it was scheduled" in again["error_message"]
    assert not (d / "pwned").exists()


def test_a_sibling_rewriting_in_a_loop_never_gets_its_code_run(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """A job running beside bank swaps bank.py between the approved and a hostile version as fast as
    it can while bank runs: each bank run either runs the approved script or is refused."""
    s = settings.with_(concurrency=4)
    flipper = ("import os, time\n"
               f"good, bad = {BANK!r}, {HOSTILE!r}\n"
               "end = time.time() + 6\n"
               "i = 0\n"
               "while time.time() < end:\n"
               "    open('jobs/.flip', 'w').write(bad if i % 2 else good)\n"
               "    os.replace('jobs/.flip', 'jobs/bank.py')\n"
               "    i += 1\n"
               "open('jobs/bank.py.tmp', 'w').write(good)\n"
               "os.replace('jobs/bank.py.tmp', 'jobs/bank.py')\n"
               "print('flips', i)\n")
    d = jobs_dir(settings.data_dir, THREAD)
    jobs.schedule_job(thread_id=THREAD, name="flipper", script_text=flipper, at="now")
    banks = [jobs.schedule_job(thread_id=THREAD, name="bank", script_text=BANK, at=f"in {n} seconds")
             for n in (2, 3, 4)]
    run_burst(s, db, docker_client)
    assert not (d / "pwned").exists(), "a hostile version swapped in by a sibling ran"
    for b in banks:
        row = jobs.get_job(b["id"])
        assert (row["status"] == "completed" and "bank v1 ran" in row["output_tail"]) or (
            row["status"] == "failed" and "changed since it was scheduled" in row["error_message"]), row


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNNER_CLI, *args], env=cli_env(settings), cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_reapproval_with_runner_update_runs_the_new_script(jobs: Jobs, settings: Settings, db: Database,
                                                           docker_client: docker.DockerClient,
                                                           tmp_path: Path) -> None:
    bank = _bank(jobs)
    d = jobs_dir(settings.data_dir, THREAD)
    (d / "bank.py").write_text(HOSTILE)  # changed behind the runner's back (here: by the user)
    refused, _ = _run_now(jobs, settings, db, docker_client, bank["id"])
    assert refused["status"] == "failed" and not (d / "pwned").exists()
    pending = jobs.store.live_run_of_series(refused["series_id"])
    assert pending is not None

    r = _cli(settings, "update", str(bank["id"]), "--approve")
    assert r.returncode == 0, r.stderr
    assert "approved jobs/bank.py" in r.stdout and hashlib.sha256(HOSTILE.encode()).hexdigest()[:12] in r.stdout
    row, _ = _run_now(jobs, settings, db, docker_client, pending["id"])
    assert row["status"] == "completed", row["error_message"]
    assert "bank v2 ran" in row["output_tail"] and (d / "pwned").exists()

    # A new version from the operator's own file: copied into jobs/bank.py, pinned, and run.
    v3 = tmp_path / "bank_v3.py"
    v3.write_text("print('bank v3 ran')\n")
    nxt = jobs.store.live_run_of_series(row["series_id"])
    assert nxt is not None
    r = _cli(settings, "update", str(nxt["id"]), "--script", str(v3))
    assert r.returncode == 0, r.stderr
    assert (d / "bank.py").read_text() == "print('bank v3 ran')\n"
    row, _ = _run_now(jobs, settings, db, docker_client, nxt["id"])
    assert row["status"] == "completed" and "bank v3 ran" in row["output_tail"], row["error_message"]

    # Refusals say what to fix and change nothing.
    (d / "bank.py").write_text("if x\n")
    nxt = jobs.store.live_run_of_series(row["series_id"])
    r = _cli(settings, "update", str(nxt["id"]), "--approve")
    assert r.returncode == 1 and "bank.py has a syntax error at line 1" in r.stderr and "Traceback" not in r.stderr
    assert jobs.get_job(nxt["id"])["script_sha256"] == hashlib.sha256(b"print('bank v3 ran')\n").hexdigest()


def test_a_module_another_job_writes_in_jobs_does_not_shadow_an_import(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """Pinning bank.py is not enough if `import json` in it would load a jobs/json.py another job wrote."""
    bank = jobs.schedule_job(thread_id=THREAD, name="bank", script_text="import json\nprint('bank', json.dumps([1]))\n",
                             at="in 1 hour")
    planter = ("open('jobs/json.py', 'w').write(\"open('jobs/pwned', 'w').write('x')\\ndumps = repr\\n\")\n"
               "print('planted')\n")
    jobs.schedule_job(thread_id=THREAD, name="planter", script_text=planter, at="now")
    run_burst(settings, db, docker_client)
    d = jobs_dir(settings.data_dir, THREAD)
    assert (d / "json.py").exists()
    row, _ = _run_now(jobs, settings, db, docker_client, bank["id"])
    assert row["status"] == "completed", row["error_message"]
    assert "bank [1]" in row["output_tail"]
    assert not (d / "pwned").exists(), "a module another job planted in jobs/ was imported"


def test_reapproval_in_telegram_and_by_the_agent(settings: Settings, db: Database,
                                                 docker_client: docker.DockerClient) -> None:
    """The chat is told why bank was refused, sees the script, approves exactly that version
    (/approve), or sends a new one (/update); the agent can do the same with update_job."""
    from runner.agent import AgentTools
    from runner.scheduler import Scheduler
    from runner.telegram_part import TelegramService

    from ..fakebotapi import FakeBotAPI

    api = FakeBotAPI().start()
    user, chat = 1001, 909
    tg = settings.with_(telegram_bot_token=api.token, telegram_api_url=api.url,
                        telegram_allowed_users=frozenset({user}), telegram_per_chat_interval=0.05,
                        telegram_per_second=1000.0, poll_interval=1.0)
    tjobs = Jobs(tg, db)
    svc = TelegramService(tg, tjobs)
    svc.start()
    try:
        bank = _bank(tjobs)
        d = jobs_dir(settings.data_dir, THREAD)
        (d / "bank.py").write_text(HOSTILE)
        tjobs.run_job_now(bank["id"])
        Scheduler(tg, db, docker_client).run(burst=True)
        api.wait_for(lambda: any(t.startswith("Job bank failed: jobs/bank.py changed") for t in api.texts(chat)))
        assert not (d / "pwned").exists()
        new = hashlib.sha256(HOSTILE.encode()).hexdigest()

        api.command(chat, user, f"/approve {bank['id']}")
        api.wait_for(lambda: any(f"send /approve {bank['id']} {new[:12]}" in t for t in api.texts(chat)))
        assert any(HOSTILE.strip() in t for t in api.texts(chat))  # the user sees what they would approve
        api.command(chat, user, f"/approve {bank['id']} 0123456789ab")
        api.wait_for(lambda: any("is not the version given" in t for t in api.texts(chat)))
        api.command(chat, user, f"/approve {bank['id']} {new[:12]}")
        api.wait_for(lambda: any(t.startswith("Approved jobs/bank.py (sha256 " + new[:12]) for t in api.texts(chat)))
        assert tjobs.get_job(bank["id"])["script_sha256"] == new

        api.upload(chat, user, f"/update {bank['id']}", "bank.py", b"print('bank v4 ran')\n")
        api.wait_for(lambda: any("now runs the new jobs/bank.py" in t for t in api.texts(chat)))
        assert (d / "bank.py").read_bytes() == b"print('bank v4 ran')\n"
        assert tjobs.get_job(bank["id"])["script_sha256"] == hashlib.sha256(b"print('bank v4 ran')\n").hexdigest()
        api.command(chat, user, "/approve 999999")
        api.wait_for(lambda: "No such job: 999999" in api.texts(chat))
    finally:
        svc.stop()
        api.stop()

    tools = AgentTools(tjobs, THREAD)
    (d / "bank.py").write_text("print('bank v5 ran')\n")
    five = hashlib.sha256(b"print('bank v5 ran')\n").hexdigest()
    wrong = tools.update_job(bank["id"], approve_script="deadbeefdead")
    assert wrong["ok"] is False and five[:12] in wrong["error"]
    done = tools.update_job(bank["id"], approve_script=five[:12])
    assert done["ok"] and done["approved_sha256"] == five
    done = tools.update_job(bank["id"], script="print('bank v6 ran')\n", timeout_seconds=12)
    assert done["ok"] and done["job"]["timeout_seconds"] == 12
    assert (d / "bank.py").read_text() == "print('bank v6 ran')\n"
    bad = tools.update_job(bank["id"], script="if x\n")
    assert bad["ok"] is False and "syntax error" in bad["error"]
    pending = tjobs.store.live_run_of_series(bank["series_id"])
    row, _ = _run_now(tjobs, settings, db, docker_client, pending["id"])
    assert row["status"] == "completed" and "bank v6 ran" in row["output_tail"], row["error_message"]


def test_a_row_from_before_pinning_is_pinned_on_its_first_run(jobs: Jobs, settings: Settings, db: Database,
                                                               docker_client: docker.DockerClient) -> None:
    bank = _bank(jobs)
    with db.transaction() as conn:  # as migration 007 leaves an existing series
        conn.execute("UPDATE scheduled_jobs SET script_sha256 = NULL WHERE series_id = %s", (bank["series_id"],))
    row, _ = _run_now(jobs, settings, db, docker_client, bank["id"])
    assert row["status"] == "completed" and "bank v1 ran" in row["output_tail"], row["error_message"]
    nxt = jobs.store.live_run_of_series(row["series_id"])
    assert nxt is not None and nxt["script_sha256"] == hashlib.sha256(BANK.encode()).hexdigest()
    d = jobs_dir(settings.data_dir, THREAD)
    (d / "bank.py").write_text(HOSTILE)
    again, _ = _run_now(jobs, settings, db, docker_client, nxt["id"])
    assert again["status"] == "failed" and "changed since it was scheduled" in again["error_message"]
    assert not (d / "pwned").exists()


def test_a_script_that_is_a_link_or_fifo_is_refused_without_blocking(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    bank = _bank(jobs)
    d = jobs_dir(settings.data_dir, THREAD)
    (d / "bank.py").unlink()
    os.mkfifo(d / "bank.py")  # the runner's own read must not hang on it
    row, _ = _run_now(jobs, settings, db, docker_client, bank["id"])
    assert row["status"] == "failed" and row["error_message"] == (
        f"script refused: bank.py is not a regular file; give the script again: runner update {bank['id']} --script FILE")
    (d / "bank.py").unlink()
    (d / "bank.py").symlink_to("/etc/passwd")
    nxt = jobs.store.live_run_of_series(row["series_id"])
    assert nxt is not None
    row, _ = _run_now(jobs, settings, db, docker_client, nxt["id"])
    assert row["status"] == "failed" and "bank.py is a symbolic link; it was not followed" in row["error_message"]
    r = _cli(settings, "update", str(bank["id"]), "--approve")
    assert r.returncode == 1 and "cannot be read safely" in r.stderr and "root:" not in r.stderr + r.stdout


def test_a_script_at_the_size_cap_reaches_the_container_whole(jobs: Jobs, settings: Settings, db: Database,
                                                               docker_client: docker.DockerClient) -> None:
    """The checked source travels on the launcher's command line, in chunks: a script of nearly
    RUNNER_SCRIPT_CAP bytes, with multi-byte characters, must arrive intact."""
    line = "x = '" + "é" * 60 + "'\n"
    body = line * ((settings.script_cap - 200) // len(line.encode()))
    script = body + "print('tail ran', len(x))\n"
    assert settings.script_cap - 300 < len(script.encode()) <= settings.script_cap
    job = jobs.schedule_job(thread_id=THREAD, name="big", script_text=script, at="now")
    run_burst(settings, db, docker_client)
    row = jobs.get_job(job["id"])
    assert row["status"] == "completed" and "tail ran 60" in row["output_tail"], row["error_message"]
