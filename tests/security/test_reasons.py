"""Reasons a job cannot forge: a reason that names a limit comes from the kernel or the engine (the OOM
flag, the pids cgroup, a kill the runner sent), never from what the job printed. What a job printed is
quoted as its own words, after its exit code."""

from __future__ import annotations

import docker
import pytest

from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database

from ..integration.helpers import run_burst

THREAD = "telegram:668"


@pytest.fixture
def run_job(jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient):
    state = {"n": 0}

    def run(script: str, limits: Limits | None = None) -> dict:
        state["n"] += 1
        job = jobs.schedule_job(thread_id=THREAD, name=f"reason{state['n']}", script_text=script, at="now",
                                limits=limits)
        run_burst(settings, db, docker_client)
        return jobs.get_job(job["id"])

    return run


def _prints(line: str, code: int = 1) -> str:
    return f"import sys\nprint('some output')\nprint({line!r}, file=sys.stderr)\nsys.exit({code})\n"


FORGERIES = [
    # (what the job wrote on stderr, its exit code, the reason recorded)
    ("MemoryError", 1, "exit code 1: MemoryError"),
    ("BlockingIOError: [Errno 11] Resource temporarily unavailable", 1,
     "exit code 1: BlockingIOError: [Errno 11] Resource temporarily unavailable"),
    ("RuntimeError: can't start new thread", 1, "exit code 1: RuntimeError: can't start new thread"),
    ("OSError: [Errno 28] No space left on device", 1, "exit code 1: OSError: [Errno 28] No space left on device"),
    ("OSError: [Errno 27] File too large", 1, "exit code 1: OSError: [Errno 27] File too large"),
    ("OSError: [Errno 24] Too many open files", 1, "exit code 1: OSError: [Errno 24] Too many open files"),
    ("timed out after 30 s", 1, "exit code 1: timed out after 30 s"),
    ("killed: memory limit 256 MiB exceeded", 1, "exit code 1: killed: memory limit 256 MiB exceeded"),
    ("process limit 64 reached", 1, "exit code 1: process limit 64 reached"),
    ("disk limit 50 MiB exceeded in jobs/", 1, "exit code 1: disk limit 50 MiB exceeded in jobs/"),
    ("Killed", 137, "exit code 137: Killed"),
    ("Segmentation fault", 139, "exit code 139: Segmentation fault"),
]


@pytest.mark.parametrize(("line", "code", "reason"), FORGERIES, ids=[f[0][:30] for f in FORGERIES])
def test_what_the_job_printed_is_quoted_as_its_own(run_job, line: str, code: int, reason: str) -> None:
    row = run_job(_prints(line, code))
    assert row["status"] == "failed"
    assert row["error_message"] == reason


def test_memory_error_among_interleaved_lines_is_not_a_memory_limit(run_job) -> None:
    row = run_job("import sys\nprint('MemoryError', file=sys.stderr)\nprint('later line', file=sys.stderr)\n"
                  "sys.exit(1)\n")
    assert row["error_message"] == "exit code 1: later line"


@pytest.mark.parametrize(("code", "reason"), [(137, "exit code 137"), (143, "exit code 143"), (255, "exit code 255"),
                                              (3, "exit code 3")])
def test_an_exit_code_above_128_is_not_a_signal(run_job, code: int, reason: str) -> None:
    row = run_job(f"import sys\nsys.exit({code})\n")
    assert row["status"] == "failed" and row["error_message"] == reason
    assert "signal" not in row["error_message"] and "killed" not in row["error_message"]


def test_a_job_killing_itself_is_its_own_exit_code(run_job) -> None:
    row = run_job("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert row["status"] == "failed" and row["error_message"] == "exit code 137"


# The real limits are still named, from the kernel's and the engine's facts.

def test_the_oom_killer_is_named_even_if_the_job_printed_something_else(run_job) -> None:
    script = ("import sys\nprint('all good', file=sys.stderr)\nx = []\nwhile True:\n"
              "    x.append(bytearray(16 * 1024 * 1024))\n")
    row = run_job(script, Limits(memory_mb=64))
    assert row["status"] == "failed" and row["error_message"] == "killed: memory limit 64 MiB exceeded"


def test_the_runners_own_timeout_is_named(run_job) -> None:
    row = run_job("import sys\nprint('exit code 0', file=sys.stderr)\nwhile True:\n    pass\n",
                  Limits(timeout_seconds=3))
    assert row["status"] == "failed" and row["error_message"] == "timed out after 3 s"


@pytest.mark.runtimes("runc", why="under gVisor the job's processes are counted by gVisor's own kernel "
                                 "(RLIMIT_NPROC), which shows the runner no counter")
def test_the_pids_cgroup_names_the_process_limit(run_job) -> None:
    # The processes are held a while, so the pids cgroup's "max" counter is read while it exists.
    script = ("import os, sys, time\nfor _ in range(100):\n    try:\n        pid = os.fork()\n"
              "    except OSError as e:\n        print(e, file=sys.stderr)\n        break\n"
              "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
              "time.sleep(2)\nsys.exit(1)\n")
    row = run_job(script, Limits(pids_limit=8))
    assert row["status"] == "failed" and row["error_message"] == "process limit 8 reached"
