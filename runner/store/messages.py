"""The store's part for the messages feed: what a thread's jobs said, read by a client that pulls it."""

from __future__ import annotations

from typing import Any

from .base import StoreBase


class MessagesStore(StoreBase):
    """Reads of a thread's outbox in id order (queries in ``sql/messages.sql``)."""

    def thread_messages(self, thread_id: str, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """The thread's messages with an id above ``after``, oldest first."""
        return self.db.all("thread_messages", {"thread_id": thread_id, "after": after, "limit": limit})
