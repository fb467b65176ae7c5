"""The soak: the runner's promises under faults, for an hour (not in CI).

    python -m bench.soak [--minutes 60] [--out BENCHMARKS.md]    (make bench-soak SOAK_ARGS=...)

SOAK_KEEP=1 keeps the runners' logs and data directory for a look afterwards.

Two `runner up` processes share one Postgres and the fake Bot API (tests/fakebotapi.py, on loopback).
One-shot jobs are scheduled without pause on ten Telegram threads; each appends a line to its own
`.ran` file (one line per execution of its script) and writes a message, a third of them long enough
to go out in three parts, each part carrying a marker. Meanwhile faults are injected at random:
kill -9 of a runner (restarted 1-3 s later), SIGSTOP past the lease (then SIGCONT), and Postgres
stopped for 3-30 s. After the last fault both runners run undisturbed until every job is final and
the outbox is empty (or a settling deadline passes). Then it counts, per job and per marker:

- runs executed, lost (scheduled, never executed and not failed with a reason), doubled (executed more
  than once), stuck (not final at the end), failed (with their reasons);
- messages lost (a completed run's marker that never reached the Bot API) and doubled (a marker
  received more than once); a doubled message inside the documented window (a send whose outcome was
  unknown) is counted separately from the runners' `runner_telegram_unknown_outcome_total` if present.

The figures are appended to BENCHMARKS.md. Fault durations here are the faults themselves, not waits
for a condition: everything the soak waits for, it polls with a deadline.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import docker  # noqa: E402
import psycopg  # noqa: E402

from runner import sandbox  # noqa: E402
from runner.service import Jobs  # noqa: E402
from runner.settings import Settings  # noqa: E402
from runner.store import Database, migrate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.fakebotapi import FakeBotAPI  # noqa: E402

CHATS = [str(700000 + i) for i in range(10)]
LEASE = 6
PART = 3000  # characters between markers: a long message is three Telegram parts

SCRIPT = """\
name = {name!r}
with open(f"jobs/{{name}}.ran", "a") as f:
    f.write("ran\\n")
parts = {parts}
text = "".join(f"<{{name}}:{{i}}>" + "." * {pad} for i in range(parts))
with open(f"jobs/{{name}}_message.txt", "w") as f:
    f.write(text)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(predicate: Any, timeout: float, interval: float = 0.5) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = predicate()
        except (psycopg.Error, OSError):
            value = None
        if value:
            return value
        time.sleep(interval)
    return None


class Postgres:
    """A Postgres container on a fixed loopback port, so that a stop and start keeps its address."""

    def __init__(self, dc: docker.DockerClient) -> None:
        self.port = free_port()
        self.container = dc.containers.run(
            "runner-postgres:15", detach=True, name=f"runner-soak-pg-{self.port}",
            environment={"POSTGRES_USER": "soak", "POSTGRES_PASSWORD": "soak", "POSTGRES_DB": "soak"},
            command=["-c", "fsync=off", "-c", "max_connections=200"],
            ports={"5432/tcp": ("127.0.0.1", self.port)}, labels={"io.runner.soak": "true"})
        self.url = f"postgresql://soak:soak@127.0.0.1:{self.port}/soak"
        self.wait()

    def wait(self) -> None:
        if not poll(lambda: psycopg.connect(self.url, connect_timeout=2).close() or True, 60):
            raise SystemExit("the soak's Postgres did not come up")

    def outage(self, seconds: float) -> None:
        self.container.stop(timeout=1)
        time.sleep(seconds)  # the fault: the database is away this long
        self.container.start()

    def remove(self) -> None:
        self.container.remove(force=True)


