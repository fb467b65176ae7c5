"""``runner files migrate --to postgres|local``: a one-shot copy of threads' files from the data
directory into the database, or back. Idempotent: a file already there with the same content is left
as it is, and nothing is deleted on either side (the copy adds and replaces, it does not mirror).

Into the database, the local tree is read as hostile input (:func:`runner.treecopy.read_tree`): what
the store cannot hold (a name not of its shape, a link, a FIFO, a hard link, a file past its cap, past
the thread's count or total) is reported and not copied; a thread's files go in one transaction
within the thread's limits, or none do. Back, the directory is prepared as a run prepares it (the
thread's uid, its quota if any) and each file written whole."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import artifacts, jobsquota, treecopy
from ..errors import ValidationError
from ..filerules import FileCaps
from ..settings import Settings
from ..store import Store
from ..threads import ThreadId, prepare_jobs_dir, thread_uid

TARGETS = ("postgres", "local")


@dataclass
class Copied:
    """One thread's copy: files written, files already the same, what was not copied (and why), and, if
    the thread's copy was refused whole, why."""

    thread: str
    copied: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)
    refused: str | None = None


def migrate_files(settings: Settings, store: Store, to: str, thread: ThreadId | None = None) -> list[Copied]:
    """Copy the files of ``thread`` (None: of every thread the source holds) to ``to``."""
    if to not in TARGETS:
        raise ValidationError(f"--to {to!r}: copy to postgres (the database) or to local (the data directory)")
    if to == "postgres":
        threads = [thread] if thread else local_threads(settings.data_dir)
        return [to_database(settings, store, t) for t in threads]
    threads = [thread] if thread else [ThreadId.parse(t) for t in store.threads_with_files()]
    return [to_directory(settings, store, t) for t in threads]


def local_threads(data_dir: Path) -> list[ThreadId]:
    """The threads that have a directory in ``data_dir`` (other entries are not threads' and are left)."""
    found = []
    try:
        with os.scandir(data_dir) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    try:
                        found.append(ThreadId.from_dir(entry.name))
                    except ValidationError:
                        continue
    except FileNotFoundError:
        return []
    return sorted(found)


def to_database(settings: Settings, store: Store, thread: ThreadId) -> Copied:
    """Copy the thread's local ``jobs/`` into the database (see the module)."""
    out, caps = Copied(str(thread)), FileCaps.of(settings)
    try:
        with artifacts.open_dir(settings.data_dir, thread.dir_name, "jobs") as dfd:
            tree = treecopy.read_tree(dfd, caps)
    except FileNotFoundError:
        return out  # no jobs/: nothing to copy
    except artifacts.UnsafeFile as exc:
        out.refused = f"its jobs/ cannot be read safely ({exc}); nothing was copied"
        return out
    out.skipped, out.refused = tree.skipped, tree.problem
    if tree.problem:
        return out
    there = store.thread_files(str(thread))
    changed = {n: data for n, data in tree.files.items() if n not in there or there[n][0] != data}
    out.unchanged = len(tree.files) - len(changed)
    if changed:
        out.refused = store.put_thread_files(str(thread), changed, caps, modified=tree.modified)
        out.copied = 0 if out.refused else len(changed)
    return out


def to_directory(settings: Settings, store: Store, thread: ThreadId) -> Copied:
    """Copy the thread's files in the database into its local ``jobs/`` (see the module)."""
    out = Copied(str(thread))
    files = store.thread_files(str(thread))
    if not files:
        return out
    uid = thread_uid(store, thread, settings.uid_range)
    try:
        prepare_jobs_dir(settings.data_dir, thread, uid, jobsquota.from_settings(settings))
        with artifacts.open_dir(settings.data_dir, thread.dir_name, "jobs") as dfd:
            done = treecopy.write_tree(dfd, files, uid)
    except (OSError, artifacts.UnsafeFile) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        out.refused = f"its files could not all be written to {thread.jobs_dir(settings.data_dir)} ({why})"
        return out
    out.copied, out.unchanged = done.written, done.unchanged
    return out
