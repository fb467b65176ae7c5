"""Pure parts of db and api: the query loader, migration file discovery, input validation, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ConfigError, ValidationError
from runner.service import check_script, validate_name
from runner.settings import Settings
from runner.store import QUERIES, load_queries, migration_files


def test_load_queries_splits_on_headers() -> None:
    text = "-- header comment\n-- name: a\n-- doc\nSELECT 1;\n\n-- name: b_2\nSELECT %(x)s\nFROM t;\n"
    assert load_queries(text) == {"a": "SELECT 1", "b_2": "SELECT %(x)s\nFROM t"}


def test_load_queries_refuses_duplicates_and_empty() -> None:
    with pytest.raises(ValueError, match="twice"):
        load_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(ValueError, match="empty"):
        load_queries("-- name: a\n-- nothing\n")


def test_project_queries_load() -> None:
    for name in ("claim_due", "finish_run", "insert_next", "adopt_expired", "queue_message", "claim_messages"):
        assert name in QUERIES and QUERIES[name].strip()


def test_migration_files_are_numbered_and_unique(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("")
    (tmp_path / "002_b.sql").write_text("")
    (tmp_path / "README").write_text("")
    assert [v for v, _ in migration_files(tmp_path)] == [1, 2]
    (tmp_path / "002_c.sql").write_text("")
    with pytest.raises(ConfigError, match="two migrations"):
        migration_files(tmp_path)


@pytest.mark.parametrize("good", ["check_price", "a", "x-1_2", "a" * 64])
def test_good_names(good: str) -> None:
    assert validate_name(good) == good


@pytest.mark.parametrize("bad", ["", "A", "a b", "../x", "x.py", "a" * 65, "ä"])
def test_bad_names(bad: str) -> None:
    with pytest.raises(ValidationError, match="job name"):
        validate_name(bad)


def test_check_script_reports_line_and_message() -> None:
    with pytest.raises(ValidationError, match=r"x\.py has a syntax error at line 2.*expected ':'"):
        check_script(b"a = 1\nif a\n  pass\n", "x.py", 1000)
    with pytest.raises(ValidationError, match="limit is 10 bytes"):
        check_script(b"print('hello world')", "x.py", 10)
    with pytest.raises(ValidationError, match="not UTF-8"):
        check_script(b"\xff\xfe", "x.py", 100)
    assert check_script(b"print(1)\n", "x.py", 100) == "print(1)\n"


def test_settings_from_env_and_secrets_hidden() -> None:
    s = Settings.from_env({"DATABASE_URL": "postgresql://u:pw@h/db", "TELEGRAM_BOT_TOKEN": "123:secret",
                           "RUNNER_CONCURRENCY": "8", "RUNNER_TIMEZONE": "Europe/Berlin"})
    assert s.concurrency == 8 and s.default_timezone == "Europe/Berlin"
    assert "secret" not in repr(s) and "pw" not in repr(s)
    assert "telegram_bot_token" not in s.public()


@pytest.mark.parametrize(
    ("env", "message"),
    [({"RUNNER_CONCURRENCY": "many"}, "not a whole number"), ({"RUNNER_CONCURRENCY": "0"}, "too small"),
     ({"RUNNER_TIMEZONE": "Nowhere/City"}, "unknown time zone"),
     ({"RUNNER_TIMEOUT": "900"}, "larger than RUNNER_MAX_TIMEOUT")],
)
def test_bad_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises((ConfigError, ValidationError), match=message):
        Settings.from_env(env)


def test_limits_and_policies_left_out_are_the_operators_defaults() -> None:
    from runner.service.validate import Limits, Policy, resolve_limits, resolve_policy
    from runner.settings import DEFAULT_OVERLAP, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY

    s = Settings.from_env({"RUNNER_ID": "x", "RUNNER_TIMEOUT": "45", "RUNNER_GRACE_SECONDS": "10"})
    assert resolve_limits(s, Limits()) == {"timeout_seconds": 45, "memory_mb": s.memory_mb, "cpus": s.cpus,
                                           "pids_limit": s.pids_limit}
    assert resolve_policy(s, Policy()) == {"grace_seconds": 10, "overlap": DEFAULT_OVERLAP, "retries": DEFAULT_RETRIES,
                                           "retry_delay_seconds": DEFAULT_RETRY_DELAY}
    with pytest.raises(ValidationError, match="outside 1..600 s"):
        resolve_limits(s, Limits(timeout_seconds=601))
    with pytest.raises(ValidationError, match="is not 'skip' or 'queue'"):
        resolve_policy(s, Policy(overlap="sometimes"))


def test_an_update_changes_only_what_it_gives() -> None:
    from runner.service.validate import Limits, Policy, overlay

    assert overlay(Limits(memory_mb=512), Limits(30, 256, 1.0, 64)) == Limits(30, 512, 1.0, 64)
    assert overlay(Policy(retries=0), Policy(60, "queue", 3, 10)) == Policy(60, "queue", 0, 10)
