"""Safe reading and removal of files a job container wrote.

Everything under a thread's ``jobs/`` directory was written by a hostile script. The host therefore:

* walks from the data directory to ``jobs/`` one component at a time with ``O_DIRECTORY|O_NOFOLLOW``,
  so a symlinked component is refused rather than followed;
* opens the file relative to that directory with ``O_NOFOLLOW|O_NONBLOCK`` (a symlink fails, a FIFO
  does not block);
* checks with ``fstat`` that it is a regular file with exactly one link (a hard link to a file
  elsewhere would otherwise be read, or be "deleted" while its other name survives);
* reads at most ``cap + 1`` bytes and reports truncation;
* removes names with ``unlink(dir_fd=...)``, which removes the name itself, never a link's target.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
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


def read_capped(dir_fd: int, name: str, cap: int) -> ReadResult | None:
    """Read the file ``name`` in ``dir_fd`` safely. None if it does not exist; UnsafeFile if it is not plain."""
    if "/" in name or name in ("", ".", ".."):
        raise UnsafeFile(f"bad file name {name!r}")
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW on a symlink
            raise UnsafeFile(f"{name} is a symbolic link; it was not followed") from exc
        if exc.errno in (errno.ENXIO, errno.EWOULDBLOCK):  # e.g. a socket or FIFO without a writer
            raise UnsafeFile(f"{name} is not a regular file") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{name} is not a regular file")
        if st.st_nlink != 1:
            raise UnsafeFile(f"{name} has {st.st_nlink} hard links; only a plain file is read")
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


def remove(dir_fd: int, name: str) -> bool:
    """Remove the name ``name`` (whatever it is: file, link, FIFO) from ``dir_fd``. False if absent.

    A directory of that name is left alone (never recursed into)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        return False
    except PermissionError:
        # Linux reports EISDIR as EPERM for unlink on some file systems.
        try:
            if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                return False
        except OSError:
            pass
        raise


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
        remove(jobs_dir_fd, name)
        return Message(text="", truncated=False, problem=f"message file refused: {exc}")
    if result is None:
        return None
    return Message(text=result.text(), truncated=result.truncated)


def discard_message(jobs_dir_fd: int, job_name: str) -> bool:
    """Remove ``<job_name>_message.txt``: after its text is queued, or before a run (a file that exists
    then was queued already, or belongs to a run that was lost)."""
    return remove(jobs_dir_fd, f"{job_name}_message.txt")


@dataclass(frozen=True)
class Usage:
    """Disk use of a directory tree: bytes allocated and entries seen (counting stops past a limit)."""

    bytes: int
    entries: int


def usage(dir_fd: int, max_entries: int) -> Usage:
    """Walk the tree under ``dir_fd`` without following links; stop counting past ``max_entries``.

    Counts allocated blocks, not apparent sizes, so a sparse file counts for what it really uses.
    """
    total = entries = 0
    for _root, dirs, files, rfd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
        for name in dirs + files:
            entries += 1
            if entries > max_entries:
                return Usage(total, entries)
            try:
                st = os.stat(name, dir_fd=rfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            total += st.st_blocks * 512
    return Usage(total, entries)


def attachments_dir_name(job_name: str) -> str:
    """``<job>_attachments``: files in it are sent with the job's message, then removed."""
    return f"{job_name}_attachments"


@dataclass(frozen=True)
class Attachments:
    """Files read from a job's attachments directory, and what was refused."""

    files: list[tuple[str, bytes]]
    problems: list[str]


def collect_attachments(jobs_dir_fd: int, job_name: str, *, file_cap: int, max_files: int,
                        total_cap: int) -> Attachments:
    """Read ``<job>_attachments/*`` safely: plain files only, each at most ``file_cap`` bytes, at most
    ``max_files`` of them and ``total_cap`` bytes in all (in name order). Others are reported, not read."""
    try:
        dfd = os.open(attachments_dir_name(job_name), _DIR_FLAGS, dir_fd=jobs_dir_fd)
    except FileNotFoundError:
        return Attachments([], [])
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return Attachments([], [f"{attachments_dir_name(job_name)} is not a plain directory; ignored"])
        raise
    files: list[tuple[str, bytes]] = []
    problems: list[str] = []
    total = 0
    try:
        for name in sorted(os.listdir(dfd)):
            if len(files) >= max_files:
                problems.append(f"more than {max_files} attachments; the rest were not sent")
                break
            try:
                result = read_capped(dfd, name, file_cap)
            except UnsafeFile as exc:
                problems.append(f"attachment refused: {exc}")
                continue
            if result is None:
                continue
            if result.truncated:
                problems.append(f"attachment {name} is larger than {file_cap // 1024 // 1024} MiB; not sent")
                continue
            if total + len(result.data) > total_cap:
                problems.append(f"attachments over {total_cap // 1024 // 1024} MiB in all; {name} and later not sent")
                break
            total += len(result.data)
            files.append((name[:200], result.data))
    finally:
        os.close(dfd)
    return Attachments(files, problems)


def remove_attachments(jobs_dir_fd: int, job_name: str) -> None:
    """Remove every name in ``<job>_attachments`` (never following links) and the directory itself."""
    try:
        dfd = os.open(attachments_dir_name(job_name), _DIR_FLAGS, dir_fd=jobs_dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink in its place: remove the link itself
            remove(jobs_dir_fd, attachments_dir_name(job_name))
            return
        raise
    try:
        for name in os.listdir(dfd):
            remove(dfd, name)
    finally:
        os.close(dfd)
    try:
        os.rmdir(attachments_dir_name(job_name), dir_fd=jobs_dir_fd)
    except OSError:
        pass  # a subdirectory the job made stays; it is the job's own
