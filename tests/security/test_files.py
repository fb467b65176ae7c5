"""What the runner does with the files a job leaves in jobs/: hostile trees, names, modes and sizes.

Real containers, a real database. Each test asserts that the attack failed, that the run records the
right reason, and that the thread keeps working afterwards (a harmless job in it still runs).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database
from runner.threads import jobs_dir

from .helpers import Attack, attacks

THREAD = "telegram:668"


@pytest.fixture
def attack(jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> Iterator[Attack]:
    """Run a hostile script once as job ``name`` ("attack" unless given); return (row, console output).
    Then check the thread still works: a harmless job in it runs, and no watchdog thread of the runner
    is left behind."""
    yield from attacks(Attack(jobs, settings, db, docker_client, THREAD, default_name="attack"), no_watchdog_left=True)


def _dir(settings: Settings) -> Path:
    return jobs_dir(settings.data_dir, THREAD)


def _apparent(path: Path) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            total += os.lstat(os.path.join(root, n)).st_size
    return total


def _clean(path: Path, *names: str) -> None:
    """The user's cleanup after an attack that is allowed to leave its files (they are the thread's)."""
    import shutil

    for n in names:
        p = path / n
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif os.path.lexists(p):
            p.unlink()


# --- (3) the watchdog cannot be frozen, nor made to follow links ---------------------------------------

FLIPPER = """
import os, threading, time
os.mkdir('jobs/flip')
stop = False
def flip():
    while not stop:
        for i in range(300):
            p = f'jobs/flip/e{i}'
            for rm in (os.rmdir, os.unlink):
                try:
                    rm(p)
                except OSError:
                    pass
            try:
                MAKE(p, i)
            except OSError:
                pass
threading.Thread(target=flip, daemon=True).start()
for n in range(60):
    with open(f'jobs/fill{n}.bin', 'wb') as f:
        f.write(os.urandom(4 * 1024 * 1024))
    time.sleep(0.05)
