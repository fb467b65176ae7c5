"""Why a run ended, for a person: the reason (``failure_reason``) named only on facts the job cannot
forge, the bounded tail of its output, and the watch kept on it while it runs (its disk use through the spec's
watchdog, and the pids cgroup's "max" counter)."""

from __future__ import annotations

import threading
import time
from typing import Any

from .engine import kill_container
from .spec import RunSpec


def last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""


def bounded_logs(container: Any, cap: int, **kw: Any) -> tuple[str, bool]:
    """The last ``cap`` bytes of the job's output (Docker keeps at most 1 MiB of it), decoded as the
    job's own text: stored as it is (invalid UTF-8 replaced), made visible only where it is shown."""
    raw: bytes = container.logs(stdout=kw.get("stdout", True), stderr=kw.get("stderr", True))
    truncated = len(raw) > cap
    tail = raw[-cap:] if truncated else raw
    if truncated:  # begin at a character, not inside one
        skip = next((i for i, b in enumerate(tail[:4]) if b & 0xC0 != 0x80), 0)
        tail = tail[skip:]
    return tail.decode("utf-8", errors="replace"), truncated


def known_lost(spec: RunSpec) -> bool:
    """True only if the fence says the lease is gone (not when it cannot be asked: the database is away)."""
    if spec.fence is None:
        return False
    try:
        return not spec.fence()
    except Exception:
        return False


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


class Watch:
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
                kill_container(self.container)
                return

    def _walk(self) -> str | None:
        assert self.spec.watchdog is not None
        try:
            return self.spec.watchdog()
        except Exception as exc:  # never let the watch die silently: stop the job instead
            return f"could not check the job's disk use: {exc}"


PIDS_POLL_SECONDS = 0.02


def failure_reason(spec: RunSpec, exit_code: int | None, timed_out: bool, oom: bool, container: Any,
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
    stderr, _ = bounded_logs(container, 8192, stdout=False)
    last = last_line(stderr)
    return f"exit code {exit_code}: {last}" if last else f"exit code {exit_code}"