@dataclass
class Runners:
    """Two `runner up` processes; a killed one is started again under a new id, as compose would."""

    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: collections.Counter[str] = field(default_factory=collections.Counter)

    def start(self, slot: str) -> None:
        self.starts[slot] += 1
        env = {**os.environ, **self.env, "RUNNER_ID": f"soak-{slot}-{self.starts[slot]}",
               "RUNNER_HTTP": f"127.0.0.1:{free_port()}"}
        log = open(self.logs / f"runner-{slot}-{self.starts[slot]}.log", "wb")  # noqa: SIM115 (kept open)
        self.procs[slot] = subprocess.Popen([sys.executable, "-m", "runner.cli", "up", "--no-build"],
                                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, slot: str) -> None:
        self.procs[slot].kill()
        self.procs[slot].wait()

    def freeze(self, slot: str, seconds: float) -> None:
        self.procs[slot].send_signal(signal.SIGSTOP)
        time.sleep(seconds)  # the fault: frozen this long
        self.procs[slot].send_signal(signal.SIGCONT)

    def dead(self) -> list[str]:
        return [slot for slot, p in self.procs.items() if p.poll() is not None]

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


@dataclass
class Tally:
    scheduled: dict[str, int] = field(default_factory=dict)  # job name -> parts
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    unexpected_exits: int = 0
    schedule_refused: int = 0


def schedule_one(jobs: Jobs, tally: Tally, n: int) -> None:
    name = f"s{n:05d}"
    parts = 3 if n % 3 == 0 else 1
    script = SCRIPT.format(name=name, parts=parts, pad=PART)
    try:
        jobs.schedule_job(thread_id=f"telegram:{CHATS[n % len(CHATS)]}", name=name, script_text=script, at="now")
    except Exception:  # the database may be away: this job was never scheduled, so it is not counted
        tally.schedule_refused += 1
        return
    tally.scheduled[name] = parts


def inject(kind: str, pg: Postgres, runners: Runners, tally: Tally) -> None:
    slot = random.choice(list(runners.procs))
    if kind == "kill":
        runners.kill(slot)
        time.sleep(random.uniform(1, 3))  # the fault: down this long
        runners.start(slot)
    elif kind == "freeze":
        runners.freeze(slot, LEASE + random.uniform(3, 8))
    else:
        pg.outage(random.uniform(3, 30))
    tally.faults[kind] += 1


def count(db_url: str, data: Path, bot: FakeBotAPI, tally: Tally) -> dict[str, Any]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT name, status, error_message FROM scheduled_jobs "
                            "WHERE thread_id LIKE 'telegram:%'").fetchall()
    final = {name: (status, error) for name, status, error in rows}
    runs = {}
    for f in data.rglob("*.ran"):
        runs[f.stem] = len(f.read_text().splitlines())
    received = collections.Counter()
    for sent in list(bot.sent):
        for chunk in (sent.text or "").split("<")[1:]:
            marker, _, _ = chunk.partition(">")
            received[marker] += 1
    out: dict[str, Any] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    for name, parts in tally.scheduled.items():
        status, error = final.get(name, ("missing", None))
        executed = runs.get(name, 0)
        out["executed"] += executed
        out["doubled"] += executed > 1
        out["stuck"] += status in ("pending", "running", "missing")
        if status == "failed":
            out["failed"] += 1
            reasons[(error or "")[:60]] += 1
        out["lost"] += executed == 0 and status != "failed"
        for i in range(parts):
            got = received.get(f"{name}:{i}", 0)
            if status == "completed" and executed:
                out["messages lost"] += got == 0
            out["messages doubled"] += got > 1
    out["scheduled"] = len(tally.scheduled)
    return {"counts": dict(out), "reasons": dict(reasons)}


def settle(db_url: str, timeout: float) -> bool:
    def quiet() -> bool:
        with psycopg.connect(db_url, connect_timeout=2) as conn:
            busy = conn.execute("SELECT (SELECT count(*) FROM scheduled_jobs WHERE status IN ('pending', 'running') "
                                "AND due_time < now()) + (SELECT count(*) FROM outbox "
                                "WHERE status IN ('pending', 'sending'))").fetchone()
        return bool(busy) and busy[0] == 0
    return bool(poll(quiet, timeout, interval=2))


