"""Runners on two Docker engines over one Postgres, the thread files in the database (issue 17).

Two `runner up` subprocesses, one on the host's engine and one on a second engine the test starts itself
(tests/engines.py), on the suite's Postgres with RUNNER_FILES=postgres and a data directory each (none
shared), their messages printed to their consoles. Which engine ran what is read from the engines
themselves: each engine's stream of container starts, labelled with the job and the runner.

Also: a runner refuses RUNNER_FILES=local with an engine that is not on this host, and doctor says so."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest

from runner import sandbox
from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database
from runner.store.files import FilesStore
from runner.threads import ThreadId

from ..engines import SecondEngine
from .helpers import ROOT, RUNNER_CLI, cli_env, free_port, run_burst, wait_for
from .test_copied_runs import HOSTILE_ENTRIES, PAST_LIMITS, check_hostile_entries_refused

LEASE = 6  # seconds: recovery in test time


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(files="postgres")


# --- the runners and what the engines saw ---------------------------------------------------------------

class Runner:
    """`runner up` in a subprocess on one engine: its own data directory, its console in a file."""

    def __init__(self, settings: Settings, where: Path, name: str, engine: dict[str, str], *args: str,
                 **env: str) -> None:
        self.name = name
        self.data_dir = where / f"data-{name}"
        tag = os.urandom(3).hex()
        self.out, self.err = where / f"{name}-{tag}.out", where / f"{name}-{tag}.err"
        self.url = f"http://127.0.0.1:{free_port()}"
        full = cli_env(settings, RUNNER_DATA_DIR=str(self.data_dir), RUNNER_ID=name, RUNNER_POLL_INTERVAL="1",
                       RUNNER_HTTP=self.url.removeprefix("http://"), **engine, **env)
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([*RUNNER_CLI, "up", "--no-build", *args], env=full, cwd=ROOT,
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def wait_healthy(self) -> Runner:
        import httpx

        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}: {self.logged()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 90, f"runner {self.name} to answer /healthz")
        return self

    def printed(self) -> str:
        return self.out.read_text(errors="replace")

    def logged(self) -> str:
        return self.err.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM, and wait for the running jobs to finish and the process to exit; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


class Starts:
    """The job containers an engine starts for the test's database, as they start (the engine's own event
    stream, subscribed before anything runs: a query of past events would see only the last few hundred)."""

    def __init__(self, dc: docker.DockerClient, store: str) -> None:
        self.seen: list[dict[str, str]] = []
        self._stream = dc.events(decode=True, filters={
            "type": "container", "event": "start", "label": [f"{sandbox.LABEL_STORE}={store}", f"{sandbox.LABEL_ROLE}=job"]})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for event in self._stream:
                self.seen.append(event["Actor"]["Attributes"])
        except Exception:  # the engine went away (stopped by the test), or close() ended the stream
            pass

    def jobs(self) -> list[int]:
        return [int(a[sandbox.LABEL_JOB]) for a in list(self.seen)]

    def owners(self) -> set[str]:
        return {a[sandbox.LABEL_OWNER] for a in list(self.seen)}

    def close(self) -> None:
        self._stream.close()
        self._reader.join(timeout=10)


class Two:
    """The test's two engines (clients of each), the runners it starts and the event streams it opens; all
    stopped and closed after the test, and nothing of the test's database left on the second engine."""

    def __init__(self, settings: Settings, where: Path, second: SecondEngine, host: docker.DockerClient,
                 store: str) -> None:
        self.settings, self.where, self.second, self.store = settings, where, second, store
        self.host, self.other = host, second.client()
        self.runners: list[Runner] = []
        self.streams: list[Starts] = []

    def on_host(self, name: str, *args: str, **env: str) -> Runner:
        return self._runner(name, {"DOCKER_HOST": sandbox.DEFAULT_HOST}, *args, **env)

    def on_second(self, name: str, *args: str, **env: str) -> Runner:
        return self._runner(name, self.second.env, *args, **env)

    def _runner(self, name: str, engine: dict[str, str], *args: str, **env: str) -> Runner:
        runner = Runner(self.settings, self.where, name, engine, *args, **env)
        self.runners.append(runner)
        return runner

    def starts(self, dc: docker.DockerClient) -> Starts:
        stream = Starts(dc, self.store)
        self.streams.append(stream)
        return stream

    def containers(self, dc: docker.DockerClient, status: str | None = None) -> list[Any]:
        return [c for c in sandbox.managed_containers(dc, self.store)
                if c.labels.get(sandbox.LABEL_ROLE) == "job" and (status is None or c.status == status)]

    def close(self) -> None:
        try:
            for runner in self.runners:
                runner.stop()
            for stream in self.streams:
                stream.close()
            if self.second.proc is None:  # stopped by a test that failed before it started it again
                self.second.start()
            left = sandbox.managed_containers(self.other, self.store)
            for c in left:
                c.remove(force=True, v=True)
            sandbox.release_uids(self.other, self.store)
        finally:
            self.other.close()
        tracebacks = [r.name for r in self.runners if "Traceback" in r.logged()]
        assert not tracebacks, f"a runner printed a traceback: {tracebacks}"
        assert not left, f"left on the second engine: {[c.name for c in left]}"


