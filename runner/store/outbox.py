"""The store's part for the outbox: queue, claim, send and prune messages."""

from __future__ import annotations

from .base import StoreBase


class OutboxStore(StoreBase):
    """Reads and writes of the outbox for the deliverers (queries in ``sql/outbox.sql``)."""
