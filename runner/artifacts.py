"""Safe reading and removal of files a job container wrote.

Everything under a thread's ``jobs/`` directory was written by a hostile script. The host therefore:

* walks from the data directory to ``jobs/`` one component at a time with ``O_DIRECTORY|O_NOFOLLOW``,
  so a symlinked component is refused rather than followed;
* opens the file relative to that directory with ``O_NOFOLLOW|O_NONBLOCK`` (a symlink fails, a FIFO
  does not block);
* checks with ``fstat`` that it is a regular file with exactly one link (a hard link to a file
  elsewhere would otherwise be read, or be "deleted" while its other name survives);
* looks at each entry (``lstat``) before opening it, and counts a directory's entries before reading
  any, so the host's work is bounded by the caps, not by what the job left;
* reads at most ``cap + 1`` bytes and reports truncation;
* removes names relative to the directory (:func:`runner.jobtree.remove_tree`: the name itself, never a
  link's target, a directory tree of any depth within a budget).

Walking, measuring and repairing the whole tree is :mod:`runner.jobtree`; this module reads back the
message and the attachments and says which limit a walk shows broken.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import jobtree
from .jobtree import show

_DIR_FLAGS = jobtree.DIR_FLAGS
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


class UnsafeFile(Exception):
    """A file the job left is not a plain, singly linked regular file (or a path component is a link)."""


@dataclass(frozen=True)
class ReadResult:
    """Bytes read from a job's file, and whether the file was longer than the cap."""

    data: bytes
    truncated: bool
    size: int

    def text(self) -> str:
        """The content as text, invalid UTF-8 replaced rather than refused."""
        return self.data.decode("utf-8", errors="replace")


