"""What the HTTP API's composite routes do over the service layer, for the MCP tools: the same calls as
runner.http.jobs and app's /v1/preview make, so both validate alike and refuse with the same sentences
(the service layer's). The routes could call these too; they were left alone here to keep this change
apart from the API's own work in progress."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..http import models, views
from ..schedule import parse_recurrence, parse_when, zone
from ..service import Jobs, Limits, Policy
from ..settings import Settings
from ..threads import ThreadId


def limits(body: models.Limits) -> Limits:
    return Limits(timeout_seconds=body.timeout_seconds, memory_mb=body.memory_mb, cpus=body.cpus,
                  pids_limit=body.pids_limit)


def policy(body: models.Policies) -> Policy:
    return Policy(grace_seconds=body.grace_seconds, overlap=body.overlap, retries=body.retries,
                  retry_delay_seconds=body.retry_delay_seconds)


def create_job(jobs: Jobs, tid: ThreadId, body: models.JobCreate) -> models.Job:
    """Save the script as jobs/<name>.py and schedule it."""
    row = jobs.schedule_job(thread_id=tid, name=body.name, script_text=body.script, at=body.when,
                            every=body.every, tz=body.tz, limits=limits(body), allow_hosts=body.allow_hosts,
                            after=body.after, policy=policy(body))
    return views.job(row)


def update_job(jobs: Jobs, job_id: int, tid: ThreadId, body: models.JobUpdate) -> models.Job:
    """Change what ``body`` gives of a job's pending run (a new script is checked and approved first)."""
    given = body.model_fields_set
    kw: dict[str, Any] = {"at": body.when, "every": body.every, "tz": body.tz, "limits": limits(body),
                          "policy": policy(body), "allow_hosts": body.allow_hosts if "allow_hosts" in given else None}
    if "script" in given and body.script is not None:
        jobs.approve_script(job_id, tid, script_text=body.script)
    if given - {"script"}:
        jobs.update_job(job_id, tid, **kw)
    return views.job(jobs.get_job(job_id, tid))


def job_runs(jobs: Jobs, job_id: int, tid: ThreadId, limit: int) -> list[models.Run]:
    """A job's latest runs, newest first, each with the delivery state of its message."""
    out = []
    for row in jobs.job_runs(job_id, tid, limit=limit):
        messages = jobs.get_job_logs(row["id"], tid)["messages"]
        delivery = next((m["status"] for m in messages if m["kind"] == "message"), None)
        out.append(views.run(row, delivery))
    return out


def preview(settings: Settings, body: models.Preview, now: datetime | None = None) -> models.PreviewResult:
    """The next run times of a schedule, creating nothing."""
    tz = zone(body.tz or settings.default_timezone)
    now = now or datetime.now(UTC)
    times = []
    if body.when and not body.every:
        times = [parse_when(body.when, now, tz)]
    elif body.every:
        rec = parse_recurrence(body.every)
        start = parse_when(body.when, now, tz) if body.when else now
        times = rec.upcoming(start, tz, body.n)
    return models.PreviewResult(times=times, timezone=tz.key)

