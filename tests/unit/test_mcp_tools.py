"""The MCP tools' definitions (issue 15), pure: the thirteen names, input schemas that are the HTTP
API's models, read-only callers offered the read tools alone, and descriptions that state the limits of
the settings given, not constants."""

from __future__ import annotations

import json

from runner.http import models
from runner.mcp import describe, tools
from runner.settings import Settings

NAMES = ("schedule_job", "list_jobs", "get_job", "get_job_runs", "run_job_now", "pause_job", "resume_job",
         "update_job", "cancel_job", "preview_schedule", "list_files", "read_file", "write_file")


def test_the_tools_have_the_names_every_runner_uses() -> None:
    assert tools.NAMES == NAMES
    assert [t.name for t in tools.definitions(Settings(), read_only=False)] == list(NAMES)
    read = [t.name for t in tools.definitions(Settings(), read_only=True)]
    assert read == ["list_jobs", "get_job", "get_job_runs", "preview_schedule", "list_files", "read_file"]
    assert all(name in tools.READ_ONLY for name in read)


def test_the_input_schemas_are_the_apis_models() -> None:
    schemas = {t.name: t.inputSchema for t in tools.definitions(Settings(), read_only=False)}
    assert schemas["schedule_job"] == tools.compact(models.JobCreate.model_json_schema())
    assert schemas["preview_schedule"] == tools.compact(models.Preview.model_json_schema())
    when = schemas["schedule_job"]["properties"]["when"]  # optional: left out means null, said once
    assert when["type"] == "string" and when["maxLength"] == 200 and "anyOf" not in when and "default" not in when
    assert "title" not in json.dumps(schemas)
    assert schemas["schedule_job"]["properties"]["name"]["pattern"] == models.NAME_PATTERN
    update = schemas["update_job"]
    assert set(update["properties"]) == set(models.JobUpdate.model_fields) | {"job_id"}
    assert update["required"] == ["job_id"] and update["additionalProperties"] is False
    assert all(s.get("additionalProperties") is False for s in schemas.values())


def test_the_descriptions_state_the_limits_of_this_runner() -> None:
    s = Settings().with_(timeout_seconds=42, max_timeout_seconds=420, memory_mb=300, message_cap=4096,
                         egress_allow=())
    texts = {t.name: t.description or "" for t in tools.definitions(s, read_only=False)}
    schedule = texts["schedule_job"]
    for said in ("42 s of wall time", "up to 420", "300 MiB", "at most 4 KiB", "allow_hosts is refused",
                 "jobs/<name>.py", "<name>_message.txt", "<name>_output.json", "<name>_attachments/",
                 '"daily 9am"', '"0 9 * * 1-5"'):
        assert said in schedule, said
    assert "42 s" in texts["update_job"] and '"every 15 minutes"' in texts["preview_schedule"]
    assert "42 s of wall time" not in describe.limits(Settings())
    assert "get_job_runs" in describe.prompt(s) and "42 s" in describe.prompt(s)
