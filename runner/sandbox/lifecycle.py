"""One run of a job container, from creation to removal.

:func:`run` takes a :class:`RunSpec` and returns a :class:`RunResult`. It always goes create -> fence ->
start -> wait(timeout) -> kill if over -> logs (bounded) -> remove, the removal in ``finally``
(``containers.run`` would wait forever and buffer all output; ``auto_remove`` races with wait/logs).
With ``RunSpec.keep`` a finished container is left for the caller to remove once the result is
recorded; ``RunSpec.fence`` is asked before the start (and before a kill or removal): a runner that lost
the run's lease starts, kills and removes nothing (:class:`LeaseLost`). :func:`adopt` reads the result
of a run another runner started and left.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions

from .. import egress
from ..errors import ImageMissing, SandboxError
from .connect import client
from .copying import put_jobs
from .diagnosis import Watch, bounded_logs, failure_reason, known_lost
from .engine import kill_container, remove_container, remove_volume, retry_docker
from .policy import container_config, refuse_unsafe
from .proxy import EgressProxy
from .spec import LeaseLost, NeverStarted, RunResult, RunSpec

log = logging.getLogger("runner.sandbox")


class StartLatency:
    """A moving estimate of how long the engine takes to start a created container. Its owner (the
    runner's executor) hands it to every :func:`run`; each start refines it. The first start measured
    replaces the initial guess: the estimate is no longer one process-wide value that earlier runners
    (of a test session, say) have warmed up, so an owner's first measurement must count in full."""

    def __init__(self, initial: float = 0.1, weight: float = 0.2) -> None:
        self.value, self.weight = initial, weight
        self._measured = False
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            seconds = min(seconds, 5.0)
            self.value = self.value + self.weight * (seconds - self.value) if self._measured else seconds
            self._measured = True


# Added to the start latency when a container is started ahead of its due time, for Python's own
# start-up: the launcher then waits out the rest, so the script begins at the due time.
LAUNCH_MARGIN = 0.1


def run(spec: RunSpec, dc: docker.DockerClient | None = None, latency: StartLatency | None = None) -> RunResult:
    """Run one job container to its end (or its timeout) and remove it. Raises SandboxError when the
    container could not be created or started at all; everything after a start is a RunResult.
    ``latency``: the estimate of the engine's start-up that times a start ahead of the due time (a
    fresh one if none is given), refined by this start."""
    dc = dc or client()
    latency = latency or StartLatency()
    container: Any = None
    kept: Any = None  # the finished container, handed to the caller (RunSpec.keep)
    proxy: EgressProxy | None = None
    try:
        egress_volume = None
        if spec.allow_hosts:
            proxy = EgressProxy(dc, spec)
            egress_volume = proxy.start()
        container = _create(dc, spec, egress_volume)
        if spec.files_in is not None:
            put_jobs(container, spec.files_in)  # before the start: the job finds its files there
        result = _start_and_wait(container, spec, latency)
        if spec.keep:
            kept, container = container, None  # the caller removes it once the result is recorded
            return dataclasses.replace(result, container=kept)
        return result
    except docker.errors.NotFound as exc:  # removed under us (by the runner that adopted the run)
        container = None
        raise SandboxError(f"the job container disappeared during the run: {exc.explanation or exc}") from exc
    finally:
        if container is not None and _still_ours(spec):
            _remove_job_container(container, spec)
        if proxy is not None:
            proxy.remove(volume=kept is None)  # a kept container mounts it still: remove_kept removes it


def _create(dc: docker.DockerClient, spec: RunSpec, egress_volume: str | None) -> Any:
    """Create the job's container under its policy (refused if unsafe, whatever asked for it)."""
    cfg = container_config(spec, egress_volume)
    refuse_unsafe(cfg, spec.jobs_dir)
    try:
        return retry_docker(dc.containers.create)(**cfg)
    except docker.errors.ImageNotFound as exc:
        raise ImageMissing(f"image {spec.image} not found: run make image (or runner image build)") from exc
    except docker.errors.APIError as exc:
        raise SandboxError(f"could not create the job container: {exc.explanation or exc}") from exc
    except requests.exceptions.ConnectionError as exc:
        raise SandboxError(f"cannot reach the Docker engine: {exc}") from exc


def _start_and_wait(container: Any, spec: RunSpec, latency: StartLatency) -> RunResult:
    """Start the created container at its due time (if this runner still holds the run), wait for it
    within its time limit and read its result."""
    if spec.start_at is not None:
        # Created ahead of time; starting takes the engine a while (mounts, namespaces, runc), so
        # the start is sent that much before the due time for the job's process to begin on time.
        # The launcher inside waits for the due time itself, so starting early is never too early.
        ahead = (spec.start_at - datetime.now(UTC)).total_seconds() - latency.value - LAUNCH_MARGIN
        if ahead > 0:
            time.sleep(ahead)
    t_start = time.monotonic()  # the fence is inside the measured start-up: it is started that much earlier
    if spec.fence is not None and not spec.fence():
        raise LeaseLost(f"job {spec.job_id}: the lease is no longer this runner's")
    try:
        retry_docker(container.start)()
    except docker.errors.NotFound as exc:  # removed between its creation and now: nothing of it ran
        raise NeverStarted(f"job {spec.job_id}: its container was gone before it started "
                           f"({getattr(exc, 'explanation', None) or exc})") from exc
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        raise SandboxError(f"could not start the job container: {getattr(exc, 'explanation', None) or exc}") from exc
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    latency.observe(t0 - t_start)
    pre_wait = 0.0  # the launcher's wait for the due time: not part of the script's time limit
    if spec.start_at is not None and spec.start_at > started_at:
        pre_wait = (spec.start_at - started_at).total_seconds()
        started_at = spec.start_at  # when the script begins
    if spec.on_start is not None:
        spec.on_start(started_at)
    status, timed_out, watch = _wait(container, spec, spec.timeout_seconds + pre_wait)
    duration_ms = max(0, int((time.monotonic() - t0 - pre_wait) * 1000))
    return _result(container, spec, status, timed_out, watch, started_at, duration_ms)


def _remove_job_container(container: Any, spec: RunSpec) -> None:
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        log.warning("could not remove container %s of job %s: %s", container.short_id, spec.job_id, exc)


def remove_kept(container: Any) -> bool:
    """Remove a job container kept for the caller (``RunSpec.keep``), then its run's proxy volume, which
    the engine refuses to remove while the container mounts it. True if this call removed the container."""
    volumes = [m.get("Name") for m in container.attrs.get("Mounts") or []
               if m.get("Type") == "volume" and m.get("Destination") == egress.JOB_SOCKET_DIR and m.get("Name")]
    removed = remove_container(container)
    for name in volumes:
        try:
            remove_volume(container.client.volumes.get(name))
        except (docker.errors.NotFound, requests.exceptions.ConnectionError):
            pass  # gone already, or the engine is away: the orphan sweep removes it
        except docker.errors.APIError as exc:
            log.warning("could not remove volume %s: %s", name, exc)
    return removed


def _still_ours(spec: RunSpec) -> bool:
    """May this runner remove the run's container? Not once another runner holds the run (it adopted
    the container); if the lease cannot be checked, the container is left for the orphan sweep."""
    if spec.fence is None:
        return True
    try:
        return spec.fence()
    except Exception:  # the database is away: the sweep removes it once its run is over
        return False


def _wait(container: Any, spec: RunSpec, seconds: float) -> tuple[dict[str, Any], bool, Watch]:
    """Wait for the container up to ``seconds`` (killing it then), watching its disk use meanwhile."""
    timed_out = False
    watch = Watch(container, spec)
    watch.start()
    try:
        status = container.wait(timeout=max(1.0, seconds))
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        if known_lost(spec):  # woken from a freeze past the lease: the run (and its kill) is another's
            raise LeaseLost(f"job {spec.job_id}: the lease is no longer this runner's") from None
        timed_out = True
        kill_container(container)
        status = container.wait(timeout=30)
    finally:
        watch.stop()
    return status, timed_out, watch


def _result(container: Any, spec: RunSpec, status: dict[str, Any], timed_out: bool, watch: Watch,
            started_at: datetime | None, duration_ms: int) -> RunResult:
    """The finished container's result: exit code, reason, bounded output."""
    exit_code = status.get("StatusCode")
    container.reload()
    oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
    output, truncated = bounded_logs(container, spec.output_cap)
    error = watch.reason if watch.reason and not timed_out else failure_reason(
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
