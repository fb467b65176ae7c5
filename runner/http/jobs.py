"""The jobs of a thread: create, list, get, update, cancel, run now, pause, resume, and their runs.

Each route is a thin adapter over the service layer (``runner.service.Jobs``): the validation, the
refusals and their sentences are the service's, so the API and the CLI say the same thing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from ..service import Jobs, Limits, Policy
from . import models, views
from .auth import CallerDep

Status = Annotated[models.Status | None, Query(description="only jobs with this status")]
LIST_LIMIT = 200


def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


JobsDep = Annotated[Jobs, Depends(_jobs)]
router = APIRouter(prefix="/v1/threads/{thread}", tags=["jobs"])


def _limits(body: models.Limits) -> Limits:
    return Limits(timeout_seconds=body.timeout_seconds, memory_mb=body.memory_mb, cpus=body.cpus,
                  pids_limit=body.pids_limit)


def _policy(body: models.Policies) -> Policy:
    return Policy(grace_seconds=body.grace_seconds, overlap=body.overlap, retries=body.retries,
                  retry_delay_seconds=body.retry_delay_seconds)


@router.post("/jobs", status_code=201, response_model=models.Job, summary="Save a script and schedule it")
def create_job(thread: str, body: models.JobCreate, caller: CallerDep, jobs: JobsDep) -> models.Job:
    tid = caller.thread(thread)
    caller.writing()
    row = jobs.schedule_job(thread_id=tid, name=body.name, script_text=body.script, at=body.when,
                            every=body.every, tz=body.tz, limits=_limits(body), allow_hosts=body.allow_hosts,
                            after=body.after, policy=_policy(body))
    return views.job(row)


@router.get("/jobs", response_model=list[models.Job], summary="The thread's jobs, newest first")
def list_jobs(thread: str, caller: CallerDep, jobs: JobsDep, status: Status = None,
              limit: Annotated[int, Query(ge=1, le=LIST_LIMIT)] = 100) -> list[models.Job]:
    rows = jobs.list_jobs(thread_id=caller.thread(thread), status=status, limit=limit)
    return [views.job(r) for r in rows]


@router.get("/jobs/{job_id}", response_model=models.Job, summary="One job, with its next five run times")
def get_job(thread: str, job_id: int, caller: CallerDep, jobs: JobsDep) -> models.Job:
    return views.job(jobs.get_job(job_id, caller.thread(thread)))


@router.patch("/jobs/{job_id}", response_model=models.Job, summary="Change a job's pending run")
def update_job(thread: str, job_id: int, body: models.JobUpdate, caller: CallerDep, jobs: JobsDep) -> models.Job:
    tid = caller.thread(thread)
    caller.writing()
    given = body.model_fields_set
    kw: dict[str, Any] = {"at": body.when, "every": body.every, "tz": body.tz, "limits": _limits(body),
                          "policy": _policy(body), "allow_hosts": body.allow_hosts if "allow_hosts" in given else None}
    if "script" in given and body.script is not None:
        jobs.approve_script(job_id, tid, script_text=body.script)
    if given - {"script"}:
        jobs.update_job(job_id, tid, **kw)
    return views.job(jobs.get_job(job_id, tid))


ACTIONS = {  # POST /jobs/{id}/<path>: the service method, and what it does
    "cancel": ("cancel_job", "Cancel a job (a running one finishes but does not recur)"),
    "pause": ("pause_job", "Pause a pending job"),
    "resume": ("resume_job", "Resume a paused job"),
    "run": ("run_job_now", "Run a job now"),
}


def _action(path: str, method: str, summary: str) -> None:
    def act(thread: str, job_id: int, caller: CallerDep, jobs: JobsDep) -> models.Job:
        tid = caller.thread(thread)
        caller.writing()
        return views.job(getattr(jobs, method)(job_id, tid))

    router.add_api_route(f"/jobs/{{job_id}}/{path}", act, methods=["POST"], response_model=models.Job,
                         summary=summary, name=method)


for _path, (_method, _summary) in ACTIONS.items():
    _action(_path, _method, _summary)


@router.get("/jobs/{job_id}/runs", response_model=list[models.Run], summary="A job's latest runs, newest first")
def job_runs(thread: str, job_id: int, caller: CallerDep, jobs: JobsDep,
             limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[models.Run]:
    tid = caller.thread(thread)
    out = []
    for row in jobs.job_runs(job_id, tid, limit=limit):
        messages = jobs.get_job_logs(row["id"], tid)["messages"]
        delivery = next((m["status"] for m in messages if m["kind"] == "message"), None)
        out.append(views.run(row, delivery))
    return out
