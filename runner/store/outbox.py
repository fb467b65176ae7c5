"""The store's part for the outbox: claim, send, record and prune messages.

Every method is one statement in its own transaction (queries in ``sql/outbox.sql``). The deliverers
(:mod:`runner.outbox`) call these and see no SQL. Queueing a message is part of finishing a run, in
the run's own transaction (``queue_message`` and ``queue_attachment``, run by the runs part).

A message goes by webhook when its thread has a webhook of its own or its channel is one of
``webhook_channels`` (the operator's RUNNER_WEBHOOK_CHANNELS, set by :meth:`OutboxStore.route_channels`):
the Telegram and console claims leave those messages to the webhook claims, and each claim decides
the route when it runs.

Every update of a message being sent is owner-checked: it changes the row only while ``owner`` holds
its lease, and the methods that renew the lease say whether it did (False: another runner holds it).
"""

from __future__ import annotations

from typing import Any

import psycopg

from .base import StoreBase
from .database import OUTBOX_CHANNEL

Row = dict[str, Any]


class OutboxStore(StoreBase):
    """Reads and writes of the outbox for the deliverers (queries in ``sql/outbox.sql``)."""

    webhook_channels: tuple[str, ...] = ()  # channels whose every thread goes by webhook

    def route_channels(self, channels: tuple[str, ...] | list[str]) -> None:
        """The channels (``api``, ``telegram``) whose every thread is delivered by webhook."""
        self.webhook_channels = tuple(channels)

    def _routes(self, **params: Any) -> dict[str, Any]:
        return {**params, "webhook_channels": list(self.webhook_channels)}

    # --- claiming ---------------------------------------------------------------------------------

    def claim_messages(self, *, owner: str, lease: float, limit: int, without_chat: bool = False) -> list[Row]:
        """Take up to ``limit`` due messages, oldest first, under a lease of ``lease`` s held by ``owner``
        (each row with ``attachments``: its files' ``[name, size]``). ``without_chat``: only messages
        of threads with no Telegram chat (the Telegram deliverer takes the others, chat by chat)."""
        return self.db.all("claim_messages", self._routes(limit=limit, owner=owner, lease=lease,
                                                          without_chat=without_chat))

    def chats_with_due_messages(self, limit: int = 1000) -> list[str]:
        """The chats that have a message due now (or one whose sender's lease ran out)."""
        return [row["chat_id"] for row in self.db.all("chats_with_due_messages", self._routes(limit=limit))]

    def claim_chat_head(self, chat_id: str, *, owner: str, lease: float) -> Row | None:
        """The oldest undelivered message of ``chat_id``, under a lease, if it is due; None if it is not
        (or another runner holds it): a chat's messages go out in order."""
        rows = self.db.all("claim_chat_head", self._routes(chat_id=chat_id, owner=owner, lease=lease))
        return rows[0] if rows else None

    def seconds_until_next_message(self) -> float | None:
        """Seconds until the next pending message is due (negative: overdue); None if none is pending."""
        rows = self.db.all("seconds_until_next_message", self._routes())
        return rows[0]["seconds"] if rows else None

    # --- claiming for webhooks: thread by thread, the oldest message of each thread first ----------

    def webhook_threads_with_due_messages(self, limit: int = 1000) -> list[str]:
        """The threads delivered by webhook that have a message due now (or one whose lease ran out)."""
        return [row["thread_id"] for row in self.db.all("webhook_threads_with_due_messages", self._routes(limit=limit))]

    def claim_webhook_head(self, thread_id: str, *, owner: str, lease: float) -> Row | None:
        """The oldest undelivered message of ``thread_id``, under a lease, if it is due and goes by
        webhook (with the thread's own ``webhook_url`` and ``webhook_secret``, None for its channel's)."""
        rows = self.db.all("claim_webhook_head", self._routes(thread_id=thread_id, owner=owner, lease=lease))
        return rows[0] if rows else None

    def seconds_until_next_webhook_message(self) -> float | None:
        """Seconds until the next webhook thread's head is due; None if none is undelivered."""
        rows = self.db.all("seconds_until_next_webhook_message", self._routes())
        return rows[0]["seconds"] if rows else None

    async def listen(self) -> psycopg.AsyncConnection[Any]:
        """A connection LISTENing for new messages (NOTIFY on the outbox channel)."""
        return await self.db.alisten(OUTBOX_CHANNEL)

    # --- while a message is sent (owner-checked; each renews the lease) -------------------------------

    def renew_outbox_lease(self, message_id: int, *, owner: str, lease: float) -> bool:
        """The heartbeat of a message being sent. False: another runner holds it now."""
        return bool(self.db.all("renew_outbox_lease", {"id": message_id, "owner": owner, "lease": lease}))

    def part_sent(self, message_id: int, parts_sent: int, *, owner: str, lease: float) -> bool:
        """Record that the first ``parts_sent`` parts of the text went out (a retry resumes after them)."""
        return bool(self.db.all("part_sent", {"id": message_id, "parts_sent": parts_sent, "owner": owner,
                                            "lease": lease}))

    def attachments_of(self, message_id: int) -> list[Row]:
        """The message's stored attachments (``id``, ``filename``, ``content``, ``sent``), in order."""
        return self.db.all("attachments_of", {"outbox_id": message_id})

    def attachment_sent(self, attachment_id: int, message_id: int, *, owner: str, lease: float) -> bool:
        """Record an attachment as sent (its bytes go). False: another runner holds the message now."""
        return bool(self.db.all("attachment_sent", {"id": attachment_id, "outbox_id": message_id, "owner": owner,
                                                  "lease": lease}))

    def migrate_chat(self, thread_id: str, old_chat_id: str, new_chat_id: str) -> None:
        """A group became a supergroup: the thread, and its undelivered messages, follow it."""
        self.db.all("migrate_chat", {"thread_id": thread_id, "old_chat_id": old_chat_id, "new_chat_id": new_chat_id})

    # --- outcomes -----------------------------------------------------------------------------------

    def mark_sent(self, message_id: int, *, owner: str) -> None:
        """Delivered: its attachments' bytes go (the row stays while its run is in the history)."""
        self.db.all("mark_sent", {"id": message_id, "owner": owner})

    def mark_failed(self, message_id: int, error: str | None, *, owner: str) -> None:
        """Failed for good (never retried): its attachments' bytes go too."""
        self.db.all("mark_failed", {"id": message_id, "owner": owner, "error": error})

    def retry_later(self, message_id: int, error: str | None, delay: float, *, owner: str) -> None:
        """Give the message back, to be tried again in ``delay`` s."""
        self.db.all("retry_later", {"id": message_id, "owner": owner, "error": error, "delay": delay})

    def prune_outbox(self) -> None:
        """Delete the delivered or failed messages whose run has been pruned from the history."""
        self.db.all("prune_outbox")