@pytest.fixture
def two(settings: Settings, tmp_path: Path, second_engine: SecondEngine, docker_client: docker.DockerClient,
        store_id: str) -> Iterator[Two]:
    both = Two(settings, tmp_path, second_engine, docker_client, store_id)
    try:
        yield both
    finally:
        both.close()


def _marking(name: str, sleep: float = 0, message: str | None = None) -> str:
    """A script that appends its name to the thread's marks.txt (a file of the store: runs of a thread are
    one at a time, so each run sees the marks of the runs before it), sleeps, and leaves its message."""
    return (f"with open('jobs/marks.txt', 'a') as f:\n    f.write('{name}\\n')\n"
            f"import time\nprint('begin', flush=True)\ntime.sleep({sleep})\n"
            f"open('jobs/{name}_message.txt', 'w').write({message or f'done {name}'!r})\n")


def _files(db: Database, thread: str) -> dict[str, bytes]:
    return {name: data for name, (data, _) in FilesStore(db).thread_files(thread).items()}


def _header(kind: str, thread: str, job: dict[str, Any]) -> str:
    return f"--- {kind} for {thread} from job {job['name']} (run {job['id']}) ---"


def _nothing_on_disk(*runners: Runner) -> None:
    """No thread's files on either runner's disk (the data directories hold no thread directory)."""
    for r in runners:
        found = sorted(p.name for p in r.data_dir.iterdir()) if r.data_dir.exists() else []
        assert not [n for n in found if re.fullmatch(r"[a-z][a-z0-9]*_[a-z0-9-]+", n)], (r.name, found)


# --- 1. many jobs over both engines --------------------------------------------------------------------

THREADS = [f"console:{100 + t}" for t in range(10)]


def _schedule_thread(jobs: Jobs, thread: str) -> list[dict[str, Any]]:
    """The thread's seed file through the store, then its ten jobs: each reads the seed, writes a file of
    its own and a message, and marks that it ran."""
    jobs.files.write(ThreadId.parse(thread), "seed.txt", f"seed of {thread}".encode())
    made = []
    for j in range(10):
        name = f"t{thread.rpartition(':')[2]}j{j}"
        source = (f"seed = open('jobs/seed.txt').read()\nopen('jobs/{name}_out.txt', 'w').write(seed + ' {name}')\n"
                  + _marking(name))
        made.append(jobs.schedule_job(thread_id=thread, name=name, at="now", script_text=source))
    return made


