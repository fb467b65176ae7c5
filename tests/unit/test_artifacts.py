"""Reading files a job wrote: no links followed, no FIFO blocks, nothing past the cap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner import artifacts


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "telegram_1" / "jobs").mkdir(parents=True)
    (tmp_path / "telegram_2" / "jobs").mkdir(parents=True)
    (tmp_path / "telegram_2" / "jobs" / "secret.txt").write_text("other thread's secret")
    return tmp_path


def _jobs(tree: Path) -> Path:
    return tree / "telegram_1" / "jobs"


def test_reads_a_plain_message_and_removes_it_after(tree: Path) -> None:
    (_jobs(tree) / "a_message.txt").write_text("hello")
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        msg = artifacts.collect_message(fd, "a", 100)
        assert msg == artifacts.Message(text="hello", truncated=False)
        assert (_jobs(tree) / "a_message.txt").exists(), "removed only once queued"
        assert artifacts.discard_message(fd, "a")
    assert not (_jobs(tree) / "a_message.txt").exists()


def test_absent_message_is_none(tree: Path) -> None:
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        assert artifacts.collect_message(fd, "a", 100) is None


def test_symlink_is_refused_and_removed_not_its_target(tree: Path) -> None:
    target = tree / "telegram_2" / "jobs" / "secret.txt"
    os.symlink(target, _jobs(tree) / "a_message.txt")
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        msg = artifacts.collect_message(fd, "a", 100)
    assert msg is not None and msg.text == "" and "symbolic link" in (msg.problem or "")
    assert not os.path.lexists(_jobs(tree) / "a_message.txt")
    assert target.read_text() == "other thread's secret"


def test_symlink_to_etc_shadow_is_not_read(tree: Path) -> None:
    os.symlink("/etc/shadow", _jobs(tree) / "a_message.txt")
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        msg = artifacts.collect_message(fd, "a", 100)
    assert msg is not None and msg.problem and "root" not in msg.text


def test_hard_link_is_refused(tree: Path) -> None:
    os.link(tree / "telegram_2" / "jobs" / "secret.txt", _jobs(tree) / "a_message.txt")
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        msg = artifacts.collect_message(fd, "a", 100)
    assert msg is not None and "hard links" in (msg.problem or "")
    assert (tree / "telegram_2" / "jobs" / "secret.txt").read_text() == "other thread's secret"


def test_fifo_does_not_block(tree: Path) -> None:
    os.mkfifo(_jobs(tree) / "a_message.txt")
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        msg = artifacts.collect_message(fd, "a", 100)
    assert msg is not None and "not a regular file" in (msg.problem or "")


def test_directory_in_place_of_message_is_refused(tree: Path) -> None:
    (_jobs(tree) / "a_message.txt").mkdir()
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        msg = artifacts.collect_message(fd, "a", 100)
    assert msg is not None and msg.problem


def test_oversize_is_capped(tree: Path) -> None:
    (_jobs(tree) / "a_message.txt").write_bytes(b"x" * 10_000_000)
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        result = artifacts.read_capped(fd, "a_message.txt", 1000)
    assert result is not None and result.truncated and len(result.data) == 1000 and result.size == 10_000_000


def test_invalid_utf8_is_replaced(tree: Path) -> None:
    (_jobs(tree) / "a_message.txt").write_bytes(b"ok \xff\xfe end")
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        msg = artifacts.collect_message(fd, "a", 100)
    assert msg is not None and msg.text == "ok \ufffd\ufffd end"


def test_symlinked_jobs_dir_is_refused(tree: Path) -> None:
    os.symlink(tree / "telegram_2", tree / "telegram_3")
    with pytest.raises(artifacts.UnsafeFile), artifacts.open_dir(tree, "telegram_3", "jobs"):
        pass


@pytest.mark.parametrize("part", ["..", ".", "", "a/b"])
def test_bad_components_are_refused(tree: Path, part: str) -> None:
    with pytest.raises(artifacts.UnsafeFile), artifacts.open_dir(tree, part):
        pass