def soak(minutes: float, seed: int) -> tuple[dict[str, Any], Tally, bool]:
    random.seed(seed)
    dc = docker.from_env()
    pg = Postgres(dc)
    bot = FakeBotAPI().start()
    tmp = tempfile.TemporaryDirectory(prefix="runner-soak-")
    data = Path(tmp.name) / "files"
    env = {"DATABASE_URL": pg.url, "RUNNER_DATA_DIR": str(data), "RUNNER_LEASE_SECONDS": str(LEASE),
           "RUNNER_POLL_INTERVAL": "2", "RUNNER_CONCURRENCY": "4", "TELEGRAM_BOT_TOKEN": bot.token,
           "TELEGRAM_API_URL": bot.url, "TELEGRAM_PER_CHAT_INTERVAL": "0.05", "RUNNER_LOG_LEVEL": "INFO"}
    tally = Tally()
    runners = Runners(env, Path(tmp.name))
    settled = False
    try:
        migrate(pg.url)
        for slot in ("a", "b"):
            runners.start(slot)
        settings = Settings.from_env({**env, "RUNNER_ID": "soak-scheduler"})
        db = Database(pg.url, max_size=2)
        jobs = Jobs(settings, db)
        end = time.monotonic() + minutes * 60
        next_fault = time.monotonic() + random.uniform(20, 60)
        n = 0
        while time.monotonic() < end:
            schedule_one(jobs, tally, n)
            n += 1
            for slot in runners.dead():  # a runner that exited by itself is a finding, then restarted
                tally.unexpected_exits += 1
                runners.start(slot)
            if time.monotonic() >= next_fault:
                inject(random.choice(["kill", "freeze", "outage"]), pg, runners, tally)
                next_fault = time.monotonic() + random.uniform(20, 60)
            time.sleep(random.uniform(0.5, 2.0))  # the pace of new work, not a wait for anything
        pg.wait()
        settled = settle(pg.url, timeout=300)
        result = count(pg.url, data, bot, tally)
        store = db.one("ensure_store_id")
        db.close()
        if store is not None:  # the soak's database goes with its Postgres: so do its uids on the engine
            sandbox.release_uids(dc, store["value"])
    finally:
        runners.stop()
        bot.stop()
        pg.remove()
        if os.environ.get("SOAK_KEEP"):
            print(f"the runners' logs and data are kept in {tmp.name}")
        else:
            tmp.cleanup()
    return result, tally, settled


def report(result: dict[str, Any], tally: Tally, settled: bool, minutes: float) -> str:
    c = result["counts"]
    cols = ["scheduled", "executed", "lost", "doubled", "stuck", "failed", "messages lost", "messages doubled"]
    lines = [
        f"\n## Soak, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({platform.node()}, {minutes:g} min)\n",
        f"Faults: {dict(tally.faults)}; runners that exited by themselves: {tally.unexpected_exits}; "
        f"jobs the scheduler could not schedule during an outage (not counted): {tally.schedule_refused}; "
        f"settled: {'yes' if settled else 'NO (deadline passed)'}.\n",
        "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
        "| " + " | ".join(str(c.get(k, 0)) for k in cols) + " |",
    ]
    if result["reasons"]:
        lines.append("\nFailure reasons: " + "; ".join(f"{k!r} x{v}" for k, v in result["reasons"].items()))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    result, tally, settled = soak(args.minutes, args.seed)
    text = report(result, tally, settled, args.minutes)
    print(text)
    with open(args.out, "a") as f:
        f.write(text)
    bad = {k: v for k, v in result["counts"].items() if k in ("lost", "doubled", "stuck", "messages lost") and v}
    sys.exit(1 if bad or tally.unexpected_exits or not settled else 0)


if __name__ == "__main__":
    main()