@pytest.mark.timeout(420)
def test_a_hundred_jobs_run_once_each_over_two_engines_and_their_messages_are_delivered_once(
        two: Two, jobs: Jobs, db: Database) -> None:
    on_host, on_second = two.starts(two.host), two.starts(two.other)
    runners = [two.on_host("two-host", RUNNER_CONCURRENCY="4"), two.on_second("two-second", RUNNER_CONCURRENCY="4")]
    for r in runners:
        r.wait_healthy()
    with ThreadPoolExecutor(max_workers=5) as pool:  # scheduled from several threads at once, as callers would
        made = [job for batch in pool.map(lambda t: _schedule_thread(jobs, t), THREADS) for job in batch]
    assert len(made) == 100
    ids = {j["id"] for j in made}

    def finished() -> bool:
        return not jobs.list_jobs(status="pending", limit=200) and not jobs.list_jobs(status="running", limit=200)

    wait_for(finished, 300, "the hundred jobs to finish", interval=0.5)
    rows = {i: jobs.get_job(i) for i in ids}
    assert {r["status"] for r in rows.values()} == {"completed"}, \
        [r["error_message"] for r in rows.values() if r["status"] != "completed"][:5]
    assert {r["attempts"] for r in rows.values()} == {1}

    def delivered() -> bool:
        return all(m["status"] == "sent" for i in ids for m in db.all("messages_for_job", {"job_id": i}))

    wait_for(delivered, 60, "every message to be delivered", interval=0.5)
    for r in runners:
        assert r.stop() == 0, r.logged()[-2000:]

    # Exactly once: one container start per job over both engines, and one mark per job in its thread.
    started = Counter(on_host.jobs() + on_second.jobs())
    assert set(started) == ids and set(started.values()) == {1}, [i for i, n in started.items() if n != 1]
    assert on_host.jobs() and on_second.jobs(), (len(on_host.jobs()), len(on_second.jobs()))  # spread over both
    assert on_host.owners() == {"two-host"} and on_second.owners() == {"two-second"}
    for thread in THREADS:
        files = _files(db, thread)
        names = sorted(j["name"] for j in made if j["thread_id"] == thread)
        assert sorted(files["marks.txt"].decode().split()) == names, thread
        for name in names:
            assert files[f"{name}_out.txt"] == f"seed of {thread} {name}".encode()
            assert f"{name}_message.txt" not in files  # queued as the message, not kept as a file
    # Every message delivered once, by one runner or the other.
    printed = "\n".join(r.printed() for r in runners)
    for job in made:
        assert printed.count(_header("message", job["thread_id"], job)) == 1, job["name"]
        assert printed.count(f"| done {job['name']}\n") == 1, job["name"]
    _nothing_on_disk(*runners)


# --- 2. a chain over both engines -------------------------------------------------------------------------

CHAIN = "console:200"
FETCH = ("import json, time\ntime.sleep(8)\n"
         "json.dump({'orders': [10.5, 12.25, 7.25], 'by': 'fetch'}, open('jobs/fetch_output.json', 'w'))\n")
REPORT = ("import json\nd = json.load(open('jobs/fetch_output.json'))\n"
          "open('jobs/report_message.txt', 'w').write(f\"{len(d['orders'])} orders by {d['by']}, total {sum(d['orders'])}\")\n")


@pytest.mark.timeout(300)
def test_a_chain_runs_its_first_job_on_one_engine_and_its_second_on_the_other(
        two: Two, jobs: Jobs, db: Database) -> None:
    on_host, on_second = two.starts(two.host), two.starts(two.other)
    first = jobs.schedule_job(thread_id=CHAIN, name="fetch", at="now", script_text=FETCH)
    second = jobs.schedule_job(thread_id=CHAIN, name="report", after="fetch", script_text=REPORT)
    one = two.on_host("two-chain-1").wait_healthy()
    wait_for(lambda: two.containers(two.host, "running"), 60, "the first job running on the host's engine")
    # Asked to stop while the first job runs: it finishes that run (which makes the second due) and
    # claims nothing more, so the second is left to the runner on the other engine.
    assert one.stop() == 0, one.logged()[-2000:]
    assert jobs.get_job(first["id"])["status"] == "completed", jobs.get_job(first["id"])["error_message"]
    assert (jobs.get_job(second["id"])["status"], jobs.get_job(second["id"])["attempts"]) == ("pending", 0)

    burst = two.on_second("two-chain-2", "--burst")
    assert burst.proc.wait(timeout=120) == 0, burst.logged()[-2000:]
    row = jobs.get_job(second["id"])
    assert row["status"] == "completed", row["error_message"]
    assert on_host.jobs() == [first["id"]] and on_second.jobs() == [second["id"]]
    assert f"{_header('message', CHAIN, second)}\n| 3 orders by fetch, total 30.0\n" in burst.printed()
    assert _files(db, CHAIN)["fetch_output.json"].startswith(b'{"orders"')
    _nothing_on_disk(one, burst)


# --- 3. a runner and its engine lost in the middle of runs --------------------------------------------------

