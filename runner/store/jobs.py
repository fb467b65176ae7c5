"""The store's part for jobs as the service layer sees them: schedule, list, change, cancel."""

from __future__ import annotations

from .base import StoreBase


class JobsStore(StoreBase):
    """Reads and writes of scheduled jobs for the service layer (queries in ``sql/jobs.sql``)."""
