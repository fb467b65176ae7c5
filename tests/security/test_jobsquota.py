"""RUNNER_JOBS_QUOTA=loop: a thread's jobs/ is an ext4 file system of its own, loop-mounted by the runner,
so its size is enforced by the kernel, not only by the watchdog's walk (docs/security.md, the jobs/ limit).

The same fallocate attack without the option is test_redteam2.py's strict xfail: there the job holds
40 x 48 MiB on the host's disk. Every test makes its own file systems (as root, in its tmp_path) and
unmounts them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from runner import doctor, jobsquota
from runner.errors import ConfigError, RunnerError
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database
from runner.threads import jobs_dir

from ..integration.helpers import run_burst
from .helpers import FALLOCATOR, allocated

THREAD = "telegram:4343"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mkfs.ext4") is None,
    reason="RUNNER_JOBS_QUOTA=loop needs root and mkfs.ext4 (it mounts file systems)")


@pytest.fixture
def qsettings(settings: Settings) -> Iterator[Settings]:
    """The test's settings with the option on; every file system mounted under its data dir is unmounted after."""
    s = settings.with_(jobs_quota="loop")
    try:
        yield s
    finally:
        jobsquota.unmount_under(s.data_dir)


@pytest.fixture
def qjobs(qsettings: Settings, db: Database) -> Jobs:
    return Jobs(qsettings, db)


def _image_allocated(s: Settings) -> int:
    """What the thread's jobs/ costs the host's disk: the allocated blocks of its image file."""
    return os.stat(jobs_dir(s.data_dir, THREAD).parent / jobsquota.IMAGE).st_blocks * 512


