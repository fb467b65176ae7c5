"""Doctor's sample containers, made as real runs': the job container's hardening and ids, the jobs/ file
system the engine mounts, the egress proxy of a granted run, and what a granted job can reach."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import docker

from .. import egress, jobsquota, sandbox
from ..settings import Settings
from . import probes
from .check import Check
from .sample import sample_jobs, sample_spec

PROBE_PORTS = (22, 53, 80, 443, 2375, 3128, 5432)


def hardening(settings: Settings, dc: docker.DockerClient) -> Iterator[Check]:
    """One line per protection of a sample job container, then its ids and (with a quota) its jobs/."""
    probe: dict[str, str] = {}
    try:
        sample = sample_jobs(settings)
        rows = probes.hardening_report(sample_spec(settings, sample), dc, probe)
    except Exception as exc:
        yield Check("job container hardening", False,
                    f"could not run a sample container: {exc}{_mount_hint(settings, dc, exc)}")
        return
    for name, ok, detail in rows:
        yield Check(f"job container: {name}", ok, detail if ok else f"MISSING ({detail})")
    yield job_ids(settings, probe.get("ids", ""))
    if jobsquota.from_settings(settings) is not None and sample is not None:
        yield jobs_fs_seen_by_engine(sample, probe.get("jobsfs", ""))


def _mount_hint(settings: Settings, dc: docker.DockerClient, exc: Exception) -> str:
    if "bind source path does not exist" not in str(exc):
        return ""
    if not sandbox.engine_is_local(dc):
        return (f" (the engine at {sandbox.engine_address(dc)} is on another host: it cannot mount "
                f"{settings.data_dir}, which is on this one; set RUNNER_FILES=postgres)")
    return (f" (the Docker engine does not see {settings.data_dir} on its host: when the runner runs in "
            "a container, mount the data directory at the same path on both sides, as compose.yaml "
            "does with RUNNER_DATA_PATH)")


def job_ids(settings: Settings, seen: str) -> Check:
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


def jobs_fs_seen_by_engine(sample: Path, seen: str) -> Check:
    """With RUNNER_JOBS_QUOTA=loop, the sample container must see the thread's own file system at jobs/: a
    runner in another mount namespace than the engine's (in a container) mounts where the engine cannot see."""
    name = "job container: jobs/ is its thread's own file system"
    size, inodes = jobsquota.size_of(sample)
    if seen.split() == [str(size), str(inodes)]:
        return Check(name, True, f"{size / 2**20:.1f} MiB, {inodes:,} inodes, as the runner mounted it")
    return Check(name, False, (
        f"MISSING (the job sees a file system of {seen or 'unknown size'} (bytes, inodes) at jobs/, the runner "
        f"mounted {size} {inodes}: run the runner on the engine's host, in its mount namespace)"))


def egress_proxy(settings: Settings, dc: docker.DockerClient) -> Check:
    """Start the proxy a job granted network would get, and remove it again."""
    if not settings.egress_allow:
        return Check("egress proxy", True, "RUNNER_EGRESS_ALLOW is empty: no job may be granted network")
    spec = sample_spec(settings, settings.data_dir, allow_hosts=("example.com",))
    return Check("egress proxy", True, probes.egress_selfcheck(spec, dc))


def egress_isolation(settings: Settings, dc: docker.DockerClient) -> Check:
    """On a live sample (the real proxy and a job container configured as a granted run's): the
    proxy's port is reachable from the job, and no address of the engine's host or gateway is, on a
    few ports. Sends no traffic off the machine (the targets are the host's own addresses)."""
    name = "granted job isolation"
    if not settings.egress_allow:
        return Check(name, True, "RUNNER_EGRESS_ALLOW is empty: no job may be granted network")
    spec = sample_spec(settings, sample_jobs(settings), allow_hosts=("example.com",))
    hosts = sandbox.host_addresses(dc, spec)
    control = ("127.0.0.1", egress.PROXY_PORT)
    targets = [(h, p) for h in hosts for p in PROBE_PORTS]
    reached = probes.egress_probe(spec, [control, *targets], dc)
    if not reached[control]:
        return Check(name, False, "the sample job could not reach even its proxy's port: the probe proves nothing")
    open_ = [f"{h}:{p}" for (h, p) in targets if reached[(h, p)]]
    if open_:
        return Check(name, False, "a granted job reaches the host at " + ", ".join(open_[:10]))
    return Check(name, True, f"no host address reachable from a granted job ({len(hosts)} addresses of the host "
                             f"and its gateways on ports {', '.join(map(str, PROBE_PORTS))}); only its proxy")
