"""The only module that talks to the Docker engine.

One function, :func:`run`, takes a :class:`RunSpec` and returns a :class:`RunResult`. It always goes
create -> fence -> start -> wait(timeout) -> kill if over -> logs (bounded) -> remove, the removal in
``finally`` (``containers.run`` would wait forever and buffer all output; ``auto_remove`` races with
wait/logs). With ``RunSpec.keep`` a finished container is left for the caller to remove once the result
is recorded; ``RunSpec.fence`` is asked before the start (and before a kill or removal): a runner that
lost the run's lease starts, kills and removes nothing (:class:`LeaseLost`).

Every container carries the runner's labels so that a restarted runner can find the containers a dead
runner left behind (:func:`managed_containers`) and adopt them (:func:`adopt`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Mount, Ulimit
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from . import egress
from .errors import ImageMissing, SandboxError

log = logging.getLogger(__name__)

LABEL_MANAGED = "io.runner.managed"
LABEL_JOB = "io.runner.job-id"
LABEL_OWNER = "io.runner.owner"
LABEL_THREAD = "io.runner.thread"
LABEL_ROLE = "io.runner.role"  # "job" or "egress"
LABEL_STORE = "io.runner.store"  # the database the run belongs to (runner_meta.store_id)
LABEL_UID = "io.runner.uid"  # a uid registry entry (a volume runner-uid-<n>); never io.runner.managed
LABEL_LEASE = "io.runner.lease"  # the claim's fencing token (scheduled_jobs.lease_token)
WORKDIR = "/work"
JOBS_MOUNT = "/work/jobs"


@dataclass(frozen=True)
class RunSpec:
    """What to run and under which limits. ``jobs_dir`` is a path on the Docker host."""

    job_id: int
    owner: str
    thread_id: str
    script: str  # file name inside jobs/, e.g. "check_price.py"
    jobs_dir: Path
    image: str
    user: str  # "uid:gid" the job runs as; never root
    timeout_seconds: int = 30
    memory_mb: int = 256
    cpus: float = 1.0
    pids_limit: int = 64
    tmpfs_mb: int = 16
    nofile: int = 256
    max_file_mb: int = 50
    output_cap: int = 64 * 1024
    tmpfs_inodes: int = 4096
    runtime: str | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)
    # Network grant: host names reachable through a per-run egress proxy (the job itself never has a
    # network; with a grant it reaches the proxy's Unix socket only, see runner/egress.py).
    allow_hosts: tuple[str, ...] = ()
    egress_image: str = "runner-egress:latest"
    egress_network: str = "bridge"  # the proxy's outer network
    egress_blocked: tuple[str, ...] = ()  # more networks the proxy refuses (the Postgres host, ...)
    egress_hosts: tuple[str, ...] = ()  # "name=address" entries for the proxy's /etc/hosts
    egress_allowed: tuple[str, ...] = ()  # single addresses the operator allows despite the block list
    # Polled while the job runs; a returned string kills the job with that reason (disk use of jobs/).
    watchdog: Callable[[], str | None] | None = field(default=None, compare=False)
    watch_interval: float = 0.25
    on_start: Callable[[datetime], None] | None = field(default=None, compare=False)  # right after start
    start_at: datetime | None = None  # create the container now, start it at this time (the due time)
    source: str = field(default="", repr=False)  # the checked script itself; the container runs this
    # Fencing: asked right before the container is started (and before a failed run's container is
    # removed); False means this runner no longer holds the run's lease: nothing is started (LeaseLost).
    fence: Callable[[], bool] | None = field(default=None, compare=False)
    # Keep the finished container: the caller removes it once the result is recorded, so a runner that
    # dies in between leaves the result for the runner that adopts the run (RunResult.container).
    keep: bool = False


class LeaseLost(SandboxError):
    """This runner no longer holds the run's lease: it must not start, record or remove anything."""


@dataclass(frozen=True)
class RunResult:
    """What happened to one container run."""

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    output: str  # the tail of stdout+stderr, at most output_cap bytes (decoded)
    output_truncated: bool
    started_at: datetime | None
    duration_ms: int
    error: str | None  # the reason a person can act on; None when the script exited 0
    note: str | None = None  # something worth saying about a successful run ("output truncated at 64 KiB")
    container: Any = field(default=None, compare=False, repr=False)  # kept for the caller (RunSpec.keep)
    volume: Any = field(default=None, compare=False, repr=False)  # the kept container's proxy volume, if any

    @property
    def ok(self) -> bool:
        """True when the script ran to completion and exited 0."""
        return self.error is None


class _Ewma:
    """A moving estimate of how long the engine takes to start a created container."""

    def __init__(self, initial: float, weight: float = 0.2) -> None:
        self.value, self.weight = initial, weight
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.value += self.weight * (min(seconds, 5.0) - self.value)


START_LATENCY = _Ewma(0.1)
# Added to the start latency when a container is started ahead of its due time, for Python's own
# start-up: the launcher below then waits out the rest, so the script begins at the due time.
LAUNCH_MARGIN = 0.1

# Runs a job's script the way `python3 jobs/x.py` would (__main__, sys.argv, exit code, traceback),
# but never before the due time given as argv[1] (seconds since the epoch; 0: at once). The script's
# source is argv[3:] (chunks, each under the kernel's 128 KiB limit per argument): the bytes the runner
# read and checked against the approved sha256 (runner/pinning.py). It never reads jobs/x.py, which
# any job of the thread can rewrite, and it puts neither jobs/ nor the working directory on sys.path,
# so a file another job writes there (jobs/json.py) cannot shadow a module the script imports.
# The container is started a little early so the engine's start-up is over by then. It imports
# nothing beyond what Python starts with, and prints tracebacks with the interpreter's own C hook:
# a fork bomb's 64 copies must not each pay for runpy or the traceback module.
LAUNCHER = """\
import os, sys, time
due, script = float(sys.argv[1]), sys.argv[2]
code = compile("".join(sys.argv[3:]), script, "exec")
while (left := due - time.time()) > 0:
    time.sleep(min(left, 1.0))
sys.argv = [script]
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]
main = type(sys)("__main__")
main.__file__ = script
sys.modules["__main__"] = main
try:
    exec(code, main.__dict__)
except (SystemExit, KeyboardInterrupt):
    raise
except BaseException as exc:
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    sys.__excepthook__(type(exc), exc.with_traceback(tb), tb)
    sys.exit(1)
"""


