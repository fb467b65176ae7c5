"""The jobs of a thread: create, list, get, update, cancel, run now, pause, resume, and their runs.

Each route is a thin adapter over the service layer (``runner.service.Jobs``): the validation, the
refusals and their sentences are the service's, so the API and the CLI say the same thing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from ..service import Jobs
from . import actions, models, views
from .auth import CallerDep

Status = Annotated[models.Status | None, Query(description="only jobs with this status")]
LIST_LIMIT = 200


def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


JobsDep = Annotated[Jobs, Depends(_jobs)]
router = APIRouter(prefix="/v1/threads/{thread}", tags=["jobs"])


@router.post("/jobs", status_code=201, response_model=models.Job, summary="Save a script and schedule it")
def create_job(thread: str, body: models.JobCreate, caller: CallerDep, jobs: JobsDep) -> models.Job:
    tid = caller.thread(thread)
    caller.writing()
    return actions.create_job(jobs, tid, body)


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
    return actions.update_job(jobs, job_id, tid, body)


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
    return actions.job_runs(jobs, job_id, caller.thread(thread), limit)
