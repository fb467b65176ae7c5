"""Red team, second pass (issue 11's neighbours). Every test here asserts the safe behaviour and
FAILED on the code it was written against: the attack succeeded. Real containers, a real database.
The holes still open are marked xfail(strict=True): each says why, and closing it turns the mark into
a failure to remove."""

from __future__ import annotations

from collections.abc import Callable

import docker
import pytest

from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database
from runner.threads import jobs_dir

from ..integration.helpers import run_burst
from .helpers import FALLOCATOR, HOLD_INOTIFY, PER_USER_COUNTS, PROBE_INOTIFY, allocated

THREAD = "telegram:4242"


# --- (9) one job borrows another job's grant: the script is not pinned ----------------------------------

SPOOFER = """
import os
with open('jobs/.new', 'w') as f:   # bank.py is root's 0644, but jobs/ is the thread uid's
    f.write("import os\\n"
            "print('SPOOFED CODE RAN; proxy socket:', os.path.exists('/run/egress/proxy.sock'))\\n"
            "open('jobs/bank_message.txt', 'w').write('spoofed: ' + os.environ.get('HTTPS_PROXY', ''))\\n")
os.replace('jobs/.new', 'jobs/bank.py')
print('rewrote bank.py')
"""

BANK = "print('the approved bank script')\n"


