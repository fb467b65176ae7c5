"""The store's part for a thread's files in the database (``RUNNER_FILES=postgres``): one row per file
of its ``jobs/`` (queries in ``sql/files.sql``, table ``thread_files``, migration 012).

Every change is made under the thread's files lock (the advisory lock local writers take too) and
checked against the thread's limits in the same transaction, after it is made: a change that leaves
the thread past a limit is rolled back whole, so writers at once, on any runner, never pass them.
A name is a path (``a/b.txt``); writing one removes what a directory tree could not hold beside it:
files below it (``a/b.txt/...``) and files of the names it runs through (``a``).

Lock order, to keep away deadlocks: a transaction that locks rows of ``scheduled_jobs`` (the end of
a run, an approval) does so before it takes the thread's files lock, never after.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ..filerules import FileCaps, ancestors, name_problem, room_problem, size_problem
from ..jobtree import show
from .base import StoreBase
from .database import QUERIES

Conn = psycopg.Connection[dict[str, Any]]


@dataclass(frozen=True)
class StoredFile:
    """A file's entry: its name, bytes and modification time."""

    name: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class FileRead:
    """One file read with a cap: ``content`` is None when ``size`` is past the cap (it was not read)."""

    size: int
    modified: datetime
    content: bytes | None


class _Refused(Exception):
    """Rolls a change back to its savepoint; carries the sentence."""


class FilesStore(StoreBase):
    """Reads and writes of threads' files (queries in ``sql/files.sql``)."""

    def list_thread_files(self, thread_id: str, limit: int) -> tuple[list[StoredFile], int]:
        """Up to ``limit`` plain files of the thread's ``jobs/`` itself, by name, and the number of
        directories beside them (their files are not listed)."""
        rows = self.db.all("list_thread_files", {"thread_id": thread_id, "limit": limit})
        dirs = self.db.one("thread_file_dirs", {"thread_id": thread_id})
        return [StoredFile(r["name"], int(r["size"]), r["modified"]) for r in rows], int(dirs["dirs"] if dirs else 0)

    def read_thread_file(self, thread_id: str, name: str, cap: int) -> FileRead | None:
        """The file ``name`` (None: there is none), its content only if it has at most ``cap`` bytes."""
        row = self.db.one("read_thread_file", {"thread_id": thread_id, "name": name, "cap": cap})
        if row is None:
            return None
        content = row["content"]
        return FileRead(int(row["size"]), row["modified"], None if content is None else bytes(content))

    def thread_files(self, thread_id: str, conn: Conn | None = None) -> dict[str, tuple[bytes, datetime]]:
        """Every file of the thread: name -> (content, modified), in ``conn``'s transaction if given."""
        params = {"thread_id": thread_id}
        if conn is not None:
            rows = conn.execute(QUERIES["thread_files_content"], params).fetchall()
        else:
            rows = self.db.all("thread_files_content", params)
        return {r["name"]: (bytes(r["content"]), r["modified"]) for r in rows}

    def threads_with_files(self) -> list[str]:
        """The threads that have a file in the database."""
        return [r["thread_id"] for r in self.db.all("threads_with_files")]

    def delete_thread_file(self, thread_id: str, name: str) -> bool:
        """Delete the file ``name`` and any below it (as ``rm`` a directory); False if there was none."""
        return bool(self.db.all("delete_thread_file", {"thread_id": thread_id, "name": name}))

    def put_thread_files(self, thread_id: str, changed: Mapping[str, bytes], caps: FileCaps, *,
                         removed: Collection[str] = (), modified: Mapping[str, datetime] | None = None,
                         conn: Conn | None = None) -> str | None:
        """Write the files ``changed`` (name -> content, each replaced whole) and delete ``removed``, all
        or nothing, in one transaction of their own (or in ``conn``'s, at a savepoint). None when done;
        else the sentence that says why nothing was written (a name, a size, a limit of ``caps``).

        ``modified`` gives files their modification time (else the database's now)."""
        if conn is not None:
            return self.replace_changed(conn, thread_id, changed, removed, caps, modified=modified)
        with self.db.transaction() as own:
            return self.replace_changed(own, thread_id, changed, removed, caps, modified=modified)

    def replace_changed(self, conn: Conn, thread_id: str, changed: Mapping[str, bytes], removed: Collection[str],
                        caps: FileCaps, *, modified: Mapping[str, datetime] | None = None) -> str | None:
        """Apply a run's changes to the thread's files inside the caller's transaction ``conn`` (the one
        that records the run's result): write ``changed`` (name -> content), delete ``removed`` (and
        what lies below those names; a name in both is written). All or nothing: if a name, a size or the thread's limits refuse
        it, nothing of it is written (the savepoint is rolled back, the caller's transaction goes on)
        and the sentence is returned; None when it is done.

        Call it after the transaction's updates of ``scheduled_jobs`` (see the module's lock order)."""
        problem = _refusal(changed, removed, caps)
        if problem is not None:
            return problem
        if conn.autocommit:
            raise ValueError("replace_changed needs a connection in a transaction, not in autocommit")
        # The lock first: its statement opens the caller's transaction if nothing has yet, so that the
        # block below is a savepoint in it (a first block would be the transaction, committed at its end).
        conn.execute(QUERIES["lock_thread_files"], {"thread_id": thread_id})
        try:
            with conn.transaction():  # a savepoint: a refusal rolls back this change alone
                _apply(conn, thread_id, changed, removed, modified or {})
                usage = conn.execute(QUERIES["thread_files_usage"], {"thread_id": thread_id}).fetchone()
                assert usage is not None
                over = room_problem(int(usage["files"]), int(usage["bytes"]), caps)
                if over is not None:
                    raise _Refused(over)
        except _Refused as exc:
            return str(exc)
        return None


def _refusal(changed: Mapping[str, bytes], removed: Collection[str], caps: FileCaps) -> str | None:
    """What refuses a change before it reaches the database: a name not of the store's shape, a file too large."""
    for name in [*changed, *removed]:
        problem = name_problem(name)
        if problem is not None:
            return f"jobs/{show(name)} cannot be kept: {problem}"
    for name, content in changed.items():
        problem = size_problem(name, len(content), caps)
        if problem is not None:
            return problem
    both = sorted(a for n in changed for a in ancestors(n) if a in changed)
    if both:
        return f"jobs/{both[0]} cannot be both a file and a directory"
    return None


def _apply(conn: Conn, thread_id: str, changed: Mapping[str, bytes], removed: Collection[str],
           modified: Mapping[str, datetime]) -> None:
    names = sorted(changed)
    cleared = set(names) | set(removed) | {a for n in names for a in ancestors(n)}
    conn.execute(QUERIES["delete_thread_files"], {"thread_id": thread_id, "names": sorted(cleared)})
    conn.execute(QUERIES["delete_thread_file_trees"], {"thread_id": thread_id, "names": sorted({*names, *removed})})
    if names:
        conn.execute(QUERIES["insert_thread_files"], {
            "thread_id": thread_id, "names": names, "contents": [changed[n] for n in names],
            "modified": [modified.get(n) for n in names]})
