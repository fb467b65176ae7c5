"""The host's file system under the data directory: whether it is full, and how to say so.

A job writes into its thread's ``jobs/`` on the host. When the file system holding the data directory
is full, the job's writes fail with ENOSPC (and so may the runner's own: a thread directory, a script
being scheduled). That is the operator's problem to fix, not a job limit: the reason names the full
file system and what to do, and keeps the job's own words after it. Only checked after a failure, so
it costs nothing on a run's start path.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import RunnerError

log = logging.getLogger(__name__)

# Less than this free (for an unprivileged writer, as a job is) counts as full: after a write failed
# with ENOSPC, what is left is at most a partly filled block or two.
FULL_BELOW = 1024 * 1024
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
WHAT_TO_DO = "free space on it (or move RUNNER_DATA_DIR to a larger file system), then run the job again"


class HostFull(RunnerError):
    """The file system holding the data directory has no room left."""


@dataclass(frozen=True)
class Space:
    """Free and total bytes and inodes of a file system, as an unprivileged user sees them."""

    free: int
    total: int
    free_inodes: int
    total_inodes: int

    @property
    def full(self) -> bool:
        return self.free < FULL_BELOW or (self.total_inodes > 0 and self.free_inodes == 0)

    def describe(self) -> str:
        if self.total_inodes > 0 and self.free_inodes == 0:
            return f"no free inodes of {self.total_inodes}"
        return f"{_size(self.free)} free of {_size(self.total)}"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def space(path: Path) -> Space | None:
    """The space left on the file system holding ``path`` (its nearest existing ancestor); None if
    it cannot be read."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return Space(free=st.f_bavail * st.f_frsize, total=st.f_blocks * st.f_frsize,
                 free_inodes=st.f_favail, total_inodes=st.f_files)


def is_no_space(exc: BaseException) -> bool:
    """True for an OSError saying the file system (or the writer's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def full_reason(data_dir: Path, *, known_full: bool = False) -> str | None:
    """If the file system holding ``data_dir`` is full (or a write there just failed with ENOSPC:
    ``known_full``), a reason saying so and what to do; else None. The reason names no host path (it
    reaches the job's chat); the log line for the operator does."""
    found = space(data_dir)
    if found is None or not (found.full or known_full):
        return None
    log.warning("the file system holding the data directory %s is full (%s): %s", data_dir, found.describe(),
                WHAT_TO_DO)
    return (f"the runner host's file system holding the data directory is full ({found.describe()}), so the run "
            f"could not write its files: not a job limit; the operator should {WHAT_TO_DO}")


def explain_failure(data_dir: Path, error: str | None) -> str | None:
    """A failed run's reason, with the full host file system named first when that is what it met.

    Only a failure in the job's own words (its exit code and last line) is explained so: a kill the
    runner sent (timeout, memory, a jobs/ limit) is a fact about the job and stays as it is."""
    if not error or not error.startswith("exit code "):
        return error
    reason = full_reason(data_dir)
    return f"{reason} (the job's own error: {error})" if reason else error


def refuse_write(data_dir: Path, what: str, exc: OSError, jobs: Path | None = None) -> RunnerError:
    """The error for the runner's own write that failed (saving a script): one line with what to do.

    ``jobs`` is the thread's ``jobs/``: with RUNNER_JOBS_QUOTA=loop it is a file system of its own, and
    when that is what is full, the thread's limit is named, not the host's disk."""
    if is_no_space(exc) and jobs is not None:
        own = _own_full(jobs)
        if own is not None:
            return RunnerError(f"cannot save {what}: the thread's jobs/ is full ({own.describe()}, its own file "
                               "system of RUNNER_DISK_MB); remove files from it and try again; nothing was saved")
    if is_no_space(exc):
        found = space(data_dir)
        left = f", {found.describe()}" if found else ""
        return HostFull(f"cannot save {what}: the file system holding the data directory ({data_dir}{left}) is "
                        f"full; free space on it (or move RUNNER_DATA_DIR to a larger file system) and try again; "
                        "nothing was saved")
    return RunnerError(f"cannot save {what} in the data directory ({data_dir}): {exc.strerror or exc}; "
                       "nothing was saved")


def _own_full(jobs: Path) -> Space | None:
    """The space of ``jobs`` if it is its thread's own file system (RUNNER_JOBS_QUOTA=loop) and full."""
    from .jobsquota import is_mounted

    try:
        if not is_mounted(jobs):
            return None
    except OSError:
        return None
    found = space(jobs)
    return found if found is not None and found.full else None
