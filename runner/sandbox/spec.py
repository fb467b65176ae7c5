"""What a run is: its spec (what to run, under which limits), its result, and the labels its containers
carry so that a restarted runner can find the containers a dead runner left behind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import SandboxError

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
    """What to run and under which limits. ``jobs_dir`` is a path on the Docker host, bind-mounted at
    /work/jobs; None: the run's /work is a volume of its own on the engine (RUNNER_FILES=postgres),
    filled with ``files_in`` (a tar of the directory ``jobs/``, owned by the job's user) before the start and read back by the caller after the exit (:func:`runner.sandbox.read_jobs`)."""

    job_id: int
    owner: str
    thread_id: str
    script: str  # file name inside jobs/, e.g. "check_price.py"
    jobs_dir: Path | None
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
    files_in: bytes | None = field(default=None, repr=False)  # with jobs_dir None: jobs/ as a tar


class LeaseLost(SandboxError):
    """This runner no longer holds the run's lease: it must not start, record or remove anything."""


class NeverStarted(SandboxError):
    """The run's container was gone when it was to be started (removed under us): its script never ran,
    so the run had no effects and may simply go again."""


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

    @property
    def ok(self) -> bool:
        """True when the script ran to completion and exited 0."""
        return self.error is None


def labels_for(spec: RunSpec, role: str) -> dict[str, str]:
    """The labels of every container and volume a run makes (``role``: "job", "egress", "probe")."""
    return {LABEL_MANAGED: "true", LABEL_JOB: str(spec.job_id), LABEL_OWNER: spec.owner,
            LABEL_THREAD: spec.thread_id, LABEL_ROLE: role, **spec.extra_labels}
