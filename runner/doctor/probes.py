"""The sample containers of ``runner doctor``: a job container made as a real run's and inspected, with a
probe inside (``hardening_report``), and a granted run's egress proxy started (``egress_selfcheck``) and
tried from a sample job (``egress_probe``)."""

from __future__ import annotations

import time

import docker

from ..sandbox import (
    JOBS_MOUNT,
    RELAY,
    WORKDIR,
    EgressProxy,
    RunSpec,
    client,
    container_config,
    refuse_unsafe,
    remove_container,
)
from .sample import fill

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
        fill(container, spec)
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
        ("only the thread's jobs/ mounted", _only_jobs(mounts, spec), ", ".join(map(_mount, mounts))),
        ("no Docker socket", probe.get("docker.sock") == "False", "absent inside the container"),
        ("bounded logs", (hc.get("LogConfig") or {}).get("Config", {}).get("max-size") is not None,
         str((hc.get("LogConfig") or {}).get("Config"))),
        ("container runtime", True, f"{hc.get('Runtime') or info.get('DefaultRuntime')} "
                                    f"(gVisor's runsc is stronger: RUNNER_CONTAINER_RUNTIME=runsc)"),
    ]
    return [(name, bool(ok), detail) for name, ok, detail in rows]


def _only_jobs(mounts: list[dict[str, object]], spec: RunSpec) -> bool:
    """One mount: the thread's jobs/ bound at /work/jobs, or (a copied run's) an anonymous volume at /work."""
    if len(mounts) != 1:
        return False
    if spec.jobs_dir is None:
        return mounts[0].get("Target") == WORKDIR and mounts[0].get("Type") == "volume" and not mounts[0].get("Source")
    return mounts[0].get("Target") == JOBS_MOUNT


def _mount(m: dict[str, object]) -> str:
    if m.get("Type") == "volume" and not m.get("Source"):
        return f"a volume of its own at {m.get('Target')}"
    return f"{m.get('Source')}->{m.get('Target')}"


def egress_selfcheck(spec: RunSpec, dc: docker.DockerClient | None = None) -> str:
    """Start the egress proxy a granted run would get (its volume and squid), wait until squid accepts
    connections, and remove both. Sends no traffic anywhere. Raises on failure; returns a summary."""
    proxy = EgressProxy(dc or client(), spec)
    try:
        t0 = time.monotonic()
        proxy.start()
        return f"{spec.egress_image} on network {spec.egress_network!r} ready in {time.monotonic() - t0:.1f} s"
    finally:
        proxy.remove()


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
    proxy = EgressProxy(dc, spec)
    container = None
    try:
        cfg = container_config(spec, proxy.start())
        refuse_unsafe(cfg, spec.jobs_dir)
        code = RELAY + f"TARGETS = {targets!r}\n" + _REACH_PROBE  # the relay as the launcher starts it
        cfg["command"] = ["python3", "-c", code]
        container = dc.containers.create(**cfg)
        fill(container, spec)
        container.start()
        container.wait(timeout=120)
        lines = container.logs(stdout=True, stderr=False).decode("utf-8", "replace").splitlines()
    finally:
        if container is not None:
            remove_container(container)
        proxy.remove()
    opened = {(w[1], int(w[2])) for w in map(str.split, lines) if len(w) == 3 and w[0] == "OPEN"}
    return {t: t in opened for t in targets}