SOURCE_CHUNK = 16 * 1024  # characters: at most 64 KiB of UTF-8, well under 128 KiB per argument


def source_arguments(source: str) -> list[str]:
    """The script's source as launcher arguments (a single argument may not exceed 128 KiB)."""
    return [source[i:i + SOURCE_CHUNK] for i in range(0, len(source), SOURCE_CHUNK)]


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    if isinstance(exc, docker.errors.APIError) and not isinstance(exc, docker.errors.NotFound):
        return exc.is_server_error()
    return False


_retry_docker = retry(
    retry=retry_if_exception(_transient), stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.2, max=2), reraise=True,
)


def client() -> docker.DockerClient:
    """A Docker client from the environment (DOCKER_HOST or the local socket)."""
    try:
        return docker.from_env(timeout=60)
    except docker.errors.DockerException as exc:
        raise SandboxError(f"cannot reach the Docker engine ({exc}); is Docker running and is DOCKER_HOST right?") from exc


def _labels(spec: RunSpec, role: str) -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_JOB: str(spec.job_id), LABEL_OWNER: spec.owner,
            LABEL_THREAD: spec.thread_id, LABEL_ROLE: role, **spec.extra_labels}


def _egress_mount(volume: str) -> Mount:
    """The run's proxy volume (its Unix socket only), read-only in the job: a socket on a read-only
    mount can still be connected to."""
    return Mount(target=egress.JOB_SOCKET_DIR, source=volume, type="volume", read_only=True, no_copy=True)


def container_config(spec: RunSpec, egress_volume: str | None = None) -> dict[str, Any]:
    """The keyword arguments of ``containers.create`` for a run: every protection in one place.

    The job never has a network. ``egress_volume`` is the run's proxy volume when the job has a grant:
    it is mounted read-only and the launcher first starts the relay to its socket (egress.RELAY)."""
    labels = _labels(spec, "job")
    env = {"HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
           "PATH": "/usr/local/bin:/usr/bin:/bin"}
    mounts = [Mount(target=JOBS_MOUNT, source=str(spec.jobs_dir), type="bind", read_only=False)]
    launcher = LAUNCHER
    if egress_volume is not None:
        env |= egress.proxy_environment()
        mounts.append(_egress_mount(egress_volume))
        launcher = egress.RELAY + LAUNCHER
    max_file = spec.max_file_mb * 1024 * 1024
    cfg: dict[str, Any] = {
        "image": spec.image,
        "command": ["python3", "-u", "-c", launcher,
                    f"{spec.start_at.timestamp():.6f}" if spec.start_at is not None else "0", f"jobs/{spec.script}",
                    *source_arguments(spec.source)],
        "working_dir": WORKDIR,
        "user": spec.user,
        "environment": env,  # nothing from the host: no database URL, token or host proxy settings
        "hostname": "job",
        "labels": labels,
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,noexec,size={spec.tmpfs_mb}m,nr_inodes={spec.tmpfs_inodes},mode=1777"},
        "mounts": mounts,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "mem_limit": f"{spec.memory_mb}m",
        "memswap_limit": f"{spec.memory_mb}m",  # equal to the memory limit: no swap
        "nano_cpus": int(spec.cpus * 1e9),
        "pids_limit": spec.pids_limit,
        "ulimits": [
            Ulimit(name="nofile", soft=spec.nofile, hard=spec.nofile),
            Ulimit(name="fsize", soft=max_file, hard=max_file),
            Ulimit(name="core", soft=0, hard=0),
        ],
        "init": True,  # reaps orphans; everything dies with PID 1
        "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        "detach": True,
    }
    if spec.runtime:
        cfg["runtime"] = spec.runtime
    if is_gvisor(spec.runtime):
        # gVisor's kernel counts the job's processes itself (RLIMIT_NPROC is per sandbox there, not per
        # host user); the host's pids cgroup holds the sandbox's own threads, which a busy job multiplies:
        # at the job's limit the sandbox itself would die ("exit code 2") instead of the job's fork failing.
        cfg["pids_limit"] = spec.pids_limit + GVISOR_THREAD_HEADROOM
        cfg["ulimits"].append(Ulimit(name="nproc", soft=spec.pids_limit, hard=spec.pids_limit))
    return cfg


GVISOR_THREAD_HEADROOM = 1024
CPU_PERIOD = 100_000  # microseconds: the CFS period of the egress proxy's CPU quota


def is_gvisor(runtime: str | None) -> bool:
    """True for gVisor's runtime (registered as "runsc", or under a name that says so)."""
    return bool(runtime) and ("runsc" in runtime or "gvisor" in runtime)


ALLOWED_ENV = frozenset({"HOME", "LANG", "PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",
                         *egress.proxy_environment()})


