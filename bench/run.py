"""The runner's benchmark: each figure beside its baseline, measured in the same run.

    python -m bench.run [--quick] [--only lateness,overhead,throughput,scale,delivery,api,copy,engines] [--out BENCHMARKS.md]

Starts its own Postgres (the testcontainers image the tests use) and uses the real Docker engine.
Results are appended to BENCHMARKS.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import docker  # noqa: E402
import psycopg  # noqa: E402

from runner import sandbox  # noqa: E402
from runner.scheduler import Scheduler  # noqa: E402
from runner.service import Jobs  # noqa: E402
from runner.settings import Settings  # noqa: E402
from runner.store import Database, migrate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THREAD = "bench:1"


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))] if s else float("nan")


class Env:
    """A Postgres container, a data directory and settings for one benchmark run."""

    def __init__(self) -> None:
        from testcontainers.community.postgres import PostgresContainer

        self.pg = PostgresContainer("runner-postgres:15", username="bench", password="bench", dbname="bench",
                                    driver=None)
        self.pg.with_command("-c fsync=off -c synchronous_commit=off -c max_connections=200")
        self.tmp = tempfile.TemporaryDirectory(prefix="runner-bench-")
        self.dc = docker.from_env()

    def __enter__(self) -> Env:
        self.pg.start()
        self.url = self.pg.get_connection_url()
        migrate(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:  # the database goes: so do its uids
            row = conn.execute("SELECT value FROM runner_meta WHERE key = 'store_id'").fetchone()
        if row:  # only this database's containers: other runners (tests) may share the engine
            for c in sandbox.managed_containers(self.dc, row[0]):
                sandbox.remove_container(c)
            sandbox.release_uids(self.dc, row[0])
        self.pg.stop()
        self.tmp.cleanup()

    def settings(self, **changes: Any) -> Settings:
        # Every benchmark job is in one thread: they may run side by side (the measure is the runner's
        # own cost, not the serial runs a thread gets by default).
        base = Settings.from_env({"DATABASE_URL": self.url, "RUNNER_DATA_DIR": str(Path(self.tmp.name) / "files"),
                                  "RUNNER_ID": f"bench-{uuid.uuid4().hex[:6]}", "RUNNER_LOG_LEVEL": "WARNING",
                                  "RUNNER_THREAD_CONCURRENCY": "1000"})
        return base.with_(**changes)

    def reset(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("TRUNCATE scheduled_jobs, outbox, threads, thread_files CASCADE")


class CountingScheduler(Scheduler):
    """Counts started runs (the lateness itself is read from what each script printed)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.started = 0

    def _started(self, job: dict[str, Any], at: datetime) -> None:
        self.started += 1