def test_a_job_cannot_run_code_another_job_wrote_with_its_grant(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """Issue 11 item 9, unchanged: job ``spoofer`` (no grant) rewrites ``jobs/bank.py``; bank's next run
    (granted api.granted.test) runs the spoofer's code with bank's proxy. The safe outcome is that
    bank runs the script approved at scheduling, or fails saying the script changed."""
    spoofer = jobs.schedule_job(thread_id=THREAD, name="spoofer", script_text=SPOOFER, at="now")
    jobs.schedule_job(thread_id=THREAD, name="bank", script_text=BANK, after="spoofer", allow_hosts=["api.granted.test"])
    run_burst(settings, db, docker_client)
    first = jobs.get_job(spoofer["id"])
    assert first["status"] == "completed", (first["error_message"], first["output_tail"])
    assert b"SPOOFED" in (jobs_dir(settings.data_dir, THREAD) / "bank.py").read_bytes()
    row = _last_run(db, "bank")
    assert "SPOOFED CODE RAN" not in (row["output_tail"] or ""), (
        f"bank ran code the spoofer wrote, with bank's grant: {row['output_tail']!r}")
    assert row["status"] == "failed" or "the approved bank script" in (row["output_tail"] or "")


# --- (9') the same, with the approved script untouched: jobs/ is first on the script's import path ------

SHADOWER = """
with open('jobs/json.py', 'w') as f:   # jobs/ is sys.path[0] of every job of the thread
    f.write("import os\\n"
            "print('SHADOWED MODULE RAN; proxy socket:', os.path.exists('/run/egress/proxy.sock'))\\n"
            "def dumps(x): return 'forged'\\n")
print('planted jobs/json.py')
"""

REPORTER = "import json\nprint('report', json.dumps({'ok': 1}))\n"


def test_a_job_cannot_plant_a_module_that_a_granted_job_imports(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """A job cannot make another job run its code by shadowing a standard-library module: the launcher
    puts jobs/ (writable by every job of the thread) first on ``sys.path``, so the granted job's own,
    unchanged and approved script, ``import json``, runs the planter's jobs/json.py with the grant.
    Pinning the script's hash alone (item 9's fix) does not close this route."""
    planter = jobs.schedule_job(thread_id=THREAD, name="planter", script_text=SHADOWER, at="now")
    jobs.schedule_job(thread_id=THREAD, name="reporter", script_text=REPORTER, after="planter",
                      allow_hosts=["api.granted.test"])
    run_burst(settings, db, docker_client)
    first = jobs.get_job(planter["id"])
    assert first["status"] == "completed", (first["error_message"], first["output_tail"])
    row = _last_run(db, "reporter")
    assert "SHADOWED MODULE RAN" not in (row["output_tail"] or ""), (
        f"the granted job ran a module another job planted in jobs/: {row['output_tail']!r}")
    assert row["status"] == "completed" and '{"ok": 1}' in row["output_tail"], row


def _last_run(db: Database, name: str) -> dict:
    """The latest finished run of job ``name`` of THREAD."""
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT * FROM scheduled_jobs WHERE thread_id = %(t)s AND name = %(n)s"
            " AND status IN ('completed', 'failed') ORDER BY id DESC LIMIT 1", {"t": THREAD, "n": name}).fetchone()
    assert row is not None, "the job never ran"
    return row


# --- (6') host CPU spent outside the job's limits: the per-run proxy has no CPU limit --------------------

PROXY_BURNER = r"""
import socket, time
# Straight to the proxy's socket (the relay is only a convenience): requests for a name that is not
# granted, each with many small header lines, pipelined. Sending them is a memcpy for the job; squid
# parses every header line, checks its ACLs, writes a 403 page and an access-log line for each.
head = b"GET http://not-granted.test/ HTTP/1.1\r\nHost: not-granted.test\r\n"
head += b"".join(b"X-%d: a\r\n" % i for i in range(2000)) + b"\r\n"
burst = head * 4
socks = []
end = time.time() + 9
while time.time() < end:
    while len(socks) < 16:
        s = socket.socket(socket.AF_UNIX)
        s.connect('/run/egress/proxy.sock')
        s.setblocking(False)
        socks.append(s)
    for s in list(socks):
        try:
            s.send(burst)
            s.recv(1 << 20)
        except BlockingIOError:
            pass
        except OSError:
            socks.remove(s)
            s.close()
print('done')
"""


def _cpu_seconds(container_id: str) -> float | None:
    for path in (f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage",
                 f"/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpuacct.usage"):
        try:
            with open(path) as f:
                return int(f.read()) / 1e9
        except OSError:
            continue
    try:  # cgroup v2
        with open(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat") as f:
            return int(next(line.split()[1] for line in f if line.startswith("usage_usec"))) / 1e6
    except (OSError, StopIteration):
        return None


def test_a_granted_job_cannot_make_its_proxy_spend_cpu_beyond_the_jobs_limit(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, store_id: str) -> None:
    """A granted job limited to 0.1 CPU for 10 s (at most 1 CPU second) drives its egress proxy, which
    has no CPU limit (sandbox.EgressProxy.start sets memory and pids, not nano_cpus), far past that: the
    host pays for the job's work outside the job's limits."""
    import threading
    import time

    from runner import sandbox

    seen: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            ours = [f"{sandbox.LABEL_ROLE}=egress", f"{sandbox.LABEL_STORE}={store_id}"]  # not another session's
            for c in docker_client.containers.list(filters={"label": ours}):
                if c.labels.get(sandbox.LABEL_THREAD) == THREAD:
                    used = _cpu_seconds(c.id)
                    if used is not None:
                        seen[c.id] = max(seen.get(c.id, 0.0), used)
            time.sleep(0.2)  # the sampling rate of the watcher

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        job = jobs.schedule_job(thread_id=THREAD, name="burner", script_text=PROXY_BURNER, at="now",
                                allow_hosts=["api.granted.test"], limits=Limits(timeout_seconds=10, cpus=0.1))
        run_burst(settings, db, docker_client)
    finally:
        done.set()
        watcher.join()
    row = jobs.get_job(job["id"])
    assert seen, f"the proxy was never seen running: {row['status']} {row['error_message']}"
    proxy_cpu = max(seen.values())
    job_allowance = 0.1 * 10
    assert proxy_cpu <= 2 * job_allowance, (
        f"the job's proxy used {proxy_cpu:.1f} CPU s for a job allowed {job_allowance:.1f} CPU s "
        f"({row['status']}: {row['error_message']}; {row['output_tail']!r})")


# --- (3') the disk limit is a walk, not a quota: fallocate outruns it ----------------------------------

@pytest.mark.xfail(strict=True, reason="open by default: jobs/ has no kernel quota unless RUNNER_JOBS_QUOTA=loop "
                   "(test_jobsquota.py runs this attack with it), and fallocate allocates past the limit before "
                   "the next walk (docs/security.md, why the jobs/ limit is a walk)")
def test_the_jobs_disk_limit_holds_against_fallocate(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """A thread's jobs/ is limited to RUNNER_DISK_MB (50 MiB), but the limit is a walk every 0.25-2 s
    (execute.disk_watchdog), not a quota the kernel enforces: posix_fallocate reserves 48 MiB of
    real blocks per call in milliseconds, so before the first walk the job holds 40x the limit on the
    host's disk, and the blocks stay there after the job is killed (they are the thread's files)."""
    import shutil

    d = jobs_dir(settings.data_dir, THREAD)
    try:
        job = jobs.schedule_job(thread_id=THREAD, name="fallocator", script_text=FALLOCATOR, at="now")
        run_burst(settings, db, docker_client)
        row = jobs.get_job(job["id"])
        held = allocated(d)
        limit = settings.disk_mb << 20
        assert held <= 2 * limit, (
            f"jobs/ holds {held >> 20} MiB of allocated blocks on the host after the run, the limit is "
            f"{settings.disk_mb} MiB ({row['status']}: {row['error_message']}; {row['output_tail']!r})")
    finally:
        shutil.rmtree(d / "blocks", ignore_errors=True)


# --- (6'') host CPU spent outside the job's limits: the engine's log copier --------------------------

LOG_FLOOD = """
import os, time
end = time.time() + 9
chunk = b'\\n' * 65536   # every newline is one log entry the engine time-stamps, JSON-encodes and writes
while time.time() < end:
    os.write(1, chunk)
"""


def _engine_cpu_seconds() -> float:
    """CPU time (user + system) of the engine's own processes: dockerd, containerd and every shim."""
    import os

    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in ("dockerd", "containerd") or comm.startswith("containerd-shim"):
            total += int(fields[11]) + int(fields[12])  # utime, stime (after the state field)
    return total / os.sysconf("SC_CLK_TCK")


def _host_cost_of_a_run(jobs: Jobs, settings: Settings, db: Database, dc: docker.DockerClient, name: str,
                        script: str, measure: Callable[[], float]) -> tuple[dict, float]:
    """Run ``script`` once as job ``name``, limited to 0.1 CPU for 10 s; return its row and how much a
    host-wide counter (``measure``) grew meanwhile."""
    job = jobs.schedule_job(thread_id=THREAD, name=name, script_text=script, at="now",
                            limits=Limits(timeout_seconds=10, cpus=0.1))
    before = measure()
    run_burst(settings, db, dc)
    return jobs.get_job(job["id"]), measure() - before


@pytest.mark.xfail(strict=True, reason="open: the engine's log driver spends host CPU on every line a job "
                   "prints, outside the job's CPU limit (docs/security.md, what is not isolated)")
def test_a_jobs_output_cannot_make_the_engine_spend_cpu_beyond_the_jobs_limit(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """A job limited to 0.1 CPU for 10 s (1 CPU second) writes empty lines: each is one json-file log
    entry that dockerd (outside the job's cgroup) time-stamps, encodes, writes and rotates at 1 MiB
    (sandbox.container_config's log_config). The output cap bounds what is kept, not what the host
    spends: the engine burns several CPU seconds for the job's one."""
    row, spent = _host_cost_of_a_run(jobs, settings, db, docker_client, "flood", LOG_FLOOD, _engine_cpu_seconds)
    allowance = 0.1 * 10
    assert spent <= 2 * allowance + 1.0, (  # 1 s for creating, starting and removing the container
        f"the engine spent {spent:.1f} CPU s on a job allowed {allowance:.1f} CPU s "
        f"({row['status']}: {row['error_message']})")


# --- a job speaks as another: a sibling running at the same time writes its message --------------------

IMPERSONATOR = """
import os, time
end = time.time() + 8
while time.time() < end:   # bank's message file, kept in place until bank's run is read back
    with open('jobs/.m', 'w') as f:
        f.write('FORGED: your account is locked, log in at https://evil.test/bank')
    os.replace('jobs/.m', 'jobs/bank_message.txt')
    time.sleep(0.05)
"""

QUIET_BANK = "import time\ntime.sleep(3)\nprint('bank ran and wrote no message')\n"


def test_a_job_cannot_send_a_message_as_another_job(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """The runner drops a ``bank_message.txt`` left before bank's run (execute.Executor.run_job: "files present
    before the run are not this run's"), but one that a sibling job of the thread writes while bank
    runs is delivered as bank's own: "message ... from job bank". Any job can speak for any other
    job of its thread (the same goes for ``bank_attachments/``)."""
    jobs.schedule_job(thread_id=THREAD, name="impersonator", script_text=IMPERSONATOR, at="now")
    bank = jobs.schedule_job(thread_id=THREAD, name="bank", script_text=QUIET_BANK, at="now")
    printed = run_burst(settings.with_(concurrency=2), db, docker_client)
    row = jobs.get_job(bank["id"])
    assert row["status"] == "completed", row["error_message"]
    forged = [block for block in printed.split("--- ") if "from job bank" in block and "FORGED" in block]
    assert not forged, f"a message another job wrote was delivered as bank's: {forged[0]!r}"


# --- (7) the database keeps every attachment it has delivered ----------------------------------------

ATTACHER = """
import os
os.makedirs('jobs/attacher_attachments', exist_ok=True)
with open('jobs/attacher_attachments/blob.bin', 'wb') as f:
    f.write(os.urandom(1 << 20))   # 1 MiB that does not compress
open('jobs/attacher_message.txt', 'w').write('here is a file')
"""


def test_delivered_attachments_do_not_stay_in_the_database(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """Issue 11 item 7, unchanged: with RUNNER_HISTORY=1 each run's attachment bytes stay in
    ``outbox_attachments`` after delivery (mark_sent only sets a flag; nothing deletes or prunes the
    outbox), so a job that attaches 1 MiB each run grows the database by 1 MiB a run, for ever."""
    s = settings.with_(history_keep=1)
    for _ in range(3):
        jobs.schedule_job(thread_id=THREAD, name="attacher", script_text=ATTACHER, at="now")
        printed = run_burst(s, db, docker_client)
        assert "[attachment: blob.bin, 1048576 bytes]" in printed, printed
    with db.transaction() as conn:
        kept = conn.execute(
            "SELECT count(*) AS n, coalesce(sum(length(a.content)), 0) AS bytes FROM outbox_attachments a"
            " JOIN outbox o ON o.id = a.outbox_id WHERE o.status = 'sent'").fetchone()
    assert kept["bytes"] == 0, f"{kept['n']} delivered attachments still hold {kept['bytes'] >> 20} MiB in the database"


# --- (6''') host disk bandwidth outside the job's limits: no I/O limit at all ------------------------

REWRITER = """
import os, time
fd = os.open('jobs/scratch.bin', os.O_WRONLY | os.O_CREAT, 0o600)
block = os.urandom(1 << 20)
written, end = 0, time.time() + 8
while time.time() < end:   # the same 32 MiB again and again: never over the 50 MiB disk limit
    for i in range(32):
        os.pwrite(fd, block, i << 20)
    os.fsync(fd)
    written += 32 << 20
print('fsynced MiB', written >> 20)
"""


def _sectors_written() -> int:
    total = 0
    with open("/proc/diskstats") as f:
        for line in f:
            w = line.split()
            if len(w) > 9 and not w[2].startswith(("loop", "ram", "dm-")) and not w[2][-1].isdigit():
                total += int(w[9])
    return total * 512


@pytest.mark.xfail(strict=True, reason="open: no disk bandwidth limit (cgroup v1 does not charge buffered "
                   "writeback to the container; docs/security.md, what is not isolated)")
def test_a_job_cannot_write_to_the_host_disk_without_limit(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """The container has no I/O limit (container_config sets no blkio weight or device_write_bps) and
    the disk limit is on space only: a job limited to 0.1 CPU rewrites 32 MiB of jobs/ with fsync in
    a loop and pushes gigabytes through the host's disk in 10 s, which the database and every other
    thread's jobs share."""
    d = jobs_dir(settings.data_dir, THREAD)
    try:
        row, written = _host_cost_of_a_run(jobs, settings, db, docker_client, "rewriter", REWRITER, _sectors_written)
        bound = 10 * (settings.disk_mb << 20)  # ten times the space the job may hold, in one run
        assert written <= bound, (f"the host's disks wrote {written >> 20} MiB during a run whose jobs/ may hold "
                                  f"{settings.disk_mb} MiB ({row['status']}: {row['output_tail']!r})")
    finally:
        (d / "scratch.bin").unlink(missing_ok=True)


# --- (11') per-uid kernel limits shared again: every database hands out the same uids ----------------

@pytest.fixture
def second_store(pg_admin_url: str, tmp_path, settings: Settings):
    """A second runner's database and data directory on the same engine (the runner labels containers
    with their store so that several can share one engine)."""
    import uuid

    import psycopg
    from psycopg import sql

    from ..conftest import TEMPLATE, _with_db

    name = f"rt2_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(TEMPLATE)))
    s2 = settings.with_(database_url=_with_db(pg_admin_url, name), data_dir=tmp_path / "files2",
                        runner_id=f"rt2-{uuid.uuid4().hex[:8]}")
    db2 = Database(s2.database_url)
    try:
        yield s2, db2, Jobs(s2, db2)
    finally:
        from runner import sandbox
        store = db2.one("ensure_store_id")
        sandbox.release_uids(docker.from_env(), store["value"] if store else "")  # its uids go with it
        db2.close()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@PER_USER_COUNTS
def test_threads_of_two_databases_on_one_engine_do_not_share_a_uid(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient, second_store) -> None:
    """Threads get uids from RUNNER_UID_RANGE in the order each database first sees them
    (allocate_thread_uid: max(uid) + 1 of *that* database's threads), so the first thread of every
    runner on the engine is uid 200000. A thread of one runner holding every inotify instance of
    its uid makes inotify_init() fail in a thread of the other: item 11 again, across databases."""
    import threading

    from ..integration.helpers import wait_for

    s2, db2, jobs2 = second_store
    limits = Limits(timeout_seconds=60)
    h = jobs.schedule_job(thread_id=THREAD, name="hold", script_text=HOLD_INOTIFY, at="now", limits=limits)
    p = jobs2.schedule_job(thread_id="telegram:9", name="probe", script_text=PROBE_INOTIFY, at="now", limits=limits)
    runners = [threading.Thread(target=run_burst, args=a, daemon=True)
               for a in ((settings, db, docker_client), (s2, db2, docker_client))]
    for r in runners:
        r.start()
    try:
        held_file = jobs_dir(settings.data_dir, THREAD) / "held"
        held = wait_for(lambda: held_file.exists() and held_file.read_text(), 60, "the holder to hold")
        (jobs_dir(s2.data_dir, "telegram:9") / "go").write_text("go")
        wait_for(lambda: jobs2.get_job(p["id"])["status"] in ("completed", "failed"), 60, "the probe to finish")
    finally:
        release = jobs_dir(settings.data_dir, THREAD) / "release"
        if release.parent.is_dir():
            release.write_text("release")
        for r in runners:
            r.join(90)
    probe = jobs2.get_job(p["id"])
    assert jobs.get_job(h["id"])["status"] == "completed"
    assert "PROBE ok" in (probe["output_tail"] or ""), (
        f"a thread of another runner's database was starved (holder: count, errno, uid = {held}; "
        f"probe: {probe['output_tail']!r})")
