"""The MCP tools: their names (the same on every runner, so a prompt written for one works on another),
input schemas (the HTTP API's models), descriptions (this runner's limits) and the call of each over a
:class:`~runner.mcp.backend.Backend`. A refused call is a tool result with ``isError`` and the sentence
that says what to change, never a protocol error and never a traceback."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import pydantic
from mcp import types

from ..errors import RunnerError, ValidationError
from ..http import models
from ..http.problems import validation_detail
from ..settings import Settings
from . import inputs
from .backend import Backend

log = logging.getLogger("runner.mcp")


@dataclass(frozen=True)
class Tool:
    name: str
    model: type[pydantic.BaseModel]
    read: bool  # a read tool changes nothing (a read-only caller gets only these)
    run: Callable[[Backend, Any], dict[str, Any]]
    destructive: bool = False


@dataclass(frozen=True)
class Binding:
    """What one caller reaches: a thread's backend, and whether it may change anything."""

    backend: Backend
    read_only: bool = False


def _dump(model: pydantic.BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _act(action: str) -> Callable[[Backend, inputs.JobRef], dict[str, Any]]:
    return lambda b, a: {"job": _dump(b.act(action, a.job_id))}


def _update(b: Backend, a: inputs.UpdateJob) -> dict[str, Any]:
    body = models.JobUpdate.model_validate(a.model_dump(exclude_unset=True, exclude={"job_id"}))
    return {"job": _dump(b.update_job(a.job_id, body))}


def _files(b: Backend, a: inputs.NoArguments) -> dict[str, Any]:
    found, other = b.list_files()
    return {"files": [_dump(f) for f in found], "other": other}


def _read(b: Backend, a: inputs.FileRef) -> dict[str, Any]:
    data = b.read_file(a.name)
    try:
        return {"name": a.name, "size": len(data), "encoding": "utf-8", "content": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"name": a.name, "size": len(data), "encoding": "base64", "content": base64.b64encode(data).decode()}


def _write(b: Backend, a: inputs.WriteFile) -> dict[str, Any]:
    if a.encoding == "base64":
        try:
            data = base64.b64decode(a.content, validate=True)
        except binascii.Error:
            raise ValidationError('content is not valid base64: give the bytes in base64, or the text itself '
                                  'with encoding "utf-8"') from None
    else:
        data = a.content.encode("utf-8")
    b.write_file(a.name, data)
    return {"written": a.name, "size": len(data)}


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("schedule_job", models.JobCreate, False, lambda b, a: {"job": _dump(b.schedule_job(a))}),
    Tool("list_jobs", inputs.ListJobs, True,
         lambda b, a: {"jobs": [_dump(j) for j in b.list_jobs(a.status, a.limit)]}),
    Tool("get_job", inputs.JobRef, True, lambda b, a: {"job": _dump(b.get_job(a.job_id))}),
    Tool("get_job_runs", inputs.JobRuns, True,
         lambda b, a: {"runs": [_dump(r) for r in b.job_runs(a.job_id, a.limit)]}),
    Tool("run_job_now", inputs.JobRef, False, _act("run_job_now")),
    Tool("pause_job", inputs.JobRef, False, _act("pause_job")),
    Tool("resume_job", inputs.JobRef, False, _act("resume_job")),
    Tool("update_job", inputs.UpdateJob, False, _update),
    Tool("cancel_job", inputs.JobRef, False, _act("cancel_job"), destructive=True),
    Tool("preview_schedule", models.Preview, True, lambda b, a: _dump(b.preview(a))),
    Tool("list_files", inputs.NoArguments, True, _files),
    Tool("read_file", inputs.FileRef, True, _read),
    Tool("write_file", inputs.WriteFile, False, _write),
)}
NAMES = tuple(TOOLS)
READ_TOOLS = tuple(name for name, t in TOOLS.items() if t.read)
READ_ONLY = ("this connection is read-only (its token was made with --read-only, or runner mcp was started with "
             f"--read-only): only {', '.join(READ_TOOLS)} are open; use a token made without --read-only to "
             "change anything")


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` with the default null as X alone: leaving the field out means null."""
    any_of, null = schema.get("anyOf"), {"type": "null"}
    if not (isinstance(any_of, list) and len(any_of) == 2 and null in any_of and schema.get("default", 0) is None):
        return schema
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**next(s for s in any_of if s != null), **rest}


def compact(schema: Any, names: bool = False) -> Any:
    """A model's JSON Schema without what costs an agent's context and says nothing: titles, and the null
    alternative of an optional field (``names``: ``schema`` maps property names, whatever they are)."""
    if isinstance(schema, list):
        return [compact(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kept = {k: compact(v, names=(k == "properties" and not names)) for k, v in schema.items()
            if names or k != "title"}
    return kept if names else _without_null(kept)


def definitions(settings: Settings, read_only: bool) -> list[types.Tool]:
    """The tools a caller may call, described for this runner (a read-only caller sees the read tools)."""
    from .describe import tool_texts

    texts = tool_texts(settings)
    return [types.Tool(name=t.name, description=texts[t.name], inputSchema=compact(t.model.model_json_schema()),
                       annotations=types.ToolAnnotations(readOnlyHint=t.read, destructiveHint=t.destructive,
                                                         openWorldHint=False))
            for t in TOOLS.values() if t.read or not read_only]


def refused(text: str) -> types.CallToolResult:
    """A refused call: the sentence to act on, marked as an error for the agent (not for the protocol)."""
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)


def _parse(tool: Tool, arguments: dict[str, Any]) -> pydantic.BaseModel | types.CallToolResult:
    try:
        return tool.model.model_validate(arguments)
    except pydantic.ValidationError as exc:
        return refused(f"{tool.name}: {validation_detail(exc.errors(include_url=False))}")


async def call(binding: Binding, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
    """Call the tool ``name`` for ``binding``'s caller; every refusal is a result with isError."""
    tool = TOOLS.get(name)
    if tool is None:
        return refused(f"there is no tool {name!r}: the tools are {', '.join(NAMES)}")
    if binding.read_only and not tool.read:
        return refused(f"{name} changes the thread, and {READ_ONLY}")
    parsed = _parse(tool, arguments or {})
    if isinstance(parsed, types.CallToolResult):
        return parsed
    try:
        result = await anyio.to_thread.run_sync(tool.run, binding.backend, parsed)
    except RunnerError as exc:
        return refused(str(exc))
    except Exception:  # a bug of the runner's: the agent gets a sentence, the log the traceback
        log.exception("the MCP tool %s failed", name)
        return refused(f"the runner failed while doing {name}: its log says why (list_jobs shows what was "
                       "saved before trying a change again)")
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(result, indent=1))],
                                structuredContent=result)