def test_the_jobs_disk_limit_holds_against_fallocate_with_a_quota(
        qjobs: Jobs, qsettings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """test_redteam2's attack with RUNNER_JOBS_QUOTA=loop: the kernel refuses the allocation past the
    thread's file system (ENOSPC), so neither jobs/ nor the host's disk holds more than about the limit."""
    job = qjobs.schedule_job(thread_id=THREAD, name="fallocator", script_text=FALLOCATOR, at="now")
    run_burst(qsettings, db, docker_client)
    row = qjobs.get_job(job["id"])
    d = jobs_dir(qsettings.data_dir, THREAD)
    limit = qsettings.disk_mb << 20
    held = allocated(d)
    assert held <= 2 * limit, (
        f"jobs/ holds {held >> 20} MiB of allocated blocks on the host after the run, the limit is "
        f"{qsettings.disk_mb} MiB ({row['status']}: {row['error_message']}; {row['output_tail']!r})")
    assert jobsquota.is_mounted(d), "jobs/ is not the mount of its own image"
    assert _image_allocated(qsettings) <= 2 * limit, f"the image takes {_image_allocated(qsettings) >> 20} MiB"
    assert row["status"] == "failed", (row["error_message"], row["output_tail"])
    # runc: the job's own allocation fails (ENOSPC); gVisor's kernel may allocate up to the image's size
    # first, which the walk then finds over the limit: either way the kernel held the host's disk.
    assert any(r in (row["error_message"] or "") for r in ("No space left on device", "disk limit 50 MiB exceeded")), (
        row["error_message"])
    assert "allocated" not in (row["output_tail"] or "")


ESCAPER = """
import ctypes, fcntl, os, struct
libc = ctypes.CDLL(None, use_errno=True)
def attempt(what, fn):
    try:
        r = fn()
        print(what, 'ESCAPED' if r in (None, 0) else f'refused {os.strerror(ctypes.get_errno())}', flush=True)
    except OSError as e:
        print(what, 'refused', e.strerror, flush=True)
fd = os.open('jobs', os.O_RDONLY | os.O_DIRECTORY)
attempt('resize', lambda: fcntl.ioctl(fd, 0x40086610, struct.pack('Q', 1 << 22)))  # EXT4_IOC_RESIZE_FS
attempt('umount', lambda: libc.umount2(b'/work/jobs', 2))
attempt('remount', lambda: libc.mount(None, b'/work/jobs', None, 32 | 4096, None))  # MS_REMOUNT|MS_BIND
attempt('mount', lambda: libc.mount(b'tmpfs', b'/work/jobs', b'tmpfs', 0, None))
attempt('link out', lambda: os.link('jobs/probe.py', '/tmp/x'))
st = os.statvfs('jobs')
print('size', st.f_blocks * st.f_frsize, flush=True)
chunk = b'x' * (1 << 20)
for i in range(100):   # real data this time, not only reservations; files under the 50 MiB fsize limit
    with open(f'jobs/fill{i}', 'wb') as f:
        for _ in range(40):
            f.write(chunk)
"""


def test_a_job_cannot_lift_its_file_systems_limit(
        qjobs: Jobs, qsettings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """The job tries what could lift the bound from inside: grow the file system, unmount or remount
    jobs/, mount something over it, link its files out; each is refused, and writing real data stops
    at the file system's size."""
    job = qjobs.schedule_job(thread_id=THREAD, name="probe", script_text=ESCAPER, at="now")
    run_burst(qsettings, db, docker_client)
    row = qjobs.get_job(job["id"])
    out = row["output_tail"] or ""
    for what in ("resize", "umount", "remount", "mount", "link out"):
        assert f"{what} refused" in out, (what, out)
    assert "ESCAPED" not in out, out
    d = jobs_dir(qsettings.data_dir, THREAD)
    size, _ = jobsquota.size_of(d)
    assert f"size {size}\n" in out, (size, out)
    assert size <= qsettings.disk_mb * 2 << 20
    assert "No space left on device" in (row["error_message"] or "") or "disk limit" in (row["error_message"] or ""), (
        row["error_message"])
    assert _image_allocated(qsettings) <= 2 * qsettings.disk_mb << 20


def test_files_from_before_the_option_move_into_the_threads_file_system(
        settings: Settings, qsettings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """A thread whose jobs/ was a plain directory keeps its files when the option is turned on: they are
    copied into its new file system (sparse files stay sparse), and later jobs read them there."""
    plain = Jobs(settings, db)
    writer = plain.schedule_job(thread_id=THREAD, name="writer", at="now", script_text=(
        "import os\nos.makedirs('jobs/lost+found/x')\nos.chmod('jobs/lost+found', 0o700)\n"  # as mkfs names its own
        "open('jobs/state.txt', 'w').write('kept')\n"
        "f = open('jobs/sparse', 'wb'); f.truncate(40 << 20); f.close()\n"))
    run_burst(settings, db, docker_client)
    assert plain.get_job(writer["id"])["status"] == "completed"
    d = jobs_dir(settings.data_dir, THREAD)
    assert not jobsquota.is_mounted(d)
    reader = Jobs(qsettings, db).schedule_job(thread_id=THREAD, name="reader", at="now", script_text=(
        "import os\nprint('read', open('jobs/state.txt').read(), os.path.ismount('/work/jobs'))\n"))
    run_burst(qsettings, db, docker_client)
    row = Jobs(qsettings, db).get_job(reader["id"])
    assert row["status"] == "completed", (row["error_message"], row["output_tail"])
    assert "read kept True" in (row["output_tail"] or ""), row["output_tail"]
    assert jobsquota.is_mounted(d)
    assert os.stat(d / "sparse").st_size == 40 << 20 and os.stat(d / "sparse").st_blocks * 512 < 1 << 20
    assert not (d.parent / ".jobs-before-quota").exists()
    assert (d / "lost+found" / "x").is_dir(), "the job's own lost+found was not kept"
    assert {os.stat(p).st_uid for p in (d, d / "state.txt", d / "lost+found")} == {os.stat(d).st_uid} != {0}


def test_a_plain_jobs_dir_over_the_size_is_refused_with_what_to_do(
        settings: Settings, qsettings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """What does not fit the new file system is not half-moved: the run fails saying why and what to do,
    and jobs/ keeps its files, still a plain directory."""
    plain = Jobs(settings.with_(disk_mb=200), db)
    filler = plain.schedule_job(thread_id=THREAD, name="filler", at="now", script_text=(
        "for n in ('big', 'big2'):\n"  # data, not reservations: a copy keeps holes (and unwritten extents) sparse
        "    open('jobs/' + n, 'wb').write(b'x' * (40 << 20))\n"))
    run_burst(settings.with_(disk_mb=200), db, docker_client)
    assert plain.get_job(filler["id"])["status"] == "completed"
    qjobs = Jobs(qsettings, db)
    job = qjobs.schedule_job(thread_id="telegram:4344", name="other", at="now", script_text="print('x')\n")
    later = Jobs(settings, db)  # schedule in the full thread without the option, run with it
    stuck = later.schedule_job(thread_id=THREAD, name="stuck", at="now", script_text="print('ran')\n")
    run_burst(qsettings, db, docker_client)
    assert qjobs.get_job(job["id"])["status"] == "completed"
    row = qjobs.get_job(stuck["id"])
    assert row["status"] == "failed", (row["error_message"], row["output_tail"])
    assert "jobs/ could not be moved into its own 50 MiB file system (cp failed:" in row["error_message"], (
        row["error_message"])
    assert "No space left on device" in row["error_message"] and "remove files from it" in row["error_message"]
    assert str(settings.data_dir) not in row["error_message"], "a host path reached the reason"
    d = jobs_dir(settings.data_dir, THREAD)
    assert not (d.parent / jobsquota.IMAGE).exists(), "the half-filled image was left behind"
    assert not jobsquota.is_mounted(d) and os.stat(d / "big").st_size == os.stat(d / "big2").st_size == 40 << 20


def test_doctor_reports_the_quota_and_that_the_job_sees_it(
        qsettings: Settings, docker_client: docker.DockerClient) -> None:
    check = doctor.jobs_disk_limit(qsettings)
    assert check.ok and "kernel-enforced (RUNNER_JOBS_QUOTA=loop)" in check.detail, check
    rows = {c.name: c for c in doctor.containers.hardening(qsettings, docker_client)}
    seen = rows["job container: jobs/ is its thread's own file system"]
    assert seen.ok, seen
    off = doctor.jobs_disk_limit(qsettings.with_(jobs_quota="off"))
    assert "not a hard bound" in off.detail and "RUNNER_JOBS_QUOTA=loop" in off.detail


def test_the_setting_is_checked() -> None:
    assert Settings.from_env({"RUNNER_ID": "x"}).jobs_quota == "off"
    assert Settings.from_env({"RUNNER_ID": "x", "RUNNER_JOBS_QUOTA": " Loop "}).jobs_quota == "loop"
    with pytest.raises(ConfigError, match="RUNNER_JOBS_QUOTA='xfs' is not one of off, loop"):
        Settings.from_env({"RUNNER_ID": "x", "RUNNER_JOBS_QUOTA": "xfs"})


def test_a_script_saved_into_a_full_thread_names_the_thread_not_the_host(
        qjobs: Jobs, qsettings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    """Scheduling into a thread whose own file system a job filled is refused in one line that names the
    thread's jobs/ and what to do, not the host's disk (which has room)."""
    filler = qjobs.schedule_job(thread_id=THREAD, name="filler", at="now", script_text=(
        "import os\nfor i in range(4):\n"
        "    fd = os.open(f'jobs/b{i}', os.O_WRONLY | os.O_CREAT)\n"
        "    try:\n        os.posix_fallocate(fd, 0, 40 << 20)\n    except OSError:\n        pass\n"
        "fd = os.open('jobs/tail', os.O_WRONLY | os.O_CREAT)\n"
        "while True:\n    os.write(fd, b'x' * 1024)\n"))
    run_burst(qsettings, db, docker_client)
    assert qjobs.get_job(filler["id"])["status"] == "failed"
    with pytest.raises(RunnerError) as caught:
        qjobs.schedule_job(thread_id=THREAD, name="late", at="now", script_text="print('x' * 4000)\n" * 64)
    text = str(caught.value)
    assert "cannot save jobs/late.py: the thread's jobs/ is full" in text, text
    assert "remove files from it" in text and "nothing was saved" in text
    assert "data directory" not in text


def test_preparing_one_thread_at_once_from_many_threads_mounts_it_once(settings: Settings) -> None:
    """A save and runs of one thread (RUNNER_THREAD_CONCURRENCY > 1, several runners on one host) may
    prepare its jobs/ at the same moment: one image is made and mounted once, and every caller gets it."""
    import threading

    from runner.threads import prepare_jobs_dir

    quota = jobsquota.Quota(settings.disk_mb, settings.max_files)
    start, errors, done = threading.Barrier(6), [], []

    def prepare() -> None:
        start.wait()
        try:
            done.append(prepare_jobs_dir(settings.data_dir, THREAD, settings.uid_range[0], quota))
        except Exception as exc:  # collected: the assertion below names it
            errors.append(exc)

    workers = [threading.Thread(target=prepare) for _ in range(6)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert not errors, errors
        d = jobs_dir(settings.data_dir, THREAD)
        assert len(done) == 6 and jobsquota.is_mounted(d)
        with open("/proc/self/mountinfo") as f:
            stacked = [line for line in f if line.split()[4] == str(d.resolve())]
        assert len(stacked) == 1, stacked
    finally:
        jobsquota.unmount_under(settings.data_dir)


NOT_ROOT = """
import os, sys
from pathlib import Path
from runner import jobsquota
from runner.errors import RunnerError
jobs = Path(sys.argv[1])
os.setgid(65534); os.setuid(65534)
try:
    jobsquota.ensure_mounted(jobs, jobsquota.Quota(50, 10000))
    print('mounted?')
except RunnerError as exc:
    print('refused:', exc)
"""


def test_a_runner_that_is_not_root_refuses_rather_than_use_the_bare_directory() -> None:
    """Without root nothing can be mounted: the preparation fails in one line saying what to do, so no
    run and no save goes ahead on the bare directory."""
    import subprocess
    import sys
    import tempfile

    top = tempfile.mkdtemp(prefix="jobsquota-", dir="/tmp")  # reachable by uid 65534 (tmp_path is root's 0700)
    try:
        os.chmod(top, 0o755)
        jobs = os.path.join(top, "telegram_1", "jobs")
        os.makedirs(jobs)
        for p in (os.path.dirname(jobs), jobs):
            os.chown(p, 65534, 65534)
        r = subprocess.run([sys.executable, "-c", NOT_ROOT, jobs], capture_output=True, text=True, timeout=60,
                           check=False, cwd=str(ROOT))
    finally:
        shutil.rmtree(top)
    assert r.returncode == 0, r.stderr
    assert "refused: RUNNER_JOBS_QUOTA=loop needs a runner that is root" in r.stdout, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
