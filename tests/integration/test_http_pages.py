"""The job list and a job's runs a page at a time (issue 14): newest first, by an id cursor handed over as
``Link: <…>; rel="next"``, through the typed client too; and a page among 10,000 jobs of one thread
reads only that page, by the plans Postgres makes of the very statements the store runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from runner import tokens
from runner.client import Client
from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.service import Jobs
from runner.settings import Settings
from runner.store import QUERIES, Database, Store
from runner.store.jobs import MAX_ID

THREAD, OTHER = "telegram:42", "telegram:43"


@pytest.fixture
def api(settings: Settings, jobs: Jobs, db: Database) -> Iterator[dict[str, Any]]:
    store = Store(db)
    made = tokens.new_token()
    store.create_token(made, name="pages", scope=tokens.Scope(thread=THREAD, admin=False, read_only=False))
    server = HttpServer(create_app(settings, jobs, store), "127.0.0.1:0")
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {made.text}"}, timeout=30) as http:
            yield {"http": http, "url": url, "token": made.text}
    finally:
        server.stop()


def _pages(http: httpx.Client, first: str) -> list[list[int]]:
    pages, address = [], first
    while True:
        resp = http.get(address)
        assert resp.status_code == 200, resp.text
        pages.append([j["id"] for j in resp.json()])
        if "next" not in resp.links:
            assert "link" not in resp.headers
            return pages
        address = resp.links["next"]["url"]
        assert address.startswith(f"/v1/threads/{THREAD}/jobs"), address


def test_the_job_list_pages_newest_first_and_hands_over_the_next_cursor(api: dict[str, Any], jobs: Jobs) -> None:
    mine = [jobs.schedule_job(thread_id=THREAD, name=f"j{i}", script_text="pass", at="in 1 hour")["id"]
            for i in range(7)]
    jobs.schedule_job(thread_id=OTHER, name="theirs", script_text="pass", at="in 1 hour")
    for job_id in mine[1:3]:
        jobs.cancel_job(job_id, THREAD)
    pages = _pages(api["http"], f"/v1/threads/{THREAD}/jobs?limit=3")
    assert pages == [mine[::-1][0:3], mine[::-1][3:6], mine[::-1][6:7]]
    # a page exactly filled by what is left is the last: no Link to an empty page
    assert _pages(api["http"], f"/v1/threads/{THREAD}/jobs?limit=7") == [mine[::-1]]
    # the filter stays in the next page's address
    pending = _pages(api["http"], f"/v1/threads/{THREAD}/jobs?status=pending&limit=2")
    assert pending == [[mine[6], mine[5]], [mine[4], mine[3]], [mine[0]]]
    cancelled = api["http"].get(f"/v1/threads/{THREAD}/jobs", params={"status": "cancelled", "limit": 1})
    assert re.fullmatch(r'</v1/threads/telegram:42/jobs\?status=cancelled&limit=1&before=\d+>; rel="next"',
                        cancelled.headers["link"]), cancelled.headers["link"]


@pytest.mark.parametrize("query, says", [("limit=201", "limit"), ("limit=0", "limit"), ("before=0", "before"),
                                         ("before=x", "before"), ("status=done", "status")])
def test_a_bad_page_request_says_what_to_change(api: dict[str, Any], query: str, says: str) -> None:
    resp = api["http"].get(f"/v1/threads/{THREAD}/jobs?{query}")
    assert resp.status_code == 422 and resp.headers["content-type"].startswith("application/problem+json")
    assert says in resp.json()["detail"], resp.text


def test_the_client_pages_through_jobs_and_runs(api: dict[str, Any], jobs: Jobs, db: Database) -> None:
    ids = [jobs.schedule_job(thread_id=THREAD, name=f"j{i}", script_text="pass", at="in 1 hour")["id"]
           for i in range(5)]
    with Client(api["url"], api["token"]) as client:
        assert [j.id for j in client.list_jobs()] == ids[::-1]
        assert [j.id for j in client.list_jobs(limit=2, before=ids[3])] == [ids[2], ids[1]]
        assert [j.id for j in client.iter_jobs(page=2)] == ids[::-1]
        assert [j.id for j in client.iter_jobs("pending", page=1)] == ids[::-1]
        assert list(client.iter_jobs("failed")) == []
        # a job's runs: the rows of its series, newest first, below a cursor
        series = db.query(f"SELECT series_id FROM scheduled_jobs WHERE id = {int(ids[0])}")[0]["series_id"]
        with db.transaction() as conn:
            for n in range(4):
                conn.execute("INSERT INTO scheduled_jobs (thread_id, name, due_time, script_path, status, "
                             "series_id) VALUES (%s, 'j0', now() - make_interval(hours => %s), 'jobs/j0.py', "
                             "'completed', %s)", (THREAD, n + 1, series))
        runs = [r.id for r in client.runs(ids[0], limit=100)]
        assert len(runs) == 5 and runs == sorted(runs, reverse=True)
        assert [r.id for r in client.runs(ids[0], limit=2, before=runs[1])] == runs[2:4]
    resp = api["http"].get(f"/v1/threads/{THREAD}/jobs/{ids[0]}/runs", params={"limit": 2})
    assert resp.links["next"]["url"] == f"/v1/threads/{THREAD}/jobs/{ids[0]}/runs?limit=2&before={runs[1]}"


def _fill(db: Database, thread: str, n: int, pending_every: int) -> None:
    """``n`` runs in ``thread``, oldest first: most completed, every ``pending_every``-th pending."""
    with db.transaction() as conn:
        conn.execute("INSERT INTO scheduled_jobs (thread_id, name, due_time, script_path, status, output_tail) "
                     "SELECT %s, 'j' || (g %% 50), now() - make_interval(mins => %s - g), 'jobs/j.py', "
                     "CASE WHEN g %% %s = 0 THEN 'pending' ELSE 'completed' END, repeat('x', 200) "
                     "FROM generate_series(1, %s) g", (thread, n, pending_every, n))
        conn.execute("ANALYZE scheduled_jobs")


def _plan(conn: psycopg.Connection[Any], name: str, params: dict[str, Any], mode: str) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the store's named statement, prepared, with ``params``: as its generic plan
    (what psycopg's prepared statements may settle on after a few runs) or its plan for these values."""
    order = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", QUERIES[name])))
    text = re.sub(r"%\((\w+)\)s", lambda m: f"${order.index(m[1]) + 1}", QUERIES[name])
    conn.execute(f"PREPARE page AS {text}")
    conn.execute(f"SET plan_cache_mode = {mode}")
    try:
        args = ", ".join(psycopg.sql.quote(params[k]) for k in order)
        row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE page({args})").fetchone()
    finally:
        conn.execute("DEALLOCATE page")
    assert row is not None
    found: dict[str, Any] = row[0][0]
    return found


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def test_a_page_of_100_among_10000_jobs_of_one_thread_reads_only_that_page(db: Database, settings: Settings) -> None:
    """Also when the other threads' jobs are newer (a primary key walked backwards would read them all),
    and as the generic plan a prepared statement settles on as well as a plan for the values given; and
    the runs of an old series among them."""
    with db.transaction() as conn:  # a series of three runs, older than everything below
        series = conn.execute("INSERT INTO scheduled_jobs (thread_id, name, due_time, script_path) SELECT %s, "
                              "'old', now() - make_interval(days => g), 'jobs/old.py' FROM generate_series(1, 3) g "
                              "RETURNING series_id", (THREAD,)).fetchone()
        assert series is not None
        conn.execute("UPDATE scheduled_jobs SET series_id = %s WHERE name = 'old'", (series["series_id"],))
    _fill(db, THREAD, 10_000, pending_every=97)  # 103 pending among 10,000, spread through the history
    _fill(db, OTHER, 10_000, pending_every=5)
    _fill(db, "telegram:44", 30, pending_every=5)
    newest = db.query("SELECT max(id) AS m FROM scheduled_jobs WHERE thread_id = 'telegram:42'")[0]["m"]
    cases = [(THREAD, "thread_jobs_page", {"before": MAX_ID}),
             (THREAD, "thread_jobs_page", {"before": newest - 9_100}),  # deep in the history
             ("telegram:44", "thread_jobs_page", {"before": MAX_ID}),
             (THREAD, "thread_jobs_page_status", {"status": "pending", "before": MAX_ID}),
             (THREAD, "thread_jobs_page_status", {"status": "completed", "before": newest - 5_000}),
             (THREAD, "runs_of_series", {"series_id": str(series["series_id"]), "before": MAX_ID})]
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        for mode in ("force_generic_plan", "force_custom_plan"):
            for thread, name, given in cases:
                plan = _plan(conn, name, {"thread_id": thread, "limit": 101, "status": None, **given}, mode)
                nodes = list(_nodes(plan["Plan"]))
                seen = [(n["Node Type"], n.get("Index Name"), n.get("Actual Rows"), n.get("Rows Removed by Filter"))
                        for n in nodes]
                scans = [n for n in nodes if "Scan" in n["Node Type"]]
                assert "Seq Scan" not in (n["Node Type"] for n in nodes), (mode, thread, name, given, seen)
                # at most a page's rows read: or, for a plan of these values, the few below a deep cursor
                read = sum(n["Actual Rows"] + n.get("Rows Removed by Filter", 0) for n in scans)
                assert read <= (101 if mode == "force_generic_plan" else 1_000), (mode, thread, name, given, seen)
                if mode == "force_generic_plan":  # the page in index order, whatever the values
                    want = {"thread_jobs_page": "scheduled_jobs_thread", "runs_of_series": "scheduled_jobs_series",
                            "thread_jobs_page_status": "scheduled_jobs_thread_status"}[name]
                    assert [(n["Index Name"], n["Scan Direction"]) for n in scans] == [(want, "Backward")], seen
                # the rows read above are the proof; the time (0.1-0.5 ms here) only a loose guard, as a
                # loaded machine stretches it
                assert plan["Execution Time"] < 100, (mode, name, plan["Execution Time"])
