"""``runner doctor``: check what the runner depends on and what protects the host, one line each."""

from __future__ import annotations

import os
import pwd
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import egress, jobsquota, sandbox
from ..errors import RunnerError
from ..runspec import SAMPLE_THREAD, run_spec, sample_job
from ..settings import Settings
from ..store import Database, embedded_url, migration_files
from ..threads import data_dir_problem, prepare_jobs_dir, sample_uid
from . import probes

MIN_ENGINE = (20, 10)  # the oldest Docker Engine the test suite runs on


def engine_too_old(version: str) -> bool:
    """True if a Docker Engine version string ("20.10.24+dfsg1", "27.3.1") is below MIN_ENGINE."""
    m = re.match(r"(\d+)\.(\d+)", version)
    return m is not None and (int(m[1]), int(m[2])) < MIN_ENGINE


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def _safe(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except RunnerError as exc:
        return Check(name, False, str(exc))
    except Exception as exc:  # the report must finish whatever breaks
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def run_checks(settings: Settings, *, hardening: bool = True) -> Iterator[Check]:
    """Yield each check as it completes (the slow container check last)."""
    dc_holder: dict[str, object] = {}

    def engine() -> Check:
        dc = sandbox.client()
        version = dc.version()
        dc_holder["dc"] = dc
        text = f"{version.get('Version')} (API {version.get('ApiVersion')})"
        if engine_too_old(str(version.get("Version", ""))):
            return Check("Docker engine", False, f"{text} is older than {'.'.join(map(str, MIN_ENGINE))}, the oldest "
                                                 "the runner is tested on: upgrade Docker Engine")
        return Check("Docker engine", True, text)

    yield _safe("Docker engine", engine)
    dc = dc_holder.get("dc")

    def image(tag: str, label: str, hint: str) -> Callable[[], Check]:
        def check() -> Check:
            if dc is None:
                return Check(label, False, "no Docker engine")
            present = sandbox.image_present(tag, dc)  # type: ignore[arg-type]
            return Check(label, present, tag if present else f"{tag} is missing: {hint}")
        return check

    yield _safe("job image", image(settings.image, "job image", "run make image"))
    yield _safe("egress proxy image", image(settings.egress_image, "egress proxy image",
                                            "run make images (needed only by jobs granted --allow-host)"))

    def database() -> Check:
        url = settings.database_url or embedded_url(settings.embedded_pg_dir)
        db = Database(url, max_size=1)
        try:
            with db.transaction() as conn:
                conn.execute("SELECT 1")
                try:
                    applied = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
                except Exception:
                    applied = set()
        finally:
            db.close()
        known = {v for v, _ in migration_files()}
        missing = sorted(known - applied)
        where = "embedded" if not settings.database_url else "DATABASE_URL"
        if missing:
            return Check("database", False, f"reachable ({where}) but migrations {missing} are not applied: run runner migrate")
        newer = sorted(applied - known)
        if newer:
            return Check("database", False, f"schema has migrations {newer} this runner does not know: upgrade the runner")
        return Check("database", True, f"reachable ({where}), {len(applied)} migrations applied")

    yield _safe("database", database)

    def data_dir() -> Check:
        d = settings.data_dir
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".doctor-"):
            pass
        problem = data_dir_problem(d)
        if problem:
            return Check("data directory", False, problem)
        return Check("data directory", True, f"{d} writable, the runner's (uid {os.geteuid()}), mode 0700")

    yield _safe("data directory", data_dir)
    yield _safe("thread directories", lambda: _thread_dirs(settings.data_dir))
    yield _safe("job uid range", lambda: _uid_range(settings.uid_range))
    yield _safe("jobs/ disk limit", lambda: jobs_disk_limit(settings))

    yield _safe("Telegram bot", lambda: _bot(settings))

    if hardening and dc is not None:
        yield from _hardening(settings, dc)
        yield _safe("egress proxy", lambda: _egress(settings, dc))
        yield _safe("granted job isolation", lambda: egress_isolation(settings, dc))


def jobs_disk_limit(settings: Settings) -> Check:
    """How the limit on a thread's jobs/ is enforced: by a bounded walk, since a bind mount has no quota."""
    from ..jobtree import MAX_DEPTH
    from ..scheduler import WATCH_SECONDS

    name = "jobs/ disk limit"
    if not os.path.isdir("/proc/self/fd"):
        return Check(name, False, "/proc is not mounted in the runner: setuid modes a job sets in jobs/ cannot "
                                  "be cleared without following links; mount /proc")
    walk = (f"a watchdog walks jobs/ while the job runs (every 0.25-2 s) and after it, and stops the job over "
            f"{settings.disk_mb} MiB (apparent or allocated size), {settings.max_files:,} entries or {MAX_DEPTH} "
            f"levels, or a walk not done within {WATCH_SECONDS:g} s")
    quota = jobsquota.from_settings(settings)
    if quota is not None:
        size, inodes = jobsquota.size_of(_sample_dir(settings))  # made and mounted as a thread's would be
        return Check(name, True, (
            f"kernel-enforced (RUNNER_JOBS_QUOTA=loop): each thread's jobs/ is an ext4 file system of its own, "
            f"{size / 2**20:.1f} MiB and {inodes:,} inodes for the sample thread, so nothing past that reaches "
            f"the host's disk; and {walk}"))
    return Check(name, True, (
        f"no kernel quota (a bind mount has none): {walk}; not a hard bound: a job can allocate past it between "
        "two walks (fallocate is instant), and the run then fails; RUNNER_JOBS_QUOTA=loop makes it one "
        "(docs/security.md: why the jobs/ limit is a walk, not a quota)"))