def refuse_unsafe(cfg: dict[str, Any], jobs_dir: Path) -> None:
    """Refuse, whatever asked for it, a job container that is privileged, joins the host's network or
    namespaces, mounts anything but the thread's jobs/ directory, or runs as root."""
    problems = []
    if cfg.get("privileged"):
        problems.append("privileged")
    net = str(cfg.get("network_mode", ""))
    if net != "none":
        problems.append(f"network {net!r}")
    for key in ("pid_mode", "ipc_mode", "userns_mode", "uts_mode", "volumes", "volumes_from", "devices", "cap_add"):
        if cfg.get(key) and cfg.get(key) != "private":
            problems.append(key)
    mounts = list(cfg.get("mounts") or [])
    if len(mounts) == 2 and _is_egress_mount(mounts[1]):
        mounts.pop()  # the one extra mount there may be: the run's proxy socket, read-only
    if len(mounts) != 1 or mounts[0]["Target"] != JOBS_MOUNT or mounts[0]["Source"] != str(jobs_dir) \
            or mounts[0]["Type"] != "bind":
        problems.append("mounts other than the thread's jobs/ directory")
    user = str(cfg.get("user", "")).split(":")[0]
    if user in ("", "0", "root"):
        problems.append("root user")
    if set(cfg.get("environment", {})) - ALLOWED_ENV:
        problems.append("host environment")
    if cfg.get("cap_drop") != ["ALL"] or not cfg.get("read_only"):
        problems.append("capabilities or writable root")
    if problems:
        raise SandboxError("refusing to create an unsafe job container: " + ", ".join(problems))


def _is_egress_mount(mount: Any) -> bool:
    source = str(mount.get("Source", ""))
    return (mount.get("Type") == "volume" and mount.get("Target") == egress.JOB_SOCKET_DIR
            and mount.get("ReadOnly") is True and re.fullmatch(r"runner-job-\d+-[0-9a-f]{8}", source) is not None
            and set(mount) <= {"Target", "Source", "Type", "ReadOnly", "VolumeOptions"}
            and (mount.get("VolumeOptions") or {}) == {"NoCopy": True})


def refuse_unsafe_proxy(network: str) -> None:
    """The egress proxy is made with no mounts, no capabilities and no privilege (see ``_Egress``); its
    outer network is the operator's setting, refused here whatever the settings let through."""
    problem = egress.unusable_outer_network(network)
    if problem:
        raise SandboxError(f"refusing to start an egress proxy: {problem}; "
                           "set RUNNER_EGRESS_NETWORK to a bridge network such as 'bridge'")


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""


def _bounded_logs(container: Any, cap: int, **kw: Any) -> tuple[str, bool]:
    """The last ``cap`` bytes of the job's output (Docker keeps at most 1 MiB of it), decoded as the
    job's own text: stored as it is (invalid UTF-8 replaced), made visible only where it is shown."""
    raw: bytes = container.logs(stdout=kw.get("stdout", True), stderr=kw.get("stderr", True))
    truncated = len(raw) > cap
    tail = raw[-cap:] if truncated else raw
    if truncated:  # begin at a character, not inside one
        skip = next((i for i, b in enumerate(tail[:4]) if b & 0xC0 != 0x80), 0)
        tail = tail[skip:]
    return tail.decode("utf-8", errors="replace"), truncated


def run(spec: RunSpec, dc: docker.DockerClient | None = None) -> RunResult:
    """Run one job container to its end (or its timeout) and remove it. Raises SandboxError when the
    container could not be created or started at all; everything after a start is a RunResult."""
    dc = dc or client()
    container = None
    started_at: datetime | None = None
    t0 = time.monotonic()
    proxy: _Egress | None = None
    try:
        egress_volume = None
        if spec.allow_hosts:
            proxy = _Egress(dc, spec)
            egress_volume = proxy.start()
        cfg = container_config(spec, egress_volume)
        refuse_unsafe(cfg, spec.jobs_dir)
        try:
            container = _retry_docker(dc.containers.create)(**cfg)
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(f"image {spec.image} not found: run make image (or runner image build)") from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"could not create the job container: {exc.explanation or exc}") from exc
        except requests.exceptions.ConnectionError as exc:
            raise SandboxError(f"cannot reach the Docker engine: {exc}") from exc
        if spec.start_at is not None:
            # Created ahead of time; starting takes the engine a while (mounts, namespaces, runc), so
            # the start is sent that much before the due time for the job's process to begin on time.
            # The launcher inside waits for the due time itself, so starting early is never too early.
            ahead = (spec.start_at - datetime.now(UTC)).total_seconds() - START_LATENCY.value - LAUNCH_MARGIN
            if ahead > 0:
                time.sleep(ahead)
        t_start = time.monotonic()  # the fence is inside the measured start-up: it is started that much earlier
        if spec.fence is not None and not spec.fence():
            raise LeaseLost(f"job {spec.job_id}: the lease is no longer this runner's")
        try:
            _retry_docker(container.start)()
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"could not start the job container: {getattr(exc, 'explanation', None) or exc}") from exc
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        START_LATENCY.observe(t0 - t_start)
        pre_wait = 0.0  # the launcher's wait for the due time: not part of the script's time limit
        if spec.start_at is not None and spec.start_at > started_at:
            pre_wait = (spec.start_at - started_at).total_seconds()
            started_at = spec.start_at  # when the script begins
        if spec.on_start is not None:
            spec.on_start(started_at)
        status, timed_out, watch = _wait(container, spec, spec.timeout_seconds + pre_wait)
        duration_ms = max(0, int((time.monotonic() - t0 - pre_wait) * 1000))
        result = _result(container, spec, status, timed_out, watch, started_at, duration_ms)
        if spec.keep:
            kept, container = container, None  # the caller removes it once the result is recorded
            if proxy is not None:  # the job container still mounts the proxy's volume: it goes with it
                proxy.volume, kept_volume = None, proxy.volume
                result = dataclasses.replace(result, volume=kept_volume)
            return dataclasses.replace(result, container=kept)
        return result
    except docker.errors.NotFound as exc:  # removed under us (by the runner that adopted the run)
        container = None
        raise SandboxError(f"the job container disappeared during the run: {exc.explanation or exc}") from exc
    finally:
        if container is not None and _still_ours(spec):
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
                log.warning("could not remove container %s of job %s: %s", container.short_id, spec.job_id, exc)
        if proxy is not None:
            proxy.remove()


def _still_ours(spec: RunSpec) -> bool:
    """May this runner remove the run's container? Not once another runner holds the run (it adopted
    the container); if the lease cannot be checked, the container is left for the orphan sweep."""
    if spec.fence is None:
        return True
    try:
        return spec.fence()
    except Exception:  # the database is away: the sweep removes it once its run is over
        return False


