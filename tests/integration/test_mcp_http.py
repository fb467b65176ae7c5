"""MCP over streamable HTTP at /mcp of `runner up` in a subprocess (issue 15), with the SDK's own client:
a thread token sees only its thread, a read-only token gets only the read tools, no token or a bad one
is refused before anything is read; an agent's whole loop (write_file, preview_schedule, schedule_job for
in 2 seconds, get_job_runs until it ran, read_file of its output); and `runner mcp --url --token` over
stdio, through the typed client, against the same runner."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from runner import tokens
from runner.mcp import tools
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store
from runner.threads import ThreadId

from .helpers import ROOT, cli_env
from .test_api_end_to_end import _token, runner_up  # noqa: F401  (the fixture: runner up in a subprocess)

THREAD = "web:assistant-1"  # the thread of test_api_end_to_end's tokens
OTHER = "web:other"

PRICE = '''
import json
limit = json.load(open("jobs/input.json"))["limit"]
json.dump({"price": 87, "under": 87 < limit}, open("jobs/check_price_output.json", "w"))
'''


@asynccontextmanager
async def _mcp(url: str, token: str | None, query: str = "") -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http, \
            streamable_http_client(f"{url}/mcp{query}", http_client=http) as (read, write, _), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    anyio.run(scenario)


async def _result(session: ClientSession, tool: str, /, **arguments: Any) -> tuple[bool, Any]:
    got = await session.call_tool(tool, arguments)
    text = got.content[0].text  # type: ignore[union-attr]
    return bool(got.isError), (text if got.isError else json.loads(text))


def test_a_thread_token_sees_only_its_thread(runner_up: str, db: Database, jobs: Jobs) -> None:  # noqa: F811
    theirs = jobs.schedule_job(thread_id=OTHER, name="secret", script_text="print(1)", at="in 1 hour")
    jobs.scripts.write(ThreadId.parse(OTHER), "secret.json", b"{}")

    async def scenario() -> None:
        async with _mcp(runner_up, _token(db)) as s:
            assert {t.name for t in (await s.list_tools()).tools} == set(tools.NAMES)
            error, made = await _result(s, "schedule_job", name="mine", script="print(2)", when="in 1 hour")
            assert not error and made["job"]["thread_id"] == THREAD
            _, listed = await _result(s, "list_jobs")
            assert [j["name"] for j in listed["jobs"]] == ["mine"]
            error, said = await _result(s, "get_job", job_id=theirs["id"])
            assert error and "no such job" in said
            error, said = await _result(s, "cancel_job", job_id=theirs["id"])
            assert error and "no such job" in said
            _, files = await _result(s, "list_files")
            assert [f["name"] for f in files["files"]] == ["mine.py"]
            error, said = await _result(s, "read_file", name="secret.json")
            assert error and "there is no file" in said

    _run(scenario)
    assert jobs.get_job(theirs["id"])["status"] == "pending"
    # A thread token cannot name another thread in the URL: 404, as on /v1.
    resp = httpx.post(f"{runner_up}/mcp?thread={OTHER}", headers={"Authorization": f"Bearer {_token(db)}"},
                      json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert resp.status_code == 404 and resp.headers["content-type"].startswith("application/problem+json")


def test_a_read_only_token_gets_only_the_read_tools(runner_up: str, db: Database, jobs: Jobs) -> None:  # noqa: F811
    job = jobs.schedule_job(thread_id=THREAD, name="hello", script_text="print(1)", at="in 1 hour")

    async def scenario() -> None:
        async with _mcp(runner_up, _token(db, read_only=True)) as s:
            names = {t.name for t in (await s.list_tools()).tools}
            assert names == set(tools.READ_TOOLS)
            assert not names & {"schedule_job", "cancel_job", "write_file", "update_job"}
            error, said = await _result(s, "cancel_job", job_id=job["id"])
            assert error and "read-only" in said
            error, said = await _result(s, "write_file", name="x.txt", content="x")
            assert error and "read-only" in said
            error, got = await _result(s, "get_job", job_id=job["id"])
            assert not error and got["job"]["status"] == "pending"

    _run(scenario)
    assert jobs.get_job(job["id"])["status"] == "pending"


def test_no_token_or_a_bad_one_is_refused(runner_up: str, db: Database) -> None:  # noqa: F811
    call = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    for headers in ({}, {"Authorization": "Bearer rnr_0000000000000000_" + "A" * 43}, {"Authorization": "Basic x"}):
        resp = httpx.post(f"{runner_up}/mcp", headers=headers | accept, json=call)
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert "runner token create" in resp.json()["detail"]

    async def with_the_sdk() -> None:
        async with _mcp(runner_up, None):
            raise AssertionError("a session without a token was opened")

    with pytest.raises(BaseException) as refused:  # the SDK raises its transport's 401 inside a task group
        _run(with_the_sdk)
    assert "401" in repr(refused.value.exceptions if isinstance(refused.value, BaseExceptionGroup) else refused.value)

    good = {"Authorization": f"Bearer {_token(db)}"}
    resp = httpx.get(f"{runner_up}/mcp", headers=good | accept)
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"  # no event stream: the server keeps no session
    assert "POST each JSON-RPC message to /mcp" in resp.json()["detail"]
    assert httpx.delete(f"{runner_up}/mcp", headers=good).status_code == 405

    # Every request is authenticated anew: a token revoked between two calls is refused at the second.
    made = tokens.new_token()
    Store(db).create_token(made, name="soon-revoked", scope=tokens.Scope(thread=THREAD, admin=False, read_only=False))
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    bearer = {"Authorization": f"Bearer {made.text}"} | accept
    first = httpx.post(f"{runner_up}/mcp", headers=bearer, json=listing)
    assert first.status_code == 200 and len(first.json()["result"]["tools"]) == 13, first.text
    Store(db).revoke_token("soon-revoked")
    assert httpx.post(f"{runner_up}/mcp", headers=bearer, json=listing).status_code == 401
    admin = {"Authorization": f"Bearer {_token(db, thread=None)}"}
    resp = httpx.post(f"{runner_up}/mcp", headers=admin | accept, json=call)
    assert resp.status_code == 400 and "?thread=" in resp.json()["detail"]


def test_an_agents_loop_over_mcp(runner_up: str, db: Database) -> None:  # noqa: F811
    async def scenario() -> None:
        async with _mcp(runner_up, _token(db, thread=None), query=f"?thread={THREAD}") as s:  # an admin token
            assert "schedule_job" in ((await s.get_prompt("system_prompt")).messages[0].content.text)  # type: ignore[union-attr]
            error, written = await _result(s, "write_file", name="input.json", content='{"limit": 100}')
            assert not error, written
            error, preview = await _result(s, "preview_schedule", when="in 2 seconds")
            assert not error and len(preview["times"]) == 1
            error, made = await _result(s, "schedule_job", name="check_price", script=PRICE, when="in 2 seconds")
            assert not error, made
            job_id = made["job"]["id"]

            async def finished() -> list[dict[str, Any]]:
                _, got = await _result(s, "get_job_runs", job_id=job_id)
                return [r for r in got["runs"] if r["status"] in ("completed", "failed")]

            runs = await _poll(finished, 90, "the job's run to finish")
            assert runs[0]["status"] == "completed" and runs[0]["exit_code"] == 0, runs[0]
            error, output = await _result(s, "read_file", name="check_price_output.json")
            assert not error and json.loads(output["content"]) == {"price": 87, "under": True}

    _run(scenario)


async def _poll(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """tests/waiting.py's wait_for, for an awaitable check (the session lives in this event loop)."""
    try:
        with anyio.fail_after(timeout):
            while not (got := await check()):
                await anyio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
    return got


