"""Only `runner up` and `runner migrate` change the schema; every other command facing an older one says to
run `runner migrate` and leaves the database (and the data directory) as it found it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg

from runner.store import MIGRATIONS_DIR, migrate, migration_files

from .helpers import ROOT, RUNNER_CLI, cli_env

# Commands that read or change jobs, each with the arguments it needs.
COMMANDS = (
    ("jobs",),
    ("schedule", "examples/check_price.py", "--thread", "telegram:7", "--name", "gate"),
    ("get", "1"), ("logs", "1"), ("cancel", "1"), ("run", "1"), ("pause", "1"), ("update", "1", "--at", "now"),
)




def _cli(url: str, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(DATABASE_URL=url, RUNNER_DATA_DIR=str(data))
    return subprocess.run([*RUNNER_CLI, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def _versions(url: str) -> set[int] | None:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:  # type: ignore[index]
            return None
        return {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}


def _refused(r: subprocess.CompletedProcess[str], args: tuple[str, ...], expected: str) -> None:
    assert r.returncode == 1, (args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    assert expected in r.stderr and "runner migrate" in r.stderr, (args, r.stderr)


def test_commands_refuse_an_older_schema_and_change_nothing(bare_url: str, tmp_path: Path) -> None:
    older = tmp_path / "older"
    older.mkdir()
    files = migration_files()
    for _, path in files[:-1]:  # every migration but the newest: the schema of the previous release
        shutil.copy(path, older / path.name)
    migrate(bare_url, older)
    before = _versions(bare_url)
    assert before is not None and max(before) == files[-2][0]
    data = tmp_path / "files"
    for args in COMMANDS:
        _refused(_cli(bare_url, data, *args), args, f"needs migration {files[-1][1].name}")
        assert _versions(bare_url) == before, args  # nothing applied behind the operator's back
    assert not (data / "telegram_7" / "jobs" / "gate.py").exists()  # the refused schedule saved nothing
    r = _cli(bare_url, data, "migrate")
    assert r.returncode == 0 and f"applied 1 migration(s): {files[-1][1].name}" in r.stdout, r.stdout + r.stderr
    r = _cli(bare_url, data, "jobs", "--json")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_an_empty_database_is_refused_until_runner_up_migrates_it(bare_url: str, tmp_path: Path,
                                                                   docker_client: object) -> None:
    data = tmp_path / "files"
    r = _cli(bare_url, data, "jobs")
    _refused(r, ("jobs",), "has no runner schema")
    assert _versions(bare_url) is None  # not even the bookkeeping table was created
    r = _cli(bare_url, data, "up", "--burst", "--no-build")  # runner up applies the migrations itself
    assert r.returncode == 0, r.stdout + r.stderr
    assert _versions(bare_url) == {v for v, _ in migration_files(MIGRATIONS_DIR)}
    r = _cli(bare_url, data, "jobs", "--json")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_a_newer_schema_is_refused_with_what_to_do(bare_url: str, tmp_path: Path) -> None:
    migrate(bare_url)
    newest = max(v for v, _ in migration_files())
    with psycopg.connect(bare_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, 'from_the_future.sql')", (newest + 1,))
    r = _cli(bare_url, tmp_path / "files", "jobs")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"schema is at version {newest + 1}" in r.stderr and "newer runner" in r.stderr, r.stderr


def test_up_refuses_a_concurrency_below_one(bare_url: str, tmp_path: Path) -> None:
    r = _cli(bare_url, tmp_path / "files", "up", "--burst", "--no-build", "--concurrency", "0")
    assert r.returncode == 1 and r.stderr.strip() == "runner: --concurrency 0 is too small: run at least 1 job at once"
    assert _versions(bare_url) is None  # refused before touching the database
