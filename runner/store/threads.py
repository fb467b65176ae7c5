"""The store's part for threads: the host uid each thread's jobs run as, and its webhook (queries in
``sql/threads.sql``)."""

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
    """Reads and writes of threads' uids and webhooks (queries in ``sql/threads.sql``)."""

    def thread_settings(self, thread_id: str) -> dict[str, Any]:
        """The thread's ``timezone`` and ``webhook_url`` (None: unset) and whether it has a webhook secret
        (``has_secret``); never the secret itself."""
        row = self.db.one("thread_settings", {"thread_id": thread_id})
        return dict(row) if row else {"timezone": None, "webhook_url": None, "has_secret": False}

    def set_thread_webhook(self, thread_id: str, url: str | None, secret: str) -> bool:
        """Set the thread's webhook (None removes it, and its secret). A thread with no secret yet takes
        ``secret``; True if it did (the caller shows it, once)."""
        row = self.db.one("set_thread_webhook", {"thread_id": thread_id, "url": url, "secret": secret})
        return bool(row and row["new_secret"])

    def rotate_webhook_secret(self, thread_id: str, secret: str) -> bool:
        """Replace the thread's webhook secret with ``secret``; False if the thread has no webhook."""
        return bool(self.db.all("rotate_webhook_secret", {"thread_id": thread_id, "secret": secret}))

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