def _wait(container: Any, spec: RunSpec, seconds: float) -> tuple[dict[str, Any], bool, _Watch]:
    """Wait for the container up to ``seconds`` (killing it then), watching its disk use meanwhile."""
    timed_out = False
    watch = _Watch(container, spec)
    watch.start()
    try:
        status = container.wait(timeout=max(1.0, seconds))
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        if known_lost(spec):  # woken from a freeze past the lease: the run (and its kill) is another's
            raise LeaseLost(f"job {spec.job_id}: the lease is no longer this runner's") from None
        timed_out = True
        _kill(container)
        status = container.wait(timeout=30)
    finally:
        watch.stop()
    return status, timed_out, watch


def known_lost(spec: RunSpec) -> bool:
    """True only if the fence says the lease is gone (not when it cannot be asked: the database is away)."""
    if spec.fence is None:
        return False
    try:
        return not spec.fence()
    except Exception:
        return False


def _result(container: Any, spec: RunSpec, status: dict[str, Any], timed_out: bool, watch: _Watch,
            started_at: datetime | None, duration_ms: int) -> RunResult:
    """The finished container's result: exit code, reason, bounded output."""
    exit_code = status.get("StatusCode")
    container.reload()
    oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
    output, truncated = _bounded_logs(container, spec.output_cap)
    error = watch.reason if watch.reason and not timed_out else _reason(
        spec, exit_code, timed_out, oom, container, watch.pids_hit)
    note = f"output truncated at {spec.output_cap // 1024} KiB" if truncated else None
    if note:
        error = f"{error}; {note}" if error else None
    return RunResult(exit_code=exit_code, timed_out=timed_out, oom_killed=oom, output=output,
                     output_truncated=truncated, started_at=started_at, duration_ms=duration_ms, error=error,
                     note=note)


def _engine_time(value: Any) -> datetime | None:
    """A time the engine reports ("2026-12-01T23:04:50.123456789Z"; zero before it happened)."""
    text = str(value or "")
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}" if frac else head).replace(tzinfo=UTC)
    except ValueError:
        return None


def adopt(container: Any, spec: RunSpec) -> RunResult:
    """The result of a run another runner started and left (it died or froze): wait for a running
    container within what is left of the run's time limit (killing it then, "timed out"), or read an
    exited one. The container is kept: the caller removes it once the result is recorded."""
    container.reload()
    state = container.attrs.get("State", {})
    began = _engine_time(state.get("StartedAt")) or datetime.now(UTC)
    if spec.start_at is not None and spec.start_at > began:
        began = spec.start_at  # the launcher waited for the due time: the script began then
    left = spec.timeout_seconds - (datetime.now(UTC) - began).total_seconds()
    status, timed_out, watch = _wait(container, spec, left)
    container.reload()
    ended = _engine_time(container.attrs.get("State", {}).get("FinishedAt")) or datetime.now(UTC)
    duration_ms = max(0, int((ended - began).total_seconds() * 1000))
    return dataclasses.replace(_result(container, spec, status, timed_out, watch, began, duration_ms),
                               container=container)


class _Egress:
    """The per-run egress proxy: a squid (on its own loopback) and socat, whose Unix socket in a small
    per-run volume is the job's one way out. The proxy alone is on a network (the outer one)."""

    READY = ("Accepting HTTP Socket connections", "runner-egress: socket ready")
    # A tmpfs: the socket never touches the disk; owned by the image's proxy user (Debian's uid 13).
    VOLUME_OPTIONS = {"type": "tmpfs", "device": "tmpfs", "o": "size=64k,nr_inodes=16,uid=13,gid=13,mode=0755"}

    def __init__(self, dc: docker.DockerClient, spec: RunSpec) -> None:
        self.dc, self.spec = dc, spec
        self.name = f"runner-job-{spec.job_id}-{uuid.uuid4().hex[:8]}"
        self.volume: Any = None
        self.proxy: Any = None

    def start(self) -> str:
        """Start the proxy and return the name of the volume holding its socket."""
        spec, labels = self.spec, _labels(self.spec, "egress")
        refuse_unsafe_proxy(spec.egress_network)
        self._check_image()
        self._check_runtime()
        try:
            blocked = (*spec.egress_blocked, *host_networks(self.dc, spec))
            conf = egress.squid_config(spec.allow_hosts, blocked, spec.egress_allowed)
            pins = dict(egress.parse_pins(spec.egress_hosts))
        except ValueError as exc:
            raise SandboxError(f"could not configure the job's egress proxy: {exc}") from exc
        try:
            self.volume = self.dc.volumes.create(self.name, driver="local", driver_opts=self.VOLUME_OPTIONS,
                                                 labels=labels)
            self.proxy = self.dc.containers.create(
                spec.egress_image, name=f"{self.name}-proxy", labels=labels, detach=True,
                environment={"RUNNER_SQUID_CONF": conf}, network=spec.egress_network, read_only=True,
                cap_drop=["ALL"], security_opt=["no-new-privileges:true"], mem_limit="96m", memswap_limit="96m",
                cpu_period=CPU_PERIOD, cpu_quota=CPU_PERIOD,  # one CPU to start; the job's share once ready
                pids_limit=64, tmpfs={"/tmp": "size=8m", "/var/spool/squid": "size=8m", "/run": "size=1m"},
                mounts=[Mount(target=egress.PROXY_SOCKET_DIR, source=self.name, type="volume", no_copy=True)],
                extra_hosts=pins or None,
                log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            )
            self.proxy.start()
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(f"egress proxy image {spec.egress_image} not found: run make images "
                               "(or runner image build --egress)") from exc
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"could not set up the job's egress proxy: {getattr(exc, 'explanation', None) or exc}") from exc
        self._wait_ready()
        self._limit_cpu()
        return self.name

    def _limit_cpu(self) -> None:
        """The proxy works on the job's behalf, so it gets the job's CPU share: a job must not make it
        spend more of the host than the job itself may (squid starts at a full CPU, then this)."""
        try:
            self.proxy.update(cpu_quota=max(1000, int(self.spec.cpus * CPU_PERIOD)))
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"could not limit the egress proxy's CPU: {getattr(exc, 'explanation', None) or exc}") from exc

    def _check_runtime(self) -> None:
        """gVisor lets a sandbox connect to a socket on a mount only with --host-uds: say so up front."""
        name = self.spec.runtime
        if not name:
            return
        try:
            runtime = (self.dc.info().get("Runtimes") or {}).get(name) or {}
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"cannot reach the Docker engine: {exc}") from exc
        if not gvisor_blocks_sockets(runtime):
            return
        raise SandboxError(f"a job granted network under {name} connects to its proxy's Unix socket, which gVisor "
                           "allows only with --host-uds=open: register the runtime with it (make gvisor does)")

    def _check_image(self) -> None:
        image = self.spec.egress_image
        try:
            labels = self.dc.images.get(image).labels or {}
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(f"egress proxy image {image} not found: run make images "
                               "(or runner image build --egress)") from exc
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"could not inspect the egress proxy image {image}: {exc}") from exc
        if labels.get("io.runner.egress-version") != egress.IMAGE_VERSION:
            raise ImageMissing(f"egress proxy image {image} is older than this runner (it must serve a Unix socket): "
                               "rebuild it with make images (or runner image build --egress)")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            logs = self.proxy.logs(tail=200).decode("utf-8", "replace")
            if all(marker in logs for marker in self.READY):
                return
            self.proxy.reload()
            if self.proxy.status not in ("created", "running"):
                raise SandboxError(f"the egress proxy stopped: {_last_line(logs)}")
            time.sleep(0.05)
        raise SandboxError("the egress proxy did not start within 15 s")

    def remove(self) -> None:
        if self.proxy is not None:
            remove_container(self.proxy)
        if self.volume is not None:
            remove_volume(self.volume)


