"""What several attack modules share: hostile job scripts, the fixture body that runs them, and how a
host-side cost is measured."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import docker
import pytest

from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database

from ..integration.helpers import run_burst

# Per-user kernel counts (inotify instances, pipe buffers, message queues) are the host's under runc.
PER_USER_COUNTS = pytest.mark.runtimes("runc", why="per-user kernel counts are the host's under runc; under gVisor "
                                       "each sandbox has a kernel of its own, so nothing is shared between threads there")

# Reserves 40 x 48 MiB of real blocks in jobs/blocks (no data written: milliseconds each), then waits.
FALLOCATOR = """
import os, time
os.mkdir('jobs/blocks')
for i in range(40):   # 40 x 48 MiB of real blocks (no data written): milliseconds each
    fd = os.open(f'jobs/blocks/{i}', os.O_WRONLY | os.O_CREAT, 0o600)
    os.posix_fallocate(fd, 0, 48 << 20)
    os.close(fd)
print('allocated', flush=True)
time.sleep(5)
"""

# Holds every inotify instance its uid may have; writes "count errno uid" to jobs/held once it does, and
# keeps them until jobs/release appears (or 40 s pass).
HOLD_INOTIFY = """
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
held, err = [], 0
while True:
    fd = libc.inotify_init()
    if fd < 0:
        err = ctypes.get_errno()
        break
    held.append(fd)
open('jobs/held', 'w').write('%d %d %d' % (len(held), err, os.getuid()))
deadline = time.monotonic() + 40
while not os.path.exists('jobs/release') and time.monotonic() < deadline:
    time.sleep(0.02)
print('HELD', len(held), err)
"""

# Waits for jobs/go, then tries one inotify instance: prints "PROBE ok uid N" (or "PROBE errno E uid N").
PROBE_INOTIFY = """
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
deadline = time.monotonic() + 40
while not os.path.exists('jobs/go') and time.monotonic() < deadline:
    time.sleep(0.02)
fd = libc.inotify_init()
print('PROBE', 'ok' if fd >= 0 else 'errno %d' % ctypes.get_errno(), 'uid', os.getuid())
"""


def allocated(path: os.PathLike[str] | str) -> int:
    """The bytes of blocks allocated to everything under ``path`` (not following links)."""
    total = 0
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            total += os.lstat(os.path.join(root, n)).st_blocks * 512
    return total


class Attack:
    """Runs hostile scripts as jobs of one thread (``attack(script)`` -> (row, console output)); then
    :meth:`check_the_thread_still_works`. A job is named ``name``, else ``default_name``, else
    attack1, attack2, ... in order."""

    def __init__(self, jobs: Jobs, settings: Settings, db: Database, dc: docker.DockerClient, thread: str,
                 default_name: str | None = None) -> None:
        self.jobs, self.settings, self.db, self.dc, self.thread = jobs, settings, db, dc, thread
        self.default_name, self.count = default_name, 0

    def __call__(self, script: str, *, name: str | None = None, limits: Limits | None = None,
                 s: Settings | None = None) -> tuple[dict, str]:
        self.count += 1
        name = name or self.default_name or f"attack{self.count}"
        job = self.jobs.schedule_job(thread_id=self.thread, name=name, script_text=script, at="now", limits=limits)
        printed = run_burst(s or self.settings, self.db, self.dc)
        return self.jobs.get_job(job["id"]), printed

    def check_the_thread_still_works(self, *, no_watchdog_left: bool) -> None:
        """A harmless job of the thread still runs (and, if asked, no watchdog thread of a run is left)."""
        ok = self.jobs.schedule_job(thread_id=self.thread, name="after", script_text="print('still fine')\n", at="now")
        run_burst(self.settings, self.db, self.dc)
        row = self.jobs.get_job(ok["id"])
        assert row["status"] == "completed" and "still fine" in row["output_tail"], (
            "the runner must keep working", row["error_message"])
        if no_watchdog_left:
            stuck = [t.name for t in threading.enumerate() if t.name.startswith("watch-")]
            assert not stuck, f"runner threads left behind: {stuck}"


def attacks(attack: Attack, *, no_watchdog_left: bool) -> Iterator[Attack]:
    """The body of an ``attack`` fixture: yield the runner of hostile scripts, then check the thread."""
    yield attack
    attack.check_the_thread_still_works(no_watchdog_left=no_watchdog_left)
