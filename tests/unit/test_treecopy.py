"""A local jobs/ tree read for the database and written back from it (runner files migrate), as
hostile input: no link followed, no FIFO opened, capped reads, unfit names reported, never copied."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner import treecopy
from runner.filerules import MAX_DEPTH, FileCaps

from ..trees import deep_tree

MiB = 1024 * 1024
CAPS = FileCaps(file_bytes=MiB, total_bytes=4 * MiB, count=50)


def _read(jobs: Path, caps: FileCaps = CAPS) -> treecopy.Tree:
    fd = os.open(jobs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return treecopy.read_tree(fd, caps)
    finally:
        os.close(fd)


def _write(jobs: Path, files: dict[str, tuple[bytes, datetime]]) -> treecopy.Written:
    fd = os.open(jobs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return treecopy.write_tree(fd, files, os.geteuid())
    finally:
        os.close(fd)


def _skipped(tree: treecopy.Tree, name: str) -> str:
    said = [s for s in tree.skipped if s.startswith(f"jobs/{name}: ")]
    assert len(said) == 1, (name, tree.skipped)
    return said[0]


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    d = tmp_path / "jobs"
    d.mkdir()
    return d


def test_plain_files_are_read_with_their_paths_and_times(jobs: Path) -> None:
    (jobs / "prices.json").write_bytes(b'{"limit": 100}')
    (jobs / "check_attachments").mkdir()
    (jobs / "check_attachments" / "note.bin").write_bytes(b"\x00\xff")
    os.utime(jobs / "prices.json", (1_700_000_000, 1_700_000_000))
    tree = _read(jobs)
    assert tree.files == {"prices.json": b'{"limit": 100}', "check_attachments/note.bin": b"\x00\xff"}
    assert tree.modified["prices.json"] == datetime.fromtimestamp(1_700_000_000, UTC)
    assert tree.skipped == [] and tree.problem is None


def test_links_fifos_sockets_hard_links_and_odd_names_are_reported_not_copied(jobs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the host's")
    (jobs / "ok.txt").write_text("ok")
    os.symlink("/etc/passwd", jobs / "passwd.txt")
    os.symlink(outside, jobs / "linked_dir")
    os.mkfifo(jobs / "fifo.txt")  # opened, it would block the walk: it must be looked at, never opened
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(jobs / "sock"))
    os.link(jobs / "ok.txt", jobs / "hard.txt")
    (jobs / ".hidden").write_text("x")
    (jobs / "bad dir").mkdir()
    (jobs / "bad dir" / "inside.txt").write_text("x")
    fd = os.open(jobs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(os.open(b"caf\xe9\x1b[2J.txt", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))  # not UTF-8, an escape
    finally:
        os.close(fd)
    tree = _read(jobs)
    assert tree.files == {}, "ok.txt has two links now: neither name is read"
    assert "symbolic link" in _skipped(tree, "passwd.txt") and "symbolic link" in _skipped(tree, "linked_dir")
    assert "not a regular file" in _skipped(tree, "fifo.txt") and "not a regular file" in _skipped(tree, "sock")
    assert "hard links" in _skipped(tree, "hard.txt") and "hard links" in _skipped(tree, "ok.txt")
    assert "name is not one the store takes" in _skipped(tree, ".hidden")
    assert "nor anything in it" in _skipped(tree, "bad dir")
    shown = _skipped(tree, "caf\\xe9\\x1b[2J.txt")  # escaped: no raw byte, no terminal escape
    assert "\x1b" not in shown and "\udce9" not in shown
    assert len(tree.skipped) == 9


def test_a_file_past_its_cap_and_files_past_the_threads_count_and_total_are_left(jobs: Path) -> None:
    (jobs / "big.bin").write_bytes(b"x" * (MiB + 1))
    with open(jobs / "sparse.bin", "wb") as f:
        f.truncate(1 << 34)  # 16 GiB that take no room: only the cap's bytes are read
    tree = _read(jobs)
    assert tree.files == {} and "larger than the 1 MiB" in _skipped(tree, "big.bin")
    assert "larger than the 1 MiB" in _skipped(tree, "sparse.bin")
    for name in ("big.bin", "sparse.bin"):
        os.unlink(jobs / name)
    for i in range(6):
        (jobs / f"f{i}.bin").write_bytes(b"y" * (MiB - 1))
    tree = _read(jobs, FileCaps(file_bytes=MiB, total_bytes=4 * MiB, count=5))
    assert sorted(tree.files) == ["f0.bin", "f1.bin", "f2.bin", "f3.bin"]
    assert "past the thread's 4 MiB in all" in _skipped(tree, "f4.bin")
    assert "past the thread's 4 MiB in all" in _skipped(tree, "f5.bin")
    tree = _read(jobs, FileCaps(file_bytes=MiB, total_bytes=40 * MiB, count=2))
    assert sorted(tree.files) == ["f0.bin", "f1.bin"]
    assert all("limit of 2 files" in s for s in tree.skipped) and len(tree.skipped) == 4


def test_a_tree_deeper_than_the_store_is_cut_at_its_depth(jobs: Path) -> None:
    deep_tree(jobs, MAX_DEPTH + 3)
    tree = _read(jobs)
    assert tree.files == {} and tree.problem is None
    assert len(tree.skipped) == 1 and f"at the store's depth of {MAX_DEPTH}" in tree.skipped[0]


def test_a_tree_past_the_walks_budget_is_not_copied_at_all(jobs: Path) -> None:
    for i in range(1100):
        (jobs / f"e{i}").write_text("")
    tree = _read(jobs, FileCaps(file_bytes=MiB, total_bytes=MiB, count=10))  # budget: 2 * 10 + 1000 entries
    assert tree.problem == "jobs/ could not be read whole (more than 1,020 entries); nothing was copied"
    assert _read(jobs, FileCaps(file_bytes=MiB, total_bytes=MiB, count=100)).problem is None


def test_files_are_written_back_whole_with_their_times_and_a_second_copy_changes_nothing(jobs: Path) -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    files = {"prices.json": (b"[1]", when), "check_attachments/note.bin": (b"\x00", when),
             "a/b/c/d.txt": (b"deep", when)}
    assert _write(jobs, files) == treecopy.Written(written=3, unchanged=0)
    assert (jobs / "a" / "b" / "c" / "d.txt").read_bytes() == b"deep"
    assert os.stat(jobs / "prices.json").st_mtime == when.timestamp()
    assert _write(jobs, files) == treecopy.Written(written=0, unchanged=3)
    files["prices.json"] = (b"[2]", when)
    assert _write(jobs, files) == treecopy.Written(written=1, unchanged=2)
    assert (jobs / "prices.json").read_bytes() == b"[2]"


def test_writing_back_replaces_links_and_wrong_kinds_never_following_them(jobs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.txt").write_text("the host's")
    os.symlink(outside, jobs / "d")  # a link where a directory goes
    os.symlink(outside / "x.txt", jobs / "f.txt")  # a link where a file goes
    (jobs / "tree").mkdir()  # a directory where a file goes
    (jobs / "tree" / "in.txt").write_text("x")
    (jobs / "plain").write_text("a file where a directory goes")
    os.mkfifo(jobs / "fifo.txt")
    now = datetime.now(UTC)
    files = {"d/x.txt": (b"mine", now), "f.txt": (b"mine", now), "tree": (b"mine", now),
             "plain/y.txt": (b"mine", now), "fifo.txt": (b"mine", now)}
    assert _write(jobs, files).written == 5
    assert (outside / "x.txt").read_text() == "the host's" and sorted(os.listdir(outside)) == ["x.txt"]
    assert not (jobs / "d").is_symlink() and (jobs / "d" / "x.txt").read_bytes() == b"mine"
    assert not (jobs / "f.txt").is_symlink() and (jobs / "f.txt").read_bytes() == b"mine"
    assert (jobs / "tree").read_bytes() == b"mine" and (jobs / "plain" / "y.txt").read_bytes() == b"mine"
    assert (jobs / "fifo.txt").read_bytes() == b"mine"