def gvisor_blocks_sockets(runtime: dict[str, Any]) -> bool:
    """True if ``runtime`` (an entry of the engine's Runtimes) is runsc without host socket access."""
    if not str(runtime.get("path", "")).endswith("runsc"):
        return False
    args = runtime.get("runtimeArgs") or []
    return not any(a in ("--host-uds=open", "--host-uds=all", "--fsgofer-host-uds") for a in args)


def egress_selfcheck(spec: RunSpec, dc: docker.DockerClient | None = None) -> str:
    """Start the egress proxy a granted run would get (its volume and squid), wait until squid accepts
    connections, and remove both. Sends no traffic anywhere. Raises on failure; returns a summary."""
    proxy = _Egress(dc or client(), spec)
    try:
        t0 = time.monotonic()
        proxy.start()
        return f"{spec.egress_image} on network {spec.egress_network!r} ready in {time.monotonic() - t0:.1f} s"
    finally:
        proxy.remove()


# --- the engine host's own addresses: the proxy refuses every one of them -----------------------------

HOST_PROBE_TTL = 60.0  # seconds the engine host's interface addresses are reused before looking again
_HOST_PROBE = "cat /proc/net/fib_trie; cat /proc/net/if_inet6 2>/dev/null; true"
_host_cache: dict[str, tuple[float, list[str]]] = {}
_host_lock = threading.Lock()


def host_networks(dc: docker.DockerClient, spec: RunSpec) -> list[str]:
    """Every address of the engine's host and of this runner, as networks for the proxy's block list:
    the subnets, gateways and reserved addresses of the engine's networks, the runner's own
    interfaces, and the engine host's interfaces (read in a short-lived container on the host's
    network). Found afresh each time a proxy starts (the host's interfaces at most once a minute)."""
    nets = set(_engine_network_addresses(dc, subnets=True))
    nets |= set(egress.parse_local_addresses(_read_local_addresses()))
    nets |= set(engine_host_addresses(dc, spec))
    return sorted(nets)


def host_addresses(dc: docker.DockerClient, spec: RunSpec) -> list[str]:
    """The single addresses of the engine's host (gateways and interfaces, loopback left out), for
    ``runner doctor`` to try from a sample job."""
    nets = [*_engine_network_addresses(dc, subnets=False), *egress.parse_local_addresses(_read_local_addresses()),
            *engine_host_addresses(dc, spec)]
    out = {str(ipaddress.ip_network(n).network_address) for n in nets if ipaddress.ip_network(n).num_addresses == 1}
    return sorted(a for a in out if not ipaddress.ip_address(a).is_loopback)


def _engine_network_addresses(dc: docker.DockerClient, *, subnets: bool) -> list[str]:
    out = []
    for net in dc.networks.list():
        for conf in (net.attrs.get("IPAM") or {}).get("Config") or []:
            addresses = [conf.get("Gateway") or _first_host(conf.get("Subnet")),  # some engines omit the default's
                         *(conf.get("AuxiliaryAddresses") or {}).values()]
            if subnets:
                addresses.append(conf.get("Subnet"))
            for a in filter(None, addresses):
                try:
                    out.append(str(ipaddress.ip_network(a, strict=False)))
                except ValueError:
                    log.warning("network %s has an address Docker reports as %r; ignored", net.name, a)
    return out


def _first_host(subnet: str | None) -> str | None:
    try:
        return str(next(ipaddress.ip_network(subnet or "", strict=False).hosts(), None) or "") or None
    except ValueError:
        return None


def _read_local_addresses() -> str:
    text = []
    for path in ("/proc/net/fib_trie", "/proc/net/if_inet6"):  # kernel files, this process's own namespace
        try:
            with open(path, "rb") as f:
                text.append(f.read(8 << 20).decode("ascii", "replace"))
        except OSError:
            continue
    return "\n".join(text)


