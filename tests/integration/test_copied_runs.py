"""Runs with the thread's files in the database (RUNNER_FILES=postgres): nothing bind-mounted, jobs/
copied into each run's own volume and read back as hostile input, the changes written with the result.
Real Postgres, real containers on the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database
from runner.store.files import FilesStore
from runner.threads import ThreadId

from .helpers import run_burst

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
THREAD = "telegram:42"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(files="postgres", disk_mb=8, max_files=200, timeout_seconds=60)


@pytest.fixture
def stored(db: Database) -> FilesStore:
    return FilesStore(db)


def _files(stored: FilesStore) -> dict[str, bytes]:
    return {name: data for name, (data, _) in stored.thread_files(THREAD).items()}


def _run(jobs: Jobs, settings: Settings, db: Database, dc: docker.DockerClient, name: str, source: str,
         **kw: object) -> tuple[dict, str]:
    job = jobs.schedule_job(thread_id=THREAD, name=name, script_text=source, at="now", **kw)
    printed = run_burst(settings, db, dc)
    return jobs.get_job(job["id"]), printed


def test_a_run_gets_its_files_and_its_changes_and_message_are_kept_in_the_store(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, stored: FilesStore) -> None:
    jobs.files.write(ThreadId.parse(THREAD), "price.json", b'{"price": 42}')
    jobs.files.write(ThreadId.parse(THREAD), "old.txt", b"to be removed")
    row, printed = _run(jobs, settings, db, docker_client, "check", (
        "import json, os\n"
        "print(sorted(os.listdir('jobs')), oct(os.stat('jobs').st_mode & 0o777))\n"
        "price = json.load(open('jobs/price.json'))['price']\n"
        "json.dump({'seen': price}, open('jobs/check_output.json', 'w'))\n"
        "os.remove('jobs/old.txt')\n"
        "os.makedirs('jobs/check_attachments')\n"
        "open('jobs/check_attachments/n.bin', 'wb').write(bytes(range(256)))\n"
        "open('jobs/check_message.txt', 'w').write(f'price {price}')\n"))
    assert row["status"] == "completed", row["error_message"]
    assert "['check.py', 'old.txt', 'price.json'] 0o700" in row["output_tail"]  # its files, jobs/ its own
    assert "price 42" in printed
    files = _files(stored)
    assert json.loads(files["check_output.json"]) == {"seen": 42}
    assert "old.txt" not in files  # a removal is a change too
    assert "check_message.txt" not in files and not any(n.startswith("check_attachments/") for n in files)
    assert files["price.json"] == b'{"price": 42}'
    assert not (settings.data_dir / "telegram_42").exists(), "nothing of the thread's on the runner's disk"
    (msg,) = jobs.get_job_logs(row["id"])["messages"]
    assert msg["status"] == "sent"


def test_a_chain_reads_the_output_of_the_job_before_it(jobs: Jobs, settings: Settings, db: Database,
                                                      docker_client: docker.DockerClient) -> None:
    first = jobs.schedule_job(thread_id=THREAD, name="chain_fetch", script=EXAMPLES / "chain_fetch.py", at="now")
    second = jobs.schedule_job(thread_id=THREAD, name="chain_report", script=EXAMPLES / "chain_report.py",
                               after="chain_fetch")
    printed = run_burst(settings, db, docker_client)
    assert jobs.get_job(first["id"])["status"] == "completed"
    runs = jobs.job_runs(second["id"])
    assert runs[-1]["status"] == "completed", runs[-1]["error_message"]
    assert printed.strip(), "the report job's message"


def test_links_devices_and_fifos_a_job_leaves_are_not_kept_and_it_says_so(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, stored: FilesStore) -> None:
    row, _ = _run(jobs, settings, db, docker_client, "hostile", HOSTILE_ENTRIES)
    check_hostile_entries_refused(row, _files(stored))


HOSTILE_ENTRIES = (
    "import os\n"
    "open('jobs/plain.txt', 'w').write('kept')\n"
    "os.symlink('/etc/shadow', 'jobs/shadow')\n"
    "os.link('jobs/plain.txt', 'jobs/hard')\n"
    "os.mkfifo('jobs/fifo')\n"
    "open(b'jobs/bad\\x1b[31mname', 'w').write('x')\n")


def check_hostile_entries_refused(row: dict, files: dict[str, bytes]) -> None:
    """What HOSTILE_ENTRIES left is refused entry by entry, with a reason each, and the plain file kept."""
    assert row["status"] == "completed", row["error_message"]
    # a hard link's first name in the engine's archive carries the data; the other is refused as the link
    assert [files.get(n) for n in ("plain.txt", "hard") if n in files] == [b"kept"]
    assert not {"shadow", "fifo"} & set(files) and not any("bad" in n for n in files)
    said = row["error_message"] or ""
    assert "shadow" in said and "symbolic link" in said and "FIFO" in said and "hard link" in said, said
    assert "\x1b" not in said  # the escape shown escaped, never passed on


PAST_LIMITS = [
    # 1 GiB of nothing (the file-size limit raised for it), read back as 1 GiB of zeros: stopped at 8 MiB
    ("f = open('jobs/sparse', 'wb')\nf.truncate(1 << 30)\n", "MiB"),
    ("for i in range(100_000):\n    open(f'jobs/e{i}', 'w').close()\n", "entries"),
]


@pytest.mark.parametrize(("source", "reason"), PAST_LIMITS)
def test_a_run_past_its_limits_fails_with_the_reason_and_keeps_nothing(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, stored: FilesStore,
        source: str, reason: str) -> None:
    jobs.files.write(ThreadId.parse(THREAD), "keep.txt", b"before")
    settings = settings.with_(max_file_mb=1100)
    row, _ = _run(jobs, settings, db, docker_client, "flood",
                  "open('jobs/keep.txt', 'w').write('after')\n" + source)
    assert row["status"] == "failed"
    assert reason in row["error_message"] and "none of the run's changes" in row["error_message"], row["error_message"]
    assert _files(stored)["keep.txt"] == b"before"  # none of its writes, not even the small one


def test_a_runner_refuses_two_runs_of_a_thread_at_once_with_copied_files(settings: Settings) -> None:
    from runner.errors import ConfigError
    with pytest.raises(ConfigError, match="RUNNER_THREAD_CONCURRENCY=2 cannot be used with RUNNER_FILES=postgres"):
        settings.with_(thread_concurrency=2)
