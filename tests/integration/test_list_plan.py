"""Listing one thread's jobs reads that thread's rows, not the whole table: behind many newer jobs of
other threads, the listing walked the primary key backwards past all of them (33 to 62 ms behind
200,000, found with the benchmark's `api` section), where the thread's index answers in 0.1 ms."""

from __future__ import annotations

import psycopg
import pytest

from runner.store import QUERIES, Database, Store
from runner.store.jobs import MAX_ID

THREAD = "telegram:42"


@pytest.fixture
def crowded(pg_url: str) -> str:
    """2,000 jobs of THREAD, then 50,000 newer ones of 100 other threads."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO scheduled_jobs (thread_id, name, due_time, script_path, status) "
                     "SELECT %s, 't' || g, now() - g * interval '1 minute', 'jobs/x.py', 'completed' "
                     "FROM generate_series(1, 2000) g", (THREAD,))
        conn.execute("INSERT INTO scheduled_jobs (thread_id, name, due_time, script_path, status) "
                     "SELECT 'other:' || (g % 100), 'o' || g, now() - g * interval '1 minute', 'jobs/x.py', "
                     "'completed' FROM generate_series(1, 50000) g")
        conn.execute("ANALYZE scheduled_jobs")
    return pg_url


@pytest.mark.parametrize("status", [None, "completed"])
def test_a_threads_listing_reads_only_its_own_rows(crowded: str, status: str | None) -> None:
    with psycopg.connect(crowded, autocommit=True) as conn:
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + QUERIES["thread_jobs_page_status" if status else "thread_jobs_page"],
                                                    {"thread_id": THREAD, "status": status, "limit": 100,
                                                     "before": MAX_ID}))
    assert "scheduled_jobs_thread" in plan and "Rows Removed by Filter: 50000" not in plan, plan


def test_the_listing_is_the_threads_newest_first(crowded: str) -> None:
    db = Database(crowded, max_size=1)
    try:
        rows = Store(db).list_jobs(THREAD, None, 100)
    finally:
        db.close()
    assert len(rows) == 100 and {r["thread_id"] for r in rows} == {THREAD}
    assert [r["name"] for r in rows] == [f"t{g}" for g in range(2_000, 1_900, -1)]