@pytest.mark.timeout(420)
def test_a_killed_runner_on_a_stopped_engine_is_recovered_by_the_other_and_its_orphans_are_swept(
        two: Two, jobs: Jobs, db: Database) -> None:
    lease = {"RUNNER_LEASE_SECONDS": str(LEASE)}
    sleepers = [jobs.schedule_job(thread_id=f"console:{300 + i}", name=f"sleep{i}", at="now",
                                  limits=Limits(timeout_seconds=150), script_text=_marking(f"sleep{i}", 120))
                for i in range(2)]
    due = datetime.now(UTC) + timedelta(seconds=25)  # its container made ahead of its time, never started
    ahead = jobs.schedule_job(thread_id="console:302", name="ahead", at=due.isoformat(), script_text=_marking("ahead"))
    doomed = two.on_second("two-doomed", RUNNER_PREPARE_SECONDS="30", **lease).wait_healthy()
    for job, status in [(s, "running") for s in sleepers] + [(ahead, "created")]:
        wait_for(lambda j=job, st=status: [c for c in two.containers(two.other, st)
                                          if c.labels[sandbox.LABEL_JOB] == str(j["id"])],
                 90, f"{job['name']} {status} on the second engine")
    survivor = two.on_host("two-survivor", **lease).wait_healthy()
    on_host = two.starts(two.host)

    doomed.kill()
    two.second.stop()  # the engine goes too: the survivor can find none of those runs' containers
    for job in sleepers:
        wait_for(lambda j=job: jobs.get_job(j["id"])["status"] != "running", 90, f"{job['name']} to be recovered")
        row = jobs.get_job(job["id"])
        assert (row["status"], row["error_message"]) == ("failed", "runner stopped during the run")
        notice = f"Job {job['name']} failed: runner stopped during the run"
        assert [(m["kind"], m["text"]) for m in db.all("messages_for_job", {"job_id": job["id"]})] == [("failure", notice)]
        wait_for(lambda j=job, n=notice: f"{_header('failure notice', j['thread_id'], j)}\n| {n}\n" in survivor.printed(),
                 30, f"the chat of {job['name']} to be told")
        assert "marks.txt" not in _files(db, job["thread_id"])  # its container is lost, and its writes with it
    # Never started: it runs again, on the survivor's engine, at its time.
    wait_for(lambda: jobs.get_job(ahead["id"])["status"] == "completed", 90, "ahead to run again")
    assert _files(db, ahead["thread_id"])["marks.txt"] == b"ahead\n"
    wait_for(lambda: _header("message", ahead["thread_id"], ahead) in survivor.printed(), 30, "ahead's message")
    # And the survivor keeps going.
    later = [jobs.schedule_job(thread_id=f"console:{310 + i}", name=f"later{i}", at="now", script_text=_marking(f"later{i}"))
             for i in range(3)]
    wait_for(lambda: all(jobs.get_job(j["id"])["status"] == "completed" for j in later), 90, "the later jobs")
    assert sorted(on_host.jobs()) == sorted(j["id"] for j in [ahead, *later])

    # The stopped engine comes back with those runs' containers, none of them running, and the killed
    # runner, started again on it, sweeps them.
    two.second.start()
    two.other.close()
    two.other = two.second.client()
    on_second = two.starts(two.other)
    left = two.containers(two.other)
    assert sorted(int(c.labels[sandbox.LABEL_JOB]) for c in left) == sorted(j["id"] for j in [*sleepers, ahead])
    assert not [c.name for c in left if c.status == "running"]
    again = two.on_second("two-doomed", **lease).wait_healthy()
    wait_for(lambda: not sandbox.managed_containers(two.other, two.store), 60, "the orphans to be swept")
    wait_for(lambda: not sandbox.managed_volumes(two.other, two.store), 30, "their volumes to go with them")
    assert again.logged().count("removed orphaned container") == 3, again.logged()[-3000:]
    assert on_second.jobs() == []  # nothing of those runs started again there
    for job in sleepers:
        assert jobs.get_job(job["id"])["error_message"] == "runner stopped during the run"
        assert len(db.all("messages_for_job", {"job_id": job["id"]})) == 1
    assert (jobs.get_job(ahead["id"])["status"], jobs.get_job(ahead["id"])["attempts"]) == ("completed", 1)
    _nothing_on_disk(doomed, survivor)


# --- 4. local files need an engine on this host --------------------------------------------------------------