def engine_host_addresses(dc: docker.DockerClient, spec: RunSpec) -> list[str]:
    """The engine host's interface addresses, read from /proc/net in a container on the host's network
    (the egress image, no capabilities, read-only, as nobody), cached for HOST_PROBE_TTL seconds."""
    key = str(dc.api.base_url)
    with _host_lock:
        hit = _host_cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < HOST_PROBE_TTL:
            return hit[1]
        try:
            text = _run_host_probe(dc, spec)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxError(f"could not read the engine host's addresses (the egress proxy must refuse them): "
                               f"{getattr(exc, 'explanation', None) or exc}") from exc
        found = egress.parse_local_addresses(text)
        if not found:
            raise SandboxError("could not read the engine host's addresses: /proc/net showed none")
        _host_cache[key] = (time.monotonic(), found)
        return found


def _run_host_probe(dc: docker.DockerClient, spec: RunSpec) -> str:
    probe = dc.containers.create(
        spec.egress_image, entrypoint=["sh", "-c", _HOST_PROBE], network_mode="host", user="65534:65534",
        read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges:true"], mem_limit="32m",
        memswap_limit="32m", pids_limit=8, labels=_labels(spec, "probe"), detach=True,
        log_config=LogConfig(type="json-file", config={"max-size": "8m", "max-file": "1"}),
    )
    try:
        probe.start()
        status = probe.wait(timeout=30)
        if status.get("StatusCode") != 0:
            raise SandboxError(f"the host address probe exited with {status.get('StatusCode')}")
        return probe.logs(stdout=True, stderr=False).decode("ascii", "replace")
    finally:
        remove_container(probe)


_REACH_PROBE = (
    "import socket\n"
    "scopes = [i for i, n in socket.if_nameindex() if n != 'lo'] or [0]\n"
    "for host, port in TARGETS:\n"
    "    six = ':' in host\n"
    "    for scope in scopes if six and host.lower().startswith('fe80') else [0]:\n"
    "        s = socket.socket(socket.AF_INET6 if six else socket.AF_INET)\n"
    "        s.settimeout(1)\n"
    "        try:\n"
    "            s.connect((host, port, 0, scope) if six else (host, port))\n"
    "            print('OPEN', host, port)\n"
    "        except OSError:\n"
    "            print('CLOSED', host, port)\n"
    "        finally:\n"
    "            s.close()\n"
)


def egress_probe(spec: RunSpec, targets: list[tuple[str, int]], dc: docker.DockerClient | None = None
                 ) -> dict[tuple[str, int], bool]:
    """Start the proxy of a granted run and a sample job container configured exactly as that run's,
    and try a TCP connection to each (address, port) from inside it. Returns which ones connected.
    Nothing leaves the machine: the targets are the caller's (the host's own addresses)."""
    dc = dc or client()
    proxy = _Egress(dc, spec)
    container = None
    try:
        cfg = container_config(spec, proxy.start())
        refuse_unsafe(cfg, spec.jobs_dir)
        code = egress.RELAY + f"TARGETS = {targets!r}\n" + _REACH_PROBE  # the relay as the launcher starts it
        cfg["command"] = ["python3", "-c", code]
        container = dc.containers.create(**cfg)
        container.start()
        container.wait(timeout=120)
        lines = container.logs(stdout=True, stderr=False).decode("utf-8", "replace").splitlines()
    finally:
        if container is not None:
            remove_container(container)
        proxy.remove()
    opened = {(w[1], int(w[2])) for w in map(str.split, lines) if len(w) == 3 and w[0] == "OPEN"}
    return {t: t in opened for t in targets}


def _kill(container: Any) -> None:
    try:
        container.kill()
    except (docker.errors.APIError, requests.exceptions.ConnectionError):
        pass  # it ended on its own just now


# Where the engine keeps a container's pids cgroup (v1 cgroupfs / systemd, v2 cgroupfs / systemd).
_PIDS_EVENTS = (
    "/sys/fs/cgroup/pids/docker/{id}/pids.events",
    "/sys/fs/cgroup/pids/system.slice/docker-{id}.scope/pids.events",
    "/sys/fs/cgroup/docker/{id}/pids.events",
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/pids.events",
)


def _pids_limit_hits(container_id: str) -> int | None:
    """How often the container hit its process limit (the cgroup's "max" event), if the host shows it."""
    for pattern in _PIDS_EVENTS:
        try:
            with open(pattern.format(id=container_id), "rb") as f:  # a kernel file, not a job's
                for line in f.read(4096).decode().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "max":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


class _Watch:
    """Polls the job while it runs: the spec's watchdog (disk use) and the pids cgroup."""

    def __init__(self, container: Any, spec: RunSpec) -> None:
        self.container, self.spec = container, spec
        self.reason: str | None = None
        self.pids_hit = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"watch-{spec.job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)  # the watchdog's walk gives up within its own time budget

    def _loop(self) -> None:
        # The pids cgroup goes with the container, and a fork bomb can hit its limit and die within a
        # fraction of a second: its counter is read often (a read of one small kernel file), the
        # watchdog's walk only at its own pace.
        interval = self.spec.watch_interval
        next_walk = time.monotonic() + interval
        while True:
            if not self.pids_hit and _pids_limit_hits(self.container.id):
                self.pids_hit = True
            if self._stop.wait(PIDS_POLL_SECONDS):
                return
            if self.spec.watchdog is None or time.monotonic() < next_walk:
                continue
            t0 = time.monotonic()
            reason = self._walk()
            # A directory with thousands of files takes a while to walk: keep the walk under a tenth
            # of the time (per running job), but poll at least every 2 s so a job cannot write
            # much past the limit between two walks (the walk itself is bounded by the watchdog).
            interval = min(max(self.spec.watch_interval, 10 * (time.monotonic() - t0)), 2.0)
            next_walk = time.monotonic() + interval
            if reason:
                if known_lost(self.spec):
                    return  # the run is another runner's now: so is stopping it
                self.reason = reason
                _kill(self.container)
                return

    def _walk(self) -> str | None:
        assert self.spec.watchdog is not None
        try:
            return self.spec.watchdog()
        except Exception as exc:  # never let the watch die silently: stop the job instead
            return f"could not check the job's disk use: {exc}"


