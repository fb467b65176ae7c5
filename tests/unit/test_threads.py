"""Thread ids map to directory names one-to-one; unsafe ids are refused."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from runner.errors import ValidationError
from runner.threads import ThreadId, chat_id, jobs_dir, thread_dir_name, thread_id_from_dir

from ..trees import deep_tree


@pytest.mark.parametrize(
    ("thread", "directory"),
    [("telegram:42", "telegram_42"), ("telegram:-1001234", "telegram_-1001234"), ("slack:abc-1", "slack_abc-1"),
     ("x1:0", "x1_0")],
)
def test_mapping_and_inverse(thread: str, directory: str) -> None:
    assert thread_dir_name(thread) == directory
    assert thread_id_from_dir(directory) == thread


@pytest.mark.parametrize(
    "bad",
    ["", "telegram", "telegram:", ":42", "Telegram:42", "telegram:A", "telegram:4/2", "telegram:..", "telegram:a_b",
     "tele_gram:1", "telegram:1:2", "telegram: 1", "1telegram:1", "telegram:" + "1" * 129, "telegram:é"],
)
def test_unsafe_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="not allowed"):
        thread_dir_name(bad)


def test_one_to_one_over_many_ids() -> None:
    alphabet = ["a", "1", "-", "_", ":", "A", "."]
    seen: dict[str, str] = {}
    for n in range(1, 6):
        for chars in itertools.product(alphabet, repeat=n):
            tid = "t:" + "".join(chars)
            try:
                d = thread_dir_name(tid)
            except ValidationError:
                continue
            assert d not in seen, f"{tid} and {seen[d]} share {d}"
            seen[d] = tid
            assert thread_id_from_dir(d) == tid
    assert len(seen) > 300


def test_jobs_dir_and_chat_id() -> None:
    assert jobs_dir(Path("/data"), "telegram:42") == Path("/data/telegram_42/jobs")
    assert chat_id("telegram:-100") == "-100"
    assert chat_id("slack:x") is None


def test_a_thread_id_is_parsed_once_into_a_value() -> None:
    thread = ThreadId.parse("telegram:-100")
    assert (thread.channel, thread.ident, str(thread)) == ("telegram", "-100", "telegram:-100")
    assert thread.dir_name == "telegram_-100" and thread.chat_id == "-100"
    assert thread.jobs_dir(Path("/data")) == Path("/data/telegram_-100/jobs")
    assert ThreadId.parse(thread) is thread, "a value is not parsed again"
    assert ThreadId.telegram(-100) == thread == ThreadId.from_dir("telegram_-100")
    assert ThreadId.parse("slack:x").chat_id is None
    assert {thread: 1}[ThreadId.parse("telegram:-100")] == 1, "hashable: equal ids are one key"
    with pytest.raises(AttributeError):
        thread.ident = "1"  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    ["", "telegram", "telegram:", "Telegram:42", "telegram:a_b", "tele_gram:1", "telegram:1:2", "telegram:é"],
)
def test_no_malformed_thread_id_value_can_be_made(bad: str) -> None:
    with pytest.raises(ValidationError, match="not allowed"):
        ThreadId.parse(bad)
    channel, _, ident = bad.partition(":")
    with pytest.raises(ValidationError, match="not allowed"):
        ThreadId(channel, ident)


def test_the_moved_out_jobs_dir_is_removed_whatever_the_job_left(tmp_path: Path) -> None:
    """RUNNER_JOBS_QUOTA=loop moves a thread's old jobs/ aside and removes it: a 3,000-deep tree, a FIFO
    and a link to outside must neither break the removal (shutil.rmtree recurses: RecursionError) nor
    block it or reach through the link."""
    import os

    from runner import jobsquota

    old = tmp_path / jobsquota._OLD
    deep = old
    old.mkdir()
    deep_tree(old, 3000)  # by fd: the path would pass PATH_MAX
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    os.mkfifo(deep / "fifo")
    os.symlink(outside, deep / "link")
    (deep / b"\xff\xfe".decode("utf-8", "surrogateescape")).write_text("y")
    jobsquota._remove_old(tmp_path)
    assert not old.exists()
    assert (outside / "keep").read_text() == "x"


def test_the_ownership_walk_is_jobtrees_bounded_walk(tmp_path: Path) -> None:
    """prepare_jobs_dir's migration visits what a job left with jobtree's walk: a FIFO is visited, not
    opened; a link is not followed; nothing deeper than MAX_DEPTH; a visitor's OSError is raised."""
    import errno
    import os

    from runner.threads import MAX_DEPTH
    from runner.threads.dirs import _walk

    top = tmp_path / "jobs"
    deep = top.joinpath(*(f"d{n}" for n in range(MAX_DEPTH + 3)))
    deep.mkdir(parents=True)
    os.mkfifo(top / "fifo")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    (top / "link").symlink_to(outside)
    seen: list[str] = []
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _walk(fd, lambda dfd, name, st: seen.append(name))
        assert {"fifo", "link", "d0", f"d{MAX_DEPTH - 1}"} <= set(seen)
        assert "secret" not in seen and f"d{MAX_DEPTH}" not in seen

        def refuse(dfd: int, name: str, st: os.stat_result) -> None:
            raise PermissionError(errno.EPERM, "no", name)

        with pytest.raises(PermissionError):
            _walk(fd, refuse)
    finally:
        os.close(fd)
