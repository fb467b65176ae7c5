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

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..http.auth import Authenticator
from ..metrics import Health
from ..service import Jobs
from ..settings import Settings
from ..store import Store
from . import actions, pages
from .render import HEADERS
from .web import Dashboard, session_of

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

    _html_not_found(app)


def _html_not_found(app: FastAPI) -> None:
    """A path of no route outside the API answers with a page, not a problem document (and a method a
    page does not take, too)."""
    api_handler = app.exception_handlers.get(StarletteHTTPException)

    async def not_found(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if isinstance(exc, StarletteHTTPException) and exc.status_code in (404, 405) \
                and not path.startswith(NOT_OURS):
            board: Dashboard = app.state.dashboard
            session = await run_in_threadpool(session_of, request)
            sentence = ("There is no such page: the Overview and the Jobs page link to everything here."
                        if exc.status_code == 404 else "This page cannot be used that way: follow its links and buttons.")
            return board.error(request, session, exc.status_code, sentence)
        assert api_handler is not None
        result = api_handler(request, exc)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, Response)
        return result

    app.add_exception_handler(StarletteHTTPException, not_found)
