"""A job's script: read from the caller, written into the thread's ``jobs/`` atomically, and read back
from there as hostile input (a job can replace anything in ``jobs/``). In the data directory, or, with
``RUNNER_FILES=postgres``, as the file ``<name>.py`` of the thread's files in the database."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Any

import psycopg

from .. import artifacts, diskspace, jobsquota
from ..errors import ValidationError
from ..filerules import FileCaps
from ..settings import Settings
from ..store import Store
from ..threads import ThreadId, prepare_jobs_dir, thread_uid

ScriptPath = str | os.PathLike[str]


Conn = psycopg.Connection[dict[str, Any]]


class Scripts:
    """The scripts of every thread: under the settings' data directory, or ``in_database``."""

    def __init__(self, settings: Settings, store: Store, *, in_database: bool = False) -> None:
        self.settings, self.store, self.in_database = settings, store, in_database

    def read_given(self, script: ScriptPath | None, script_text: str | None) -> bytes:
        """The source a caller gives: a path to a ``.py`` file of theirs, or the text (exactly one)."""
        if (script is None) == (script_text is None):
            raise ValidationError("give the script either as a path or as text (exactly one)")
        if script_text is not None:
            return script_text.encode("utf-8")
        assert script is not None
        return read_script_file(script, self.settings.script_cap)

    def read_current(self, thread: ThreadId, filename: str) -> bytes:
        """A job's script as it is now in the thread's jobs/ (written by anyone: read as hostile)."""
        cap = self.settings.script_cap
        if self.in_database:
            return self._read_stored(thread, filename, cap)
        try:
            with artifacts.open_dir(self.settings.data_dir, thread.dir_name, "jobs") as dfd:
                got = artifacts.read_capped(dfd, filename, cap)
        except (artifacts.UnsafeFile, FileNotFoundError) as exc:
            raise ValidationError(f"jobs/{filename} cannot be read safely ({exc}); give the script: --script FILE") from None
        if got is None:
            raise ValidationError(f"jobs/{filename} does not exist; give the script: --script FILE")
        if got.truncated:
            raise ValidationError(f"jobs/{filename} is {got.size} bytes; the limit is {cap} bytes")
        return got.data

    def write(self, thread: ThreadId, filename: str, source: bytes, conn: Conn | None = None) -> None:
        """Write ``jobs/<name>.py`` atomically: a temporary file of an unguessable name, then a rename
        that replaces whatever a job left at that name (a file, a link, a FIFO, a directory tree).

        A file system that refuses the write (full: ENOSPC) is a one-line RunnerError saying so and what
        to do, and the temporary file is gone: the old script, if any, is left as it was.

        In the database, the row replaces the old one (and any files below the name) within the
        thread's limits, in ``conn``'s transaction if given; a refusal says why and saves nothing."""
        if self.in_database:
            refused = self.store.put_thread_files(str(thread), {filename: bytes(source)}, FileCaps.of(self.settings),
                                                  conn=conn)
            if refused is not None:
                raise ValidationError(f"cannot save jobs/{filename}: {refused}; nothing was saved")
            return
        data_dir = self.settings.data_dir
        try:
            prepare_jobs_dir(data_dir, thread, thread_uid(self.store, thread, self.settings.uid_range),
                             jobsquota.from_settings(self.settings))
            with artifacts.open_dir(data_dir, thread.dir_name, "jobs") as dfd:
                _write_and_rename(dfd, filename, source)
        except OSError as exc:
            raise diskspace.refuse_write(data_dir, f"jobs/{filename}", exc, thread.jobs_dir(data_dir)) from None
        except artifacts.UnsafeFile as exc:
            raise ValidationError(f"cannot save jobs/{filename}: {exc}; nothing was saved") from None


    def _read_stored(self, thread: ThreadId, filename: str, cap: int) -> bytes:
        got = self.store.read_thread_file(str(thread), filename, cap)
        if got is None:
            raise ValidationError(f"jobs/{filename} does not exist; give the script: --script FILE")
        if got.content is None:
            raise ValidationError(f"jobs/{filename} is {got.size} bytes; the limit is {cap} bytes")
        return got.content


def read_script_file(script: ScriptPath, cap: int) -> bytes:
    """The caller's own ``.py`` file (not one a job wrote), at most ``cap`` + 1 bytes of it (so that a
    longer one is refused as too long, not cut)."""
    path = Path(script)
    if path.suffix != ".py":
        raise ValidationError(f"{path} is not a .py file: a job is a Python script")
    try:
        with open(path, "rb") as f:
            return f.read(cap + 1)
    except FileNotFoundError:
        raise ValidationError(f"script {path} does not exist: check the path") from None
    except IsADirectoryError:
        raise ValidationError(f"{path} is a directory, not a script") from None
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from None


def replace_file(dfd: int, filename: str, source: bytes) -> None:
    """Write ``filename`` in the directory ``dfd`` whole and atomically (a temporary file, then a rename
    that replaces whatever is at the name, never following a link)."""
    _write_and_rename(dfd, filename, source)


def _write_and_rename(dfd: int, filename: str, source: bytes) -> None:
    tmp = f".{filename}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
    try:
        try:
            view = memoryview(source)
            while view:  # a write on a nearly full file system may be short: never save half a script
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        _clear_script_name(dfd, filename)
        os.rename(tmp, filename, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a link, never follows it
    except BaseException:
        artifacts.remove(dfd, tmp)
        raise


def _clear_script_name(dfd: int, filename: str) -> None:
    """Remove a directory a job made at the script's name (a rename cannot replace it)."""
    try:
        st = os.stat(filename, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        try:
            artifacts.remove(dfd, filename)
        except (artifacts.UnsafeFile, OSError) as exc:
            raise ValidationError(f"jobs/{filename} is a directory a job left and it could not be removed "
                                  f"({exc}): remove it, or give the job another name") from None
