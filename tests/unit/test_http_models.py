"""The HTTP API's models (issue 14): what they accept and refuse, and that the schema an agent reads
describes every field it may send."""

from __future__ import annotations

import pydantic
import pytest

from runner.http import models


def test_a_job_needs_a_name_and_a_script_and_takes_the_schedule_and_limits() -> None:
    job = models.JobCreate(name="check_price", script="print(1)", every="daily 9am", tz="Europe/Berlin",
                           timeout_seconds=60, allow_hosts=["api.example.com"], retries=2)
    assert job.when is None and job.every == "daily 9am" and job.allow_hosts == ["api.example.com"]


@pytest.mark.parametrize("fields", [
    {"name": "../x", "script": "pass"},
    {"name": "Check", "script": "pass"},
    {"name": "x" * 65, "script": "pass"},
    {"name": "ok"},
    {"name": "ok", "script": "pass", "unknown": 1},
    {"name": "ok", "script": "pass", "when": "x" * 10_000},
    {"name": "ok", "script": "pass", "allow_hosts": ["a.example.com"] * 21},
    {"name": "ok", "script": "pass", "timeout_seconds": 0},
    {"name": "ok", "script": "pass", "overlap": "sometimes"},
])
def test_structurally_wrong_jobs_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        models.JobCreate.model_validate(fields)


@pytest.mark.parametrize("model", [models.JobCreate, models.JobUpdate, models.Preview, models.ThreadSettings])
def test_every_field_an_agent_sends_is_described(model: type[pydantic.BaseModel]) -> None:
    schema = model.model_json_schema()
    missing = [name for name, prop in schema["properties"].items() if not prop.get("description")]
    assert missing == [], f"{model.__name__}: fields without a description: {missing}"


def test_a_page_is_typed_by_its_items() -> None:
    schema = models.Page[models.Message].model_json_schema()
    assert schema["properties"]["items"]["items"]["$ref"].endswith("/Message")
