"""Which uid a job runs as, and who on the host can reach the thread directories.

Per-user kernel limits (inotify instances and watches, pipe buffers, POSIX message queues) are counted
per host uid, across containers: threads that share a uid share them. Each thread therefore gets a uid
(and gid) of its own from ``RUNNER_UID_RANGE``, recorded in the database. The data directory and every
thread directory are the runner's, mode 0700, so no other host user can reach a file a job left
(such as a setuid copy of a binary). The tests use real containers, a real Postgres, and throwaway
host uids (``setpriv``) for "another user on the host".
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest

from runner.errors import RunnerError
from runner.scheduler import Scheduler
from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database
from runner.threads import jobs_dir, thread_dir_name

from ..integration.helpers import run_burst, wait_for
from .helpers import HOLD_INOTIFY, PER_USER_COUNTS, PROBE_INOTIFY

THREAD = "telegram:666"
OTHER = "telegram:777"
HOST_USER = 39017  # a host uid nobody has: "another user on the host"
RUNNER_USER = 39018  # a host uid for a runner that is not root
ROOT = Path(__file__).resolve().parents[2]

IDS = "import os\nprint('IDS', os.getuid(), os.getgid(), sorted(os.getgroups()))\n"


def _ids(row: dict) -> tuple[int, int, list[int]]:
    assert row["status"] == "completed", row["error_message"]
    line = next(ln for ln in row["output_tail"].splitlines() if ln.startswith("IDS "))
    _, uid, gid, groups = line.split(" ", 3)
    return int(uid), int(gid), json.loads(groups)


def _in_range(settings: Settings, uid: int) -> bool:
    first, last = settings.uid_range
    return first <= uid <= last


@pytest.fixture
def open_parent(settings: Settings) -> Iterator[Settings]:
    """Settings whose data directory sits in a world-traversable directory, like /srv/runner/files on a
    real host (pytest's own tmp_path is under a 0700 directory, which would hide the attack)."""
    outer = Path(tempfile.mkdtemp(prefix="runner-uids-", dir="/tmp"))
    outer.chmod(0o755)
    try:
        yield settings.with_(data_dir=outer / "files")
    finally:
        shutil.rmtree(outer, ignore_errors=True)


def _as_host_user(uid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv],
                          capture_output=True, text=True, timeout=30, check=False)


# --- one uid per thread -----------------------------------------------------------------------------

def test_two_threads_get_different_uids_and_gids(jobs: Jobs, settings: Settings, db: Database,
                                                 docker_client: docker.DockerClient) -> None:
    a = jobs.schedule_job(thread_id=THREAD, name="ids", script_text=IDS, at="now")
    b = jobs.schedule_job(thread_id=OTHER, name="ids", script_text=IDS, at="now")
    run_burst(settings, db, docker_client)
    ua, ga, groups_a = _ids(jobs.get_job(a["id"]))
    ub, gb, groups_b = _ids(jobs.get_job(b["id"]))
    assert ua != ub and ga != gb, f"two threads share uid/gid {ua}:{ga}"
    assert _in_range(settings, ua) and _in_range(settings, ub)
    assert (ga, gb) == (ua, ub), "the gid is the thread's too"
    assert set(groups_a) <= {ga} and set(groups_b) <= {gb}, "no supplementary groups"
    again = jobs.schedule_job(thread_id=THREAD, name="again", script_text=IDS, at="now")
    run_burst(settings, db, docker_client)
    assert _ids(jobs.get_job(again["id"]))[0] == ua, "a thread keeps its uid"


def test_uid_allocation_is_unique_under_two_concurrent_runners(settings: Settings, db: Database) -> None:
    from runner.threads import thread_uid

    other_runner = Database(settings.database_url or "", max_size=8)
    threads = [f"telegram:{n}" for n in range(40)]
    try:
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda args: (args[1], thread_uid(args[0], args[1], settings.uid_range)),
                                [(d, t) for t in threads for d in (db, other_runner)]))
    finally:
        other_runner.close()
    by_thread: dict[str, set[int]] = {}
    for t, uid in got:
        by_thread.setdefault(t, set()).add(uid)
    assert all(len(u) == 1 for u in by_thread.values()), "a thread was given two uids"
    uids = [next(iter(u)) for u in by_thread.values()]
    assert len(set(uids)) == len(threads), "two threads were given one uid"
    assert all(_in_range(settings, u) for u in uids)
    assert thread_uid(db, threads[0], settings.uid_range) == next(iter(by_thread[threads[0]]))


