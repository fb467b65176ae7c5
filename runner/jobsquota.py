"""A kernel-enforced size for a thread's ``jobs/``: a file system of its own (``RUNNER_JOBS_QUOTA=loop``).

The disk watchdog (scheduler) walks ``jobs/`` and stops a job over ``RUNNER_DISK_MB``, but a walk is
not a bound: ``fallocate`` takes any amount of the host's disk between two walks. With this option
each thread's ``jobs/`` is an ext4 image, ``<data>/<thread>/jobs.img``, loop-mounted at ``jobs/`` by
the runner (``nosuid,nodev,discard``) before the directory is used. The kernel then refuses what does
not fit (``ENOSPC``), and the image's inode count bounds the entries (``RUNNER_MAX_FILES``). A job
cannot lift either: resizing (``EXT4_IOC_RESIZE_FS``) needs ``CAP_SYS_RESOURCE``, mounting and
unmounting need ``CAP_SYS_ADMIN``, and the image file is outside the container. There is no quota
subsystem to escape (project ids, inherit flags): the size is the file system's.

Why not a project quota: it needs a kernel built with ``CONFIG_QUOTA`` (many VM kernels are not), and
on ext4 and XFS the owner of a file may change its project id in the initial user namespace (where a
job without user-namespace remapping runs), so a job could move its files out of its thread's project.

Needs: a root runner that shares the engine's mount namespace (on the host, not in a container), and
``mkfs.ext4`` (e2fsprogs) and ``mount`` (util-linux). The image's size is fixed when it is made.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import jobtree
from .errors import ConfigError, RunnerError

log = logging.getLogger(__name__)

IMAGE = "jobs.img"
MODES = ("off", "loop")
MOUNT_OPTIONS = "loop,nosuid,nodev,noatime,discard"
_STAGING = ".jobs-quota-staging"
_OLD = ".jobs-before-quota"
_LOCK = ".jobs-quota.lock"
_TOOL_SECONDS = 60


@dataclass(frozen=True)
class Quota:
    """The size of a thread's ``jobs/`` file system."""

    disk_mb: int
    max_files: int

    def image_bytes(self) -> int:
        """Room for ``disk_mb`` of data plus a sixteenth (so the watchdog, which counts 50 MiB, still names
        the limit first for a job that writes slowly), the journal and the inode tables."""
        data = self.disk_mb + max(1, self.disk_mb // 16)
        tables = (self.inodes() * 256 >> 20) + 1
        return (data + tables + _journal_mb(self.disk_mb) + 2) << 20

    def inodes(self) -> int:
        return self.max_files + 64


def _journal_mb(disk_mb: int) -> int:
    return 4 if disk_mb < 512 else 16


def parse_mode(value: str) -> str:
    """``RUNNER_JOBS_QUOTA``: ``off`` (the default) or ``loop``."""
    mode = value.strip().lower() or "off"
    if mode not in MODES:
        raise ConfigError(f"RUNNER_JOBS_QUOTA={value!r} is not one of {', '.join(MODES)}")
    return mode


def from_settings(settings: Any) -> Quota | None:
    """The quota a runner with these settings gives each thread's ``jobs/``, or None when it is off."""
    if getattr(settings, "jobs_quota", "off") != "loop":
        return None
    return Quota(disk_mb=settings.disk_mb, max_files=settings.max_files)


# --- what is mounted where -----------------------------------------------------------------------------

def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts() -> list[tuple[str, str]]:
    """(mount point, source) of this mount namespace, in mount order (a later one hides an earlier)."""
    rows = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) >= 5 and len(rest) >= 2:
                rows.append((_unescape(fields[4]), _unescape(rest[1])))
    return rows


def _backing_file(source: str) -> str | None:
    name = os.path.basename(source)
    if not name.startswith("loop"):
        return None
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as f:
            return f.read().strip()
    except OSError:
        return None


def mounted_source(jobs: Path) -> str | None:
    """What is mounted at ``jobs`` (the topmost mount), or None: the loop device's backing file if it is one."""
    point = str(jobs.resolve())
    found = [src for mp, src in _mounts() if mp == point]
    if not found:
        return None
    return _backing_file(found[-1]) or found[-1]


def is_mounted(jobs: Path) -> bool:
    """True if ``jobs`` is the mount of its own image (``../jobs.img``)."""
    return mounted_source(jobs) == str((jobs.parent / IMAGE).resolve())


# --- making and mounting -------------------------------------------------------------------------------

def _tool(*argv: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TOOL_SECONDS, check=False)
    except FileNotFoundError:
        raise RunnerError(f"RUNNER_JOBS_QUOTA=loop needs {argv[0]}, which is not installed "
                          "(install e2fsprogs and util-linux)") from None
    except subprocess.TimeoutExpired:
        raise RunnerError(f"{argv[0]} did not finish within {_TOOL_SECONDS} s") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise RunnerError(f"{argv[0]} failed: {last[0]}")


def _make_image(image: Path, quota: Quota) -> None:
    """A sparse file and an ext4 file system in it: no reserved blocks, ``quota.inodes()`` inodes."""
    tmp = image.with_name(image.name + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, quota.image_bytes())
    finally:
        os.close(fd)
    try:
        _tool("mkfs.ext4", "-q", "-F", "-m", "0", "-N", str(quota.inodes()), "-J", f"size={_journal_mb(quota.disk_mb)}",
              "-L", "runner-jobs", "-E", "root_owner=0:0", str(tmp))
    except RunnerError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, image)


