"""A full file system under the data directory (a small tmpfs mounted there, filled to the last block):
runs fail naming the host's full file system and what to do, never a job limit, and `runner schedule`
refuses in one line and leaves nothing behind (no temporary file, no script, no row)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from runner.diskspace import HostFull, explain_failure
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database

from .helpers import ROOT, RUNNER_CLI, cli_env, run_burst

THREAD = "telegram:5"
HOST_FULL = "the runner host's file system holding the data directory is full"
WRITER = ("import json\n"
          "json.dump({'rows': ['x' * 100] * 2000}, open('jobs/writer_output.json', 'w'))\n"
          "open('jobs/writer_message.txt', 'w').write('saved')\n")


def _mounted(mnt: Path, options: str) -> Iterator[Path]:
    """A tmpfs at ``mnt`` (the tests run as root, as the runner does on a server), unmounted afterwards."""
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"{options},mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system for the data directory."""
    yield from _mounted(tmp_path / "small", "size=4m")


@pytest.fixture
def few_inodes(tmp_path: Path) -> Iterator[Path]:
    """A file system with room for bytes but only 64 inodes."""
    yield from _mounted(tmp_path / "inodes", "size=16m,nr_inodes=64")


def _fill(mnt: Path) -> None:
    """Write a filler file until the file system refuses another byte."""
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError as exc:
                assert exc.errno == 28, exc
    finally:
        os.close(fd)


def test_a_run_on_a_full_host_disk_names_it_not_a_job_limit(settings: Settings, db: Database, small_disk: Path,
                                                            docker_client: docker.DockerClient) -> None:
    s = settings.with_(data_dir=small_disk / "files")
    jobs = Jobs(s, db)
    job = jobs.schedule_job(thread_id=THREAD, name="writer", script_text=WRITER, at="now")
    _fill(small_disk)
    printed = run_burst(s, db, docker_client)
    row = jobs.get_job(job["id"])
    assert row["status"] == "failed"
    reason = row["error_message"]
    assert reason.startswith(HOST_FULL), reason
    assert "RUNNER_DATA_DIR" in reason and "not a job limit" in reason, reason
    assert "No space left on device" in reason  # the job's own words are kept, after the cause
    assert "limit" not in reason.replace("not a job limit", ""), reason
    assert str(small_disk) not in reason  # the reason reaches the chat: no host path in it
    assert f"Job writer failed: {HOST_FULL}" in printed  # the chat is told, with the real cause


def test_a_run_whose_directory_cannot_be_made_names_the_full_disk(settings: Settings, db: Database,
                                                                  few_inodes: Path,
                                                                  docker_client: docker.DockerClient) -> None:
    s = settings.with_(data_dir=few_inodes / "files")
    jobs = Jobs(s, db)
    job = jobs.schedule_job(thread_id=THREAD, name="writer", script_text=WRITER, at="now")
    shutil.rmtree(few_inodes / "files" / "telegram_5" / "jobs")  # the run must make jobs/ again
    n = 0
    try:
        while True:  # every inode taken: a mkdir fails with ENOSPC although bytes are free
            (few_inodes / f"f{n}").touch()
            n += 1
    except OSError as exc:
        assert exc.errno == 28, exc
    printed = run_burst(s, db, docker_client)
    row = jobs.get_job(job["id"])
    assert row["status"] == "failed" and row["exit_code"] is None  # it never started
    assert row["error_message"].startswith(HOST_FULL + " (no free inodes of 64)"), row["error_message"]
    assert f"Job writer failed: {HOST_FULL}" in printed


def _schedule(s: Settings, thread: str, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNNER_CLI, "schedule", "examples/check_price.py",
                           "--thread", thread, "--name", name], env=cli_env(s), cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_schedule_on_a_full_host_disk_refuses_cleanly_and_leaves_nothing(settings: Settings, db: Database,
                                                                         small_disk: Path) -> None:
    s = settings.with_(data_dir=small_disk / "files")
    first = Jobs(s, db).schedule_job(thread_id=THREAD, name="first", script_text="print(1)\n", at="now")
    _fill(small_disk)
    with pytest.raises(HostFull, match="cannot save jobs/first.py: the file system holding the data directory"):
        Jobs(s, db).approve_script(first["id"], script_text="print('a new version')\n" * 500)
    assert (small_disk / "files" / "telegram_5" / "jobs" / "first.py").read_text() == "print(1)\n"  # as it was
    assert Jobs(s, db).get_job(first["id"])["script_sha256"] == first["script_sha256"]  # not approved either
    for thread in (THREAD, "telegram:6"):  # a thread with a directory, and a new one
        r = _schedule(s, thread, "second")
        assert r.returncode == 1, r.stdout + r.stderr
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err and "unexpected error" not in err, err
        assert "cannot save jobs/second.py: the file system holding the data directory" in err, err
        assert "is full" in err and "RUNNER_DATA_DIR" in err and "nothing was saved" in err, err
    left = sorted(p.name for p in (small_disk / "files").rglob("*"))
    assert not [n for n in left if n.endswith(".tmp") or n == "second.py"], left
    assert [r["name"] for r in Jobs(s, db).list_jobs()] == ["first"]


def test_only_a_failure_in_the_jobs_own_words_is_put_down_to_the_full_disk(small_disk: Path, tmp_path: Path) -> None:
    _fill(small_disk)
    for fact in ("timed out after 5 s", "killed: memory limit 256 MiB exceeded",
                 "disk limit 50 MiB exceeded in jobs/ (largest: big.bin)"):
        assert explain_failure(small_disk, fact) == fact  # a kill the runner sent stays the reason
    assert explain_failure(small_disk, "exit code 1: boom").startswith(HOST_FULL)
    assert explain_failure(tmp_path, "exit code 1: boom") == "exit code 1: boom"  # a disk with room: the job's words
