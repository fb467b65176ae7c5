"""The dashboard's actions, each a POST of a form carrying its session's CSRF value: sign in, sign out,
and a job's run now, pause, resume and cancel. After an action the browser is sent back to a page (303),
which says what happened; a refusal of the service layer (a job that is not pending any more, say) is
that page's notice, in the service's own words."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..errors import ValidationError
from ..http.problems import Problem
from .sessions import COOKIE, SIGNIN_COOKIE
from .web import (
    Refused,
    answering,
    checked_post,
    dashboard_of,
    form_of,
    job_id_of,
    redirect,
    session_of,
    signin_csrf_ok,
)

router = APIRouter(include_in_schema=False)
Form = Annotated[dict[str, str], Depends(form_of)]

ACTIONS = {  # the form's path: the service method, and what the notice says was done
    "run": ("run_job_now", "will run now"),
    "pause": ("pause_job", "is paused"),
    "resume": ("resume_job", "is resumed"),
    "cancel": ("cancel_job", "is cancelled"),
}


def _signin_again(request: Request, status: int, error: str, csrf: str) -> Response:
    return dashboard_of(request).page(request, "signin.html", None, status, csrf=csrf, why="", error=error)


@router.post("/signin")
def sign_in(request: Request, form: Form) -> Response:
    """Check the token as the API does (failed tries are slowed down per address); a new session."""
    board, csrf = dashboard_of(request), request.cookies.get(SIGNIN_COOKIE, "")
    if not signin_csrf_ok(request, form):
        return redirect("/signin?why=stale")  # a fresh form (and its cookie): the old one expired or was forged
    address = request.client.host if request.client else "unknown"
    try:
        caller = board.authenticator.authenticate(f"Bearer {form.get('token', '').strip()}", address)
    except Problem as exc:
        sentence = exc.detail if exc.status == 429 else (
            "That token is not valid: paste a whole token from `runner token create` (a revoked or expired "
            "token is refused).")
        return _signin_again(request, exc.status, sentence, csrf)
    sid, session = board.sessions.start(caller.token_id, caller.scope)
    reach = "every thread" if caller.scope.admin else f"thread {caller.scope.thread}"
    session.notice = f"Signed in: this token reaches {reach}" + (", read-only." if caller.scope.read_only else ".")
    response = redirect("/")
    response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


@router.post("/signout")
def sign_out(request: Request, form: Form) -> Response:
    def build() -> Response:
        checked_post(request, form)
        dashboard_of(request).sessions.end(request.cookies.get(COOKIE))
        response = redirect("/signin?why=out")
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return answering(request, session_of(request), build)


def _act(request: Request, form: dict[str, str], job_id: str, action: str) -> Response:
    session = checked_post(request, form)
    if not session.scope.may_write:
        raise Refused(403, "This token is read-only: sign in with one made without --read-only to change jobs.")
    method, done = ACTIONS[action]
    jid, board = job_id_of(job_id), dashboard_of(request)
    try:
        row = getattr(board.jobs, method)(jid, session.scope.thread)
    except ValidationError as exc:
        session.notice = f"Not done: {exc}"
        return redirect(f"/jobs/{jid}")
    session.notice = f"Job {row['name']} {done}."
    return redirect(f"/jobs/{row['id']}")


def _route(action: str) -> None:
    def act(request: Request, job_id: str, form: Form) -> Response:
        return answering(request, session_of(request), lambda: _act(request, form, job_id, action))

    router.add_api_route(f"/jobs/{{job_id}}/{action}", act, methods=["POST"], name=f"dashboard_{action}")


for _action in ACTIONS:
    _route(action=_action)