def _cli(settings: Settings, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*RUNNER_CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, env=cli_env(settings, **env))
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def _refusal(address: str) -> str:
    return (f"RUNNER_FILES=local bind-mounts this host's data directory into each job container, which the "
            f"Docker engine at {address} cannot do (it is not reached through a socket on this host): set "
            "RUNNER_FILES=postgres to keep the thread files in the database and copy them into each run")


def _file_store_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if " file store: " in line)


@pytest.mark.timeout(300)
def test_local_files_with_an_engine_on_another_host_are_refused_saying_to_set_postgres(
        settings: Settings, new_engine: Callable[..., SecondEngine]) -> None:
    engine = new_engine(tls=True)  # on this machine, but to the runner a remote engine: reached over TCP
    tls, address = engine.tls_env, engine.tls_env["DOCKER_HOST"]
    local, postgres = {"RUNNER_FILES": "local"}, {"RUNNER_FILES": "postgres"}
    for env, shown in ((tls, address), ({"DOCKER_HOST": "ssh://runner@192.0.2.1"}, "ssh://runner@192.0.2.1:22")):
        t0 = time.monotonic()
        up = _cli(settings, {**env, **local}, "up", "--no-build")
        assert (up.returncode, up.stdout, up.stderr) == (1, "", f"runner: {_refusal(shown)}\n")
        assert time.monotonic() - t0 < 30, "refused before connecting (nothing answers at 192.0.2.1)"
    # The same engine with the files in the database, and local files on an engine of this host's socket
    # (not the default one), get past it: to the engine, which has no job image.
    for env in ({**tls, **postgres}, {**engine.env, **local}):
        up = _cli(settings, env, "up", "--no-build")
        assert up.returncode == 1 and f"image {settings.image} not found" in up.stderr, up.stderr
    doctor = _cli(settings, {**tls, **local}, "doctor", "--quick")
    assert doctor.returncode == 1
    assert _file_store_line(doctor.stdout) == f"FAIL  file store: {_refusal(address)}"
    assert _file_store_line(_cli(settings, {**tls, **postgres}, "doctor", "--quick").stdout) == (
        "OK    file store: postgres: the thread files are in the database, copied into each run")
    assert _file_store_line(_cli(settings, {**engine.env, **local}, "doctor", "--quick").stdout).startswith(
        "OK    file store: local: the thread files are in ")


# --- 4. hostile tar streams from a run on the second engine -----------------------------------------------

def _run_on(engine: SecondEngine, store_id: str, jobs: Jobs, settings: Settings, db: Database, name: str,
            source: str) -> dict:
    """One run of ``source`` in HOSTILE_THREAD by an in-process runner on ``engine``; the engine still
    answers after it, with nothing of the run left on it."""
    job = jobs.schedule_job(thread_id=HOSTILE_THREAD, name=name, script_text=source, at="now")
    client = engine.client()
    try:
        run_burst(settings, db, client)
        assert client.ping()
        assert not sandbox.managed_containers(client, store_id)
    finally:
        client.close()
    return jobs.get_job(job["id"])


HOSTILE_THREAD = "telegram:4242"


def test_links_and_fifos_left_by_a_run_on_the_second_engine_are_refused_entry_by_entry(
        jobs: Jobs, settings: Settings, db: Database, second_engine: SecondEngine, store_id: str) -> None:
    row = _run_on(second_engine, store_id, jobs, settings, db, "hostile", HOSTILE_ENTRIES)
    check_hostile_entries_refused(row, _files(db, HOSTILE_THREAD))


@pytest.mark.parametrize(("source", "reason"), PAST_LIMITS)
def test_a_run_past_the_limits_on_the_second_engine_fails_with_the_reason_and_keeps_nothing(
        jobs: Jobs, settings: Settings, db: Database, second_engine: SecondEngine, store_id: str, source: str,
        reason: str) -> None:
    jobs.files.write(ThreadId.parse(HOSTILE_THREAD), "keep.txt", b"before")
    settings = settings.with_(disk_mb=8, max_files=200, max_file_mb=1100, timeout_seconds=60)
    row = _run_on(second_engine, store_id, jobs, settings, db, "flood", "open('jobs/keep.txt', 'w').write('after')\n" + source)
    assert row["status"] == "failed"
    assert reason in row["error_message"] and "none of the run's changes" in row["error_message"], row["error_message"]
    assert _files(db, HOSTILE_THREAD)["keep.txt"] == b"before"  # none of its writes, not even the small one