def test_an_exhausted_uid_range_is_refused_clearly(settings: Settings, db: Database) -> None:
    from runner.threads import thread_uid

    first = settings.uid_range[0]
    small = (first, first + 2)  # the last uid is doctor's sample: two uids for threads
    thread_uid(db, "telegram:1", small)
    thread_uid(db, "telegram:2", small)
    with pytest.raises(RunnerError, match="RUNNER_UID_RANGE"):
        thread_uid(db, "telegram:3", small)


def test_a_job_never_runs_as_the_runners_uid(jobs: Jobs, settings: Settings, db: Database,
                                             docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="ids", script_text=IDS, at="now")
    run_burst(settings, db, docker_client)
    uid, gid, _ = _ids(jobs.get_job(job["id"]))
    assert uid not in (0, os.geteuid(), 10001) and _in_range(settings, uid)


RUNNER_AS_USER = """
import json, sys
from runner.service import Jobs
from runner.store import Database
from runner.settings import Settings
from tests.integration.helpers import run_burst
import docker
s = Settings.from_env()
db = Database(s.database_url)
jobs = Jobs(s, db)
script = ("import os\\nprint('IDS', os.getuid(), os.getgid(), sorted(os.getgroups()))\\n"
          "n = int(open('jobs/count').read()) if os.path.exists('jobs/count') else 0\\n"
          "open('jobs/count', 'w').write(str(n + 1))\\nopen('jobs/ids_message.txt', 'w').write('count %d' % (n + 1))\\n")
out = []
for _ in range(2):
    job = jobs.schedule_job(thread_id=sys.argv[1], name="ids", script_text=script, at="now")
    printed = run_burst(s, db, docker.from_env())
    row = jobs.get_job(job["id"])
    out.append({"status": row["status"], "error_message": row["error_message"], "output_tail": row["output_tail"],
                "printed": printed})
print("RESULT " + json.dumps(out))
"""


def test_a_runner_that_is_not_root_gives_jobs_another_uid(settings: Settings, open_parent: Settings) -> None:
    """The runner runs as an ordinary host user with the Docker socket (the docker group). Its jobs run as
    the thread's uid, can write jobs/ (and the runner reads and removes what they wrote), and no other
    host user can reach the data directory."""
    data = open_parent.data_dir
    data.mkdir(mode=0o700)
    os.chown(data, RUNNER_USER, RUNNER_USER)
    sock_gid = os.stat("/var/run/docker.sock").st_gid
    env = {"PATH": "/usr/bin:/bin", "HOME": str(data), "DATABASE_URL": settings.database_url or "",
           "RUNNER_DATA_DIR": str(data), "RUNNER_IMAGE": settings.image, "RUNNER_ID": settings.runner_id,
           "RUNNER_UID_RANGE": "{}-{}".format(*settings.uid_range), "TESTCONTAINERS_RYUK_DISABLED": "true"}
    proc = subprocess.run(
        ["setpriv", f"--reuid={RUNNER_USER}", f"--regid={RUNNER_USER}", f"--groups={sock_gid}", "--",
         sys.executable, "-c", RUNNER_AS_USER, THREAD],
        capture_output=True, text=True, timeout=120, check=False, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.split("RESULT ", 1)[1])
    for n, row in enumerate(rows, 1):
        uid, gid, _ = _ids(row)
        assert uid != RUNNER_USER and _in_range(settings, uid), f"the job ran as uid {uid}"
        assert f"count {n}" in row["printed"], "the job's message reached the runner"
    jd = jobs_dir(data, THREAD)
    assert not (jd / "ids_message.txt").exists(), "the runner removed the delivered message"
    for p in (data, jd.parent):
        st = os.lstat(p)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (RUNNER_USER, 0o700), p
    denied = _as_host_user(HOST_USER, "ls", str(jd))
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


