"""Adopting the runs a dead (or frozen) runner left behind (issue 12, item 3).

A run whose lease ran out is taken over by another runner (``adopt_expired``: it becomes the owner, the
claim's token stays). The run's container, labelled with that token, tells what happened:

* exited: the script ran to its end; its real result is recorded and its message queued, as the dead
  runner would have done (the runner keeps a finished container until its result is committed);
* still running: it is waited for within what is left of its time limit, then stopped ("timed out");
* created and never started, or no container and the start was never asked for (``launched_at``):
  the script never ran and had no effects, so the run goes back to pending and runs again;
* gone although the start was asked for: the script may have run, so the run is failed "runner stopped
  during the run" (not retried) and its chat is told, as after every failure.
"""

from __future__ import annotations

import logging
from typing import Any

from . import metrics, sandbox
from .execute import Executor, disk_watchdog, lease_lost
from .runspec import run_spec
from .threads import jobs_dir

log = logging.getLogger(__name__)

STOPPED = "runner stopped during the run"


def held(state: dict[str, Any] | None, container: Any) -> bool:
    """Does a run still hold this container (so the orphan sweep must leave it)? Yes while the run is
    running under the claim the container was made for, whether or not its lease ran out: an expired
    lease is adopted, never swept (its runner may be alive, or just woken)."""
    if state is None or state["status"] != "running":
        return False
    label = container.labels.get(sandbox.LABEL_LEASE)
    return label is None or label == str(state.get("lease_token"))  # no label: made by an older runner


def adopt(ex: Executor, job: dict[str, Any]) -> None:
    """Settle one adopted run from its container (see the module's docstring)."""
    token = str(job["lease_token"])
    try:
        found = [c for c in sandbox.managed_containers(ex.docker(), ex.store_id)
                 if c.labels.get(sandbox.LABEL_JOB) == str(job["id"]) and c.labels.get(sandbox.LABEL_ROLE) == "job"
                 and c.labels.get(sandbox.LABEL_LEASE) in (None, token)]
    except Exception as exc:  # the engine is away: the lease runs out again and the run is adopted later
        log.warning("job %s: cannot look for its container yet (%s); adopting it later", job["id"], exc)
        return
    started = [c for c in found if c.status != "created"]
    for c in found:
        if c.status == "created":
            ex.fence(job)
            sandbox.remove_container(c)  # never started: removed before the run may go again
    if started:
        _outcome("result")
        log.info("job %s (%s): adopted its container %s (%s)", job["id"], job["name"], started[0].short_id,
                 started[0].status)
        ex.record(job, sandbox.adopt(started[0], _spec(ex, job)))
    elif found or job.get("launched_at") is None:
        _requeue(ex, job)
    else:
        _outcome("failed")
        if ex.finish_durably(job, status="failed", error=STOPPED, result=None, message=None):
            log.warning("job %s (%s): its script may have started and its container is gone: %s",
                        job["id"], job["name"], STOPPED)


def _requeue(ex: Executor, job: dict[str, Any]) -> None:
    if not ex.runs.requeue_unstarted(job["id"], ex.lease(job)):
        lease_lost(job, "before it could be run again")
        return
    _outcome("requeued")
    log.warning("job %s (%s): claimed by %s, which stopped before the script started; it runs again",
                job["id"], job["name"], job.get("dead_owner"))


def _outcome(what: str) -> None:
    metrics.RUNS_ADOPTED.labels(what).inc()


def _spec(ex: Executor, job: dict[str, Any]) -> sandbox.RunSpec:
    """What the adopted container is judged by: the run's limits and due time."""
    if ex.copied:  # its jobs/ is the container's own volume: read back when the run is recorded
        return run_spec(ex.settings, job, owner=ex.owner, jobs_dir=None, user="")
    directory = jobs_dir(ex.settings.data_dir, job["thread_id"])
    return run_spec(ex.settings, job, owner=ex.owner, jobs_dir=directory, user="",
                    watchdog=disk_watchdog(ex.settings, job["thread_id"]))