def _jobs_fs_seen_by_engine(settings: Settings, sample: Path, seen: str) -> Check:
    """With RUNNER_JOBS_QUOTA=loop, the sample container must see the thread's own file system at jobs/: a
    runner in another mount namespace than the engine's (in a container) mounts where the engine cannot see."""
    name = "job container: jobs/ is its thread's own file system"
    size, inodes = jobsquota.size_of(sample)
    if seen.split() == [str(size), str(inodes)]:
        return Check(name, True, f"{size / 2**20:.1f} MiB, {inodes:,} inodes, as the runner mounted it")
    return Check(name, False, (
        f"MISSING (the job sees a file system of {seen or 'unknown size'} (bytes, inodes) at jobs/, the runner "
        f"mounted {size} {inodes}: run the runner on the engine's host, in its mount namespace)"))


def _bot(settings: Settings) -> Check:
    """getMe with the configured token (and TELEGRAM_API_URL): is the token valid, is the API reachable."""
    if not settings.telegram_bot_token:
        return Check("Telegram bot", True, "TELEGRAM_BOT_TOKEN is not set: messages print to the console")
    import asyncio

    from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramUnauthorizedError

    from ..logsetup import redact
    from ..outbox.telegram import make_bot

    token = settings.telegram_bot_token
    where = settings.telegram_api_url or "api.telegram.org"

    async def get_me() -> Check:
        bot = make_bot(token, settings.telegram_api_url, timeout=10)
        try:
            me = await bot.get_me()
        except TelegramUnauthorizedError:
            return Check("Telegram bot", False, f"{where} refused TELEGRAM_BOT_TOKEN (Unauthorized): "
                                                "copy the token again from @BotFather")
        except TelegramNetworkError as exc:
            return Check("Telegram bot", False, f"could not reach {where}: {redact(str(exc), token)}")
        except TelegramAPIError as exc:
            return Check("Telegram bot", False, f"getMe failed at {where}: {redact(str(exc), token)}")
        finally:
            await bot.session.close()
        users = len(settings.telegram_allowed_users)
        if not users:
            return Check("Telegram bot", False, f"token works (@{me.username}) but TELEGRAM_ALLOWED_USERS is "
                                                "empty: the bot answers nobody; add your Telegram user id")
        return Check("Telegram bot", True, f"@{me.username} (id {me.id}) via {where}, {users} allowed user(s)")

    return asyncio.run(get_me())


def _egress(settings: Settings, dc: object) -> Check:
    """Start the proxy a job granted network would get, and remove it again."""
    if not settings.egress_allow:
        return Check("egress proxy", True, "RUNNER_EGRESS_ALLOW is empty: no job may be granted network")
    spec = _sample_spec(settings, settings.data_dir, allow_hosts=("example.com",))
    return Check("egress proxy", True, probes.egress_selfcheck(spec, dc))  # type: ignore[arg-type]


def _thread_dirs(data_dir: Path) -> Check:
    """Every thread directory is the runner's, mode 0700 (a run repairs its own; this reports the rest)."""
    me, open_dirs, count = os.geteuid(), [], 0
    with os.scandir(data_dir) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if entry.name.startswith(".") or not stat.S_ISDIR(st.st_mode):
                continue
            count += 1
            if st.st_uid != me or stat.S_IMODE(st.st_mode) != 0o700:
                open_dirs.append(f"{entry.name} ({st.st_uid}, {oct(stat.S_IMODE(st.st_mode))})")
    if open_dirs:
        return Check("thread directories", False, f"{len(open_dirs)} of {count} are not the runner's with mode 0700: "
                     f"{', '.join(open_dirs[:3])}; each is repaired at its next run, or chmod 700 them now")
    return Check("thread directories", True, f"{count}, each the runner's, mode 0700")