stop = True
"""


def test_fifo_flips_do_not_freeze_the_disk_watchdog(attack, settings: Settings) -> None:
    make = "(lambda p, i: os.mkfifo(p) if (i + int(time.time() * 20)) % 2 else os.mkdir(p))"
    row, _ = attack(FLIPPER.replace("MAKE", make), s=settings.with_(disk_mb=20), limits=Limits(timeout_seconds=25))
    assert row["status"] == "failed"
    assert row["error_message"].startswith("disk limit 20 MiB exceeded in jobs/"), row["error_message"]
    used = sum(p.stat().st_size for p in _dir(settings).glob("fill*.bin"))
    assert used < 120 * 1024 * 1024, f"{used} bytes written past a 20 MiB limit"
    _clean(_dir(settings), "flip", *[p.name for p in _dir(settings).glob("fill*.bin")])


def test_symlink_flips_never_make_the_host_open_a_host_path(attack, settings: Settings, tmp_path: Path) -> None:
    trap = tmp_path / "host-fifo"
    os.mkfifo(trap)
    make = f"(lambda p, i: os.symlink({str(trap)!r}, p) if (i + int(time.time() * 20)) % 2 else os.mkdir(p))"
    row, _ = attack(FLIPPER.replace("MAKE", make), s=settings.with_(disk_mb=20), limits=Limits(timeout_seconds=25))
    assert row["status"] == "failed" and row["error_message"].startswith("disk limit 20 MiB"), row["error_message"]
    with pytest.raises(OSError) as exc:  # ENXIO: nobody on the host holds the FIFO open for reading
        os.close(os.open(trap, os.O_WRONLY | os.O_NONBLOCK))
    assert exc.value.errno == errno.ENXIO
    _clean(_dir(settings), "flip", *[p.name for p in _dir(settings).glob("fill*.bin")])


def test_deep_tree_fails_its_run_and_not_the_threads_later_jobs(attack, settings: Settings) -> None:
    script = "import os\nos.chdir('jobs')\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\n"
    row, _ = attack(script, limits=Limits(timeout_seconds=25))
    assert row["status"] == "failed"
    assert "deeper than 64 levels" in row["error_message"] and "removed" in row["error_message"], row["error_message"]
    depth, p = 0, _dir(settings) / "d"
    while p.is_dir():
        depth, p = depth + 1, p / "d"
    assert depth <= 64
    _clean(_dir(settings), "d")


def test_reason_names_the_largest_entries(attack, settings: Settings) -> None:
    script = ("import os\nopen('jobs/small.txt', 'w').write('x')\nos.mkdir('jobs/cache')\n"
              "open(b'jobs/\\xff big.bin', 'wb').write(os.urandom(15 * 1024 * 1024))\n"
              "for i in range(40):\n    open(f'jobs/cache/{i}.bin', 'wb').write(os.urandom(1024 * 1024))\n")
    row, _ = attack(script, s=settings.with_(disk_mb=20))
    assert row["status"] == "failed"
    msg = row["error_message"]
    assert msg.startswith("disk limit 20 MiB exceeded in jobs/") and "cache/" in msg and "\\xff big.bin" in msg, msg
    assert "small.txt" not in msg
    _clean(_dir(settings), "cache", "small.txt")
    for p in _dir(settings).iterdir():
        if p.name.endswith("big.bin"):
            p.unlink()


# --- (5) names a job chose are bytes ---------------------------------------------------------------------

def test_non_utf8_attachment_name_is_refused_and_the_message_still_arrives(attack, settings: Settings) -> None:
    script = ("import os\nos.mkdir('jobs/attack_attachments')\n"
              "open(b'jobs/attack_attachments/\\xff\\xfe.txt', 'wb').write(b'x')\n"
              "open(b'jobs/attack_attachments/ok.txt', 'wb').write(b'fine')\n"
              "open(b'jobs/\\xff\\xfe other', 'wb').write(b'x')\n"
              "open('jobs/attack_message.txt', 'w').write('the report')\n")
    row, printed = attack(script)
    assert row["status"] == "completed", row["error_message"]
    assert "the report" in printed and "ok.txt" in printed
    assert "attachment refused" in row["error_message"] and "\\xff\\xfe.txt" in row["error_message"]
    assert not os.path.lexists(_dir(settings) / "attack_attachments")
    _clean(_dir(settings), os.fsdecode(b"\xff\xfe other"))


# --- (6) reading back is bounded by the caps, not by what the job left -----------------------------------

@pytest.mark.parametrize(("count", "reason"), [
    (900, "attachment 00000.bin is larger than 10 MiB; not sent"),
    (3000, "attack_attachments has more than 1000 entries; none was sent"),
])
def test_thousands_of_sparse_attachments_cost_the_host_little(attack, settings: Settings, count: int,
                                                              reason: str) -> None:
    script = ("import os\nos.mkdir('jobs/attack_attachments')\n"
              f"for i in range({count}):\n"
              "    fd = os.open(f'jobs/attack_attachments/{i:05}.bin', os.O_CREAT | os.O_WRONLY)\n"
              "    os.ftruncate(fd, 50 << 20)\n    os.close(fd)\n"
              "open('jobs/attack_message.txt', 'w').write('see attached')\n")
    t0 = time.process_time()
    row, printed = attack(script, s=settings.with_(disk_mb=1_000_000), limits=Limits(timeout_seconds=25))
    cpu = time.process_time() - t0
    assert "see attached" in printed
    assert reason in row["error_message"], row["error_message"]
    assert cpu < 8, f"the runner spent {cpu:.1f} s of CPU on the job's files"
    assert not os.path.lexists(_dir(settings) / "attack_attachments")


# --- (8) sparse files count at their apparent size ------------------------------------------------------

def test_sparse_files_count_against_the_disk_limit(attack, settings: Settings) -> None:
    script = ("import os\nfor i in range(100):\n"
              "    fd = os.open(f'jobs/sparse{i}', os.O_CREAT | os.O_WRONLY)\n    os.ftruncate(fd, 50 << 20)\n"
              "    os.close(fd)\n")
    row, _ = attack(script)
    assert row["status"] == "failed"
    assert row["error_message"].startswith("disk limit 50 MiB exceeded in jobs/"), row["error_message"]
    _clean(_dir(settings), *[p.name for p in _dir(settings).glob("sparse*")])


# --- (4) no setuid, setgid or world-writable mode survives on the host ----------------------------------

def test_setuid_and_world_writable_modes_do_not_survive_the_run(attack, settings: Settings, runtime: str) -> None:
    script = ("import os, shutil\nshutil.copy('/usr/bin/id', 'jobs/id')\nos.chmod('jobs/id', 0o6755)\n"
              "os.makedirs('jobs/a/b')\nshutil.copy('/usr/bin/id', 'jobs/a/b/id')\nos.chmod('jobs/a/b/id', 0o4777)\n"
              "os.chmod('jobs/a', 0o2777)\nos.mkfifo('jobs/a/fifo')\nos.chmod('jobs/a/fifo', 0o6666)\n"
              "os.symlink('id', 'jobs/link')\nos.chmod('jobs', 0o777)\n")
    row, _ = attack(script)
    assert row["status"] == "completed", row["error_message"]
    d = _dir(settings)
    fifo = () if runtime == "runsc" else (d / "a" / "fifo",)  # gVisor keeps a FIFO inside the sandbox
    for p in (d, d / "id", d / "a", d / "a" / "b", d / "a" / "b" / "id", *fifo):
        mode = os.lstat(p).st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH), f"{p}: {oct(mode)}"
    _clean(d, "id", "a", "link")


ACL = ("import os, struct\n"
       "ents = [(1, 7, 0xffffffff), (2, 7, 1000), (4, 5, 0xffffffff), (0x10, 7, 0xffffffff), (0x20, 5, 0xffffffff)]\n"
       "acl = struct.pack('<I', 2) + b''.join(struct.pack('<HHI', *e) for e in ents)\n")


def test_acls_granting_a_host_user_access_do_not_survive_the_run(attack, settings: Settings, runtime: str) -> None:
    script = ACL + ("open('jobs/data.txt', 'w').write('x')\nos.mkdir('jobs/d')\n"
                    "for p in ('jobs', 'jobs/data.txt', 'jobs/d'):\n    os.setxattr(p, 'system.posix_acl_access', acl)\n"
                    "os.setxattr('jobs/d', 'system.posix_acl_default', acl)\nprint('ACLS SET')\n")
    row, _ = attack(script)
    if runtime == "runsc":  # gVisor does not let a job set ACLs on the host's files at all
        assert row["status"] == "failed" and "[Errno 95] Operation not supported" in row["error_message"], row
        _clean(_dir(settings), "data.txt", "d")
        return
    assert row["status"] == "completed" and "ACLS SET" in row["output_tail"], row["error_message"]
    d = _dir(settings)
    for p in (d, d / "data.txt", d / "d"):
        assert not [a for a in os.listxattr(p, follow_symlinks=False) if a.startswith("system.posix_acl")], p
    _clean(d, "data.txt", "d")


# --- broken siblings: each gets a reason and leaves nothing behind --------------------------------------

def test_directory_at_the_message_path_fails_one_run_only(attack, settings: Settings) -> None:
    script = ("import os\nif not os.path.exists('jobs/dirmsg_output.json'):\n"
              "    os.makedirs('jobs/dirmsg_message.txt/sub')\n    open('jobs/dirmsg_output.json', 'w').write('1')\n"
              "else:\n    open('jobs/dirmsg_message.txt', 'w').write('second run')\n")
    row, _ = attack(script, name="dirmsg")
    assert row["status"] == "failed" and "dirmsg_message.txt is a directory" in row["error_message"], row["error_message"]
    assert not os.path.lexists(_dir(settings) / "dirmsg_message.txt")
    row, printed = attack(script, name="dirmsg")
    assert row["status"] == "completed" and "second run" in printed, row["error_message"]


def test_directory_at_the_script_path_is_replaced(attack, jobs: Jobs, settings: Settings) -> None:
    row, _ = attack("import os\nos.makedirs('jobs/report.py/x/y')\nopen('jobs/report.py/x/f', 'w').write('1')\n",
                    name="maker")
    assert row["status"] == "completed", row["error_message"]
    row, printed = attack("print('report ran')\n", name="report")
    assert row["status"] == "completed" and "report ran" in row["output_tail"], row["error_message"]
    assert [p.name for p in _dir(settings).iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("make", [
    "os.symlink('/etc', 'jobs/attack_attachments')",
    "os.mkfifo('jobs/attack_attachments')",
    "import socket\nsocket.socket(socket.AF_UNIX).bind('jobs/attack_attachments')",
    "os.makedirs('jobs/attack_attachments/sub/deeper')\nimport socket\n"
    "socket.socket(socket.AF_UNIX).bind('jobs/attack_attachments/sock')\nos.mkfifo('jobs/attack_attachments/sub/f')\n"
    "os.chmod('jobs/attack_attachments/sub', 0)",
], ids=["symlink", "fifo", "socket", "hostile-contents"])
def test_hostile_attachments_entry_is_removed(attack, settings: Settings, make: str) -> None:
    row, printed = attack(f"import os\n{make}\nopen('jobs/attack_message.txt', 'w').write('hello')\n")
    assert "hello" in printed, row["error_message"]
    assert not os.path.lexists(_dir(settings) / "attack_attachments")
    assert os.path.isdir("/etc")
