"""Every error the HTTP API gives is ``application/problem+json`` (RFC 9457) whose ``detail`` is the
sentence the CLI would print: what is wrong and what to change. Never a traceback, never a 500 for bad
input: the runner's own errors map to 4xx and 503, a request the models refuse to 422, and only a bug
of the runner's own is a 500, whose body says no more than that (the traceback goes to the log)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    NotFound,
    RunnerError,
    SandboxError,
    ValidationError,
)

log = logging.getLogger("runner.http")
MEDIA_TYPE = "application/problem+json"
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 413: "Content too large", 415: "Unsupported media type", 422: "Unprocessable content",
          429: "Too many requests", 500: "Internal error", 503: "Service unavailable"}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry of each error status: a problem document (RFC 9457)."""
    from .models import Problem as ProblemModel

    return {status: {"model": ProblemModel, "description": TITLES.get(status, "Error"),
                     "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for status in statuses}


AUTHENTICATED = (401, 403, 404, 413, 422, 429, 503)  # what any authenticated route may answer


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, dict(headers or {})


def problem(status: int, detail: str, instance: str | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status,
                            "detail": detail}
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=dict(headers or {}))


def status_of(exc: RunnerError) -> int:
    """The HTTP status of one of the runner's own errors."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, DatabaseError | SandboxError | ConfigError):
        return 503
    return 400


def _where(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "the request"


def validation_detail(errors: Sequence[Mapping[str, Any]]) -> str:
    """The models' refusals as one sentence per field: where, and what is wrong."""
    said = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            said.append("the body is not valid JSON: send a JSON object")
            continue
        said.append(f"{_where(err.get('loc', ()))}: {err.get('msg', 'is not valid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(said) + more


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.detail, request.url.path, exc.headers)

    @app.exception_handler(RunnerError)
    async def _runner(request: Request, exc: RunnerError) -> JSONResponse:
        status = status_of(exc)
        headers = {"Retry-After": "5"} if isinstance(exc, DatabaseUnavailable) else None
        return problem(status, str(exc), request.url.path, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, validation_detail(exc.errors()), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else (
            f"there is no {request.url.path}: GET /v1/openapi.json lists the API")
        return problem(exc.status_code, detail, request.url.path, exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem(500, "the runner failed while answering this request: its log says why "
                       "(check GET /v1/jobs before trying a write again)", request.url.path)
