"""The agent's interface end to end: tool calls as a model would make them, real database and containers."""

from __future__ import annotations

import json

import docker

from runner.agent import TOOL_NAMES, AgentTools, call_tool, system_prompt, tool_definitions
from runner.http import models
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database

from .helpers import run_burst
from .test_cli import cli

THREAD = "telegram:8"


def test_agent_schedules_runs_reads_logs_and_cancels(jobs: Jobs, settings: Settings, db: Database,
                                                     docker_client: docker.DockerClient) -> None:
    tools = AgentTools(jobs, THREAD)
    made = call_tool(tools, "schedule_job", json.dumps({
        "name": "greet", "when": "now",
        "script": "open('jobs/greet_message.txt', 'w').write('good morning')\nprint('done')\n"}))
    assert made["ok"] and made["job"]["status"] == "pending" and made["job"]["thread_id"] == THREAD
    printed = run_burst(settings, db, docker_client)
    assert "good morning" in printed
    logs = call_tool(tools, "get_job_logs", {"job_id": made["job"]["id"]})
    assert logs["ok"] and logs["logs"]["status"] == "completed" and "done" in logs["logs"]["output_tail"]
    listed = call_tool(tools, "list_jobs", {"status": "completed"})
    assert [j["name"] for j in listed["jobs"]] == ["greet"]
    daily = call_tool(tools, "schedule_job", {"name": "daily", "script": "pass", "recurrence": "weekdays 8:30",
                                              "tz": "America/New_York"})
    assert daily["ok"] and daily["job"]["recurrence"] == "weekdays 8:30"
    assert call_tool(tools, "pause_job", {"job_id": daily["job"]["id"]})["job"]["paused"] is True
    assert call_tool(tools, "resume_job", {"job_id": daily["job"]["id"]})["job"]["paused"] is False
    upd = call_tool(tools, "update_job", {"job_id": daily["job"]["id"], "recurrence": "daily 9am", "timeout_seconds": 60})
    assert upd["ok"] and upd["job"]["recurrence"] == "daily 9am" and upd["job"]["timeout_seconds"] == 60
    got = call_tool(tools, "get_job", {"job_id": daily["job"]["id"]})
    assert got["ok"] and got["job"]["name"] == "daily"
    assert call_tool(tools, "cancel_job", {"job_id": daily["job"]["id"]})["job"]["status"] == "cancelled"


def test_agent_mistakes_come_back_as_reasons_and_save_nothing(jobs: Jobs) -> None:
    tools = AgentTools(jobs, THREAD)
    cases = [
        ({"name": "x", "script": "if x\n  pass", "when": "now"}, "syntax error at line 1"),
        ({"name": "x", "script": "pass", "recurrence": "every weekday-ish"}, "could not understand the recurrence"),
        ({"name": "x", "script": "pass", "when": "yesterday"}, "could not understand the time"),
        ({"name": "X Y", "script": "pass"}, "job name 'X Y' is not allowed"),
        ({"name": "x", "script": "pass", "allow_hosts": ["10.0.0.1"]}, "not IP addresses"),
        ({"name": "x", "script": "pass", "after": "nothing"}, "no job named 'nothing'"),
        ({"name": "x", "script": "pass", "timeout_seconds": 100000}, "operator's maximum"),
        ({"name": "x", "script": "pass", "tz": "Moon/Base"}, "unknown time zone"),
    ]
    for args, expected in cases:
        out = call_tool(tools, "schedule_job", args)
        assert out["ok"] is False and expected in out["error"], (args, out)
    assert call_tool(tools, "cancel_job", {"job_id": 12345}) == {"ok": False, "error": "no such job: 12345 (list them with: runner jobs)"}
    assert call_tool(tools, "schedule_job", {"nme": "x"})["ok"] is False
    assert call_tool(tools, "drop_tables", {})["ok"] is False
    assert jobs.list_jobs() == []


