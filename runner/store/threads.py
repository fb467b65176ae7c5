"""The store's part for threads: the host uid each thread's jobs run as (queries in ``sql/threads.sql``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from .base import StoreBase
from .database import QUERIES


class UidAllocation:
    """The statements of one uid allocation, inside the transaction that holds the allocation lock."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._conn = conn

    def current(self, thread_id: str) -> int | None:
        """The uid the thread holds now (None: none yet)."""
        row = self._conn.execute(QUERIES["thread_uid"], {"thread_id": thread_id}).fetchone()
        return int(row["uid"]) if row and row["uid"] is not None else None

    def used_in(self, first: int, last: int) -> set[int]:
        """The uids this database has given in [first, last]."""
        rows = self._conn.execute(QUERIES["thread_uids_in_range"], {"first": first, "last": last})
        return {int(r["uid"]) for r in rows}

    def give(self, thread_id: str, uid: int, old: int | None) -> int | None:
        """Give the thread ``uid`` unless its uid is no longer ``old``; the uid given, else None."""
        row = self._conn.execute(QUERIES["give_thread_uid"], {"thread_id": thread_id, "uid": uid, "old": old}).fetchone()
        return int(row["uid"]) if row else None


class ThreadsStore(StoreBase):
    """Reads and writes of threads' uids (queries in ``sql/threads.sql``)."""

    def thread_uid(self, thread_id: str) -> int | None:
        """The uid recorded for the thread, or None."""
        row = self.db.one("thread_uid", {"thread_id": thread_id})
        return int(row["uid"]) if row and row["uid"] is not None else None

    @contextmanager
    def uid_allocation(self) -> Iterator[UidAllocation]:
        """One transaction holding the lock that serialises uid allocation across runners; it commits
        when the block ends (and rolls back if it raises)."""
        with self.db.transaction() as conn:
            conn.execute(QUERIES["lock_thread_uids"])
            yield UidAllocation(conn)

    @contextmanager
    def files_lock(self, thread_id: str) -> Iterator[None]:
        """Hold the thread's files lock (a transaction-scoped advisory lock) for the ``with`` block."""
        with self.db.transaction() as conn:
            conn.execute(QUERIES["lock_thread_files"], {"thread_id": thread_id})
            yield
