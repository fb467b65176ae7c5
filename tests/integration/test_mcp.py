"""The MCP server (issue 15) in process: an SDK client session over memory streams against the server
over a real Postgres and a real files directory; every tool called with good and with wrong arguments,
each refusal an isError result with the sentence to act on; the read-only caller; the prompt and the
resources."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.shared.memory import create_connected_server_and_client_session

from runner.mcp import tools
from runner.mcp.backend import Local
from runner.mcp.server import PROMPT, build_server
from runner.mcp.tools import Binding
from runner.service import Jobs
from runner.service.files import FILE_CAP, Files
from runner.settings import Settings

from .helpers import ROOT, cli_env

THREAD, OTHER = "telegram:42", "telegram:43"
WRITE_TOOLS = {"schedule_job", "run_job_now", "pause_job", "resume_job", "update_job", "cancel_job", "write_file"}


def _session(settings: Settings, jobs: Jobs, read_only: bool = False,
             thread: str = THREAD) -> Callable[[Callable[[ClientSession], Awaitable[None]]], None]:
    binding = Binding(Local(settings, jobs, Files(settings, jobs.scripts), thread), read_only=read_only)
    server = build_server(settings, lambda _request: binding)

    def run(scenario: Callable[[ClientSession], Awaitable[None]]) -> None:
        async def go() -> None:
            async with create_connected_server_and_client_session(server, raise_exceptions=True) as session:
                await scenario(session)

        anyio.run(go)

    return run


async def _ok(session: ClientSession, tool: str, /, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.isError, f"{tool} refused: {text}"
    assert result.structuredContent == json.loads(text)
    return result.structuredContent  # type: ignore[return-value]


async def _refused(session: ClientSession, tool: str, says: str, /, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.isError, f"{tool}({arguments}) was not refused: {result.content}"
    text = result.content[0].text  # type: ignore[union-attr]
    assert says in text, text
    assert "Traceback" not in text and "File \"" not in text
    return text


def test_every_tool_with_good_and_wrong_arguments(settings: Settings, jobs: Jobs) -> None:
    other = jobs.schedule_job(thread_id=OTHER, name="secret", script_text="print(1)", at="in 1 hour")

    async def scenario(s: ClientSession) -> None:
        listed = await s.list_tools()
        assert [t.name for t in listed.tools] == list(tools.NAMES) and len(listed.tools) == 13
        schema = next(t for t in listed.tools if t.name == "schedule_job").inputSchema
        assert {"name", "script"} <= set(schema["required"]) and schema["additionalProperties"] is False
        assert "_output.json" in next(t for t in listed.tools if t.name == "schedule_job").description

        # schedule_job
        job = (await _ok(s, "schedule_job", name="hello", script="print('hi')", every="daily 9am",
                         tz="Europe/Berlin"))["job"]
        assert job["status"] == "pending" and job["thread_id"] == THREAD and len(job["next_runs"]) == 5
        await _refused(s, "schedule_job", "'daily 9': the time is ambiguous", name="x", script="pass", every="daily 9")
        await _refused(s, "schedule_job", "name: String should match pattern", name="Bad Name", script="pass")
        await _refused(s, "schedule_job", "script: Field required", name="x")
        await _refused(s, "schedule_job", "colour: Extra inputs are not permitted", name="x", script="pass", colour=1)
        await _refused(s, "schedule_job", "broken.py has a syntax error at line 1", name="broken", script="def (:")
        await _refused(s, "schedule_job", "timeout", name="slow", script="pass", timeout_seconds=10**6)

        # list_jobs and get_job: this thread only
        listed_jobs = (await _ok(s, "list_jobs"))["jobs"]
        assert [j["name"] for j in listed_jobs] == ["hello"]
        assert (await _ok(s, "list_jobs", status="cancelled"))["jobs"] == []
        await _refused(s, "list_jobs", "status: Input should be", status="nope")
        assert (await _ok(s, "get_job", job_id=job["id"]))["job"]["name"] == "hello"
        await _refused(s, "get_job", "no such job", job_id=other["id"])
        await _refused(s, "get_job", "job_id: Field required")

        # get_job_runs
        runs = (await _ok(s, "get_job_runs", job_id=job["id"]))["runs"]
        assert [(r["id"], r["status"]) for r in runs] == [(job["id"], "pending")]
        await _refused(s, "get_job_runs", "job_id: Input should be a valid integer", job_id="seven")
        await _refused(s, "get_job_runs", "limit: Input should be less than or equal to 100", job_id=job["id"],
                       limit=1000)

        # pause_job, resume_job, run_job_now, update_job
        assert (await _ok(s, "pause_job", job_id=job["id"]))["job"]["paused"] is True
        await _refused(s, "pause_job", "no such job", job_id=other["id"])
        assert (await _ok(s, "resume_job", job_id=job["id"]))["job"]["paused"] is False
        await _refused(s, "resume_job", "no such job", job_id=10**9)
        updated = (await _ok(s, "update_job", job_id=job["id"], every="hourly"))["job"]
        assert updated["recurrence"] == "hourly"
        await _refused(s, "update_job", "Mars/Olympus", job_id=job["id"], tz="Mars/Olympus")
        await _refused(s, "update_job", "no such job", job_id=other["id"], every="hourly")
        script = (await _ok(s, "update_job", job_id=job["id"], script="print('hello again')"))["job"]
        assert script["id"] == job["id"]
        moved = (await _ok(s, "run_job_now", job_id=job["id"]))["job"]
        assert moved["status"] == "pending"
        await _refused(s, "run_job_now", "no such job", job_id=other["id"])

        # cancel_job
        assert (await _ok(s, "cancel_job", job_id=job["id"]))["job"]["status"] == "cancelled"
        await _refused(s, "cancel_job", "already cancelled", job_id=job["id"])
        await _refused(s, "pause_job", "only a pending job", job_id=job["id"])

        # preview_schedule
        times = await _ok(s, "preview_schedule", every="weekdays 8:30", tz="Asia/Tokyo", n=3)
        assert times["timezone"] == "Asia/Tokyo" and len(times["times"]) == 3
        assert all(t[11:16] == "08:30" for t in times["times"])
        await _refused(s, "preview_schedule", "'daily 9': the time is ambiguous", every="daily 9")
        await _refused(s, "preview_schedule", "n: Input should be greater than or equal to 1", every="hourly", n=0)

        # write_file, list_files, read_file
        assert (await _ok(s, "write_file", name="input.json", content='{"limit": 100}'))["size"] == 14
        raw = bytes(range(256))
        await _ok(s, "write_file", name="blob.bin", content=base64.b64encode(raw).decode(), encoding="base64")
        files = await _ok(s, "list_files")
        assert {"hello.py", "input.json", "blob.bin"} <= {f["name"] for f in files["files"]}
        await _refused(s, "list_files", "Extra inputs are not permitted", thread=OTHER)
        assert (await _ok(s, "read_file", name="input.json"))["content"] == '{"limit": 100}'
        blob = await _ok(s, "read_file", name="blob.bin")
        assert blob["encoding"] == "base64" and base64.b64decode(blob["content"]) == raw
        await _refused(s, "read_file", "file name '../secret.py' is not allowed", name="../secret.py")
        await _refused(s, "read_file", "there is no file jobs/missing.json", name="missing.json")
        await _refused(s, "write_file", "not valid base64", name="x.bin", content="%%%", encoding="base64")
        await _refused(s, "write_file", f"at most {FILE_CAP} bytes", name="big.txt", content="x" * (FILE_CAP + 1))
        await _refused(s, "write_file", "content: Field required", name="x.txt")

        await _refused(s, "drop_database", "there is no tool 'drop_database': the tools are schedule_job")

    _session(settings, jobs)(scenario)
    assert not (settings.data_dir / "telegram_43" / "jobs" / "input.json").exists()


def test_a_read_only_caller_lists_and_calls_only_the_read_tools(settings: Settings, jobs: Jobs) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="hello", script_text="print(1)", at="in 1 hour")

    async def scenario(s: ClientSession) -> None:
        names = {t.name for t in (await s.list_tools()).tools}
        assert names == set(tools.READ_TOOLS) and not names & WRITE_TOOLS
        assert all(t.annotations and t.annotations.readOnlyHint for t in (await s.list_tools()).tools)
        for name, args in (("schedule_job", {"name": "x", "script": "pass"}), ("cancel_job", {"job_id": job["id"]}),
                           ("write_file", {"name": "x.txt", "content": "x"}), ("run_job_now", {"job_id": job["id"]})):
            await _refused(s, name, "read-only", **args)
        assert (await _ok(s, "get_job", job_id=job["id"]))["job"]["status"] == "pending"

    _session(settings, jobs, read_only=True)(scenario)
    assert jobs.get_job(job["id"])["status"] == "pending"


def test_the_prompt_and_the_thread_files_as_resources(settings: Settings, jobs: Jobs) -> None:
    settings = settings.with_(timeout_seconds=17, max_memory_mb=777)
    jobs.schedule_job(thread_id=THREAD, name="hello", script_text="print('hi')", at="in 1 hour")

    async def scenario(s: ClientSession) -> None:
        prompts = (await s.list_prompts()).prompts
        assert [p.name for p in prompts] == [PROMPT]
        text = (await s.get_prompt(PROMPT)).messages[0].content.text  # type: ignore[union-attr]
        assert "17 s of wall time" in text and "777 MiB" in text and "_message.txt" in text
        assert "get_job_runs" in text
        schedule = next(t for t in (await s.list_tools()).tools if t.name == "schedule_job")
        assert "17 s of wall time" in (schedule.description or "")  # the settings' limits, not constants
        resources = (await s.list_resources()).resources
        assert [str(r.uri) for r in resources] == ["runner://jobs/hello.py"]
        got = (await s.read_resource(resources[0].uri)).contents[0]
        assert isinstance(got, types.TextResourceContents) and got.text == "print('hi')"
        with pytest.raises(Exception, match="there is no file jobs/nope.txt"):
            await s.read_resource("runner://jobs/nope.txt")  # type: ignore[arg-type]

    _session(settings, jobs)(scenario)


def test_runner_mcp_thread_over_stdio(settings: Settings, jobs: Jobs) -> None:
    """`runner mcp --thread` as a local client starts it: the SDK's stdio client, the database and files
    directory from the environment as every command has them."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "runner.cli", "mcp", "--thread", THREAD],
                                   env=cli_env(settings), cwd=str(ROOT))

    async def scenario() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            assert [t.name for t in (await s.list_tools()).tools] == list(tools.NAMES)
            made = await _ok(s, "schedule_job", name="local", script="print(4)", when="in 1 hour")
            assert made["job"]["thread_id"] == THREAD
            await _refused(s, "schedule_job", "'daily 9': the time is ambiguous", name="x", script="pass",
                           every="daily 9")
            assert (await _ok(s, "read_file", name="local.py"))["content"] == "print(4)"

    anyio.run(scenario)
    assert [j["name"] for j in jobs.list_jobs(THREAD)] == ["local"]


def test_runner_mcp_says_what_it_needs(settings: Settings) -> None:
    for args, says in ((["mcp"], "give --thread THREAD"), (["mcp", "--thread", "no thread"], "thread"),
                       (["mcp", "--url", "http://127.0.0.1:9"], "--url needs a token")):
        done = subprocess.run([sys.executable, "-m", "runner.cli", *args], env=cli_env(settings), cwd=ROOT,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode != 0 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert done.stdout == ""
