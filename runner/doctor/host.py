"""The runner's own machine: its data directory, the thread directories, the job uid range and how the
limit on a thread's jobs/ is enforced."""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from pathlib import Path

from .. import jobsquota
from ..settings import Settings
from ..threads import data_dir_problem
from .check import Check
from .sample import sample_dir


def data_dir(d: Path) -> Check:
    """The data directory exists, is writable, and is the runner's with mode 0700."""
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=d, prefix=".doctor-"):
        pass
    problem = data_dir_problem(d)
    if problem:
        return Check("data directory", False, problem)
    return Check("data directory", True, f"{d} writable, the runner's (uid {os.geteuid()}), mode 0700")


def thread_dirs(data_dir: Path) -> Check:
    """Every thread directory is the runner's, mode 0700 (a run repairs its own; this reports the rest)."""
    me, open_dirs, count = os.geteuid(), [], 0
    with os.scandir(data_dir) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if entry.name.startswith(".") or not stat.S_ISDIR(st.st_mode):
                continue
            count += 1
            if st.st_uid != me or stat.S_IMODE(st.st_mode) != 0o700:
                open_dirs.append(f"{entry.name} ({st.st_uid}, {oct(stat.S_IMODE(st.st_mode))})")
    if open_dirs:
        return Check("thread directories", False, f"{len(open_dirs)} of {count} are not the runner's with mode 0700: "
                     f"{', '.join(open_dirs[:3])}; each is repaired at its next run, or chmod 700 them now")
    return Check("thread directories", True, f"{count}, each the runner's, mode 0700")


def uid_range(uid_range: tuple[int, int]) -> Check:
    """No host user (/etc/passwd) and no subordinate range (/etc/subuid) shares the threads' uids."""
    first, last = uid_range
    clash = [f"user {u.pw_name} ({u.pw_uid})" for u in pwd.getpwall() if first <= u.pw_uid <= last]
    try:
        lines = Path("/etc/subuid").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        name, _, rest = line.partition(":")
        start, _, size = rest.partition(":")
        if start.isdigit() and size.isdigit() and int(start) <= last and first < int(start) + int(size):
            clash.append(f"subordinate uids of {name} in /etc/subuid")
    if clash:
        return Check("job uid range", False, f"RUNNER_UID_RANGE {first}-{last} overlaps {', '.join(clash[:3])}: "
                                             "choose uids no host user has")
    return Check("job uid range", True, f"{first}-{last}, one per thread; no host user or subordinate range has them")


def jobs_disk_limit(settings: Settings) -> Check:
    """How the limit on a thread's jobs/ is enforced: by a bounded walk, since a bind mount has no quota."""
    from ..execute import WATCH_SECONDS
    from ..jobtree import MAX_DEPTH

    name = "jobs/ disk limit"
    if not os.path.isdir("/proc/self/fd"):
        return Check(name, False, "/proc is not mounted in the runner: setuid modes a job sets in jobs/ cannot "
                                  "be cleared without following links; mount /proc")
    walk = (f"a watchdog walks jobs/ while the job runs (every 0.25-2 s) and after it, and stops the job over "
            f"{settings.disk_mb} MiB (apparent or allocated size), {settings.max_files:,} entries or {MAX_DEPTH} "
            f"levels, or a walk not done within {WATCH_SECONDS:g} s")
    quota = jobsquota.from_settings(settings)
    if quota is not None:
        size, inodes = jobsquota.size_of(sample_dir(settings))  # made and mounted as a thread's would be
        return Check(name, True, (
            f"kernel-enforced (RUNNER_JOBS_QUOTA=loop): each thread's jobs/ is an ext4 file system of its own, "
            f"{size / 2**20:.1f} MiB and {inodes:,} inodes for the sample thread, so nothing past that reaches "
            f"the host's disk; and {walk}"))
    return Check(name, True, (
        f"no kernel quota (a bind mount has none): {walk}; not a hard bound: a job can allocate past it between "
        "two walks (fallocate is instant), and the run then fails; RUNNER_JOBS_QUOTA=loop makes it one "
        "(docs/security.md: why the jobs/ limit is a walk, not a quota)"))
