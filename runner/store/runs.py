"""The store's part for runs: claim, lease, fence, finish, recur and recover."""

from __future__ import annotations

from .base import StoreBase


class RunsStore(StoreBase):
    """Reads and writes of the scheduler's runs (queries in ``sql/runs.sql``)."""
