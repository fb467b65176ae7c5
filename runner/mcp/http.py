"""MCP over streamable HTTP at ``/mcp`` on the runner's HTTP server, behind the API's bearer tokens.

The token is checked by the API's gate (runner.http.auth.AuthGate) before any body is read: no token,
a bad one or a revoked one is a 401 problem document, as on /v1. Each request acts for its own token: a
thread token reaches its thread only, an admin token the thread named by ``?thread=`` and a read-only
token lists and calls only the read tools. The server is stateless (no session is kept between
requests): every request is authenticated and bound anew, a revoked token is refused at its next
request, and several runners behind one address serve the same clients. So there is no event stream
to GET and no session to DELETE: both answer 405, as the transport allows. Answers are plain JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.routing import Route

from ..http.auth import CHALLENGE, Caller
from ..http.problems import Problem, problem
from ..service import Jobs
from ..service.filestore import FileBackend
from ..settings import Settings
from . import guard
from .backend import Local
from .server import build_server
from .tools import Binding

PATH = "/mcp"
_KEY = "mcp_binding"


def _binding_of(request: Any) -> Binding:
    binding = getattr(getattr(request, "state", None), _KEY, None)
    if not isinstance(binding, Binding):  # only requests that came through the endpoint reach the server
        raise RuntimeError("an MCP request without its caller")
    return binding


class Endpoint:
    """The ASGI app at /mcp: the gate's caller, bound to its thread, handed to the session manager."""

    def __init__(self, manager: StreamableHTTPSessionManager, settings: Settings, jobs: Jobs, files: FileBackend) -> None:
        self.manager, self.settings, self.jobs, self.files = manager, settings, jobs, files

    def bind(self, scope: dict[str, Any]) -> Binding:
        caller = scope.get("state", {}).get("caller")
        if not isinstance(caller, Caller):
            raise Problem(401, "a valid token is needed: send 'Authorization: Bearer <token>' with a token from "
                          "`runner token create`", CHALLENGE)
        named = Request(scope).query_params.get("thread")
        if named is None and caller.scope.admin:
            raise Problem(400, "an admin token reaches every thread: name one in the URL, e.g. "
                          f"{PATH}?thread=telegram:42 (or use a thread token)")
        tid = caller.thread(named if named is not None else str(caller.scope.thread))
        return Binding(Local(self.settings, self.jobs, self.files, tid), read_only=caller.scope.read_only)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("method") != "POST":
            await problem(405, "MCP here is streamable HTTP without sessions: POST each JSON-RPC message to "
                          f"{PATH} (there is no event stream to GET and no session to DELETE)", PATH,
                          {"Allow": "POST"})(scope, receive, send)
            return
        if not _same_origin(scope):
            await problem(403, "a browser page of another site cannot call MCP here (its Origin is not this "
                          "server's): call it from an MCP client, which sends no Origin", PATH)(scope, receive, send)
            return
        try:
            binding = self.bind(scope)
        except Problem as exc:
            await problem(exc.status, exc.detail, PATH, exc.headers)(scope, receive, send)
            return
        scope.setdefault("state", {})[_KEY] = binding
        body = await _whole_body(receive)
        refused = guard.refusal(body)
        if refused is not None:
            status, doc = refused
            await JSONResponse(doc, status_code=status)(scope, receive, send)
            return
        await self.manager.handle_request(scope, _replay(body, receive), send)


def _same_origin(scope: dict[str, Any]) -> bool:
    """No Origin (an MCP client, not a browser), or one naming this server's own host: the spec's guard
    against DNS rebinding, where a page of another site reaches a server on loopback by a name of its own."""
    headers = {k.lower(): v for k, v in scope.get("headers") or []}
    origin = headers.get(b"origin")
    if origin is None:
        return True
    host = headers.get(b"host", b"").decode("latin-1").lower()
    return bool(host) and urlsplit(origin.decode("latin-1")).netloc.lower() == host


async def _whole_body(receive: Any) -> bytes:
    """The request's body (at most the server's body limit: runner.http.serve.BodyLimit read it first)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives ``body`` once, then what the connection says (its disconnect)."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def mount_mcp(app: FastAPI, settings: Settings, jobs: Jobs, files: FileBackend) -> None:
    """Serve MCP at /mcp on ``app`` (whose gate authenticates /mcp), its session manager running for as long
    as the app does (started and stopped by the app's lifespan)."""
    manager = StreamableHTTPSessionManager(build_server(settings, _binding_of), json_response=True, stateless=True)
    # first: a catch-all mounted at / (the dashboard) must not shadow it
    app.router.routes.insert(0, Route(PATH, Endpoint(manager, settings, jobs, files)))
    outer = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(asgi: Any) -> AsyncIterator[Any]:
        async with manager.run(), outer(asgi) as state:
            yield state

    app.router.lifespan_context = lifespan