PIDS_POLL_SECONDS = 0.02


def _reason(spec: RunSpec, exit_code: int | None, timed_out: bool, oom: bool, container: Any,
            pids_hit: bool = False) -> str | None:
    """Why the run failed, for a person. A limit is named only on a fact the job cannot forge: a kill
    the runner sent (the timeout; the watchdog's kills are reported by the caller), the engine's OOM
    flag, the pids cgroup's "max" counter. Anything else is the exit code and, quoted as the job's own
    words, the last line it wrote on stderr: a job that prints "MemoryError" or exits with 137 has
    said so itself, and no more (an exit code above 128 is what a shell reports for a signal, but any
    script can exit with it)."""
    if timed_out:
        reason = f"timed out after {spec.timeout_seconds} s"
        return f"{reason} (process limit {spec.pids_limit} reached)" if pids_hit else reason
    if oom:
        return f"killed: memory limit {spec.memory_mb} MiB exceeded"
    if exit_code == 0:
        return None
    if pids_hit:
        return f"process limit {spec.pids_limit} reached"
    stderr, _ = _bounded_logs(container, 8192, stdout=False)
    last = _last_line(stderr)
    return f"exit code {exit_code}: {last}" if last else f"exit code {exit_code}"


def _filters(store: str | None) -> dict[str, Any]:
    labels = [f"{LABEL_MANAGED}=true"] + ([f"{LABEL_STORE}={store}"] if store else [])
    return {"label": labels}


def managed_containers(dc: docker.DockerClient | None = None, store: str | None = None) -> list[Any]:
    """Every container (running or not) that some runner started (for the database ``store``, if given)."""
    dc = dc or client()
    # ignore_removed: a container removed while the list is being read is simply not in it
    return dc.containers.list(all=True, filters=_filters(store), ignore_removed=True)


def managed_networks(dc: docker.DockerClient | None = None, store: str | None = None) -> list[Any]:
    """Every per-run network that some runner made (for the database ``store``, if given)."""
    dc = dc or client()
    return dc.networks.list(filters=_filters(store))


def managed_volumes(dc: docker.DockerClient | None = None, store: str | None = None) -> list[Any]:
    """Every per-run proxy volume that some runner made (for the database ``store``, if given)."""
    dc = dc or client()
    return dc.volumes.list(filters=_filters(store))


def remove_volume(volume: Any) -> None:
    """Remove a proxy volume (its containers are removed first); one already gone is fine."""
    try:
        volume.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        log.warning("could not remove volume %s: %s", volume.name, exc)


def remove_orphan_volumes(dc: docker.DockerClient, store: str | None, live_jobs: set[str | None],
                          min_age: float = 60.0) -> None:
    """Remove proxy volumes whose run's containers are all gone, once they are ``min_age`` seconds old
    (a run creates its volume just before its proxy container)."""
    now = datetime.now(UTC)
    for volume in managed_volumes(dc, store):
        attrs = volume.attrs or {}
        labels = attrs.get("Labels") or {}
        if LABEL_UID in labels or labels.get(LABEL_JOB) in live_jobs:
            continue  # a uid registry entry is never a run's: it lives as long as its thread
        try:
            created = datetime.fromisoformat(str(attrs.get("CreatedAt", "")).replace("Z", "+00:00"))
        except ValueError:
            created = now
        if created.tzinfo is None or (now - created).total_seconds() >= min_age:
            remove_volume(volume)


# --- the engine's uid registry: which database's thread has which job uid ----------------------------
#
# Per-user kernel limits are counted per host uid across every container of the engine, so a uid must
# never go to threads of two databases. Each uid given is an empty volume ``runner-uid-<n>`` labelled
# with its database (store) and thread. Creating a volume whose name exists is a no-op that keeps the
# first creator's labels, and the engine serialises creation by name: whoever reads its own labels back
# holds the uid. The entries carry no io.runner.managed label, so no orphan sweep ever lists them.

def uid_volume_name(uid: int) -> str:
    return f"runner-uid-{int(uid)}"


def claim_uid(dc: docker.DockerClient, uid: int, store: str, thread_id: str) -> tuple[str, str]:
    """Register ``uid`` for (``store``, ``thread_id``) unless someone holds it already; return who holds it
    now, as (store, thread id). The caller holds the uid only if that is its own pair."""
    name = uid_volume_name(uid)
    labels = {LABEL_UID: str(int(uid)), LABEL_STORE: store, LABEL_THREAD: thread_id}
    for _ in range(3):  # an entry removed between the create and the read-back: create it again
        try:
            dc.volumes.create(name, driver="local", labels=labels)
            got = dc.volumes.get(name).attrs.get("Labels") or {}
        except docker.errors.NotFound:
            continue
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"could not record job uid {uid} on the Docker engine: "
                               f"{getattr(exc, 'explanation', None) or exc}") from exc
        return got.get(LABEL_STORE, ""), got.get(LABEL_THREAD, "")
    raise SandboxError(f"could not record job uid {uid} on the Docker engine: its entry {name} keeps disappearing")


def registered_uids(dc: docker.DockerClient) -> dict[int, tuple[str, str]]:
    """Every uid registered on the engine, by any database: uid -> (store, thread id)."""
    try:
        volumes = dc.volumes.list(filters={"label": [LABEL_UID]})
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        raise SandboxError(f"could not read the job uids registered on the Docker engine: {exc}") from exc
    found: dict[int, tuple[str, str]] = {}
    for volume in volumes:
        labels = (volume.attrs or {}).get("Labels") or {}
        value = str(labels.get(LABEL_UID, ""))
        if value.isdigit() and volume.name == uid_volume_name(int(value)):
            found[int(value)] = (labels.get(LABEL_STORE, ""), labels.get(LABEL_THREAD, ""))
    return found