def _mount(image: Path, at: Path) -> None:
    _tool("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(at))


def unmount(at: Path) -> None:
    """Unmount what the runner mounted at ``at`` (its loop device is freed with it)."""
    _tool("umount", str(at))


@contextmanager
def _locked(thread_dir: Path) -> Iterator[None]:
    """One preparer per thread at a time, across the runner's threads and processes."""
    fd = os.open(thread_dir / _LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _has_entries(path: Path) -> bool:
    with os.scandir(path) as it:
        return any(True for _ in it)


def _remove_lost_found(root: Path) -> None:
    """mkfs's empty lost+found: not the job's, and not worth a job's wondering."""
    lost = root / "lost+found"
    if lost.is_dir() and not lost.is_symlink():
        lost.rmdir()


def _move_into(jobs: Path, image: Path, quota: Quota, *, made: bool) -> None:
    """Copy what ``jobs/`` holds (a thread from before the option) into its image, then remove it.

    ``cp -a`` copies links as links and makes FIFOs anew without opening them. What does not fit is
    refused, and ``jobs/`` is left as it was."""
    staging = jobs.parent / _STAGING
    staging.mkdir(mode=0o700, exist_ok=True)
    _mount(image, staging)
    try:
        if made:
            _remove_lost_found(staging)
        _tool("cp", "-a", "--sparse=always", "--", f"{jobs}/.", f"{staging}/")
    except RunnerError as exc:
        said = str(exc).replace(str(staging), str(jobs))
        raise RunnerError(f"the thread's jobs/ could not be moved into its own {quota.disk_mb} MiB file system "
                          f"({said}): if it holds more than that, remove files from it; or turn RUNNER_JOBS_QUOTA "
                          "off") from None
    finally:
        unmount(staging)
        staging.rmdir()
    old = jobs.parent / _OLD
    _remove_old(jobs.parent)
    os.rename(jobs, old)
    jobs.mkdir(mode=0o700)
    _remove_old(jobs.parent)


def _remove_old(thread_dir: Path) -> None:
    """Remove the moved-out jobs/ with jobtree's walk (never follows a link, opens no FIFO, any depth,
    bounded), not shutil.rmtree (recursive: a job's deep tree would raise RecursionError)."""
    fd = os.open(thread_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        jobtree.remove_tree(fd, _OLD, jobtree.Budget(1_000_000, 60))
    except (OSError, jobtree.Incomplete) as exc:
        log.warning("could not remove the moved-out jobs/ of %s: %s", thread_dir.name, exc)
    finally:
        os.close(fd)


def ensure_mounted(jobs: Path, quota: Quota) -> bool:
    """Make sure ``jobs`` is the mount of its own image, making the image (and moving what ``jobs/``
    held into it) the first time. True if the file system is new and empty (its root is then root's).

    Anything else mounted at ``jobs`` is refused, and a runner that is not root is refused: a run goes
    ahead only with its thread's limit in force, never on the bare directory."""
    if os.geteuid() != 0:
        raise RunnerError("RUNNER_JOBS_QUOTA=loop needs a runner that is root (it mounts each thread's jobs/ "
                          "file system); run it as root or turn the option off")
    try:
        with _locked(jobs.parent):
            return _ensure_mounted(jobs, quota)
    except RunnerError as exc:  # reasons reach the chat: thread-relative names only (the log has the paths)
        log.warning("thread directory %s: %s", jobs.parent, exc)
        raise RunnerError(str(exc).replace(f"{jobs.parent}/", "")) from None


def _ensure_mounted(jobs: Path, quota: Quota) -> bool:
    """ensure_mounted's work, under the thread's lock."""
    if is_mounted(jobs):
        return False
    other = mounted_source(jobs)
    if other is not None:
        raise RunnerError(f"{jobs} has something else mounted on it ({other}), not its own {IMAGE}: unmount it")
    image = jobs.parent / IMAGE
    made = not image.exists()
    if made:
        _make_image(image, quota)
    moved = _has_entries(jobs)
    if moved:
        try:
            _move_into(jobs, image, quota, made=made)
        except RunnerError:
            if made:  # what was half-copied into it goes too
                image.unlink(missing_ok=True)
            raise
    _mount(image, jobs)
    if made and not moved:
        _remove_lost_found(jobs)
    return made and not moved  # moved files are handed to the thread's uid by the caller's migration


def size_of(jobs: Path) -> tuple[int, int]:
    """(bytes, inodes) the file system at ``jobs`` holds in all, as the kernel counts them."""
    st = os.statvfs(jobs)
    return st.f_blocks * st.f_frsize, st.f_files


def unmount_under(data_dir: Path) -> list[str]:
    """Unmount every ``jobs/`` image mounted under ``data_dir`` (tests and operators moving a data dir)."""
    root = str(data_dir.resolve()) + os.sep
    done = []
    for point, _src in reversed(_mounts()):
        if point.startswith(root):
            unmount(Path(point))
            done.append(point)
    return done
