"""The web dashboard (issue 15), served at / by the runner's HTTP server: sign in with a token, then the
Overview (the last 24 hours, what runs next, lateness, the outbox, health), the Jobs and each job (its
script, next times, run history, and run now, pause, resume, cancel).

Pages are rendered on the server from Jinja2 templates with autoescape on; the stylesheet is the
package's own (nothing from a CDN) and no page runs a script. Everything a job wrote is shown as text
with its terminal escapes made visible (runner.text). Sessions are an opaque HttpOnly, SameSite=Strict
cookie (runner.dashboard.sessions); every action is a POST with a CSRF value."""

from __future__ import annotations

import inspect
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..errors import RunnerError
from ..http.auth import Authenticator
from ..http.problems import status_of
from ..metrics import Health
from ..service import Jobs
from ..settings import Settings
from ..store import Store
from . import actions, pages
from .render import HEADERS
from .web import Dashboard, Refused, session_of

NOT_OURS = ("/v1/", "/mcp", "/healthz", "/metrics")  # the API's paths keep their problem documents
CSS = resources.files(__package__).joinpath("static", "dashboard.css").read_bytes()


def mount_dashboard(app: FastAPI, settings: Settings, jobs: Jobs, store: Store, authenticator: Authenticator,
                    health: Health | None = None) -> None:
    """Serve the dashboard on ``app`` at /, over the same service layer, store and token checks as the API."""
    app.state.dashboard = Dashboard(settings, jobs, store, authenticator, health)
    app.include_router(pages.router)
    app.include_router(actions.router)

    @app.get("/static/dashboard.css", include_in_schema=False)
    def stylesheet() -> Response:
        return Response(CSS, media_type="text/css; charset=utf-8",
                        headers={**HEADERS, "Cache-Control": "public, max-age=3600"})

    _html_errors(app)
    app.state.too_large_page = lambda scope: _too_large(app, scope)


def _too_large(app: FastAPI, scope: dict[str, Any]) -> Response | None:
    """The page of a form over the server's body limit (runner.http.serve.BodyLimit), outside the API."""
    if str(scope.get("path", "")).startswith(NOT_OURS):
        return None
    board: Dashboard = app.state.dashboard
    return board.error(Request(scope), None, 413, "This form is far larger than any the dashboard sends: go back "
                       "to the page and use its buttons.")


def _html_errors(app: FastAPI) -> None:
    """Outside the API, an error is a page, not a problem document: a path of no route (or a method a
    page does not take), a refusal raised before a page could handle it (a form too large), and one of
    the runner's own errors met on the way (the database down while a session is checked: 503)."""
    for kind in (StarletteHTTPException, RunnerError, Refused):
        _html_error(app, kind, app.exception_handlers.get(kind))


def _sentence(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, Refused):
        return exc.status, exc.sentence
    if isinstance(exc, RunnerError):
        return status_of(exc), str(exc)
    code = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    if code == 404:
        return 404, "There is no such page: the Overview and the Jobs page link to everything here."
    if code == 405:
        return 405, "This page cannot be used that way: follow its links and buttons."
    return code, "This request cannot be answered: go back to the Overview and try again."


def _html_error(app: FastAPI, kind: type[Exception], api_handler: Any) -> None:
    async def handler(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(NOT_OURS) or api_handler is None:
            board: Dashboard = app.state.dashboard
            try:
                session = await run_in_threadpool(session_of, request)
            except RunnerError:
                session = None  # the database is what failed: the page is shown without the session
            return board.error(request, session, *_sentence(exc))
        result = api_handler(request, exc)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, Response)
        return result

    app.add_exception_handler(kind, handler)
