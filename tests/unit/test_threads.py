"""Thread ids map to directory names one-to-one; unsafe ids are refused."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from runner.errors import ValidationError
from runner.threads import chat_id, jobs_dir, thread_dir_name, thread_id_from_dir

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
