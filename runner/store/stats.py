"""The store's part for the runner's own figures: jobs and messages counted by status (for /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import StoreBase
from .database import QUERIES


@dataclass(frozen=True)
class StatusCounts:
    """How many job runs and outbox messages are in each status (a status with none is absent)."""

    jobs: dict[str, int]
    outbox: dict[str, int]


class StatsStore(StoreBase):
    """Counts read at scrape time (queries in ``sql/stats.sql``)."""

    def status_counts(self, timeout: float | None = None) -> StatusCounts:
        """Jobs and outbox messages by status, read in one transaction; ``timeout`` bounds the wait for a
        connection, so that a scrape during an outage fails quickly instead of hanging."""
        with self.db.transaction(timeout=timeout) as conn:
            jobs = conn.execute(QUERIES["jobs_by_status"]).fetchall()
            outbox = conn.execute(QUERIES["outbox_by_status"]).fetchall()
        return StatusCounts(jobs={r["status"]: int(r["n"]) for r in jobs},
                            outbox={r["status"]: int(r["n"]) for r in outbox})
