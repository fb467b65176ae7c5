"""Reading files a job wrote: no links followed, no FIFO blocks, nothing past the cap."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import struct
import threading
import time
from pathlib import Path

import pytest

from runner import artifacts, jobtree
from runner.execute import column_text as _text

from ..trees import deep_tree


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


# --- hostile trees: the walk, the repair, the removal ------------------------------------------------

def _scan(fd: int, **kw: object) -> jobtree.Scan:
    args = {"max_entries": 100_000, "seconds": 10.0, **kw}
    return jobtree.scan(fd, **args)  # type: ignore[arg-type]


def test_scan_counts_apparent_size_of_sparse_files(tree: Path) -> None:
    with open(_jobs(tree) / "sparse", "wb") as f:
        f.truncate(50 << 20)
    assert os.stat(_jobs(tree) / "sparse").st_blocks * 512 < 1 << 20
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        found = _scan(fd)
    assert found.bytes >= 50 << 20 and found.entries == 1
    assert artifacts.check_limits(found, disk_mb=20, max_files=10) == \
        "disk limit 20 MiB exceeded in jobs/ (largest: sparse 50.0 MiB)"


def test_scan_never_follows_links_or_blocks_on_fifos(tree: Path) -> None:
    (tree / "outside").mkdir()
    (tree / "outside" / "big").write_bytes(b"x" * (4 << 20))
    os.mkfifo(tree / "outside" / "fifo")
    os.symlink(tree / "outside", _jobs(tree) / "link")
    os.mkfifo(_jobs(tree) / "fifo")
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        found = _scan(fd)
    assert found.problem is None and found.entries == 2 and found.bytes < 1 << 20


def test_scan_of_a_tree_flipping_between_directories_fifos_and_links_finishes(tree: Path) -> None:
    (tree / "outside").mkdir()
    os.mkfifo(tree / "outside" / "trap")
    flip = _jobs(tree) / "flip"
    flip.mkdir()
    stop = threading.Event()

    def flipper() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            for i in range(300):
                p = flip / f"e{i}"
                for rm in (os.rmdir, os.unlink):
                    with contextlib.suppress(OSError):
                        rm(p)
                with contextlib.suppress(OSError):
                    [os.mkdir, os.mkfifo, lambda q: os.symlink(tree / "outside" / "trap", q)][(i + n) % 3](p)

    t = threading.Thread(target=flipper, daemon=True)
    t.start()
    try:
        with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
            for _ in range(100):
                assert _scan(fd, seconds=5.0, repair=True).problem is None
    finally:
        stop.set()
        t.join()
    with pytest.raises(OSError) as exc:  # nobody holds the FIFO outside open
        os.open(tree / "outside" / "trap", os.O_WRONLY | os.O_NONBLOCK)
    assert exc.value.errno == errno.ENXIO


def test_scan_stops_at_its_entry_budget_and_its_time(tree: Path) -> None:
    many = _jobs(tree) / "many"
    many.mkdir()
    for i in range(500):
        (many / str(i)).touch()
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        found = _scan(fd, max_entries=101)
        assert found.problem == "more than 101 entries" and found.entries == 101
        assert artifacts.check_limits(found, disk_mb=50, max_files=100) == \
            "file count limit 100 exceeded in jobs/ (most: many/ 101 entries)"
        late = _scan(fd, seconds=0.0)
        assert late.problem == "not done within 0 s"
        assert artifacts.check_limits(late, disk_mb=50, max_files=1000) == "could not check jobs/: not done within 0 s"


def test_deep_tree_is_reported_then_cut_back_to_the_limit(tree: Path) -> None:
    deep_tree(_jobs(tree), 3000)
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        found = _scan(fd)
        assert found.deep is not None and found.deep.startswith("d/d/") and not found.removed
        assert "deeper than 64 levels" in (artifacts.check_limits(found, disk_mb=50, max_files=10_000) or "")
        repaired = _scan(fd, repair=True)
        assert repaired.removed and "was removed" in (artifacts.check_limits(repaired, disk_mb=50, max_files=10_000) or "")
        again = _scan(fd)
    assert again.deep is None and again.problem is None and again.entries == 63
    assert [p.name for p in _jobs(tree).iterdir()] == ["d"], "no .runner-rm-* left behind"


def test_remove_tree_removes_any_depth_and_any_kind(tree: Path) -> None:
    top = _jobs(tree) / "x"
    top.mkdir()
    deep_tree(top, 2000)
    os.mkfifo(top / "fifo")
    os.symlink(tree / "telegram_2", top / "link")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(top / "sock"))
    (top / "locked").mkdir()
    (top / "locked" / "f").touch()
    os.chmod(top / "locked", 0)
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        assert artifacts.remove(fd, "x")
        assert not artifacts.remove(fd, "x")
    sock.close()
    assert list(_jobs(tree).iterdir()) == []
    assert (tree / "telegram_2" / "jobs" / "secret.txt").read_text() == "other thread's secret"


def test_remove_tree_past_its_budget_says_so(tree: Path) -> None:
    (_jobs(tree) / "x").mkdir()
    for i in range(50):
        (_jobs(tree) / "x" / str(i)).touch()
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd, pytest.raises(jobtree.Incomplete):
        jobtree.remove_tree(fd, "x", jobtree.Budget(10, 10))


def test_repair_clears_setuid_setgid_and_world_write_without_following_links(tree: Path) -> None:
    d = _jobs(tree)
    (d / "tool").write_bytes(b"\x7fELF")
    os.chmod(d / "tool", 0o6755)
    (d / "sub").mkdir()
    os.chmod(d / "sub", 0o2777)
    os.mkfifo(d / "sub" / "fifo")
    os.chmod(d / "sub" / "fifo", 0o4666)
    target = tree / "telegram_2" / "jobs" / "secret.txt"
    os.chmod(target, 0o4777)
    os.symlink(target, d / "link")
    os.chmod(d, 0o777)
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        found = _scan(fd, repair=True)
    assert found.unfixed == [] and found.problem is None
    for p, mode in ((d, 0o775), (d / "tool", 0o755), (d / "sub", 0o775), (d / "sub" / "fifo", 0o664)):
        assert stat.S_IMODE(os.lstat(p).st_mode) == mode, p
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o4777, "a link's target is never touched"


def test_repair_removes_acls(tree: Path) -> None:
    acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in (
        (1, 7, 0xFFFFFFFF), (2, 7, 1000), (4, 5, 0xFFFFFFFF), (0x10, 7, 0xFFFFFFFF), (0x20, 5, 0xFFFFFFFF)))
    d = _jobs(tree)
    (d / "f").write_text("x")
    os.mkfifo(d / "fifo")
    for p in (d, d / "f", d / "fifo"):
        os.setxattr(p, "system.posix_acl_access", acl)
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        assert _scan(fd, repair=True).unfixed == []
    for p in (d, d / "f", d / "fifo"):
        assert "system.posix_acl_access" not in os.listxattr(p), p


def test_a_directory_that_denies_its_owner_is_still_counted(tree: Path) -> None:
    locked = _jobs(tree) / "locked"
    locked.mkdir()
    (locked / "f").write_bytes(b"x" * (1 << 20))
    os.chmod(locked, 0)
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        found = _scan(fd)
    assert found.problem is None and found.entries == 2 and found.bytes >= 1 << 20


def test_names_that_are_not_utf8_are_shown_escaped(tree: Path) -> None:
    (_jobs(tree) / os.fsdecode(b"\xff\xfe\x1b[2J.bin")).write_bytes(b"x" * (2 << 20))
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        reason = artifacts.check_limits(_scan(fd), disk_mb=1, max_files=10)
    assert reason == "disk limit 1 MiB exceeded in jobs/ (largest: \\xff\\xfe\\x1b[2J.bin 2.0 MiB)"
    reason.encode("utf-8")
    assert jobtree.text_name(os.fsdecode(b"\xff.txt")) is None and jobtree.text_name("ok é.txt") == "ok é.txt"
    assert _text("a\udcff\x00b") == "a\ufffd\ufffd\ufffd\ufffdb"


# --- attachments: bounded by the caps, not by what the job left -------------------------------------

def _attach(tree: Path, **caps: int) -> artifacts.Attachments:
    args = {"file_cap": 1 << 20, "max_files": 10, "total_cap": 2 << 20, **caps}
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        return artifacts.collect_attachments(fd, "a", **args)


def test_sparse_attachments_are_refused_without_being_read(tree: Path) -> None:
    d = _jobs(tree) / "a_attachments"
    d.mkdir()
    for i in range(800):
        with open(d / f"{i:04}.bin", "wb") as f:
            f.truncate(50 << 20)
    t0 = time.process_time()
    got = _attach(tree, max_files=1000)
    assert time.process_time() - t0 < 1.0
    assert got.files == [] and len(got.problems) == 800 and "larger than 1 MiB" in got.problems[0]


def test_too_many_attachment_entries_are_not_read_at_all(tree: Path) -> None:
    d = _jobs(tree) / "a_attachments"
    d.mkdir()
    for i in range(artifacts.ATTACHMENT_SCAN + 1):
        (d / str(i)).write_bytes(b"x")
    assert _attach(tree) == artifacts.Attachments([], [f"a_attachments has more than {artifacts.ATTACHMENT_SCAN} "
                                                       "entries; none was sent"])


def test_attachment_cap_counts_refused_entries_too(tree: Path) -> None:
    d = _jobs(tree) / "a_attachments"
    d.mkdir()
    for i in range(5):
        os.mkfifo(d / f"{i}fifo")
    for i in range(5):
        (d / f"{i}ok.txt").write_bytes(b"x")
    got = _attach(tree, max_files=4)
    assert [n for n, _ in got.files] == ["0ok.txt", "1ok.txt"]
    assert got.problems[0] == "10 entries in a_attachments, more than 4: the rest were not sent"


def test_non_utf8_attachment_name_is_refused(tree: Path) -> None:
    d = _jobs(tree) / "a_attachments"
    d.mkdir()
    (d / os.fsdecode(b"\xff\xfe.txt")).write_bytes(b"x")
    (d / "ok.txt").write_bytes(b"fine")
    got = _attach(tree)
    assert got.files == [("ok.txt", b"fine")]
    assert got.problems == ["attachment refused: its name \\xff\\xfe.txt is not printable UTF-8 text"]


@pytest.mark.parametrize("make", ["symlink", "fifo", "file", "socket"])
def test_a_non_directory_attachments_entry_is_removed(tree: Path, make: str) -> None:
    p = _jobs(tree) / "a_attachments"
    sock = socket.socket(socket.AF_UNIX)
    {"symlink": lambda: os.symlink(tree / "telegram_2" / "jobs", p), "fifo": lambda: os.mkfifo(p),
     "file": lambda: p.write_bytes(b"x"), "socket": lambda: sock.bind(str(p))}[make]()
    assert _attach(tree).files == []
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        artifacts.remove_attachments(fd, "a")
    sock.close()
    assert not os.path.lexists(p)
    assert (tree / "telegram_2" / "jobs" / "secret.txt").exists()


def test_directory_at_the_message_path_is_refused_and_removed(tree: Path) -> None:
    (_jobs(tree) / "a_message.txt" / "sub").mkdir(parents=True)
    with artifacts.open_dir(tree, "telegram_1", "jobs") as fd:
        msg = artifacts.collect_message(fd, "a", 100)
    assert msg is not None and msg.problem == "message file refused: a_message.txt is a directory, not a regular file"
    assert not os.path.lexists(_jobs(tree) / "a_message.txt")