def release_uids(dc: docker.DockerClient, store: str) -> int:
    """Remove the registry entries of the database ``store`` (only when that database is gone for good)."""
    removed = 0
    for volume in dc.volumes.list(filters={"label": [LABEL_UID, f"{LABEL_STORE}={store}"]}):
        remove_volume(volume)
        removed += 1
    return removed


def remove_network(network: Any) -> None:
    """Remove a network (disconnecting nothing: its containers are removed first)."""
    try:
        network.remove()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        log.warning("could not remove network %s: %s", network.name, exc)


def kill_container(container: Any) -> None:
    """SIGKILL a container; one that has already stopped is fine."""
    _kill(container)


def remove_container(container: Any) -> bool:
    """Kill and remove a container. True if this call removed it; a container already gone is fine
    (False), a failure is logged (False)."""
    try:
        container.remove(force=True, v=True)
        return True
    except docker.errors.NotFound:
        return False
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        log.warning("could not remove container %s: %s", container.name, exc)
        return False


def image_present(image: str, dc: docker.DockerClient | None = None) -> bool:
    """True if the engine has ``image``."""
    dc = dc or client()
    try:
        dc.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False


PROBE = (
    "import os\n"
    "status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
    "print('uid', os.getuid())\n"
    "print('ids', os.getuid(), os.getgid(), ','.join(map(str, sorted(os.getgroups()))) or '-')\n"
    "for k in ('NoNewPrivs', 'CapEff', 'CapBnd', 'Seccomp'):\n"
    "    print(k, status.get(k, '?').strip())\n"
    "print('ifaces', ' '.join(sorted(l.split(':')[0].strip() for l in list(open('/proc/net/dev'))[2:])))\n"
    "try:\n    open('/usr/x', 'w')\n    print('rootfs writable')\nexcept OSError:\n    print('rootfs read-only')\n"
    "print('docker.sock', os.path.exists('/var/run/docker.sock'))\n"
    "st = os.statvfs('jobs')\n"  # the jobs/ file system as the engine mounted it (doctor: RUNNER_JOBS_QUOTA)
    "print('jobsfs', st.f_blocks * st.f_frsize, st.f_files)\n"
)


def hardening_report(spec: RunSpec, dc: docker.DockerClient | None = None,
                     probe_out: dict[str, str] | None = None) -> list[tuple[str, bool, str]]:
    """Create a sample job container as a real run would, inspect it and run a probe inside it.

    Returns (protection, in force, detail) rows for ``runner doctor``; ``probe_out`` gets what the probe saw."""
    dc = dc or client()
    cfg = container_config(spec)
    cfg["command"] = ["python3", "-c", PROBE]
    container = dc.containers.create(**cfg)
    try:
        hc = container.attrs["HostConfig"]
        info = dc.info()
        container.start()
        container.wait(timeout=30)
        probe = dict(line.split(" ", 1) for line in container.logs().decode().splitlines() if " " in line)
    finally:
        remove_container(container)
    if probe_out is not None:
        probe_out.update(probe)
    mounts = hc.get("Mounts") or []
    sec = hc.get("SecurityOpt") or []
    tmpfs = (hc.get("Tmpfs") or {}).get("/tmp", "")
    ulimits = {u["Name"]: u["Hard"] for u in hc.get("Ulimits") or []}
    rows = [
        ("not privileged", not hc.get("Privileged"), "Privileged=false"),
        ("non-root user", probe.get("uid", "0") != "0", f"uid {probe.get('uid')}"),
        ("read-only root filesystem", hc.get("ReadonlyRootfs") and probe.get("rootfs") == "read-only",
         f"ReadonlyRootfs={hc.get('ReadonlyRootfs')}"),
        ("all capabilities dropped", hc.get("CapDrop") == ["ALL"] and probe.get("CapEff") == "0000000000000000",
         f"CapEff {probe.get('CapEff')}"),
        ("no-new-privileges", any(o.startswith("no-new-privileges") for o in sec) and probe.get("NoNewPrivs") == "1",
         f"NoNewPrivs {probe.get('NoNewPrivs')}"),
        ("seccomp filter", probe.get("Seccomp") == "2" and not any("unconfined" in o for o in sec),
         f"Seccomp mode {probe.get('Seccomp')}"),
        ("no network", hc.get("NetworkMode") == "none" and probe.get("ifaces") == "lo", f"interfaces: {probe.get('ifaces')}"),
        ("memory limit, no swap", bool(hc.get("Memory")) and hc.get("Memory") == hc.get("MemorySwap"),
         f"{(hc.get('Memory') or 0) // 2**20} MiB"),
        ("CPU limit", bool(hc.get("NanoCpus")), f"{(hc.get('NanoCpus') or 0) / 1e9:g} CPU"),
        ("process limit", bool(hc.get("PidsLimit")), f"{hc.get('PidsLimit')} processes"),
        ("open files and file size limits", "nofile" in ulimits and "fsize" in ulimits,
         f"nofile {ulimits.get('nofile')}, fsize {ulimits.get('fsize')}"),
        ("tmpfs /tmp with a size", "size=" in tmpfs, tmpfs),
        ("init reaps children", bool(hc.get("Init")), "Init=true"),
        ("only the thread's jobs/ mounted", len(mounts) == 1 and mounts[0].get("Target") == JOBS_MOUNT,
         ", ".join(f"{m.get('Source')}->{m.get('Target')}" for m in mounts)),
        ("no Docker socket", probe.get("docker.sock") == "False", "absent inside the container"),
        ("bounded logs", (hc.get("LogConfig") or {}).get("Config", {}).get("max-size") is not None,
         str((hc.get("LogConfig") or {}).get("Config"))),
        ("container runtime", True, f"{hc.get('Runtime') or info.get('DefaultRuntime')} "
                                    f"(gVisor's runsc is stronger: RUNNER_CONTAINER_RUNTIME=runsc)"),
    ]
    return [(name, bool(ok), detail) for name, ok, detail in rows]
