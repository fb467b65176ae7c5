"""The rules of a thread's files in either store: RUNNER_FILES, the names a file may have, the caps."""

from __future__ import annotations

import pytest

from runner.errors import ConfigError
from runner.filerules import (
    MAX_DEPTH,
    FileCaps,
    ancestors,
    name_problem,
    parse_mode,
    room_problem,
    size_problem,
    top_level,
)
from runner.settings import Settings

MiB = 1024 * 1024


def test_runner_files_is_local_by_default_and_postgres_when_asked() -> None:
    assert Settings.from_env({"RUNNER_ID": "x"}).files == "local"
    assert Settings.from_env({"RUNNER_ID": "x", "RUNNER_FILES": " Postgres "}).files == "postgres"
    assert Settings.from_env({"RUNNER_ID": "x"}).with_(files="postgres").files == "postgres"
    assert parse_mode("") == "local"


@pytest.mark.parametrize("bad", ["nfs", "s3", "postgresql", "local,postgres"])
def test_a_bad_runner_files_names_the_two_choices(bad: str) -> None:
    with pytest.raises(ConfigError) as got:
        Settings.from_env({"RUNNER_ID": "x", "RUNNER_FILES": bad})
    said = str(got.value)
    assert said.startswith(f"RUNNER_FILES={bad!r} is not a file store") and "local" in said and "postgres" in said
    with pytest.raises(ConfigError):
        Settings(files=bad)  # however the settings are built


GOOD = ["a", "prices.json", "check_attachments/note.bin", "A-1_b.c", "x" * 128, "/".join(["d"] * MAX_DEPTH),
        "a.b/c.d/e"]
BAD = ["", ".hidden", "_x", "-rf", "a/../b", "..", ".", "/abs", "a//b", "a/", "a/.b", "x" * 129, "a/" + "y" * 129,
       "caf\udce9.txt", "café.txt", "a b", "a\nb", "a\\b", "a:b", "/".join(["d"] * (MAX_DEPTH + 1)),
       "/".join(["x" * 100] * 41), None, 7]


@pytest.mark.parametrize("name", GOOD)
def test_names_of_the_plain_shape_are_taken(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", BAD)
def test_other_names_are_refused_with_a_reason(name: object) -> None:
    problem = name_problem(name)
    assert problem is not None and problem.startswith(("it is", "each part"))


def test_a_path_lies_in_its_ancestors_and_one_entry_of_jobs() -> None:
    assert ancestors("a") == []
    assert ancestors("a/b/c.txt") == ["a", "a/b"]
    assert top_level("a/b/c.txt") == "a" and top_level("x.json") == "x.json"


def test_caps_come_from_the_settings_a_job_has() -> None:
    s = Settings.from_env({"RUNNER_ID": "x", "RUNNER_MAX_FILE_MB": "3", "RUNNER_DISK_MB": "7", "RUNNER_MAX_FILES": "12"})
    assert FileCaps.of(s) == FileCaps(file_bytes=3 * MiB, total_bytes=7 * MiB, count=12)


def test_a_thread_at_its_limits_fits_and_past_them_is_told_which() -> None:
    caps = FileCaps(file_bytes=MiB, total_bytes=2 * MiB, count=10)
    assert room_problem(10, 2 * MiB, caps) is None
    assert room_problem(11, 0, caps) == "the thread's files would be 11, more than its limit of 10: delete files first"
    over = room_problem(3, 2 * MiB + 1, caps)
    assert over is not None and "2048 KiB, more than its 2 MiB limit" in over
    assert size_problem("a.bin", MiB, caps) is None
    assert size_problem("a.bin", MiB + 1, caps) == f"jobs/a.bin is {MiB + 1} bytes, more than the 1 MiB a file may hold"
