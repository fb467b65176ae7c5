"""The benchmark's `api` section (issue 14, "Performance"): the HTTP API's list, get and create with
10,000 jobs in one thread, from a client on the same machine, beside the same operations through the
in-process service layer (runner.service.Jobs), measured in the same run, sample by sample in turn.

The server is `runner up` in a subprocess (its scheduler, its pool, uvicorn: what a deployment runs),
the client raw httpx over one kept-alive connection (the transport the typed client uses, without its
parsing). The baseline is the bench process's own Jobs over its own pool: the ratio HTTP/in-process is
then what the HTTP layer adds (authentication, routing, validation, the response's models and JSON,
the loopback round trip).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg

from runner import tokens
from runner.service import Jobs
from runner.settings import Settings
from runner.store import QUERIES, Database, Store
from runner.store.jobs import MAX_ID

THREAD = "bench:1"
JOBS = 10_000
GOALS_MS = {"list": 20.0, "get": 10.0, "create": 50.0}  # p99, from the client
RATIO_GOAL = 2.0
SCRIPT = "import json\nprint(json.dumps({'ok': True}))\n"


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))] if s else float("nan")


def seed(jobs: Jobs, url: str, n: int = JOBS) -> list[int]:
    """``n`` jobs in THREAD: two scheduled through the service (their script files written, the thread
    made), the rest copied from them in SQL (a third finished, a tenth recurring, every pending one due
    days ahead so that the server's scheduler runs none). Returns their ids."""
    one = jobs.schedule_job(thread_id=THREAD, name="noop", script_text=SCRIPT, at="in 2 days")
    daily = jobs.schedule_job(thread_id=THREAD, name="daily", script_text=SCRIPT, every="daily 9am")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO scheduled_jobs (thread_id, name, due_time, script_path, timezone, script_sha256, "
            "status, completed_at, exit_code, output_tail, recurrence, cron) "
            "SELECT j.thread_id, 'j' || g, CASE WHEN g %% 3 = 0 THEN now() - g * interval '1 minute' "
            "       ELSE now() + interval '2 days' + g * interval '1 minute' END, "
            "  j.script_path, j.timezone, j.script_sha256, "
            "  CASE WHEN g %% 3 = 0 THEN 'completed' ELSE 'pending' END, "
            "  CASE WHEN g %% 3 = 0 THEN now() - g * interval '1 minute' + interval '1 second' END, "
            "  CASE WHEN g %% 3 = 0 THEN 0 END, CASE WHEN g %% 3 = 0 THEN '{\"ok\": true}' END, "
            "  CASE WHEN g %% 10 = 1 THEN d.recurrence END, CASE WHEN g %% 10 = 1 THEN d.cron END "
            "FROM scheduled_jobs j, scheduled_jobs d, generate_series(1, %s) g WHERE j.id = %s AND d.id = %s",
            (n - 2, one["id"], daily["id"]))
        conn.execute("ANALYZE scheduled_jobs")
        return [r[0] for r in conn.execute("SELECT id FROM scheduled_jobs WHERE thread_id = %s", (THREAD,))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def runner_up(settings: Settings) -> Iterator[tuple[str, int]]:
    """`runner up` serving the API on a free loopback port; yields its URL and process id once
    /healthz answers."""
    from tests.integration.helpers import ROOT, RUNNER_CLI, cli_env  # no RUNNER_*/TELEGRAM_* from the shell

    port = _free_port()
    env = cli_env(settings, RUNNER_HTTP=f"127.0.0.1:{port}", RUNNER_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([*RUNNER_CLI, "up", "--no-build"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"runner up exited: {proc.communicate()[1][-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("runner up did not answer /healthz within 60 s")
            time.sleep(0.2)  # polling a condition (the server listening), not a fixed wait
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def _timed(fn: Callable[[int], Any], i: int) -> float:
    t0 = time.perf_counter()
    fn(i)
    return (time.perf_counter() - t0) * 1000


def process_cpu(pid: int) -> float:
    """Seconds of CPU (user and system) process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ok(resp: httpx.Response, status: int = 200) -> httpx.Response:
    if resp.status_code != status:
        raise RuntimeError(f"{resp.request.method} {resp.request.url.path} answered {resp.status_code}: {resp.text[:300]}")
    return resp


def _figures(http: list[float], inproc: list[float], goal: float | None) -> dict[str, Any]:
    h50, h99, i50, i99 = pct(http, 50), pct(http, 99), pct(inproc, 50), pct(inproc, 99)
    out = {"http_p50_ms": h50, "http_p99_ms": h99, "inproc_p50_ms": i50, "inproc_p99_ms": i99,
           "ratio_p50": h50 / i50, "ratio_p99": h99 / i99}
    if goal is not None:
        out |= {"goal_p99_ms": goal, "p99_met": h99 <= goal, "ratio_met": h50 / i50 <= RATIO_GOAL}
    return out


def _measure(n: int, ops: dict[str, tuple[Callable[[int], Any], Callable[[int], Any]]], server: int) -> dict[str, Any]:
    """For each operation, ``n`` samples of (in-process, HTTP) in turn after a short warm-up, so that
    the two meet the same machine (the other agents' load, the caches) sample by sample. Beside the
    times, the CPU each costs (the server process's per request, the bench thread's per in-process
    call; Postgres's own in neither): a figure the machine's other work does not inflate."""
    out: dict[str, Any] = {}
    for name, (inproc, http) in ops.items():
        for i in range(10):
            inproc(-1 - i)
            http(-1 - i)
        ti, th = [], []
        cpu_in, cpu_server = 0.0, process_cpu(server)
        for i in range(n):
            c0 = time.thread_time()
            ti.append(_timed(inproc, i))
            cpu_in += time.thread_time() - c0
            th.append(_timed(http, i))
        cpu_server = process_cpu(server) - cpu_server
        out[name] = {**_figures(th, ti, GOALS_MS.get(name)), "http_server_cpu_ms": cpu_server * 1000 / n,
                     "inproc_cpu_ms": cpu_in * 1000 / n, "cpu_ratio": cpu_server / cpu_in if cpu_in else float("nan")}
    return out


def _auth_cost(store: Store, token: str, n: int) -> dict[str, float]:
    """What authenticating one request costs the server in the store: the token's lookup (and the
    constant-time comparison), and the last-used note's query (which the server now asks at most
    once a minute per token)."""
    look, note = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        found = store.token_scope(token)
        t1 = time.perf_counter()
        assert found is not None
        store.note_token_used(found[0])
        t2 = time.perf_counter()
        look.append((t1 - t0) * 1000)
        note.append((t2 - t1) * 1000)
    return {"lookup_p50_ms": pct(look, 50), "last_used_query_p50_ms": pct(note, 50)}


def _list_plan(url: str) -> str:
    """The plan of the listing's query (the thread's newest 100) as Postgres runs it, its scan and time."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + QUERIES["thread_jobs_page"],
                            {"thread_id": THREAD, "status": None, "limit": 100, "before": MAX_ID}).fetchall()
    lines = [r[0].strip() for r in rows]
    scan = next((line for line in lines if "Scan" in line), lines[0])
    return f"{scan}; {next((line for line in lines if line.startswith('Execution')), '')}"


def bench_api(url: str, settings: Settings, quick: bool) -> dict[str, Any]:
    """The section: seed, serve, measure; ``url`` is the bench's Postgres."""
    n = 100 if quick else 500
    db = Database(url, max_size=4)
    try:
        jobs, store = Jobs(settings, db), Store(db)
        ids = seed(jobs, url)
        made = tokens.new_token()
        store.create_token(made, name=f"bench-{made.public_id[:6]}", scope=tokens.Scope(thread=THREAD, admin=False, read_only=False))
        rng = random.Random(14)
        with runner_up(settings) as (base, pid), httpx.Client(base_url=f"{base}/v1/threads/{THREAD}", timeout=30,
                                                       headers={"Authorization": f"Bearer {made.text}"}) as http:
            picks = [rng.choice(ids) for _ in range(n + 10)]
            ops: dict[str, tuple[Callable[[int], Any], Callable[[int], Any]]] = {
                "list": (lambda i: jobs.list_jobs(THREAD, limit=100),
                         lambda i: _ok(http.get("/jobs", params={"limit": 100}))),
                "get": (lambda i: jobs.get_job(picks[i], THREAD), lambda i: _ok(http.get(f"/jobs/{picks[i]}"))),
                "create": (lambda i: jobs.schedule_job(thread_id=THREAD, name=f"in{i + 10}", script_text=SCRIPT,
                                                       at="in 2 days"),
                           lambda i: _ok(http.post("/jobs", json={"name": f"http{i + 10}", "script": SCRIPT,
                                                                  "when": "in 2 days"}), 201)),
                # The floor under every request: authentication and nothing else, beside the store's
                # lookup of the token alone.
                "me": (lambda i: store.token_scope(made.text), lambda i: _ok(http.get(f"{base}/v1/me"))),
            }
            out: dict[str, Any] = {"jobs_in_thread": JOBS, "samples": n, **_measure(n, ops, pid)}
        out["load_average_1m"] = os.getloadavg()[0]  # the machine's other work: the p99s' noise
        out["auth_in_store"] = _auth_cost(store, made.text, n)
        out["list_plan"] = _list_plan(url)
        return out
    finally:
        db.close()
