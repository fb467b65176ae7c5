"""The agent's tools, the OpenAPI document and the typed client share one source: the HTTP API's request
models. A field added to a model is a tool argument and a field of the document without another edit,
and every argument a tool's schema offers is one its function takes."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from pydantic import Field

from runner import toolschema
from runner.agent import TOOL_NAMES, AgentTools, tool_definitions
from runner.http import models
from runner.http.app import create_app
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Store


def _openapi() -> dict[str, Any]:
    settings = Settings()
    service = Jobs(settings, None)  # type: ignore[arg-type]  # the document needs no database
    spec: dict[str, Any] = create_app(settings, service, Store(None)).openapi()  # type: ignore[arg-type]
    return spec


def _tool(name: str, style: str = "anthropic") -> dict[str, Any]:
    found = next(t for t in tool_definitions(style) if (t.get("name") or t["function"]["name"]) == name)
    schema: dict[str, Any] = found["input_schema"] if style == "anthropic" else found["function"]["parameters"]
    return schema


def test_a_field_added_to_the_create_model_is_in_the_tool_and_the_openapi_document(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Wider(models.JobCreate):
        priority: int | None = Field(None, ge=0, le=9, description="which job runs first when two are due")

    monkeypatch.setattr(models, "JobCreate", Wider)
    for style in ("anthropic", "openai"):
        assert _tool("schedule_job", style)["properties"]["priority"] == {
            "description": "which job runs first when two are due", "minimum": 0, "maximum": 9, "type": "integer"}
    schemas = _openapi()["components"]["schemas"]
    assert schemas["JobCreate"]["properties"]["priority"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": 9}
    assert "priority" in schemas["JobCreateForm"]["properties"]
    # and the upload is validated by it: a form field beyond the model is refused, this one taken
    assert Wider.model_validate({"name": "x", "script": "pass", "priority": "3"}).priority == 3


def test_a_field_added_to_the_update_or_query_model_is_a_tool_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    class Update(models.JobUpdate):
        note: str | None = Field(None, max_length=80, description="a note for people")

    class Query(models.JobQuery):
        name: str | None = Field(None, description="only jobs of this name")

    monkeypatch.setattr(models, "JobUpdate", Update)
    monkeypatch.setattr(models, "JobQuery", Query)
    assert _tool("update_job")["properties"]["note"] == {"description": "a note for people", "maxLength": 80,
                                                         "type": "string"}
    assert "name" in _tool("list_jobs")["properties"]


def test_the_tools_and_the_openapi_document_have_the_same_fields() -> None:
    schemas, paths = _openapi()["components"]["schemas"], _openapi()["paths"]
    api_of = {name: toolschema.field_name(name) for name in _tool("schedule_job")["properties"]}
    assert set(api_of.values()) == set(schemas["JobCreate"]["properties"])
    assert _tool("schedule_job")["required"] == schemas["JobCreate"]["required"] == ["name", "script"]
    update = {toolschema.field_name(n) for n in _tool("update_job")["properties"]} - {"job_id", "approve_script"}
    assert update == set(schemas["JobUpdate"]["properties"])
    listed = {p["name"] for p in paths["/v1/threads/{thread}/jobs"]["get"]["parameters"] if p["in"] == "query"}
    assert listed == set(_tool("list_jobs")["properties"])
    for name in ("schedule_job", "update_job"):  # the field's own description, with the tools' names
        props = _tool(name)["properties"]
        assert "recurrence" in props and "every" not in props
    assert "with recurrence and no when" in _tool("schedule_job")["properties"]["when"]["description"]


def test_every_argument_a_tool_offers_is_one_its_function_takes() -> None:
    for name in TOOL_NAMES:
        params = inspect.signature(getattr(AgentTools, name)).parameters
        takes_more = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for arg in _tool(name)["properties"]:
            assert arg in params or takes_more, (name, arg)
        required = [n for n, p in params.items() if n != "self" and p.default is p.empty and p.kind is not p.VAR_KEYWORD]
        assert required == _tool(name)["required"], name


def test_the_schemas_are_flat_for_function_calling() -> None:
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            assert not {"title", "$ref", "$defs", "anyOf"} & set(node), node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for style in ("anthropic", "openai"):
        walk(tool_definitions(style))