def test_the_api_fields_the_tools_gained_from_the_models_work_and_are_checked_by_them(jobs: Jobs) -> None:
    """cpus, overlap, grace: JobCreate's fields, which the tools took from the model, not a signature."""
    tools = AgentTools(jobs, THREAD)
    made = call_tool(tools, "schedule_job", {"name": "wide", "script": "pass", "recurrence": "hourly", "cpus": 0.5,
                                             "overlap": "queue", "grace_seconds": 60, "pids_limit": 32})
    assert made["ok"], made
    assert (made["job"]["cpus"], made["job"]["overlap"], made["job"]["grace_seconds"], made["job"]["pids_limit"]) == (
        0.5, "queue", 60, 32)
    upd = call_tool(tools, "update_job", {"job_id": made["job"]["id"], "overlap": "skip", "retry_delay_seconds": 5})
    assert upd["ok"] and (upd["job"]["overlap"], upd["job"]["retry_delay_seconds"]) == ("skip", 5), upd
    for tool, args, says in (("schedule_job", {"name": "x", "script": "pass", "cpus": -1}, "cpus: Input should be greater than 0"),
                             ("schedule_job", {"name": "x", "script": "pass", "overlap": "often"}, "overlap: Input should be 'skip' or 'queue'"),
                             ("update_job", {"job_id": made["job"]["id"], "pids_limit": 2}, "pids_limit: Input should be greater than or equal to 8"),
                             ("schedule_job", {"name": "x", "script": "pass", "every": "hourly"}, "schedule_job takes no argument 'every'")):
        out = call_tool(tools, tool, args)
        assert out["ok"] is False and says in out["error"], (args, out)
    assert tools.schedule_job(name="y", script="pass", colour="blue") == {  # a Python caller is told the same
        "ok": False, "error": "schedule_job takes no argument 'colour': it takes " + ", ".join(sorted(
            p for p in tool_definitions()[0]["input_schema"]["properties"]))}
    page = call_tool(tools, "list_jobs", {"limit": 1})
    assert page["ok"] and len(page["jobs"]) == 1 and page["next_before"] is None
    assert [j["name"] for j in jobs.list_jobs(thread_id=THREAD)] == ["wide"]


def test_another_threads_job_is_invisible_to_the_agent(jobs: Jobs) -> None:
    theirs = jobs.schedule_job(thread_id="telegram:9", name="theirs", script_text="pass", at="in 1 hour")
    tools = AgentTools(jobs, THREAD)
    for name in ("get_job", "get_job_logs", "cancel_job", "run_job_now", "pause_job"):
        out = call_tool(tools, name, {"job_id": theirs["id"]})
        assert out["ok"] is False and "no such job" in out["error"]


def test_tool_definitions_match_the_functions() -> None:
    for style in ("anthropic", "openai"):
        tools = tool_definitions(style)
        assert [t["name"] if style == "anthropic" else t["function"]["name"] for t in tools] == list(TOOL_NAMES)
    schedule = tool_definitions()[0]
    assert schedule["input_schema"]["required"] == ["name", "script"]
    props = schedule["input_schema"]["properties"]
    # the API's JobCreate field, as its OpenAPI document states it (the description is the model's)
    assert props["allow_hosts"] == {"type": "array", "items": {"type": "string", "maxLength": 253}, "maxItems": 20,
                                    "description": models.HOSTS}
    assert all(p["description"] for t in tool_definitions() for p in t["input_schema"]["properties"].values())
    for needle in ("_message.txt", "_output.json", "_attachments", "jobs/", "allow_hosts", "30 s"):
        assert needle in system_prompt(Settings())


def test_cli_mirrors_the_api_with_json(settings: Settings) -> None:
    r = cli(settings, "schedule", "examples/loops.py", "--thread", "telegram:1", "--name", "loops",
            "--every", "daily 9am", "--retries", "2", "--json")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["retries"] == 2 and job["overlap"] == "skip" and job["grace_seconds"] == 3600
    jid = str(job["id"])
    for args, check in [
        (("pause", jid, "--json"), lambda o: o["paused"] is True),
        (("resume", jid, "--json"), lambda o: o["paused"] is False),
        (("update", jid, "--every", "weekdays 7:15", "--timeout", "40", "--json"),
         lambda o: o["recurrence"] == "weekdays 7:15" and o["timeout_seconds"] == 40),
        (("get", jid, "--json"), lambda o: o["job"]["id"] == job["id"] and len(o["runs"]) == 1),
        (("run", jid, "--json"), lambda o: o["status"] == "pending"),
        (("logs", jid, "--json"), lambda o: o["status"] == "pending"),
        (("next", "weekdays 7:15", "--tz", "Europe/Berlin", "-n", "3", "--json"), lambda o: len(o["next"]) == 3),
        (("tools", "--style", "openai"), lambda o: o[0]["type"] == "function"),
        (("cancel", jid, "--json"), lambda o: o["status"] == "cancelled"),
    ]:
        r = cli(settings, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert check(json.loads(r.stdout)), (args, r.stdout)
    r = cli(settings, "tools", "--prompt")
    assert "jobs/<name>_message.txt" in r.stdout
