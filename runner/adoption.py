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
from typing import TYPE_CHECKING, Any

from . import metrics, sandbox
from .runspec import run_spec
from .threads import jobs_dir

if TYPE_CHECKING:
    from .scheduler import Scheduler

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


def adopt(sched: Scheduler, job: dict[str, Any]) -> None:
    """Settle one adopted run from its container (see the module's docstring)."""
    token = str(job["lease_token"])
    try:
        found = [c for c in sandbox.managed_containers(sched._docker(), sched.store)
                 if c.labels.get(sandbox.LABEL_JOB) == str(job["id"]) and c.labels.get(sandbox.LABEL_ROLE) == "job"
                 and c.labels.get(sandbox.LABEL_LEASE) in (None, token)]
    except Exception as exc:  # the engine is away: the lease runs out again and the run is adopted later
        log.warning("job %s: cannot look for its container yet (%s); adopting it later", job["id"], exc)
        return
    started = [c for c in found if c.status != "created"]
    for c in found:
        if c.status == "created":
            sched.fence(job)
            sandbox.remove_container(c)  # never started: removed before the run may go again
    if started:
        _outcome("result")
        log.info("job %s (%s): adopted its container %s (%s)", job["id"], job["name"], started[0].short_id,
                 started[0].status)
        sched.record(job, sandbox.adopt(started[0], _spec(sched, job)))
    elif found or job.get("launched_at") is None:
        _requeue(sched, job)
    else:
        _outcome("failed")
        if sched.finish_durably(job, status="failed", error=STOPPED, result=None, message=None):
            log.warning("job %s (%s): its script may have started and its container is gone: %s",
                        job["id"], job["name"], STOPPED)


def _requeue(sched: Scheduler, job: dict[str, Any]) -> None:
    row = sched.db.one("requeue_unstarted", {"id": job["id"], "owner": sched.owner, "token": str(job["lease_token"])})
    if row is None:
        sched.lease_lost(job, "before it could be run again")
        return
    _outcome("requeued")
    log.warning("job %s (%s): claimed by %s, which stopped before the script started; it runs again",
                job["id"], job["name"], job.get("dead_owner"))


def _outcome(what: str) -> None:
    metrics.RUNS_ADOPTED.labels(what).inc()


def _spec(sched: Scheduler, job: dict[str, Any]) -> sandbox.RunSpec:
    """What the adopted container is judged by: the run's limits and due time."""
    directory = jobs_dir(sched.settings.data_dir, job["thread_id"])
    return run_spec(sched.settings, job, owner=sched.owner, jobs_dir=directory, user="",
                    watchdog=sched._disk_watchdog(job["thread_id"]))