def test_runner_mcp_url_serves_a_remote_runner_over_stdio(runner_up: str, db: Database,  # noqa: F811
                                                          settings: Settings) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "runner.cli", "mcp", "--url", runner_up],
                                   env=cli_env(settings, RUNNER_TOKEN=_token(db)), cwd=str(ROOT))

    async def scenario() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            error, made = await _result(s, "schedule_job", name="remote", script="print(3)", every="daily 9am")
            assert not error and made["job"]["thread_id"] == THREAD
            error, said = await _result(s, "schedule_job", name="x", script="pass", every="daily 9")
            assert error and "'daily 9': the time is ambiguous" in said
            error, said = await _result(s, "get_job", job_id=10**9)
            assert error and "no such job" in said

    _run(scenario)


def test_runner_mcp_url_says_why_it_cannot_start(runner_up: str, db: Database, settings: Settings) -> None:  # noqa: F811
    for token, says in ((_token(db, thread=None), "name one with --thread THREAD"),
                        ("rnr_0000000000000000_" + "A" * 43, "refused the token: a valid token is needed")):
        done = subprocess.run([sys.executable, "-m", "runner.cli", "mcp", "--url", runner_up],
                              env=cli_env(settings, RUNNER_TOKEN=token), cwd=ROOT, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 1 and says in done.stderr, done.stderr
        assert token not in done.stderr and done.stdout == "" and "Traceback" not in done.stderr
