"""The testing kit's removal of its session directory (runner.testing.container.remove_dir): a tree a job
left there is hostile, so the removal follows no link, opens no FIFO and has no depth limit."""

from __future__ import annotations

import os
from pathlib import Path

from runner.testing.container import remove_dir

# Deeper than shutil.rmtree's recursion: it raises RecursionError, which ignore_errors misses. That is not
# tested here: a RecursionError raised inside rmtree's scandir can leave the iterator unclosed, the likely
# source of the ResourceWarning that failed a whole CI run at exit.
DEPTH = 1500


def deep_tree(top: Path, depth: int) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.mkfifo("fifo", dir_fd=fd)
    os.close(fd)


def test_a_deep_tree_with_a_fifo_and_links_out_is_removed_and_nothing_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    session = tmp_path / "session"
    session.mkdir()
    deep_tree(session, DEPTH)
    (session / "link").symlink_to(outside)
    (session / "file_link").symlink_to(outside / "keep.txt")
    remove_dir(str(session))
    assert not session.exists()
    assert (outside / "keep.txt").read_text() == "mine"


def test_a_missing_directory_is_not_an_error(tmp_path: Path) -> None:
    remove_dir(str(tmp_path / "never-made"))
    remove_dir(str(tmp_path / "no-parent" / "x"))
