"""What the dashboard's routes share: its parts (the service layer, the store, the sessions, the pages),
the signed-in browser of a request, the CSRF check of a form, and the error pages.

A page answers 303 to the sign-in form when there is no session (or its token was revoked or expired
since: the session then ends); a POST whose CSRF value is not its session's, or that comes from another
origin, is refused with 403. Every refusal is a page with a sentence saying what to do, never a
traceback."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from ..errors import NotFound, RunnerError
from ..http.auth import Authenticator
from ..http.problems import status_of
from ..metrics import Health
from ..service import Jobs
from ..settings import Settings
from ..store import Store
from ..threads import ThreadId
from .render import HEADERS, Pages
from .sessions import COOKIE, SIGNIN_COOKIE, Session, Sessions

ENDED = {  # why the sign-in page is shown, by the fixed key a redirect names (no text is reflected)
    "ended": "Your session ended: its token was revoked or has expired, or the runner restarted. Sign in again.",
    "out": "You are signed out.",
    "stale": "The sign-in form was out of date (or came from another site): sign in again here.",
}


MAX_FORM = 16 * 1024  # bytes: a sign-in form or a button's CSRF value is far below


class Refused(Exception):
    """Answer with an error page: ``status`` and the sentence to show."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status, self.sentence = status, sentence


@dataclass
class Dashboard:
    """The dashboard's parts, kept in ``app.state.dashboard``."""

    settings: Settings
    jobs: Jobs
    store: Store
    authenticator: Authenticator
    health: Health | None = None
    sessions: Sessions = field(default_factory=Sessions)
    pages: Pages = field(default_factory=Pages)

    def page(self, request: Request, template: str, session: Session | None, http_status: int = 200,
             **context: Any) -> Response:
        return self.pages.render(template, http_status, request=request, session=session,
                                 notice=session.take_notice() if session else "", **context)

    def error(self, request: Request, session: Session | None, status: int, sentence: str) -> Response:
        return self.page(request, "error.html", session, status, status_code=status, sentence=sentence)


def dashboard_of(request: Request) -> Dashboard:
    board: Dashboard = request.app.state.dashboard
    return board


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def session_of(request: Request) -> Session | None:
    """The request's live session, or None; a session whose token is no longer live is ended here."""
    board, sid = dashboard_of(request), request.cookies.get(COOKIE)
    session = board.sessions.get(sid)
    if session is not None and not board.store.token_is_live(session.token_id):
        board.sessions.end(sid)
        return None
    return session


def scope_thread(session: Session) -> str | None:
    """The one thread a session reaches, or None for an admin's (every thread)."""
    return session.scope.thread


def chosen_thread(session: Session, given: str | None) -> str | None:
    """The thread a page shows: a thread token's own; for an admin, the filter given (checked), or all."""
    if session.scope.thread is not None:
        return session.scope.thread
    if not given:
        return None
    try:
        return str(ThreadId.parse(given))
    except RunnerError as exc:
        raise Refused(404, f"{exc}; choose a thread from the list") from None


def job_id_of(text: str) -> int:
    """A job id from a URL: a positive integer that fits the column, else the page is not found."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) < 1:  # not '²' nor '①'
        raise Refused(404, f"there is no job {text[:40]!r}: job ids are numbers; the Jobs page lists them")
    return int(text)


async def form_of(request: Request) -> dict[str, str]:
    """A POSTed form (application/x-www-form-urlencoded; its size is bounded by the server's body limit):
    the first value of each field."""
    raw = await request.body()
    if len(raw) > MAX_FORM:
        raise Refused(413, f"This form sent {len(raw)} bytes; the dashboard's forms are under {MAX_FORM}: "
                      "reload the page and use its own form.")
    body = raw.decode("utf-8", errors="replace")
    try:
        fields = parse_qs(body, keep_blank_values=True, max_num_fields=20)
    except ValueError:
        raise Refused(400, "This form has too many fields: reload the page and use its own form.") from None
    return {k: v[0] for k, v in fields.items()}


def same_origin(request: Request) -> bool:
    """A browser names the site a form was sent from: it must be this host (a missing header is let
    through: SameSite=Strict keeps the cookie from other sites' requests, and the CSRF value does the
    rest). The host is compared, not the scheme: behind a TLS proxy the browser says https and the
    request arriving here is http."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")


def checked_post(request: Request, form: dict[str, str]) -> Session:
    """The session of a POST whose CSRF value and origin are right; :class:`Refused` otherwise."""
    session = session_of(request)
    if session is None:
        raise Refused(401, "You are not signed in (or your session ended): sign in, then try again.")
    if not same_origin(request) or not session.csrf_ok(form.get("csrf")):
        raise Refused(403, "This form is out of date or came from another site: reload the page and try again.")
    return session


def signin_csrf_ok(request: Request, form: dict[str, str]) -> bool:
    cookie, given = request.cookies.get(SIGNIN_COOKIE, ""), form.get("csrf", "")
    return bool(cookie) and same_origin(request) and hmac.compare_digest(cookie.encode(), given.encode())


def answering(request: Request, session: Session | None, build: Callable[[], Response]) -> Response:
    """``build()``'s page, or the error page of a refusal or of one of the runner's own errors (an
    unknown job, another thread's job: 404; a database outage: 503)."""
    board = dashboard_of(request)
    try:
        return build()
    except Refused as exc:
        return board.error(request, session, exc.status, exc.sentence)
    except NotFound as exc:
        return board.error(request, session, 404, f"{exc}".replace("(list them with: runner jobs)",
                                                                    "(the Jobs page lists them)"))
    except RunnerError as exc:
        return board.error(request, session, status_of(exc), str(exc))
