"""The files of a thread's ``jobs/`` directory, for a caller that is not on the runner's host (the HTTP
API, MCP): list, read, write, delete. Everything there may have been left by a job, so it is read as
hostile input: no link followed, nothing but a plain file opened, every read capped, only names of the
plain shape below accepted (others are counted, never shown: a name is bytes, maybe not UTF-8). A write
replaces the name atomically and keeps the thread within its disk and file-count limits."""

from __future__ import annotations

import errno
import os
import stat
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from .. import artifacts, jobtree
from ..errors import NotFound, ValidationError
from ..filerules import COMPONENT_RE
from ..settings import Settings
from ..threads import ThreadId
from .scripts import Scripts

NAME_RE = COMPONENT_RE  # one part of a store's name (runner.filerules): the API's names have no directory
FILE_CAP = 1024 * 1024  # bytes one read or write through the API may carry
LIST_LIMIT = 1000
SCAN_SECONDS = 5.0


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class Listing:
    files: list[FileEntry]
    other: int  # entries that are not plain files of a plain name (directories, links, odd names)


def check_name(name: str) -> str:
    """A file name the API takes: 1-128 of letters, digits, '.', '_' and '-', not starting with '.'."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(f"file name {name!r} is not allowed: use 1 to 128 letters, digits, '.', '_' or '-', "
                              "not starting with '.', and no directory (e.g. prices.json)")
    return name


class Files:
    """A thread's ``jobs/`` files under the settings' data directory."""

    def __init__(self, settings: Settings, scripts: Scripts) -> None:
        self.settings, self.scripts = settings, scripts
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _local_lock(self, thread: ThreadId) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(str(thread), threading.Lock())

    def list(self, thread: ThreadId) -> Listing:
        files, other = [], 0
        try:
            with artifacts.open_dir(self.settings.data_dir, thread.dir_name, "jobs") as dfd:
                for name in jobtree.list_names(dfd, LIST_LIMIT):
                    entry = _entry(dfd, name)
                    if entry is None:
                        other += 1
                    else:
                        files.append(entry)
        except FileNotFoundError:
            return Listing([], 0)
        except artifacts.UnsafeFile as exc:
            raise ValidationError(f"the thread's jobs/ cannot be read safely: {exc}") from None
        return Listing(sorted(files, key=lambda f: f.name), other)

    def read(self, thread: ThreadId, name: str) -> bytes:
        check_name(name)
        try:
            with artifacts.open_dir(self.settings.data_dir, thread.dir_name, "jobs") as dfd:
                got = artifacts.read_capped(dfd, name, FILE_CAP)
        except FileNotFoundError:
            got = None
        except artifacts.UnsafeFile as exc:
            raise ValidationError(f"jobs/{name} cannot be read safely: {exc}") from None
        if got is None:
            raise NotFound(f"there is no file jobs/{name} in this thread (list them: GET …/files)")
        if got.truncated:
            raise ValidationError(f"jobs/{name} is {got.size} bytes; at most {FILE_CAP} bytes are read through the API")
        return got.data

    def write(self, thread: ThreadId, name: str, data: bytes) -> None:
        check_name(name)
        if len(data) > FILE_CAP:
            raise ValidationError(f"{name} is {len(data)} bytes; at most {FILE_CAP} bytes are written through the API")
        # Measure and write as one: this process's writers of the thread one at a time (so they wait here,
        # not each holding a database connection), then the database's lock for other runners' writers.
        with self._local_lock(thread), self.scripts.store.files_lock(str(thread)):
            self._check_room(thread, len(data))
            self.scripts.write(thread, name, data)

    def delete(self, thread: ThreadId, name: str) -> None:
        check_name(name)
        try:
            with artifacts.open_dir(self.settings.data_dir, thread.dir_name, "jobs") as dfd:
                gone = artifacts.remove(dfd, name)
        except FileNotFoundError:
            gone = False
        except artifacts.UnsafeFile as exc:
            raise ValidationError(f"jobs/{name} could not be removed: {exc}") from None
        if not gone:
            raise NotFound(f"there is no file jobs/{name} in this thread (list them: GET …/files)")

    def _check_room(self, thread: ThreadId, adding: int) -> None:
        s = self.settings
        try:
            with artifacts.open_dir(s.data_dir, thread.dir_name, "jobs") as dfd:
                found = jobtree.scan(dfd, max_entries=s.max_files + 1, seconds=SCAN_SECONDS)
        except (FileNotFoundError, artifacts.UnsafeFile):
            return  # no jobs/ yet (the write makes it), or one the write refuses with its reason
        if found.problem:
            raise ValidationError(f"the thread's jobs/ could not be measured ({found.problem}): nothing was written")
        if found.bytes + adding > s.disk_mb * 1024 * 1024:
            raise ValidationError(f"the thread's jobs/ holds {found.bytes // 1024} KiB; with this file it would pass "
                                  f"its {s.disk_mb} MiB limit: delete files first")
        if found.entries + 1 > s.max_files:
            raise ValidationError(f"the thread's jobs/ holds {found.entries} entries, its limit: delete files first")


def _entry(dfd: int, name: str) -> FileEntry | None:
    if not NAME_RE.fullmatch(name):
        return None
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENAMETOOLONG):
            return None
        raise
    if not stat.S_ISREG(st.st_mode):
        return None
    return FileEntry(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
