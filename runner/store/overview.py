"""The store's part for the web dashboard: the overview's figures (runs of the last 24 hours, failures,
what runs next, lateness, the outbox) and the jobs page, one row per job. Every query takes an optional
thread: a thread token's dashboard reads its own thread only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..schedule import AFTER_SENTINEL
from .base import StoreBase
from .database import QUERIES

Row = dict[str, Any]
# Lateness histogram bucket edges in milliseconds: bucket i holds [EDGES[i-1], EDGES[i]); 0 is below 10 ms.
LATENESS_EDGES = (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0)
LIST_LIMIT = 20  # failures, next runs and failed messages shown on the overview


@dataclass(frozen=True)
class Lateness:
    """How late runs started: how many, the median and 99th percentile (ms), and the count per bucket
    (``counts[i]`` for bucket i of :data:`LATENESS_EDGES`, ``len(edges) + 1`` of them)."""

    n: int
    p50: float | None
    p99: float | None
    counts: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Overview:
    """What the dashboard's first page shows."""

    runs: dict[str, int]
    failures: list[Row]
    next_hour: list[Row]
    lateness: Lateness
    outbox: dict[str, int]
    outbox_failed: list[Row]


class OverviewStore(StoreBase):
    """Reads for the dashboard (queries in ``sql/overview.sql``)."""

    def overview(self, thread_id: str | None) -> Overview:
        """The overview's figures of one thread (or of every thread), read in one transaction."""
        p: dict[str, Any] = {"thread_id": thread_id, "limit": LIST_LIMIT}
        with self.db.transaction() as conn:
            def q(name: str, extra: dict[str, Any] | None = None) -> list[Row]:
                return conn.execute(QUERIES[name], {**p, **(extra or {})}).fetchall()

            runs = {r["status"]: int(r["n"]) for r in q("overview_runs_by_status")}
            failures, next_hour = q("overview_failures"), q("overview_next_hour")
            late = q("overview_lateness", {"edges": list(LATENESS_EDGES), "sentinel": AFTER_SENTINEL})[0]
            outbox = {r["status"]: int(r["n"]) for r in q("overview_outbox")}
            outbox_failed = q("overview_outbox_failed")
        counts = [0] * (len(LATENESS_EDGES) + 1)
        for bucket, n in late["buckets"] or []:
            counts[min(max(int(bucket), 0), len(counts) - 1)] += int(n)
        lateness = Lateness(n=int(late["n"]), p50=late["p50"], p99=late["p99"], counts=counts)
        return Overview(runs, failures, next_hour, lateness, outbox, outbox_failed)

    def dashboard_jobs(self, thread_id: str | None, status: str | None, limit: int,
                       offset: int) -> tuple[list[Row], int]:
        """A page of jobs (one row per series: its live run, else its latest) and how many match in all."""
        rows = self.db.all("dashboard_jobs", {"thread_id": thread_id, "status": status, "limit": limit,
                                              "offset": offset})
        return rows, int(rows[0]["total"]) if rows else 0

    def dashboard_threads(self, limit: int = 500) -> list[str]:
        """The threads that have jobs (an admin's thread filter)."""
        return [r["thread_id"] for r in self.db.all("dashboard_threads", {"limit": limit})]

    def any_live_admin_token(self) -> bool:
        """Whether some admin token is neither revoked nor expired."""
        return self.db.one("any_live_admin_token") is not None