# --- another host user ------------------------------------------------------------------------------

SETUID_COPY = """
import os, shutil
shutil.copy('/bin/cat', 'jobs/cat')
os.chmod('jobs/cat', 0o6755)
os.chmod('/work/jobs', 0o777)
print('planted', oct(os.stat('jobs/cat').st_mode))
"""


def test_setuid_copy_gives_another_host_user_nothing(jobs: Jobs, open_parent: Settings, db: Database,
                                                   docker_client: docker.DockerClient) -> None:
    s = Jobs(open_parent, db)
    secret = s.schedule_job(thread_id=OTHER, name="secret", at="now",
                            script_text="import os\nfd = os.open('jobs/secret.txt', os.O_WRONLY | os.O_CREAT, 0o600)\n"
                                        "os.write(fd, b'other thread secret')\n")
    plant = s.schedule_job(thread_id=THREAD, name="plant", script_text=SETUID_COPY, at="now")
    run_burst(open_parent, db, docker_client)
    assert s.get_job(secret["id"])["status"] == "completed"
    assert s.get_job(plant["id"])["status"] == "completed"
    data = open_parent.data_dir
    planted = jobs_dir(data, THREAD) / "cat"
    target = jobs_dir(data, OTHER) / "secret.txt"
    assert target.read_bytes() == b"other thread secret"
    got = _as_host_user(HOST_USER, str(planted), str(target))
    assert "other thread secret" not in got.stdout, "another host user read a thread's file through a job's setuid copy"
    assert got.returncode != 0 and "Permission denied" in got.stderr
    listing = _as_host_user(HOST_USER, "ls", str(data))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr


def test_data_and_thread_directories_are_closed_to_other_users(jobs: Jobs, open_parent: Settings, db: Database,
                                                               docker_client: docker.DockerClient) -> None:
    data = open_parent.data_dir
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # as an engine or an operator's mkdir leaves it
    (data / thread_dir_name(THREAD)).mkdir(mode=0o755)
    s = Jobs(open_parent, db)
    job = s.schedule_job(thread_id=THREAD, name="ids", script_text=IDS, at="now")
    run_burst(open_parent, db, docker_client)
    uid, gid, _ = _ids(s.get_job(job["id"]))
    me = os.geteuid()
    for p in (data, data / thread_dir_name(THREAD)):
        st = os.lstat(p)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (me, 0o700), f"{p}: {st.st_uid} {oct(st.st_mode)}"
    st = os.lstat(jobs_dir(data, THREAD))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o700)


def test_a_data_dir_owned_by_someone_else_is_refused(open_parent: Settings, db: Database) -> None:
    data = open_parent.data_dir
    data.mkdir(mode=0o755)
    os.chown(data, HOST_USER, HOST_USER)
    with pytest.raises(RunnerError, match="chown") as info:
        Scheduler(open_parent, db)
    assert str(data) in str(info.value)
    assert os.lstat(data).st_uid == HOST_USER, "refused, not taken over"


# --- migration of directories the old single job user owned -----------------------------------------

def test_a_thread_dir_owned_by_the_old_job_user_is_migrated(jobs: Jobs, settings: Settings, db: Database,
                                                            docker_client: docker.DockerClient,
                                                            tmp_path: Path) -> None:
    jd = jobs_dir(settings.data_dir, THREAD)
    (jd / "sub").mkdir(parents=True)
    (jd / "state.txt").write_text("1")
    (jd / "sub" / "deep.txt").write_text("1")
    outside = tmp_path / "outside.txt"
    outside.write_text("host file")
    (jd / "link").symlink_to(outside)
    os.mkfifo(jd / "fifo")
    for p in (jd, jd / "sub", jd / "state.txt", jd / "sub" / "deep.txt", jd / "fifo", jd / "link"):
        os.chown(p, 10001, 10001, follow_symlinks=False)
    (jd / "state.txt").chmod(0o600)
    jd.chmod(0o700)
    script = ("open('jobs/state.txt', 'a').write('2')\nopen('jobs/sub/deep.txt', 'a').write('2')\n" + IDS)
    job = jobs.schedule_job(thread_id=THREAD, name="old", script_text=script, at="now")
    run_burst(settings, db, docker_client)
    uid, gid, _ = _ids(jobs.get_job(job["id"]))
    assert _in_range(settings, uid)
    assert (jd / "state.txt").read_text() == "12" and (jd / "sub" / "deep.txt").read_text() == "12"
    for p in (jd, jd / "sub", jd / "state.txt", jd / "sub" / "deep.txt", jd / "fifo", jd / "link"):
        st = os.lstat(p)
        assert (st.st_uid, st.st_gid) == (uid, gid), p
    assert os.lstat(outside).st_uid == os.geteuid(), "the link's target was not touched"


