"""The job container's policy: every protection of a run in one place (``container_config``), and the
refusal of an unsafe container whatever asked for it (``refuse_unsafe``, ``refuse_unsafe_proxy``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docker.types import LogConfig, Mount, Ulimit

from .. import egress
from ..errors import SandboxError
from .command import LAUNCHER, RELAY, source_arguments
from .spec import JOBS_MOUNT, WORKDIR, RunSpec, labels_for


def _egress_mount(volume: str) -> Mount:
    """The run's proxy volume (its Unix socket only), read-only in the job: a socket on a read-only
    mount can still be connected to."""
    return Mount(target=egress.JOB_SOCKET_DIR, source=volume, type="volume", read_only=True, no_copy=True)


def _jobs_mount(spec: RunSpec) -> Mount:
    """The thread's jobs/ directory (a bind mount at /work/jobs), or a run's own volume at /work:
    anonymous, so the engine removes it with the container, and not filled from the image. The runner
    copies jobs/ into it (the engine applies the owner and mode of every entry of the archive but its
    root: so jobs/ is an entry, owned by the job's user, and the volume's root stays root's)."""
    if spec.jobs_dir is None:
        return Mount(target=WORKDIR, source=None, type="volume", read_only=False, no_copy=True,
                     labels=labels_for(spec, "jobs"))
    return Mount(target=JOBS_MOUNT, source=str(spec.jobs_dir), type="bind", read_only=False)


def container_config(spec: RunSpec, egress_volume: str | None = None) -> dict[str, Any]:
    """The keyword arguments of ``containers.create`` for a run: every protection in one place.

    The job never has a network. ``egress_volume`` is the run's proxy volume when the job has a grant:
    it is mounted read-only and the launcher first starts the relay to its socket (RELAY)."""
    labels = labels_for(spec, "job")
    env = {"HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
           "PATH": "/usr/local/bin:/usr/bin:/bin"}
    mounts = [_jobs_mount(spec)]
    launcher = LAUNCHER
    if egress_volume is not None:
        env |= egress.proxy_environment()
        mounts.append(_egress_mount(egress_volume))
        launcher = RELAY + LAUNCHER
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


def is_gvisor(runtime: str | None) -> bool:
    """True for gVisor's runtime (registered as "runsc", or under a name that says so)."""
    return runtime is not None and ("runsc" in runtime or "gvisor" in runtime)


ALLOWED_ENV = frozenset({"HOME", "LANG", "PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",
                         *egress.proxy_environment()})


def refuse_unsafe(cfg: dict[str, Any], jobs_dir: Path | None) -> None:
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
    if not _only_jobs_mounted(cfg, jobs_dir):
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


def _only_jobs_mounted(cfg: dict[str, Any], jobs_dir: Path | None) -> bool:
    """The thread's jobs/ directory (or, with ``jobs_dir`` None, a run's own anonymous volume) is the
    one mount, beside at most the run's proxy socket (read-only)."""
    mounts = list(cfg.get("mounts") or [])
    if len(mounts) == 2 and _is_egress_mount(mounts[1]):
        mounts.pop()
    if len(mounts) != 1 or mounts[0]["Target"] != (WORKDIR if jobs_dir is None else JOBS_MOUNT):
        return False
    if jobs_dir is None:
        options = mounts[0].get("VolumeOptions") or {}
        return bool(mounts[0]["Type"] == "volume" and not mounts[0].get("Source") and not mounts[0].get("ReadOnly")
                    and options.get("NoCopy") is True and not options.get("DriverConfig"))
    return bool(mounts[0]["Source"] == str(jobs_dir) and mounts[0]["Type"] == "bind")


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