def bare_docker_run(image: str, n: int, concurrency: int, limits: list[str]) -> list[float]:
    """n × `docker run --rm` with the same image and limits; returns each run's seconds."""
    times: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            t0 = time.perf_counter()
            subprocess.run(["docker", "run", "--rm", *limits, image, "python3", "-c", "pass"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with lock:
                times.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


LIMITS = ["--network", "none", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
          "--memory", "256m", "--memory-swap", "256m", "--cpus", "1", "--pids-limit", "64", "--init",
          "--user", "10001:10001", "--tmpfs", "/tmp:rw,nosuid,nodev,noexec,size=16m"]


def schedule_trivial(env: Env, s: Settings, n: int, due: Callable[[int], datetime] | None = None,
                     script: str = "pass\n") -> None:
    db = Database(env.url, max_size=2)
    try:
        jobs = Jobs(s, db)
        jobs.schedule_job(thread_id=THREAD, name="noop", script_text=script, at="in 1 hour")
        with db.transaction() as conn:
            base = conn.execute("SELECT * FROM scheduled_jobs WHERE name = 'noop'").fetchone()
            conn.execute("DELETE FROM scheduled_jobs")
            now = datetime.now(UTC)
            with conn.cursor().copy("COPY scheduled_jobs (thread_id, name, due_time, script_path, timezone) "
                                    "FROM STDIN") as cp:
                for i in range(n):
                    cp.write_row((THREAD, "noop", due(i) if due else now, base["script_path"], "UTC"))
    finally:
        db.close()


def bench_lateness(env: Env, quick: bool) -> dict[str, Any]:
    n, window, base_poll = (20, 20.0, 10.0) if quick else (200, 120.0, 60.0)
    out: dict[str, Any] = {"jobs": n, "window_s": window}
    for label, poll in (("runner", None), (f"{base_poll:g} s poll (the seed's design)", base_poll)):
        env.reset()
        start = datetime.now(UTC) + timedelta(seconds=5)
        # The baseline gets a pool wide enough for a whole poll's batch, so its lateness is the poll's
        # doing and not a queue behind 16 slots.
        s = env.settings(concurrency=64 if poll else 16)
        schedule_trivial(env, s, n, lambda i, start=start: start + timedelta(seconds=window * i / n),
                         script=CLOCK_SCRIPT)
        db = Database(env.url, max_size=20)
        sched = CountingScheduler(s.with_(poll_interval=poll or s.poll_interval), db, env.dc)
        if poll:  # the seed's design: wake every poll seconds, whatever is due
            sched._sleep_seconds = lambda burst, p=poll: p  # type: ignore[method-assign]
            sched.wake_after_job = False
        t = threading.Thread(target=sched.run)
        t.start()
        deadline = time.monotonic() + window + (poll or 0) + 60
        while sched.started < n and time.monotonic() < deadline:
            time.sleep(0.5)
        sched.stop()
        t.join()
        db.close()
        late = script_start_minus_due(env)
        out[label] = {"p50": pct(late, 50), "p99": pct(late, 99), "max": max(late) if late else float("nan"),
                      "min": min(late) if late else float("nan"), "runs": len(late)}
    return out


# Lateness is measured where it matters: the script's first line reads the clock (the same clock as
# the host's: containers share the kernel's), against the due time.
CLOCK_SCRIPT = "import time\nprint(repr(time.time()))\n"


def script_start_minus_due(env: Env) -> list[float]:
    """Seconds from each completed run's due time to its script's first line (negative: early)."""
    with psycopg.connect(env.url) as conn:
        rows = conn.execute("SELECT EXTRACT(EPOCH FROM due_time)::float8, output_tail FROM scheduled_jobs "
                            "WHERE status = 'completed'").fetchall()
    return [float(out.split()[0]) - due for due, out in rows if out and out.strip()]


def timed_burst(sched: Scheduler) -> list[float]:
    """Run everything due with ``sched`` (one burst) and return each run's seconds, run_job to its end."""
    durations: list[float] = []
    orig = sched.run_job

    def timed(job: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        orig(job)
        durations.append(time.perf_counter() - t0)

    sched.run_job = timed  # type: ignore[method-assign]
    sched.run(burst=True)
    return durations


def bench_overhead(env: Env, quick: bool) -> dict[str, Any]:
    n = 15 if quick else 100
    env.reset()
    s = env.settings(concurrency=1)
    schedule_trivial(env, s, n)
    db = Database(env.url, max_size=4)
    durations = timed_burst(Scheduler(s, db, env.dc))
    db.close()
    bare = bare_docker_run(s.image, n, 1, LIMITS)
    return {"runs": n, "runner_median_s": statistics.median(durations), "bare_median_s": statistics.median(bare),
            "ratio": statistics.median(durations) / statistics.median(bare)}


def bench_throughput(env: Env, quick: bool) -> dict[str, Any]:
    n = 30 if quick else 500
    out: dict[str, Any] = {"jobs": n}
    for conc in ((1, 4) if quick else (1, 2, 4, 8)):
        env.reset()
        s = env.settings(concurrency=conc)
        schedule_trivial(env, s, n)
        db = Database(env.url, max_size=conc + 4)
        t0 = time.perf_counter()
        Scheduler(s, db, env.dc).run(burst=True)
        ours = n / (time.perf_counter() - t0)
        db.close()
        t0 = time.perf_counter()
        bare_docker_run(s.image, n, conc, LIMITS)
        bare = n / (time.perf_counter() - t0)
        out[f"c{conc}"] = {"runner_jobs_per_s": ours, "bare_jobs_per_s": bare, "ratio": ours / bare}
    return out


def bench_scale(env: Env, quick: bool) -> dict[str, Any]:
    sizes = (10_000, 100_000) if quick else (10_000, 1_000_000)
    out: dict[str, Any] = {}
    for size in sizes:
        env.reset()
        with psycopg.connect(env.url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO scheduled_jobs (thread_id, name, due_time, script_path) "
                "SELECT 'bench:1', 'j' || g, now() + (g %% 525600) * interval '1 minute', 'jobs/j.py' "
                "FROM generate_series(1, %s) g", (size - 10_000,))
            conn.execute(
                "INSERT INTO scheduled_jobs (thread_id, name, due_time, script_path) "
                "SELECT 'bench:1', 'd' || g, now() - interval '1 second', 'jobs/j.py' FROM generate_series(1, 10000) g")
            conn.execute("ANALYZE scheduled_jobs")
            from runner.store import QUERIES

            # The scheduler's claim: the candidates and their threads' locks, then the claim itself.
            params = {"limit": 16, "owner": "bench", "lease": 60, "lead": 1.0, "per_thread": 1_000_000, "scan": 128}
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + QUERIES["lock_due_threads"], params).fetchall())
            times = []
            for _ in range(50 if quick else 200):
                t0 = time.perf_counter()
                with conn.transaction():
                    ids = [r[0] for r in conn.execute(QUERIES["lock_due_threads"], params).fetchall()]
                    conn.execute(QUERIES["claim_due"], {**params, "ids": ids}).fetchall()
                times.append(time.perf_counter() - t0)
        out[str(size)] = {"claim_p50_ms": pct(times, 50) * 1000, "claim_p99_ms": pct(times, 99) * 1000,
                          "uses_index": "scheduled_jobs_pending_due" in plan}
    out["idle"] = idle_usage(env, 5 if quick else 30)
    return out


def idle_usage(env: Env, seconds: float) -> dict[str, float]:
    """CPU and memory of an idle `runner up` process (nothing due) over ``seconds``."""
    env.reset()
    from tests.integration.helpers import RUNNER_CLI, cli_env  # no RUNNER_*/TELEGRAM_* from the shell

    proc = subprocess.Popen([*RUNNER_CLI, "up", "--no-build"], cwd=ROOT,
                            env=cli_env(env.settings(), RUNNER_LOG_LEVEL="WARNING"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(5)  # start-up settles before the idle measure begins (a warm-up, not a wait for anything)

    def cpu() -> float:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    c0, t0 = cpu(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu(), time.monotonic()
    with open(f"/proc/{proc.pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
    proc.terminate()
    proc.wait(30)
    return {"cpu_percent_of_a_core": 100 * (c1 - c0) / (t1 - t0), "rss_mib": rss}


def bench_delivery(env: Env, quick: bool) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from runner.outbox.telegram import DeliveryConfig, make_bot, telegram_delivery
    from runner.store import Store
    from tests.fakebotapi import FakeBotAPI

    chats, per_chat = (10, 5) if quick else (50, 20)
    env.reset()
    api = FakeBotAPI().start()
    db = Database(env.url, max_size=8)
    try:
        with db.transaction() as conn:
            for c in range(chats):
                for i in range(per_chat):
                    conn.execute("INSERT INTO outbox (job_id, thread_id, job_name, text, chat_id) "
                                 "VALUES (NULL, %s, 'b', %s, %s)", (f"telegram:{c + 1}", f"m{i}", str(c + 1)))
        cfg = DeliveryConfig(per_chat_interval=1.0, global_per_second=30.0)

        async def go() -> float:
            bot = make_bot(api.token, api.url)
            d = telegram_delivery(Store(db), bot, "bench", api.token, cfg)
            t0 = time.perf_counter()
            await d.drain(timeout=600)
            took = time.perf_counter() - t0
            await bot.session.close()
            return took

        took = asyncio.run(go())
        total = chats * per_chat
        bound = max(total / cfg.global_per_second, (per_chat - 1) * cfg.per_chat_interval)
        return {"messages": total, "chats": chats, "seconds": took, "lower_bound_s": bound, "ratio": took / bound,
                "delivered": len(api.sent)}
    finally:
        db.close()
        api.stop()


class _Stamps(io.StringIO):
    """A console stream that notes when each message's block was printed (by its text's marker)."""

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[str, float] = {}

    def write(self, text: str) -> int:
        now = time.monotonic()
        for word in text.split():
            if word.startswith("m#"):
                self.at.setdefault(word, now)
        return super().write(text)


def _queued_to_seen(db: Database, thread: str, n: int, seen: Callable[[int, str], float | None]) -> list[float]:
    """Queue ``n`` messages one at a time (each after the last was seen); queued to seen, in ms."""
    out = []
    for i in range(n):
        marker = f"m#{thread}#{i}"
        t0 = time.monotonic()
        with db.transaction() as conn:
            row = conn.execute("INSERT INTO outbox (job_id, thread_id, job_name, text) VALUES (NULL, %s, 'b', %s) "
                               "RETURNING id", (thread, marker)).fetchone()
        deadline = t0 + 30
        while (at := seen(row["id"], marker)) is None:
            if time.monotonic() > deadline:
                with db.transaction() as conn:
                    state = conn.execute("SELECT id, status, last_error FROM outbox WHERE id = %s", (row["id"],)).fetchone()
                raise RuntimeError(f"message {i} was not delivered within 30 s: {state}")
            time.sleep(0.001)
        out.append((at - t0) * 1000)
    return out


def bench_webhook(env: Env, quick: bool) -> dict[str, Any]:
    """Queued -> the receiver's 200 on loopback, beside queued -> printed by the console sender."""
    sys.path.insert(0, str(ROOT))
    from runner import webhook
    from runner.app import delivery_store
    from runner.outbox import ConsoleSender, OutboxLoop
    from runner.outbox import webhook as hooks
    from tests.webhookreceiver import Receiver

    n = 30 if quick else 200
    env.reset()
    s = env.settings(webhook_allow_addresses=("127.0.0.1:*",))
    secret = webhook.new_secret()
    receiver = Receiver(secret).start()
    db = Database(env.url, max_size=8)
    try:
        with db.transaction() as conn:
            conn.execute("INSERT INTO threads (thread_id, webhook_url, webhook_secret) VALUES ('api:hook', %s, %s)",
                         (f"{receiver.url}/hook", secret))
        stamps = _Stamps()
        console = OutboxLoop(delivery_store(db, s), ConsoleSender(stamps), "bench", lease_seconds=s.lease_seconds)
        sender = hooks.WebhookSender(s.webhook_policy, config=hooks.WebhookConfig(lease_seconds=s.lease_seconds))
        deliverer = hooks.webhook_delivery(delivery_store(db, s), sender, "bench")
        threads = [threading.Thread(target=console.run_blocking, daemon=True),
                   threading.Thread(target=hooks.run_blocking, args=(deliverer, sender), daemon=True)]
        for t in threads:
            t.start()
        try:
            printed = _queued_to_seen(db, "api:plain", n, lambda _id, m: stamps.at.get(m))
            hooked = _queued_to_seen(db, "api:hook", n, lambda i, _m: receiver.arrived.get(i))
        finally:
            console.stop()
            deliverer.stop()
            for t in threads:
                t.join(timeout=30)
        return {"messages": n, "webhook_p50_ms": pct(hooked, 50), "webhook_p99_ms": pct(hooked, 99),
                "console_p50_ms": pct(printed, 50), "console_p99_ms": pct(printed, 99),
                "ratio_p50": pct(hooked, 50) / max(pct(printed, 50), 1e-9), "duplicates": len(receiver.duplicates)}
    finally:
        db.close()
        receiver.stop()


def bench_api(env: Env, quick: bool) -> dict[str, Any]:
    from bench.api import bench_api as api

    env.reset()
    return api(env.url, env.settings(), quick)


def bench_copy(env: Env, quick: bool) -> dict[str, Any]:
    from bench.files import bench_copy as copy

    return copy(env, quick)


def bench_engines(env: Env, quick: bool) -> dict[str, Any]:
    from bench.files import bench_engines as engines

    return engines(env, quick)


SECTIONS = {"lateness": bench_lateness, "overhead": bench_overhead, "throughput": bench_throughput,
            "scale": bench_scale, "delivery": bench_delivery, "webhook": bench_webhook,
            "api": bench_api, "copy": bench_copy, "engines": bench_engines}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="reduced sizes (under about two minutes)")
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    results: dict[str, Any] = {}
    with Env() as env:
        for name in args.only.split(","):
            t0 = time.perf_counter()
            results[name] = SECTIONS[name](env, args.quick)
            print(f"{name}: {results[name]}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    write_report(Path(args.out), results, args.quick)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def write_report(path: Path, results: dict[str, Any], quick: bool) -> None:
    """Append one dated section to BENCHMARKS.md."""
    head = (f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {'bench-quick' if quick else 'full bench'}\n\n"
            f"Machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"Docker {docker.from_env().version().get('Version')}, kernel {platform.release()}.\n\n")
    lines = [head]
    for name, res in results.items():
        lines.append(f"### {name}\n\n")
        for key, value in res.items():
            lines.append(f"- {key}: {_fmt(value)}\n")
        lines.append("\n")
    if not path.exists():
        path.write_text("# Benchmarks\n\nWritten by `make bench` / `make bench-quick` (bench/run.py). "
                        "Each figure is measured beside its baseline in the same run.\n")
    with path.open("a") as f:
        f.writelines(lines)


if __name__ == "__main__":
    main()
