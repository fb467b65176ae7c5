"""The runner's MCP server (the official SDK's low-level server): the tools, the system prompt as a
prompt, and the thread's files as resources. Who is calling is asked of ``resolve`` on every request:
over HTTP the caller of that very request (its token, its thread), over stdio the one binding the
command line made; nothing is kept between requests."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

import anyio.to_thread
from mcp import types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import McpError

from .. import __version__
from ..errors import RunnerError
from ..settings import Settings
from . import describe, tools
from .tools import Binding

PROMPT = "system_prompt"
URI_PREFIX = "runner://jobs/"
Resolve = Callable[[Any], Binding]  # the request (a Starlette Request over HTTP, None over stdio) -> its caller


def _uri(name: str) -> str:
    return URI_PREFIX + quote(name, safe="")


def _name_of(uri: str) -> str:
    if not uri.startswith(URI_PREFIX) or "/" in uri[len(URI_PREFIX):]:
        raise McpError(types.ErrorData(code=types.INVALID_PARAMS, message=f"there is no resource {uri!r}: the "
                                       f"resources are the thread's files, {URI_PREFIX}<name> (resources/list)"))
    return unquote(uri[len(URI_PREFIX):])


def quiet_sdk() -> None:
    """The SDK logs a line at INFO for every request: kept to its warnings, unless the operator set its level."""
    sdk = logging.getLogger("mcp")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.WARNING)


def build_server(settings: Settings, resolve: Resolve) -> Server[Any, Any]:
    """An MCP server whose every request acts for the caller ``resolve`` finds."""
    quiet_sdk()
    server: Server[Any, Any] = Server("runner", version=__version__, instructions=describe.prompt(settings))

    def binding() -> Binding:
        return resolve(server.request_context.request)

    async def list_tools(req: types.ListToolsRequest) -> types.ServerResult:
        return types.ServerResult(types.ListToolsResult(tools=tools.definitions(settings, binding().read_only)))

    async def call_tool(req: types.CallToolRequest) -> types.ServerResult:
        return types.ServerResult(await tools.call(binding(), req.params.name, req.params.arguments))

    async def list_prompts(req: types.ListPromptsRequest) -> types.ServerResult:
        prompt = types.Prompt(name=PROMPT, title="Scheduling scripts on this runner",
                              description="The system prompt text for an agent that schedules jobs here: the file "
                              "conventions, the schedule language and this runner's limits")
        return types.ServerResult(types.ListPromptsResult(prompts=[prompt]))

    async def get_prompt(req: types.GetPromptRequest) -> types.ServerResult:
        if req.params.name != PROMPT:
            raise McpError(types.ErrorData(code=types.INVALID_PARAMS,
                                           message=f"there is no prompt {req.params.name!r}: the prompt is {PROMPT}"))
        text = types.TextContent(type="text", text=describe.prompt(settings))
        return types.ServerResult(types.GetPromptResult(description="How to schedule jobs on this runner",
                                                        messages=[types.PromptMessage(role="user", content=text)]))

    server.request_handlers.update({
        types.ListToolsRequest: list_tools, types.CallToolRequest: call_tool,
        types.ListPromptsRequest: list_prompts, types.GetPromptRequest: get_prompt,
        **_resource_handlers(binding),
    })
    return server


def _resource_handlers(binding: Callable[[], Binding]) -> dict[type, Callable[..., Any]]:
    async def list_resources(req: types.ListResourcesRequest) -> types.ServerResult:
        found, _ = await _backend_call(lambda: binding().backend.list_files())
        return types.ServerResult(types.ListResourcesResult(resources=[
            types.Resource(uri=_uri(f.name), name=f.name, size=f.size,  # type: ignore[arg-type]  # AnyUrl from str
                           mimeType=mimetypes.guess_type(f.name)[0] or "application/octet-stream")
            for f in found]))

    async def read_resource(req: types.ReadResourceRequest) -> types.ServerResult:
        uri = str(req.params.uri)
        name = _name_of(uri)
        data = await _backend_call(lambda: binding().backend.read_file(name))
        contents: types.TextResourceContents | types.BlobResourceContents
        try:
            contents = types.TextResourceContents(uri=uri, text=data.decode("utf-8"),  # type: ignore[arg-type]
                                                  mimeType=mimetypes.guess_type(name)[0] or "text/plain")
        except UnicodeDecodeError:
            import base64

            contents = types.BlobResourceContents(uri=uri, blob=base64.b64encode(data).decode(),  # type: ignore[arg-type]
                                                  mimeType="application/octet-stream")
        return types.ServerResult(types.ReadResourceResult(contents=[contents]))

    return {types.ListResourcesRequest: list_resources, types.ReadResourceRequest: read_resource}


async def _backend_call(fn: Callable[[], Any]) -> Any:
    """A backend read for a resource request: a refusal is a protocol error with the sentence (resources
    have no error result of their own)."""
    try:
        return await anyio.to_thread.run_sync(fn)
    except RunnerError as exc:
        raise McpError(types.ErrorData(code=types.INVALID_PARAMS, message=str(exc))) from None
