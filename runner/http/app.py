"""The runner's ASGI application: the versioned API under /v1 (OpenAPI 3.1 at /v1/openapi.json), with
every error a problem document. FastAPI, because its pydantic models give the OpenAPI document, the
validation and (through the same models) the agent tools' schema and the typed client from one source;
the server is uvicorn (runner.http.serve)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from .. import tokens
from ..dashboard import mount_dashboard
from ..metrics import Health
from ..schedule import parse_recurrence, parse_when, zone
from ..service import Jobs, file_backend
from ..settings import Settings
from ..store import Store
from . import files, jobs, messages, models, problems, threads, uploads
from .auth import Authenticator, AuthGate, CallerDep
from .serve import BodyLimit


def create_app(settings: Settings, service: Jobs | None = None, store: Store | None = None,
               health: Health | None = None, limiter: tokens.FailureLimiter | None = None) -> FastAPI:
    """The runner's HTTP server: /healthz and /metrics (unauthenticated) when ``health`` is given, and the
    API under /v1 over ``service`` (the service layer) and ``store`` (tokens, the messages feed) when
    they are. ``limiter`` slows down failed sign-ins (by default 10 at once per address, then one per 5 s)."""
    app = FastAPI(redirect_slashes=False, title="runner", version="1", openapi_url="/v1/openapi.json", docs_url=None, redoc_url=None,
                  description="Schedule Python scripts that run in a locked-down sandbox, follow their runs, "
                  "and read what they said. Authenticate with 'Authorization: Bearer <token>' "
                  "(`runner token create`).")
    problems.install(app)
    # inside the gate below: a body is read only for an authenticated caller; outside the API, a body too
    # large is refused with the dashboard's page (once it is mounted)
    app.add_middleware(BodyLimit, page=lambda scope: getattr(app.state, "too_large_page", lambda _: None)(scope))
    if health is not None:
        _health_routes(app, health)
    if service is not None and store is not None:
        app.state.jobs, app.state.settings, app.state.store = service, settings, store
        app.state.authenticate = authenticator = Authenticator(store, limiter)
        errors = problems.responses(*problems.AUTHENTICATED)
        app.include_router(jobs.router, responses=errors)
        app.include_router(messages.router, responses=errors)
        app.include_router(files.router, responses=errors)
        app.include_router(threads.router, responses={**errors, **problems.responses(409)})
        # the store RUNNER_FILES names, under this server's settings (its limits: disk, file count)
        app.state.files = file_backend(settings, store)[1]
        _misc_routes(app, settings)
        mount_dashboard(app, settings, service, store, authenticator, health)  # the web dashboard at /
        _openapi_with_uploads(app)
        app.add_middleware(AuthGate, authenticator=authenticator)
        from ..mcp.http import mount_mcp  # here: the MCP SDK is loaded only where the API is served

        mount_mcp(app, settings, service, app.state.files)  # MCP at /mcp, behind the same gate
    return app


def _openapi_with_uploads(app: FastAPI) -> None:
    """The document FastAPI makes, with the schemas of creating a job (JSON or multipart), which the
    route reads itself (runner.http.uploads) and so FastAPI does not see."""
    made = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            uploads.add_schemas(made())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _health_routes(app: FastAPI, health: Health) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        ok, body = health.health()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(health.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _misc_routes(app: FastAPI, settings: Settings) -> None:
    errors = problems.responses(*problems.AUTHENTICATED)

    @app.get("/v1/me", tags=["tokens"], summary="What the calling token reaches", responses=errors)
    def me(caller: CallerDep) -> dict[str, object]:
        s = caller.scope
        return {"thread": s.thread, "admin": s.admin, "read_only": s.read_only}

    @app.post("/v1/preview", tags=["jobs"], response_model=models.PreviewResult, responses=errors,
              summary="The next run times of a schedule, without creating anything")
    def preview(body: models.Preview, caller: CallerDep) -> models.PreviewResult:
        tz = zone(body.tz or settings.default_timezone)
        now = datetime.now(UTC)
        times = []
        if body.when and not body.every:
            times = [parse_when(body.when, now, tz)]
        elif body.every:
            rec = parse_recurrence(body.every)
            start = parse_when(body.when, now, tz) if body.when else now
            times = rec.upcoming(start, tz, body.n)
        return models.PreviewResult(times=times, timezone=tz.key)

    @app.get("/v1/limits", tags=["jobs"], summary="The limits in force on this runner", responses=errors)
    def limits(caller: CallerDep) -> dict[str, object]:
        s = settings
        return {"timeout_seconds": s.timeout_seconds, "max_timeout_seconds": s.max_timeout_seconds,
                "memory_mb": s.memory_mb, "max_memory_mb": s.max_memory_mb, "cpus": s.cpus,
                "pids_limit": s.pids_limit, "disk_mb": s.disk_mb, "script_bytes": s.script_cap,
                "message_bytes": s.message_cap, "egress_allow": list(s.egress_allow)}