# --- per-uid kernel limits ----------------------------------------------------------------------------

HOLD_PIPES = """
import fcntl, os, time
held, err = [], 0
while True:
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ: 1 MiB each, until the per-user soft limit says no
    except OSError as e:
        err = e.errno
        break
    held.append((r, w))
while True:  # the refused resize was undone: top up with plain pipes until the uid is over its soft limit
    r, w = os.pipe()
    held.append((r, w))
    if fcntl.fcntl(w, 1032) < 65536:  # F_GETPIPE_SZ: a new pipe of this uid is now shrunk
        break
open('jobs/held', 'w').write('%d %d %d' % (len(held), err, fcntl.fcntl(w, 1032)))
deadline = time.monotonic() + 40
while not os.path.exists('jobs/release') and time.monotonic() < deadline:
    time.sleep(0.02)
print('HELD', len(held), err)
"""

PROBE_PIPE = """
import fcntl, os, time
deadline = time.monotonic() + 40
while not os.path.exists('jobs/go') and time.monotonic() < deadline:
    time.sleep(0.02)
r, w = os.pipe()
print('PROBE', 'size %d' % fcntl.fcntl(w, 1032))  # F_GETPIPE_SZ
"""


def _hold_while_probing(jobs: Jobs, settings: Settings, db: Database, dc: docker.DockerClient,
                        hold: str, probe: str) -> tuple[dict, str]:
    """Run ``hold`` in one thread; once it holds the resource, let ``probe`` run in another; then release.
    Both must complete. Returns the probe's row and what the holder wrote when it held the resource."""
    limits = Limits(timeout_seconds=60)
    h = jobs.schedule_job(thread_id=THREAD, name="hold", script_text=hold, at="now", limits=limits)
    p = jobs.schedule_job(thread_id=OTHER, name="probe", script_text=probe, at="now", limits=limits)
    runner = threading.Thread(target=run_burst, args=(settings.with_(concurrency=2), db, dc), daemon=True)
    runner.start()
    try:
        held_file = jobs_dir(settings.data_dir, THREAD) / "held"
        held = wait_for(lambda: held_file.exists() and held_file.read_text(), 60, "the holder to hold")
        (jobs_dir(settings.data_dir, OTHER) / "go").write_text("go")
        wait_for(lambda: jobs.get_job(p["id"])["status"] in ("completed", "failed"), 60, "the probe to finish")
    finally:
        release = jobs_dir(settings.data_dir, THREAD) / "release"
        if release.parent.is_dir():
            release.write_text("release")
        runner.join(90)
    assert not runner.is_alive()
    hold_row, probe_row = jobs.get_job(h["id"]), jobs.get_job(p["id"])
    assert hold_row["status"] == "completed" and probe_row["status"] == "completed", (hold_row, probe_row)
    return probe_row, held


@PER_USER_COUNTS
def test_inotify_instances_of_one_thread_do_not_starve_another(jobs: Jobs, settings: Settings, db: Database,
                                                               docker_client: docker.DockerClient) -> None:
    probe, held = _hold_while_probing(jobs, settings, db, docker_client, HOLD_INOTIFY, PROBE_INOTIFY)
    count, err, _uid = map(int, held.split())
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    assert err == 24 and count <= limit, f"the holder stopped at {count} ({err}), not at the per-user limit"
    assert "PROBE ok" in probe["output_tail"], probe["output_tail"]


