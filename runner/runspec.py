"""The one builder of a run's spec: (settings, job) -> :class:`sandbox.RunSpec`.

The scheduler's runs, the adopted runs and ``runner doctor``'s sample containers all go through
:func:`run_spec`, so the container doctor inspects is made under the very limits a real run gets
(doctor's sample job is :func:`sample_job`: the runner's default limits, no grant, no due time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .sandbox import RunSpec
from .settings import Settings

SAMPLE_THREAD = "doctor:0"  # doctor's sample job's thread: no thread of a chat has this id


def run_spec(settings: Settings, job: dict[str, Any], *, owner: str, jobs_dir: Path | None, user: str,
             **extra: Any) -> RunSpec:
    """The spec of one run of ``job`` (a scheduled_jobs row: id, thread, script, its limits, its network
    grant and due time) on this runner. ``extra`` holds what only the caller knows (the watchdog, the
    fence, the labels, the checked source, ...)."""
    s = settings
    return RunSpec(
        job_id=job["id"], owner=owner, thread_id=job["thread_id"], script=Path(job["script_path"]).name,
        jobs_dir=jobs_dir, image=s.image, user=user,
        timeout_seconds=job["timeout_seconds"], memory_mb=job["memory_mb"], cpus=job["cpus"],
        pids_limit=job["pids_limit"], tmpfs_mb=s.tmpfs_mb, tmpfs_inodes=s.tmpfs_inodes, nofile=s.nofile,
        max_file_mb=s.max_file_mb, output_cap=s.output_cap, runtime=s.container_runtime,
        allow_hosts=tuple(job.get("allow_hosts") or ()), egress_image=s.egress_image,
        egress_network=s.egress_network, egress_blocked=s.egress_block, egress_hosts=s.egress_hosts,
        egress_allowed=s.egress_allow_addresses, start_at=job.get("due_time"), **extra,
    )


def sample_job(settings: Settings, **fields: Any) -> dict[str, Any]:
    """A job as ``runner doctor`` samples it: the runner's default limits, run at once; ``fields``
    override (``allow_hosts`` for a granted sample)."""
    return {"id": 0, "thread_id": SAMPLE_THREAD, "script_path": "probe.py", "timeout_seconds": settings.timeout_seconds,
            "memory_mb": settings.memory_mb, "cpus": settings.cpus, "pids_limit": settings.pids_limit,
            "allow_hosts": (), "due_time": None, **fields}
