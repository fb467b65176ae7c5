"""The dashboard's pages (GET): sign-in, Overview, Jobs, a job, and the confirmation of a cancel.
Reading needs no JavaScript; every page is rendered on the server."""

from __future__ import annotations

import math
import secrets
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import RunnerError
from ..http import views
from ..statuses import STATUSES
from .render import BUCKET_LABELS
from .sessions import SIGNIN_COOKIE, Session
from .web import ENDED, Refused, answering, chosen_thread, dashboard_of, job_id_of, redirect, session_of

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25
RUNS_SHOWN = 20


@router.get("/signin")
def signin_page(request: Request, why: str = "") -> Response:
    """The sign-in form; its CSRF value is also set as a cookie of its own (double submit)."""
    if session_of(request) is not None:
        return redirect("/")
    csrf = secrets.token_urlsafe(32)
    page = dashboard_of(request).page(request, "signin.html", None, csrf=csrf, why=ENDED.get(why, ""), error="")
    page.set_cookie(SIGNIN_COOKIE, csrf, max_age=3600, httponly=True, samesite="strict",
                    secure=request.url.scheme == "https", path="/signin")
    return page


def _signed_in(request: Request) -> Session | Response:
    session = session_of(request)
    if session is None:
        return redirect("/signin?why=ended" if request.cookies.get("runner_session") else "/signin")
    return session


@router.get("/")
def overview(request: Request, thread: str = "") -> Response:
    session = _signed_in(request)
    if not isinstance(session, Session):
        return session

    def build() -> Response:
        board = dashboard_of(request)
        tid = chosen_thread(session, thread)
        figures = board.store.overview(tid)
        health = board.health.health() if board.health is not None else None
        return board.page(request, "overview.html", session, o=figures, thread=tid, health=health,
                          threads=_threads(session, board), labels=BUCKET_LABELS)

    return answering(request, session, build)


def _threads(session: Session, board: Any) -> list[str]:
    return board.store.dashboard_threads() if session.scope.admin else []


def _page_number(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) < 7 and int(text) > 0 else 1


@router.get("/jobs")
def jobs_page(request: Request, thread: str = "", status: str = "", page: str = "1") -> Response:
    session = _signed_in(request)
    if not isinstance(session, Session):
        return session

    def build() -> Response:
        board = dashboard_of(request)
        tid = chosen_thread(session, thread)
        if status and status not in STATUSES:
            raise Refused(404, f"status {status[:40]!r} is not one of {', '.join(STATUSES)}")
        number = _page_number(page)
        rows, total = board.store.dashboard_jobs(tid, status or None, PAGE_SIZE, (number - 1) * PAGE_SIZE)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        for row in rows:
            row["next"] = views.next_runs(row)[:1] or ([row["due_time"]] if row["status"] == "pending"
                                                     and not row.get("after_job") else [])
        return board.page(request, "jobs.html", session, rows=rows, total=total, page=number, pages=pages,
                          thread=tid, status=status, statuses=STATUSES, threads=_threads(session, board))

    return answering(request, session, build)


def _runs(board: Any, job_id: int, thread: str | None) -> list[dict[str, Any]]:
    out = []
    for row in board.jobs.job_runs(job_id, thread, limit=RUNS_SHOWN):
        messages = board.store.job_messages(row["id"])
        delivery = next((m["status"] for m in messages if m["kind"] == "message"), None)
        out.append({"run": views.run(row, delivery), "messages": messages})
    return out


def _job_context(request: Request, session: Session, job_id: str) -> dict[str, Any]:
    board = dashboard_of(request)
    jid, thread = job_id_of(job_id), session.scope.thread
    row = board.jobs.get_job(jid, thread)
    live = board.store.live_run_of_series(row["series_id"])
    current = live or row
    try:
        script, sha, script_error = *board.jobs.read_job_script(jid, thread), ""
    except RunnerError as exc:  # a job can make its script unreadable: say so on the page
        script, sha, script_error = "", "", str(exc)
    return {"job": row, "current": current, "next_runs": views.next_runs(current), "script": script, "sha": sha,
            "script_error": script_error, "runs": _runs(board, jid, thread)}


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    session = _signed_in(request)
    if not isinstance(session, Session):
        return session

    def build() -> Response:
        return dashboard_of(request).page(request, "job.html", session, **_job_context(request, session, job_id))

    return answering(request, session, build)


@router.get("/jobs/{job_id}/cancel")
def cancel_page(request: Request, job_id: str) -> Response:
    """Cancelling asks first: this page's form is what cancels."""
    session = _signed_in(request)
    if not isinstance(session, Session):
        return session

    def build() -> Response:
        board = dashboard_of(request)
        row = board.jobs.get_job(job_id_of(job_id), session.scope.thread)
        return board.page(request, "cancel.html", session, job=row)

    return answering(request, session, build)