@PER_USER_COUNTS
def test_pipe_buffers_of_one_thread_do_not_shrink_anothers(jobs: Jobs, settings: Settings, db: Database,
                                                           docker_client: docker.DockerClient) -> None:
    probe, held = _hold_while_probing(jobs, settings, db, docker_client, HOLD_PIPES, PROBE_PIPE)
    count, err, shrunk = map(int, held.split())
    assert err == 1, f"the holder stopped at {count} pipes with errno {err}, not at the per-user soft limit (EPERM)"
    assert shrunk == 8192, f"the holder's own new pipes are {shrunk} bytes, not shrunk: it did not reach the limit"
    assert "PROBE size 65536" in probe["output_tail"], probe["output_tail"]


HOLD_MQUEUES = """
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
held, err = 0, 0
while True:  # each queue charges its size to the owner's RLIMIT_MSGQUEUE (800 KiB per host uid)
    if libc.mq_open(b'/q%d' % held, os.O_CREAT | os.O_RDWR, 0o600, None) < 0:
        err = ctypes.get_errno()
        break
    held += 1
open('jobs/held', 'w').write('%d %d' % (held, err))
deadline = time.monotonic() + 40
while not os.path.exists('jobs/release') and time.monotonic() < deadline:
    time.sleep(0.02)
print('HELD', held, err)
"""

PROBE_MQUEUE = """
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
deadline = time.monotonic() + 40
while not os.path.exists('jobs/go') and time.monotonic() < deadline:
    time.sleep(0.02)
q = libc.mq_open(b'/probe', os.O_CREAT | os.O_RDWR, 0o600, None)
print('PROBE', 'ok' if q >= 0 else 'errno %d' % ctypes.get_errno())
"""


@PER_USER_COUNTS
def test_message_queues_of_one_thread_do_not_starve_another(jobs: Jobs, settings: Settings, db: Database,
                                                            docker_client: docker.DockerClient) -> None:
    probe, held = _hold_while_probing(jobs, settings, db, docker_client, HOLD_MQUEUES, PROBE_MQUEUE)
    count, err = map(int, held.split())
    assert err == 24 and count > 0, f"the holder stopped at {count} queues with errno {err}, not at RLIMIT_MSGQUEUE"
    assert "PROBE ok" in probe["output_tail"], probe["output_tail"]


# --- runner doctor ------------------------------------------------------------------------------------

def _doctor_rows(settings: Settings) -> dict[str, object]:
    from runner.doctor import run_checks

    wanted = ("data directory", "thread directories", "job uid range", "job container: a uid of its own")
    return {c.name: c for c in run_checks(settings) if c.name in wanted}


def test_doctor_reports_the_job_uid_and_the_directory_modes(settings: Settings, db: Database) -> None:
    rows = _doctor_rows(settings)
    assert set(rows) == {"data directory", "thread directories", "job uid range", "job container: a uid of its own"}
    assert all(c.ok for c in rows.values()), rows
    own = rows["job container: a uid of its own"]
    assert f"uid {settings.uid_range[1]}, gid {settings.uid_range[1]}" in own.detail

    settings.data_dir.chmod(0o755)
    (settings.data_dir / thread_dir_name(THREAD)).mkdir(mode=0o755)
    (settings.data_dir / thread_dir_name(THREAD)).chmod(0o755)
    rows = _doctor_rows(settings)
    assert not rows["data directory"].ok and "chmod 700" in rows["data directory"].detail
    assert not rows["thread directories"].ok and thread_dir_name(THREAD) in rows["thread directories"].detail


def test_the_uid_range_setting_is_checked() -> None:
    assert Settings.from_env({"RUNNER_ID": "x"}).uid_range == (200000, 299999)
    assert Settings.from_env({"RUNNER_ID": "x", "RUNNER_UID_RANGE": "20000-29999"}).uid_range == (20000, 29999)
    for bad in ("200000", "abc-def", "0-100", "300000-200000", "5-5", "200000-4294967295"):
        with pytest.raises(RunnerError, match="RUNNER_UID_RANGE"):
            Settings.from_env({"RUNNER_ID": "x", "RUNNER_UID_RANGE": bad})