@contextmanager
def open_dir(base: Path, *parts: str) -> Iterator[int]:
    """Yield a file descriptor of ``base/parts...``, refusing any component of ``parts`` that is a link.

    ``base`` itself (the operator's data directory) is trusted; the components below it are not.
    """
    fd = os.open(base, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part or "\0" in part:
                raise UnsafeFile(f"bad path component {part!r}")
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeFile(f"{part!r} is not a plain directory") from exc
                raise
            os.close(fd)
            fd = nfd
        yield fd
    finally:
        os.close(fd)


def _refuse_kind(name: str, st: os.stat_result) -> None:
    """Raise UnsafeFile unless ``st`` is a plain, singly linked regular file."""
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFile(f"{show(name)} is a symbolic link; it was not followed")
    if stat.S_ISDIR(st.st_mode):
        raise UnsafeFile(f"{show(name)} is a directory, not a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{show(name)} is not a regular file")
    if st.st_nlink != 1:
        raise UnsafeFile(f"{show(name)} has {st.st_nlink} hard links; only a plain file is read")


def read_capped(dir_fd: int, name: str, cap: int) -> ReadResult | None:
    """Read the file ``name`` in ``dir_fd`` safely. None if it does not exist; UnsafeFile if it is not plain.

    It is looked at (``lstat``) before it is opened, so neither a FIFO, a device nor a link is opened."""
    if "/" in name or name in ("", ".", ".."):
        raise UnsafeFile(f"bad file name {show(name)}")
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        _refuse_kind(name, before)
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # swapped for a symlink after the lstat
            raise UnsafeFile(f"{show(name)} is a symbolic link; it was not followed") from exc
        if exc.errno in (errno.ENXIO, errno.EWOULDBLOCK):  # e.g. a socket or FIFO swapped in
            raise UnsafeFile(f"{show(name)} is not a regular file") from exc
        raise
    try:
        st = os.fstat(fd)
        _refuse_kind(name, st)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise UnsafeFile(f"{show(name)} was replaced while it was being read")
        chunks: list[bytes] = []
        remaining = cap + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        truncated = len(data) > cap
        return ReadResult(data=data[:cap], truncated=truncated, size=st.st_size)
    finally:
        os.close(fd)


REMOVE_BUDGET = (100_000, 10.0)  # entries and seconds one removal of a job's leftover may take


def remove(dir_fd: int, name: str) -> bool:
    """Remove ``name`` in ``dir_fd``, whatever it is (file, link, FIFO, socket, or a directory tree),
    never following a link. False if absent. Raises UnsafeFile if a tree is too large to remove."""
    try:
        return jobtree.remove_tree(dir_fd, name, jobtree.Budget(*REMOVE_BUDGET))
    except jobtree.Incomplete as exc:
        raise UnsafeFile(f"could not remove {show(name)}: {exc}") from None
    except OSError as exc:  # the kernel's message, without the job's names in Python's repr
        raise UnsafeFile(f"could not remove {show(name)}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class Message:
    """A message a job left for its user."""

    text: str
    truncated: bool
    problem: str | None = None  # why the file could not be read, if it could not


def collect_message(jobs_dir_fd: int, job_name: str, cap: int) -> Message | None:
    """Read ``<job_name>_message.txt``. None if the job wrote none.

    The caller removes the file (:func:`discard_message`) once the message is safely queued. An unsafe
    file is removed at once and reported as a problem instead of being read.
    """
    name = f"{job_name}_message.txt"
    try:
        result = read_capped(jobs_dir_fd, name, cap)
    except UnsafeFile as exc:
        problem = f"message file refused: {exc}"
        try:
            remove(jobs_dir_fd, name)
        except (UnsafeFile, OSError) as again:
            problem += f"; {again}"
        return Message(text="", truncated=False, problem=problem)
    except OSError as exc:
        return Message(text="", truncated=False, problem=f"message file could not be read: {exc.strerror}")
    if result is None:
        return None
    return Message(text=result.text(), truncated=result.truncated)


def discard_message(jobs_dir_fd: int, job_name: str) -> bool:
    """Remove ``<job_name>_message.txt``: after its text is queued, or before a run (a file that exists
    then was queued already, or belongs to a run that was lost)."""
    return remove(jobs_dir_fd, f"{job_name}_message.txt")


MiB = 1024 * 1024


def check_limits(found: jobtree.Scan, *, disk_mb: int, max_files: int) -> str | None:
    """Why the walk ``found`` breaks the thread's jobs/ limits, or None. Jobs of one thread share jobs/,
    so the reason names the entries that hold the most."""
    if found.entries > max_files:
        return f"file count limit {max_files} exceeded in jobs/ (most: {_ranked(found, 1)})"
    if found.bytes > disk_mb * MiB:
        return f"disk limit {disk_mb} MiB exceeded in jobs/ (largest: {_ranked(found, 0)})"
    if found.removed:
        return (f"directory tree deeper than {jobtree.MAX_DEPTH} levels in jobs/; the part past the limit "
                f"was removed: {', '.join(found.removed[:3])}")
    if found.deep:
        return f"directory tree deeper than {jobtree.MAX_DEPTH} levels in jobs/ (at {found.deep}/)"
    if found.problem:
        return f"could not check jobs/: {found.problem}"
    if found.unfixed:
        return f"could not clear setuid, setgid or world-write modes in jobs/: {', '.join(found.unfixed[:3])}"
    return None


def _ranked(found: jobtree.Scan, index: int) -> str:
    def amount(n: int) -> str:
        return f"{n / MiB:.1f} MiB" if index == 0 else f"{n:,} entries"
    return ", ".join(f"{show(name)} {amount(n)}" for name, n in found.largest(index)) or "none"


def attachments_dir_name(job_name: str) -> str:
    """``<job>_attachments``: files in it are sent with the job's message, then removed."""
    return f"{job_name}_attachments"


ATTACHMENT_SCAN = 1000  # entries of <job>_attachments looked at, at most: more and none is sent


@dataclass(frozen=True)
class Attachments:
    """Files read from a job's attachments directory, and what was refused."""

    files: list[tuple[str, bytes]]
    problems: list[str]


@dataclass(frozen=True)
class _Caps:
    file: int
    count: int
    total: int


def collect_attachments(jobs_dir_fd: int, job_name: str, *, file_cap: int, max_files: int,
                        total_cap: int) -> Attachments:
    """Read ``<job>_attachments/*`` safely: plain files with UTF-8 names only, each at most ``file_cap``
    bytes, the first ``max_files`` entries by name (refused ones count) and ``total_cap`` bytes in all.

    Entries are counted before any is read and each is looked at (``lstat``) before it is opened, so
    the host's work is bounded by the caps, not by what the job left. Others are reported, not read."""
    dname = attachments_dir_name(job_name)
    try:
        dfd = jobtree.open_subdir(jobs_dir_fd, dname)
    except FileNotFoundError:
        return Attachments([], [])
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return Attachments([], [f"{dname} is not a plain directory; ignored"])
        return Attachments([], [f"{dname} could not be opened ({exc.strerror}); nothing attached"])
    try:
        names = jobtree.list_names(dfd, ATTACHMENT_SCAN + 1)
        if len(names) > ATTACHMENT_SCAN:
            return Attachments([], [f"{dname} has more than {ATTACHMENT_SCAN} entries; none was sent"])
        return _read_attachments(dfd, dname, names, _Caps(file_cap, max_files, total_cap))
    finally:
        os.close(dfd)


def _read_attachments(dfd: int, dname: str, names: list[str], caps: _Caps) -> Attachments:
    names.sort(key=os.fsencode)
    problems: list[str] = []
    if len(names) > caps.count:
        problems.append(f"{len(names)} entries in {dname}, more than {caps.count}: the rest were not sent")
        names = names[:caps.count]
    files: list[tuple[str, bytes]] = []
    total = 0
    for name in names:
        outcome = _one_attachment(dfd, name, caps, caps.total - total)
        if isinstance(outcome, str):
            problems.append(outcome)
        elif outcome is not None:
            files.append(outcome)
            total += len(outcome[1])
    return Attachments(files, problems)


def _one_attachment(dfd: int, name: str, caps: _Caps, room: int) -> tuple[str, bytes] | str | None:
    """The attachment ``name`` as (file name, content), or why it was not sent, or None if it is gone."""
    text = jobtree.text_name(name)
    if text is None:
        return f"attachment refused: its name {show(name)} is not printable UTF-8 text"
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(st.st_mode) and st.st_size > caps.file:
        return f"attachment {text} is larger than {caps.file / MiB:g} MiB; not sent"
    if stat.S_ISREG(st.st_mode) and st.st_size > room:
        return f"attachments over {caps.total / MiB:g} MiB in all; {text} not sent"
    try:
        result = read_capped(dfd, name, min(caps.file, room))
    except UnsafeFile as exc:
        return f"attachment refused: {exc}"
    except OSError as exc:
        return f"attachment {text} could not be read ({exc.strerror}); not sent"
    if result is None:
        return None
    if result.truncated:
        return f"attachment {text} grew while it was read; not sent"
    return text[:200], result.data


def remove_attachments(jobs_dir_fd: int, job_name: str) -> None:
    """Remove ``<job>_attachments`` and everything in it, whatever it is, never following a link."""
    remove(jobs_dir_fd, attachments_dir_name(job_name))
