"""The store's part for threads: their settings and the host uid their jobs run as."""

from __future__ import annotations

from .base import StoreBase


class ThreadsStore(StoreBase):
    """Reads and writes of threads (queries in ``sql/threads.sql``)."""