def test_migrating_a_hostile_tree_follows_no_link_and_never_blocks(settings: Settings, tmp_path: Path) -> None:
    """What a job of the old shared uid left: a link to a host directory, a FIFO, a link loop, a deep tree."""
    from runner.threads import MAX_DEPTH, prepare_jobs_dir

    jd = jobs_dir(settings.data_dir, THREAD)
    jd.mkdir(parents=True)
    outside = tmp_path / "host-dir"
    outside.mkdir()
    (outside / "host-file").write_text("host")
    (jd / "to-host").symlink_to(outside)
    (jd / "loop").symlink_to("loop")
    os.mkfifo(jd / "fifo")
    deep = jd
    for n in range(MAX_DEPTH + 10):
        deep = deep / f"d{n}"
    deep.mkdir(parents=True)
    for root, dirs, files in os.walk(jd):
        for name in dirs + files:
            os.chown(os.path.join(root, name), 10001, 10001, follow_symlinks=False)
    os.chown(jd, 10001, 10001)
    prepare_jobs_dir(settings.data_dir, THREAD, settings.uid_range[0])  # must return: no FIFO opened
    uid = settings.uid_range[0]
    for name in ("to-host", "loop", "fifo", "d0"):
        assert os.lstat(jd / name).st_uid == uid, name
    assert os.lstat(outside).st_uid == os.geteuid() and os.lstat(outside / "host-file").st_uid == os.geteuid()
    shallow = jd.joinpath(*(f"d{n}" for n in range(MAX_DEPTH)))
    assert os.lstat(shallow).st_uid == uid
    assert os.lstat(deep).st_uid == 10001, "deeper than MAX_DEPTH is left as it was"


# --- across databases on one engine: the engine's uid registry ---------------------------------------

@pytest.fixture
def other_database(pg_admin_url: str, settings: Settings, docker_client: docker.DockerClient
                   ) -> Iterator[tuple[str, Database]]:
    """A second runner's database on the same engine: its store id and a connection pool."""
    import uuid

    import psycopg
    from psycopg import sql

    from ..conftest import TEMPLATE, _with_db

    name = f"uids_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(TEMPLATE)))
    other = Database(_with_db(pg_admin_url, name), max_size=12)
    row = other.one("ensure_store_id")
    assert row is not None
    try:
        yield row["value"], other
    finally:
        other.close()
        from runner import sandbox
        sandbox.release_uids(docker_client, row["value"])
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _registry(docker_client: docker.DockerClient, store: str):
    from runner.threads import UidRegistry

    return UidRegistry(lambda: docker_client, store)


def test_runners_of_two_databases_allocating_at_once_never_share_a_uid(
        settings: Settings, db: Database, store_id: str, other_database: tuple[str, Database],
        docker_client: docker.DockerClient) -> None:
    """Runners of two databases give uids to new threads at the same moment (all start together at a
    barrier, so they list the engine's registry before either has claimed anything and pick the same
    candidates): the engine settles each uid for exactly one database."""
    from runner import sandbox
    from runner.threads import thread_uid

    other_store, other_db = other_database
    sides = [(db, _registry(docker_client, store_id)), (other_db, _registry(docker_client, other_store))]
    threads = [f"telegram:{n}" for n in range(12)]
    work = [(d, reg, t) for t in threads for d, reg in sides]
    barrier = threading.Barrier(len(work))

    def allocate(args: tuple[Database, object, str]) -> tuple[int, str, int]:
        d, reg, t = args
        barrier.wait(30)
        return id(d), t, thread_uid(d, t, settings.uid_range, reg)  # type: ignore[arg-type]

    with ThreadPoolExecutor(len(work)) as pool:
        got = list(pool.map(allocate, work))
    uids = [uid for _, _, uid in got]
    assert len(set(uids)) == len(work), f"a uid went to two threads: {sorted(uids)}"
    assert all(_in_range(settings, u) and u != settings.uid_range[1] for u in uids)
    registered = sandbox.registered_uids(docker_client)
    for (d, _reg), store in zip(sides, (store_id, other_store), strict=True):
        for key, t, uid in got:
            if key == id(d):
                assert registered[uid] == (store, t), f"uid {uid} of {t} is registered as {registered[uid]}"
                assert d.one("thread_uid", {"thread_id": t})["uid"] == uid


