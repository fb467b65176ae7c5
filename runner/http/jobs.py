"""The jobs of a thread: create, list, get, update, cancel, run now, pause, resume, and their runs.

Each route is a thin adapter over the service layer (``runner.service.Jobs``): the validation, the
refusals and their sentences are the service's, so the API and the CLI say the same thing."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ..service import Jobs, Limits, Policy
from ..threads import ThreadId
from . import models, problems, uploads, views
from .auth import CallerDep

Before = Annotated[int | None, Query(ge=1, description="the cursor: only ids below this one; the Link header "
                                     "of a page gives the next page's address")]
RUNS_LIMIT = 100
NEXT_PAGE: dict[int | str, dict[str, Any]] = {200: {"headers": {"Link": {
    "description": 'the next page, as <address>; rel="next" (RFC 8288); absent on the last page',
    "schema": {"type": "string"}}}}}


async def _jobs(request: Request) -> Jobs:  # async: no thread pool hop for a lookup
    jobs: Jobs = request.app.state.jobs
    return jobs


JobsDep = Annotated[Jobs, Depends(_jobs)]
router = APIRouter(prefix="/v1/threads/{thread}", tags=["jobs"])


def limits_of(body: models.Limits) -> Limits:
    """The service's limits from a request's (None: the operator's default, or unchanged)."""
    return Limits(timeout_seconds=body.timeout_seconds, memory_mb=body.memory_mb, cpus=body.cpus,
                  pids_limit=body.pids_limit)


def policy_of(body: models.Policies) -> Policy:
    """The service's policies from a request's (None: the documented default, or unchanged)."""
    return Policy(grace_seconds=body.grace_seconds, overlap=body.overlap, retries=body.retries,
                  retry_delay_seconds=body.retry_delay_seconds)


@router.post("/jobs", status_code=201, response_model=models.Job, summary="Save a script and schedule it",
             description="The body is a JobCreate as JSON, or the same fields as multipart/form-data with the "
             "script as a file part (`curl -F name=hello -F script=@hello.py`).",
             openapi_extra={"requestBody": uploads.REQUEST_BODY}, responses=problems.responses(400, 415))
async def create_job(request: Request, thread: str, caller: CallerDep, jobs: JobsDep) -> models.Job:
    tid = caller.thread(thread)
    caller.writing()
    body = await uploads.job_create(request)  # read only once the caller may write here
    row = await run_in_threadpool(schedule, jobs, tid, body)
    return views.job(row)


def schedule(jobs: Jobs, thread: ThreadId, body: models.JobCreate, user_id: str = "") -> dict[str, Any]:
    """Schedule the job a JobCreate describes (the service checks it as for every other caller)."""
    return jobs.schedule_job(thread_id=thread, name=body.name, script_text=body.script, at=body.when,
                             every=body.every, tz=body.tz, limits=limits_of(body), allow_hosts=body.allow_hosts,
                             after=body.after, policy=policy_of(body), user_id=user_id)


def _next_link(response: Response, tid: ThreadId, rest: str, before: int | None, **params: object) -> None:
    """The next page's address as ``Link: <…>; rel="next"`` (RFC 8288), relative to the server's root;
    none on the last page."""
    if before is not None:
        query = urlencode({**{k: v for k, v in params.items() if v is not None}, "before": before})
        response.headers["Link"] = f'</v1/threads/{quote(str(tid), safe=":")}{rest}?{query}>; rel="next"'


@router.get("/jobs", response_model=list[models.Job], responses=NEXT_PAGE,
            summary="The thread's jobs (one per run), newest first, a page at a time")
def list_jobs(thread: str, caller: CallerDep, jobs: JobsDep, response: Response,
              query: Annotated[models.JobQuery, Query()]) -> list[models.Job]:
    tid = caller.thread(thread)
    rows, next_before = jobs.jobs_page(tid, status=query.status, limit=query.limit, before=query.before)
    _next_link(response, tid, "/jobs", next_before, status=query.status, limit=query.limit)
    return [views.job(r) for r in rows]


@router.get("/jobs/{job_id}", response_model=models.Job, summary="One job, with its next five run times")
def get_job(thread: str, job_id: int, caller: CallerDep, jobs: JobsDep) -> models.Job:
    return views.job(jobs.get_job(job_id, caller.thread(thread)))


@router.patch("/jobs/{job_id}", response_model=models.Job, summary="Change a job's pending run")
def update_job(thread: str, job_id: int, body: models.JobUpdate, caller: CallerDep, jobs: JobsDep) -> models.Job:
    tid = caller.thread(thread)
    caller.writing()
    given = body.model_fields_set
    kw: dict[str, Any] = {"at": body.when, "every": body.every, "tz": body.tz, "limits": limits_of(body),
                          "policy": policy_of(body), "allow_hosts": body.allow_hosts if "allow_hosts" in given else None}
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


@router.get("/jobs/{job_id}/runs", response_model=list[models.Run], responses=NEXT_PAGE,
            summary="A job's runs, newest first, a page at a time")
def job_runs(thread: str, job_id: int, caller: CallerDep, jobs: JobsDep, response: Response,
             limit: Annotated[int, Query(ge=1, le=RUNS_LIMIT, description="at most this many")] = 20,
             before: Before = None) -> list[models.Run]:
    tid = caller.thread(thread)
    rows = jobs.job_runs(job_id, tid, limit=limit + 1, before=before)
    _next_link(response, tid, f"/jobs/{job_id}/runs", rows[limit - 1]["id"] if len(rows) > limit else None,
               limit=limit)
    out = []
    for row in rows[:limit]:
        messages = jobs.get_job_logs(row["id"], tid)["messages"]
        delivery = next((m["status"] for m in messages if m["kind"] == "message"), None)
        out.append(views.run(row, delivery))
    return out
