"""The command line against a real database: JSON shapes, and one-line errors with no traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from runner.settings import Settings

from .helpers import ROOT, RUNNER_CLI, cli_env


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNNER_CLI, *args], env=cli_env(settings, RUNNER_TIMEZONE="Europe/Berlin"), cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_schedule_then_jobs_json_uses_the_seed_columns(settings: Settings) -> None:
    r = cli(settings, "schedule", "examples/check_price.py", "--thread", "telegram:42", "--name", "check_price",
            "--at", "in 1 minute", "--every", "daily 9am")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("scheduled job 1 (check_price) for ")
    r = cli(settings, "jobs", "--thread", "telegram:42", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 1
    for col in ("id", "user_id", "thread_id", "name", "due_time", "script_path", "status", "recurrence",
                "created_at", "started_at", "completed_at", "error_message"):
        assert col in rows[0]
    assert rows[0]["status"] == "pending" and rows[0]["script_path"] == "jobs/check_price.py"
    assert rows[0]["timezone"] == "Europe/Berlin" and rows[0]["recurrence"] == "daily 9am"
    assert (settings.data_dir / "telegram_42" / "jobs" / "check_price.py").is_file()


def test_errors_are_one_line_without_traceback(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\nif x\n    print(x)\n")
    cases = [
        (("logs", "999"), "runner: no such job: 999"),
        (("cancel", "999"), "runner: no such job: 999"),
        (("schedule", str(bad), "--thread", "telegram:1", "--name", "bad"), "bad.py has a syntax error at line 2"),
        (("schedule", "examples/loops.py", "--thread", "telegram:1", "--name", "x", "--every", "sometimes"),
         "could not understand the recurrence 'sometimes'"),
        (("schedule", "examples/loops.py", "--thread", "telegram:1", "--name", "x", "--at", "yesterday 9am"),
         "could not understand the time"),
        (("schedule", "missing.py", "--thread", "telegram:1", "--name", "x"), "script missing.py does not exist"),
        (("schedule", "examples/loops.py", "--thread", "telegram:1", "--name", "Bad Name"), "job name 'Bad Name'"),
        (("schedule", "examples/loops.py", "--thread", "telegram:1", "--name", "x", "--tz", "Mars/Olympus"),
         "unknown time zone 'Mars/Olympus'"),
    ]
    for args, expected in cases:
        r = cli(settings, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert expected in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    # Nothing was saved by any refusal.
    r = cli(settings, "jobs", "--json")
    assert json.loads(r.stdout) == []
    assert not (settings.data_dir / "telegram_1" / "jobs" / "bad.py").exists()


def test_migrate_is_idempotent(settings: Settings) -> None:
    r = cli(settings, "migrate")
    assert r.returncode == 0 and "up to date" in r.stdout, r.stderr


def test_doctor_reports_every_protection_ok(settings: Settings) -> None:
    r = cli(settings, "doctor", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    checks = json.loads(r.stdout)
    names = {c["check"] for c in checks}
    for expected in ("Docker engine", "job image", "database", "data directory", "jobs/ disk limit", "Telegram bot",
                     "egress proxy", "granted job isolation",
                     "job container: non-root user",
                     "job container: no network", "job container: seccomp filter",
                     "job container: all capabilities dropped", "job container: read-only root filesystem"):
        assert expected in names
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]


def test_doctor_fails_with_what_to_do(settings: Settings) -> None:
    env_settings = settings.with_(image="runner-no-such:1")
    r = subprocess.run([*RUNNER_CLI, "doctor", "--quick"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, check=False, env=cli_env(env_settings))
    assert r.returncode == 1
    assert "FAIL  job image: runner-no-such:1 is missing: run make image" in r.stdout


def _doctor(settings: Settings, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNNER_CLI, "doctor", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False, env=cli_env(settings, **env))


def test_doctor_checks_the_bot_token_with_get_me(settings: Settings) -> None:
    from ..fakebotapi import FakeBotAPI

    api = FakeBotAPI().start()
    try:
        good = _doctor(settings, TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_URL=api.url, TELEGRAM_ALLOWED_USERS="42")
        assert good.returncode == 0, good.stdout + good.stderr
        assert f"OK    Telegram bot: @runner_bot (id 42) via {api.url}, 1 allowed user(s)" in good.stdout
        wrong = "123456:WRONG-token-abcdefghijklmnopqrstuvwxyz"
        bad = _doctor(settings, TELEGRAM_BOT_TOKEN=wrong, TELEGRAM_API_URL=api.url, TELEGRAM_ALLOWED_USERS="42")
        assert bad.returncode == 1
        assert "FAIL  Telegram bot: " in bad.stdout and "copy the token again from @BotFather" in bad.stdout
        assert "WRONG-token" not in bad.stdout + bad.stderr  # the token never reaches the output
        nobody = _doctor(settings, TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_URL=api.url)
        assert "FAIL  Telegram bot: token works (@runner_bot) but TELEGRAM_ALLOWED_USERS is empty" in nobody.stdout
        assert api.calls.count("getMe") == 2  # the fake records calls with the right token only
    finally:
        api.stop()
    # Unreachable API: a clear line, not a traceback (the fake is stopped; nothing listens there now).
    down = _doctor(settings, TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_URL=api.url, TELEGRAM_ALLOWED_USERS="42")
    assert f"FAIL  Telegram bot: could not reach {api.url}" in down.stdout, down.stdout
    assert "Traceback" not in down.stdout + down.stderr
