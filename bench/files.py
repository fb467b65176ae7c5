"""Benchmarks of issue 17, run by bench/run.py (``--only copy,engines``):

* ``copy``: the per-run cost of RUNNER_FILES=postgres (jobs/ copied into the run's own volume and read
  back) against the bind mount of RUNNER_FILES=local, in the same run, for a thread holding 10 files of
  100 KiB; one run at a time, the median of each (goal: at most 1.15 times the bind mount).
* ``engines``: throughput of jobs that sleep 1 s with one engine, then with two (the host's and a second
  dockerd started for the run, tests/engines.py), one runner on each (goal: at least 1.8 times).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

from runner.scheduler import Scheduler
from runner.service import Jobs
from runner.store import Database
from runner.threads import ThreadId

if TYPE_CHECKING:
    from bench.run import Env

FILES, FILE_BYTES = 10, 100 * 1024
COPY_SCRIPT = "import os\nprint(len(os.listdir('jobs')))\n"


def _timed_runs(env: Env, files: str, n: int) -> list[float]:
    """n runs of one job in one thread holding FILES files, one at a time; each run's seconds."""
    from bench.run import THREAD, schedule_trivial, timed_burst

    env.reset()
    s = env.settings(concurrency=1, files=files, thread_concurrency=1)
    db = Database(env.url, max_size=4)
    try:
        jobs = Jobs(s, db)
        for i in range(FILES):
            jobs.files.write(ThreadId.parse(THREAD), f"data{i}.bin", os.urandom(FILE_BYTES))
        schedule_trivial(env, s, n, script=COPY_SCRIPT)
        durations = timed_burst(Scheduler(s, db, env.dc))
        with db.transaction() as conn:
            done = conn.execute("SELECT count(*) AS n FROM scheduled_jobs WHERE status = 'completed'").fetchone()
        assert done is not None and done["n"] == n, f"{files}: {done} of {n} runs completed"
        return durations
    finally:
        db.close()


def bench_copy(env: Env, quick: bool) -> dict[str, Any]:
    n = 10 if quick else 60
    bind = _timed_runs(env, "local", n)
    copied = _timed_runs(env, "postgres", n)
    bind2 = _timed_runs(env, "local", n)  # again after: a drift of the machine shows as a gap between the two
    base = statistics.median(bind + bind2)
    return {"runs": n, "files": f"{FILES} x {FILE_BYTES // 1024} KiB", "bind_median_s": statistics.median(bind),
            "bind_again_median_s": statistics.median(bind2), "copied_median_s": statistics.median(copied),
            "ratio": statistics.median(copied) / base}


def schedule_sleepers(env: Env, n: int) -> None:
    """n jobs due now that sleep 1 s, each in a thread of its own (so none waits for another)."""
    db = Database(env.url, max_size=2)
    try:
        jobs = Jobs(env.settings(), db)
        for i in range(n):
            jobs.schedule_job(thread_id=f"bench:{i + 1}", name="sleep", script_text="import time\ntime.sleep(1)\n",
                              at="now")
    finally:
        db.close()


def _throughput(env: Env, engines: list[Any], n: int, per_runner: int) -> float:
    """Jobs per second of n one-second jobs (each in a thread of its own) over one runner per engine."""
    env.reset()
    schedule_sleepers(env, n)
    dbs = [Database(env.url, max_size=per_runner + 4) for _ in engines]
    try:
        scheds = [Scheduler(env.settings(concurrency=per_runner), db, dc) for db, dc in zip(dbs, engines, strict=True)]
        t0 = time.perf_counter()
        threads = [threading.Thread(target=s.run, kwargs={"burst": True}) for s in scheds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return n / (time.perf_counter() - t0)
    finally:
        for db in dbs:
            db.close()


def bench_engines(env: Env, quick: bool) -> dict[str, Any]:
    from tests.engines import SecondEngine

    n, per_runner = (16, 4) if quick else (96, 8)
    second = SecondEngine.create()
    try:
        second.start()
        load = second.load_images(env.settings().image)
        other = second.client()
        try:
            one = _throughput(env, [env.dc], n, per_runner)
            two = _throughput(env, [env.dc, other], n, per_runner)
        finally:
            other.close()
    finally:
        second.close()
    return {"jobs": n, "per_runner": per_runner, "image_load_s": load, "one_engine_jobs_per_s": one,
            "two_engines_jobs_per_s": two, "ratio": two / one}