BUMP = """
import os
with open('jobs/left.txt', 'a') as f:
    f.write('x')
print('IDS', os.getuid(), os.getgid(), sorted(os.getgroups()))
"""


def test_a_thread_whose_recorded_uid_another_database_holds_moves_with_its_files(
        jobs: Jobs, settings: Settings, db: Database, store_id: str, other_database: tuple[str, Database],
        docker_client: docker.DockerClient) -> None:
    """A row from before the registry: this database's thread has uid N in its table, but on the engine
    N is a thread's of another database. Its next run must not run as N: it gets a new uid, registered
    as its own, and the files an earlier job of it left (owned by N) follow it."""
    from runner import sandbox
    from runner.threads import prepare_jobs_dir, thread_uid

    other_store, other_db = other_database
    held = thread_uid(other_db, "telegram:1", settings.uid_range, _registry(docker_client, other_store))
    with db.transaction() as conn:
        conn.execute("INSERT INTO threads (thread_id, uid) VALUES (%s, %s)", (THREAD, held))
    jd = prepare_jobs_dir(settings.data_dir, THREAD, held)
    (jd / "left.txt").write_text("old")
    os.chown(jd / "left.txt", held, held)
    os.chmod(jd / "left.txt", 0o600)
    job = jobs.schedule_job(thread_id=THREAD, name="bump", script_text=BUMP, at="now")
    run_burst(settings, db, docker_client)
    uid, gid, _ = _ids(jobs.get_job(job["id"]))
    assert uid != held, f"the thread still runs as uid {held}, another database's"
    assert _in_range(settings, uid) and gid == uid
    assert jobs.store.thread_uid(THREAD) == uid
    registered = sandbox.registered_uids(docker_client)
    assert registered[uid] == (store_id, THREAD) and registered[held] == (other_store, "telegram:1")
    st = os.lstat(jd / "left.txt")
    assert (st.st_uid, st.st_gid) == (uid, uid) and (jd / "left.txt").read_text() == "oldx"


def test_the_orphan_sweeps_leave_the_uid_registry_alone(
        settings: Settings, db: Database, store_id: str, docker_client: docker.DockerClient) -> None:
    """The sweeps remove this database's managed volumes (and networks, containers) that no live run
    uses; a thread's registry entry is used by no container, and must stay as long as the thread."""
    from runner import sandbox
    from runner.threads import thread_uid

    uid = thread_uid(db, THREAD, settings.uid_range, _registry(docker_client, store_id))
    name = sandbox.uid_volume_name(uid)
    sched = Scheduler(settings, db, docker_client)
    try:
        sched.housekeeping()
        sandbox.remove_orphan_volumes(docker_client, store_id, set(), min_age=0)
    finally:
        sched.pool.shutdown(wait=True)
    assert docker_client.volumes.get(name).attrs["Labels"][sandbox.LABEL_STORE] == store_id
    assert sandbox.registered_uids(docker_client)[uid] == (store_id, THREAD)
    assert sandbox.registered_uids(docker_client)[settings.uid_range[1]] == ("*", "doctor:0"), (
        "doctor's sample uid is reserved on the engine")


def test_a_registered_uid_is_checked_on_the_engine_once_not_per_run(
        settings: Settings, db: Database, store_id: str, docker_client: docker.DockerClient) -> None:
    from runner import sandbox
    from runner.threads import thread_uid

    calls: list[str] = []
    real = sandbox.claim_uid

    def counting(*args: object) -> tuple[str, str]:
        calls.append("claim")
        return real(*args)  # type: ignore[arg-type]

    reg = _registry(docker_client, store_id)
    uid = thread_uid(db, THREAD, settings.uid_range, reg)
    sandbox.claim_uid = counting  # type: ignore[assignment]
    try:
        assert [thread_uid(db, THREAD, settings.uid_range, reg) for _ in range(5)] == [uid] * 5
    finally:
        sandbox.claim_uid = real  # type: ignore[assignment]
    assert calls == [], "a run path check went to the engine although the entry was checked already"
