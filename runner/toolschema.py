"""The input schemas of the agent's tools, made from the HTTP API's own request models
(:mod:`runner.http.models`): a field added to ``JobCreate`` is a field of the ``schedule_job`` tool, of
``POST /v1/threads/{thread}/jobs`` in the OpenAPI document and of the typed client at once.

The tools keep the names of the original assistant's arguments where they differ from the API's
(``recurrence`` for ``every``), and a few arguments of their own (``job_id``, ``approve_script``).
Each schema is flattened for function calling: no titles, no ``$ref``, and an optional field is its
plain type (an argument left out is the field left out), so both the anthropic and the openai
formats take it as is."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from .http import models

RENAMED = {"every": "recurrence"}  # the API's field: the tools' argument


class JobRef(BaseModel):
    """The job a tool acts on."""

    job_id: int = Field(description="the job's id (each run has its own; list_jobs shows them)")


class _Approve(BaseModel):
    approve_script: str | None = Field(None, description=(
        "a job runs only the script approved for it; when jobs/<name>.py was changed (by a job), runs are "
        "refused with its sha256. Give that sha256 (its first 12 digits are enough) to approve the file as "
        "it is now"))


@dataclass(frozen=True)
class ToolInput:
    """A tool's arguments: the fields of these models, in order, renamed as :data:`RENAMED` says."""

    models: tuple[type[BaseModel], ...]
    renamed: dict[str, str] = field(default_factory=lambda: dict(RENAMED))


def inputs() -> dict[str, ToolInput]:
    """Each tool's models, looked up when asked (so a model changed at run time is the one used)."""
    ref = ToolInput((JobRef,))
    return {"schedule_job": ToolInput((models.JobCreate,)), "list_jobs": ToolInput((models.JobQuery,)),
            "get_job": ref, "get_job_logs": ref, "run_job_now": ref, "pause_job": ref, "resume_job": ref,
            "cancel_job": ref, "update_job": ToolInput((JobRef, models.JobUpdate, _Approve))}


def _flat(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A property's schema without titles, ``$ref`` or the null of an optional field."""
    if "$ref" in schema:
        schema = {**defs[schema["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if "anyOf" in schema and len(options) == 1:
        schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key == "items" and isinstance(value, dict):
            value = _flat(value, defs)
        out[key] = value
    return out


def input_schema(tool: ToolInput) -> dict[str, Any]:
    """The JSON Schema of a tool's arguments (an object; unknown arguments are refused)."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for model in tool.models:
        schema = model.model_json_schema()
        defs = schema.get("$defs", {})
        for name, prop in schema["properties"].items():
            arg = tool.renamed.get(name, name)
            props[arg] = _flat(prop, defs)
            if "description" in props[arg]:
                props[arg]["description"] = _renamed_in(props[arg]["description"], tool.renamed)
            if name in schema.get("required", ()):
                required.append(arg)
    ordered = {**{k: props[k] for k in required}, **props}  # the required first, as a reader looks for them
    return {"type": "object", "properties": ordered, "required": required, "additionalProperties": False}


def _renamed_in(text: str, renamed: dict[str, str]) -> str:
    """A description naming other fields ("not with when or every") with the tool's names of them."""
    for api, arg in renamed.items():
        text = re.sub(rf"(?<=with ){api}\b|(?<=or ){api}\b", arg, text)
    return text


def argument_names(tool: ToolInput) -> list[str]:
    return list(input_schema(tool)["properties"])


def field_name(arg: str) -> str:
    """The API's name of a tool's argument."""
    return next((api for api, tool in RENAMED.items() if tool == arg), arg)