def _uid_range(uid_range: tuple[int, int]) -> Check:
    """No host user (/etc/passwd) and no subordinate range (/etc/subuid) shares the threads' uids."""
    first, last = uid_range
    clash = [f"user {u.pw_name} ({u.pw_uid})" for u in pwd.getpwall() if first <= u.pw_uid <= last]
    try:
        lines = Path("/etc/subuid").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        name, _, rest = line.partition(":")
        start, _, size = rest.partition(":")
        if start.isdigit() and size.isdigit() and int(start) <= last and first < int(start) + int(size):
            clash.append(f"subordinate uids of {name} in /etc/subuid")
    if clash:
        return Check("job uid range", False, f"RUNNER_UID_RANGE {first}-{last} overlaps {', '.join(clash[:3])}: "
                                             "choose uids no host user has")
    return Check("job uid range", True, f"{first}-{last}, one per thread; no host user or subordinate range has them")


PROBE_PORTS = (22, 53, 80, 443, 2375, 3128, 5432)


def egress_isolation(settings: Settings, dc: object) -> Check:
    """On a live sample (the real proxy and a job container configured as a granted run's): the
    proxy's port is reachable from the job, and no address of the engine's host or gateway is, on a
    few ports. Sends no traffic off the machine (the targets are the host's own addresses)."""
    name = "granted job isolation"
    if not settings.egress_allow:
        return Check(name, True, "RUNNER_EGRESS_ALLOW is empty: no job may be granted network")
    jobs_dir = _sample_dir(settings)
    spec = _sample_spec(settings, jobs_dir, allow_hosts=("example.com",))
    hosts = sandbox.host_addresses(dc, spec)  # type: ignore[arg-type]
    control = ("127.0.0.1", egress.PROXY_PORT)
    targets = [(h, p) for h in hosts for p in PROBE_PORTS]
    reached = probes.egress_probe(spec, [control, *targets], dc)  # type: ignore[arg-type]
    if not reached[control]:
        return Check(name, False, "the sample job could not reach even its proxy's port: the probe proves nothing")
    open_ = [f"{h}:{p}" for (h, p) in targets if reached[(h, p)]]
    if open_:
        return Check(name, False, "a granted job reaches the host at " + ", ".join(open_[:10]))
    return Check(name, True, f"no host address reachable from a granted job ({len(hosts)} addresses of the host "
                             f"and its gateways on ports {', '.join(map(str, PROBE_PORTS))}); only its proxy")


def _sample_dir(settings: Settings) -> Path:
    """The sample job's jobs/ directory, prepared as a real thread's (the range's reserved last uid)."""
    return prepare_jobs_dir(settings.data_dir, SAMPLE_THREAD, sample_uid(settings.uid_range),
                            jobsquota.from_settings(settings))


def _sample_spec(settings: Settings, jobs_dir: Path, **job: object) -> sandbox.RunSpec:
    """The run a job of this runner would get (the one builder of real runs' specs, with a sample job), for
    doctor's sample containers, as the range's last uid, which no thread gets."""
    uid = sample_uid(settings.uid_range)
    return run_spec(settings, sample_job(settings, **job), owner=settings.runner_id, jobs_dir=jobs_dir,
                    user=f"{uid}:{uid}")


def _hardening(settings: Settings, dc: object) -> Iterator[Check]:
    probe: dict[str, str] = {}
    try:
        sample = _sample_dir(settings)
        rows = probes.hardening_report(_sample_spec(settings, sample), dc, probe)  # type: ignore[arg-type]
    except Exception as exc:
        hint = ""
        if "bind source path does not exist" in str(exc):
            hint = (f" (the Docker engine does not see {settings.data_dir} on its host: when the runner runs in "
                    "a container, mount the data directory at the same path on both sides, as compose.yaml "
                    "does with RUNNER_DATA_PATH)")
        yield Check("job container hardening", False, f"could not run a sample container: {exc}{hint}")
        return
    for name, ok, detail in rows:
        yield Check(f"job container: {name}", ok, detail if ok else f"MISSING ({detail})")
    yield _job_ids(settings, probe.get("ids", ""))
    if jobsquota.from_settings(settings) is not None:
        yield _jobs_fs_seen_by_engine(settings, sample, probe.get("jobsfs", ""))


def _job_ids(settings: Settings, seen: str) -> Check:
    """What the sample container ran as, seen from inside: a uid of the range, not the runner's, with
    the same gid and no supplementary group."""
    name = "job container: a uid of its own"
    parts = seen.split()
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return Check(name, False, f"MISSING (the probe did not report its ids: {seen!r})")
    uid, gid, groups = int(parts[0]), int(parts[1]), {g for g in parts[2].split(",") if g != "-"}
    first, last = settings.uid_range
    problems = [p for p, bad in (
        (f"uid {uid} is the runner's own", uid == os.geteuid()),
        (f"uid {uid} is outside RUNNER_UID_RANGE {first}-{last}", not first <= uid <= last),
        (f"gid {gid} is not the uid", gid != uid),
        (f"supplementary groups {sorted(groups)}", bool(groups - {str(gid)})),
    ) if bad]
    detail = f"uid {uid}, gid {gid} (runner: uid {os.geteuid()}), from RUNNER_UID_RANGE {first}-{last}"
    return Check(name, not problems, detail if not problems else f"MISSING ({'; '.join(problems)})")
