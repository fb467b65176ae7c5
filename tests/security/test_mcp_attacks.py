"""Attacks on the MCP server at /mcp (issue 15) from outside, with the source open: raw JSON-RPC over
HTTP to the runner's HTTP server (uvicorn on loopback, the app of create_app) over a real Postgres.

Tests that fail on the code of their commit are findings (each docstring names the promise it breaks);
the others are tries that held and keep holding."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner import tokens
from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store
from runner.threads import ThreadId
from tests.conftest import EGRESS_IMAGE, JOB_IMAGE

THREAD, OTHER = "telegram:42", "telegram:43"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    """The shared settings without the security suite's runtime parameter: nothing here starts a job."""
    return Settings.from_env({
        "DATABASE_URL": pg_url, "RUNNER_DATA_DIR": str(tmp_path / "files"), "RUNNER_IMAGE": JOB_IMAGE,
        "RUNNER_EGRESS_IMAGE": EGRESS_IMAGE, "RUNNER_ID": f"test-{uuid.uuid4().hex[:8]}",
        "RUNNER_POLL_INTERVAL": "2", "RUNNER_LEASE_SECONDS": "30", "RUNNER_TIMEOUT": "20",
    })


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)


@pytest.fixture
def server(settings: Settings, jobs: Jobs, store: Store) -> Iterator[HttpServer]:
    srv = HttpServer(create_app(settings, jobs, store), "127.0.0.1:0")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: HttpServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _token(store: Store, name: str, thread: str | None = THREAD, read_only: bool = False) -> str:
    made = tokens.new_token()
    store.create_token(made, name=name, scope=tokens.Scope(thread=thread, admin=thread is None, read_only=read_only))
    return made.text


def _headers(token: str | None) -> dict[str, str]:
    return {**ACCEPT, **({"Authorization": f"Bearer {token}"} if token else {})}


def _rpc(client: httpx.Client, token: str | None, method: str, params: dict[str, Any] | None = None,
         query: str = "") -> httpx.Response:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    return client.post(f"/mcp{query}", headers=_headers(token), content=json.dumps(body))


def _no_500(resp: httpx.Response) -> None:
    assert resp.status_code < 500, f"{resp.status_code}: {resp.text[:500]}"
    assert "Traceback" not in resp.text and 'File "' not in resp.text, resp.text[:500]


def _tool(client: httpx.Client, token: str, name: str, arguments: Any, query: str = "") -> dict[str, Any]:
    """The result of tools/call (asserting it is a result, not a protocol error)."""
    resp = _rpc(client, token, "tools/call", {"name": name, "arguments": arguments}, query)
    _no_500(resp)
    assert resp.status_code == 200, resp.text[:500]
    body = resp.json()
    assert "result" in body, body
    result: dict[str, Any] = body["result"]
    return result


def _refused(result: dict[str, Any]) -> str:
    assert result.get("isError") is True, result
    text: str = result["content"][0]["text"]
    assert text and "Traceback" not in text and 'File "' not in text, text
    return text


def _deep(n: int) -> Any:
    value: Any = "x"
    for _ in range(n):
        value = {"a": [value]}
    return value


# --- findings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool,arguments", [
    ("preview_schedule", {"when": "in 99999999999999 weeks"}),
    ("preview_schedule", {"when": "in 1000000 weeks"}),
    ("preview_schedule", {"every": "hourly", "tz": "Europe"}),
    ("schedule_job", {"name": "far", "script": "pass", "when": "in 1000000 weeks"}),
])
def test_a_time_out_of_range_is_refused_with_a_sentence_about_the_time(client: httpx.Client, store: Store,
                                                                      tool: str, arguments: dict[str, Any]) -> None:
    """Held (the HTTP API's findings of tests/security/test_http_attacks.py, over MCP): a time past year
    9999, or a zone naming a directory of the zone database, is refused as such, not as "the runner
    failed while doing …: its log says why" (what an unexpected exception in the service becomes)."""
    text = _refused(_tool(client, _token(store, "t"), tool, arguments))
    assert "the runner failed" not in text, text


@pytest.mark.parametrize("body", [
    b"\xff\xff",  # not UTF-8: json.loads raises UnicodeDecodeError
    b"\xff\xfe\x00",  # a UTF-16 byte order mark, then a truncated character: json.loads raises UnicodeDecodeError
    b"[" * 100_000 + b"]" * 100_000,  # RecursionError
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_job", "arguments": {"job_id": '
    + b"9" * 5000 + b"}}}",  # ValueError: Exceeds the limit (4300 digits) for integer string conversion
], ids=["not-utf8", "utf16-bom", "deep-array", "deep-object", "5000-digit-int"])
def test_a_body_that_json_loads_cannot_decode_is_a_4xx_not_a_500(client: httpx.Client, store: Store,
                                                                 body: bytes) -> None:
    """Promise: no 500 and no traceback for bad input; deep JSON is answered as bad JSON. The SDK's
    streamable HTTP transport reads the body with json.loads and catches only JSONDecodeError: a body
    that is not UTF-8 (UnicodeDecodeError), JSON nested 5000 deep (RecursionError) or an integer of 5000 digits
    (ValueError) is a 500 "Error handling POST request", with a traceback in the log, from any holder of
    a token (a read-only one too). Reproduce: POST /mcp with a valid token and the body ``[`` * 100000."""
    resp = client.post("/mcp", headers=_headers(_token(store, "ro", read_only=True)), content=body)
    _no_500(resp)


def test_the_server_keeps_answering_after_undecodable_bodies(client: httpx.Client, store: Store) -> None:
    """Held: whatever those bodies answer, the next request of the same token is served."""
    token = _token(store, "t")
    for body in (b"\xff\xff", b"[" * 100_000):
        client.post("/mcp", headers=_headers(token), content=body)
    resp = _rpc(client, token, "tools/list")
    assert resp.status_code == 200 and resp.json()["result"]["tools"], resp.text[:300]


@pytest.mark.parametrize("tool,arguments", [
    ("get_job", _deep(150)), ("schedule_job", {"name": "ok", "script": "pass", "allow_hosts": _deep(150)}),
])
def test_deeply_nested_arguments_are_an_is_error_result_not_a_protocol_error(client: httpx.Client, store: Store,
                                                                           tool: str, arguments: Any) -> None:
    """Promise: a refused call is an isError result with a sentence, never a protocol error. Arguments
    nested 150 deep (300 levels of JSON, within what json.loads takes) fail the SDK's validation of the
    request: the answer is the JSON-RPC error -32602 "Invalid request parameters" with empty data, no
    sentence saying what to change."""
    _refused(_tool(client, _token(store, "t"), tool, arguments))


# --- held: the gate, before the body -------------------------------------------------------------------------


def _raw_post(port: int, headers: str, framing: str = "Content-Length: 1500000") -> bytes:
    """POST /mcp declaring a 1.5 MB body (or a chunked one) and sending none of it: the answer must come
    without it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Accept: application/json, text/event-stream\r\n{framing}\r\n{headers}\r\n".encode())
        return s.recv(65536)


@pytest.mark.parametrize("auth", ["", "Authorization: Bearer rnr_nope\r\n",
                                  "Authorization: Bearer rnr_0123456789abcdef_" + "A" * 43 + "\r\n",
                                  "Authorization: Basic dXNlcjpwYXNz\r\n", "Authorization: Bearer\r\n"])
def test_no_token_or_a_bad_one_is_a_401_before_the_body_is_read(server: HttpServer, auth: str) -> None:
    """Held: the gate answers 401 (a problem document) with the body still unsent."""
    for framing in ("Content-Length: 1500000", "Transfer-Encoding: chunked"):
        answer = _raw_post(server.port, auth, framing)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
        assert b"application/problem+json" in answer and b"Traceback" not in answer


def test_a_revoked_token_is_refused_at_its_next_request(client: httpx.Client, store: Store) -> None:
    token = _token(store, "t")
    assert _rpc(client, token, "tools/list").status_code == 200
    store.revoke_token("t")
    resp = _rpc(client, token, "tools/list")
    assert resp.status_code == 401 and resp.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("query,status", [(f"?thread={OTHER}", 404), ("?thread=", 404), ("?thread=%00", 404),
                                          (f"?thread={THREAD}&thread={OTHER}", 404),
                                          ("?thread=" + "a" * 5000, 404)])
def test_a_thread_token_cannot_name_another_thread_in_the_url(client: httpx.Client, store: Store, query: str,
                                                              status: int) -> None:
    resp = _rpc(client, _token(store, "t"), "tools/list", query=query)
    _no_500(resp)
    assert resp.status_code == status, resp.text[:300]


@pytest.mark.parametrize("query,status", [("", 400), ("?thread=%3Cscript%3E", 404), ("?thread=a%00b", 404),
                                          ("?thread=telegram:" + "9" * 300, 404)])
def test_an_admin_token_must_name_a_valid_thread(client: httpx.Client, store: Store, query: str, status: int) -> None:
    resp = _rpc(client, _token(store, "root", None), "tools/list", query=query)
    _no_500(resp)
    assert resp.status_code == status, resp.text[:300]
    assert resp.headers["content-type"].startswith("application/problem+json")


# --- held: scope over MCP ---------------------------------------------------------------------------------------


def test_a_thread_token_reaches_no_other_threads_jobs_files_or_resources(client: httpx.Client, store: Store,
                                                                       jobs: Jobs, settings: Settings) -> None:
    """Held: another thread's job ids, files and resources are "not found", whatever the spelling of the
    name or URI (encoded slashes, dot segments, NUL)."""
    theirs = jobs.schedule_job(thread_id=OTHER, name="theirs", script_text="print('SECRET')", at="in 1 hour")
    jobs.scripts.write(ThreadId.parse(OTHER), "secret.json", b'{"SECRET": 1}')
    token = _token(store, "t")
    for tool in ("get_job", "get_job_runs", "run_job_now", "pause_job", "resume_job", "cancel_job"):
        assert "SECRET" not in _refused(_tool(client, token, tool, {"job_id": theirs["id"]}))
    assert "SECRET" not in _refused(_tool(client, token, "update_job", {"job_id": theirs["id"], "script": "x=1"}))
    for name in ("../telegram_43/jobs/secret.json", "../../telegram_43/jobs/secret.json", "secret.json",
                 "..", ".", "theirs.py\x00", "/etc/passwd", "a/b"):
        assert "SECRET" not in _refused(_tool(client, token, "read_file", {"name": name}))
        if name != "secret.json":  # (a name of its own thread's: writing it is allowed)
            _refused(_tool(client, token, "write_file", {"name": name, "content": "x"}))
    for uri in ("runner://jobs/..%2Ftelegram_43%2Fjobs%2Fsecret.json", "runner://jobs/%2E%2E",
                "runner://jobs/../../telegram_43/jobs/secret.json", "runner://jobs/secret.json",
                "file:///etc/passwd", "runner://jobs/a%00b", "runner://jobs/" + "a" * 5000):
        resp = _rpc(client, token, "resources/read", {"uri": uri})
        _no_500(resp)
        assert "SECRET" not in resp.text and "error" in resp.json(), resp.text[:300]
    listed = _rpc(client, token, "resources/list").json()["result"]["resources"]
    assert listed == []
    assert jobs.get_job(theirs["id"])["status"] == "pending" and not jobs.get_job(theirs["id"])["paused"]
    kept = Path(settings.data_dir) / ThreadId.parse(OTHER).dir_name / "jobs" / "secret.json"
    assert kept.read_bytes() == b'{"SECRET": 1}'


def test_a_read_only_token_lists_and_calls_no_write_tool(client: httpx.Client, store: Store, jobs: Jobs) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="mine", script_text="print(1)", at="in 1 hour")
    token = _token(store, "ro", read_only=True)
    names = {t["name"] for t in _rpc(client, token, "tools/list").json()["result"]["tools"]}
    writes = {"schedule_job", "run_job_now", "pause_job", "resume_job", "update_job", "cancel_job", "write_file"}
    assert not names & writes, names
    for tool, arguments in (("schedule_job", {"name": "x", "script": "pass"}), ("cancel_job", {"job_id": job["id"]}),
                            ("pause_job", {"job_id": job["id"]}), ("write_file", {"name": "x.json", "content": "{}"}),
                            ("update_job", {"job_id": job["id"], "script": "print(2)"})):
        _refused(_tool(client, token, tool, arguments))
    row = jobs.get_job(job["id"])
    assert row["status"] == "pending" and not row["paused"] and [j["name"] for j in jobs.list_jobs(thread_id=THREAD)] == ["mine"]


# --- held: bad arguments are isError results ---------------------------------------------------------------------


@pytest.mark.parametrize("tool,arguments", [
    ("no_such_tool", {}), ("get_job", {"job_id": "x"}), ("get_job", {"job_id": -1}), ("get_job", {"job_id": 10**30}),
    ("get_job", {"job_id": 1.5}), ("get_job", {}), ("get_job", {"job_id": 1, "extra": True}),
    ("list_jobs", {"status": "<script>"}), ("list_jobs", {"limit": 10**9}),
    ("schedule_job", {"name": "A" * 100_000, "script": "pass"}), ("schedule_job", {"name": "x", "script": None}),
    ("schedule_job", {"name": "ok", "script": "pass", "when": "\x00"}),
    ("schedule_job", {"name": "ok", "script": "pass", "tz": "../../etc/passwd"}),
    ("schedule_job", {"name": "ok", "script": "pass", "every": "x" * 50_000}),
    ("schedule_job", {"name": "ok", "script": "def (:"}), ("schedule_job", {"name": "ok", "script": "\x00"}),
    ("write_file", {"name": "x.json", "content": "%%%", "encoding": "base64"}),
    ("write_file", {"name": "x.json", "content": "a" * 1_500_000}),
    ("read_file", {"name": None}), ("update_job", {"job_id": 1, "every": 5}),
    ("preview_schedule", {"n": 10**6}), ("preview_schedule", {"when": "\ud800"}),
])
def test_bad_arguments_are_an_is_error_result_with_a_sentence(client: httpx.Client, store: Store, tool: str,
                                                              arguments: Any) -> None:
    _refused(_tool(client, _token(store, "t"), tool, arguments))


# --- held: bad messages are protocol answers, never a 500 ---------------------------------------------------------


GARBAGE: list[bytes] = [
    b"", b"null", b"[]", b"{}", b"1", b'"x"', b"\xef\xbb\xbf{}", b'{"jsonrpc": "2.0"}',
    b'{"jsonrpc": "2.0", "id": 1}', b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}',
    b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/list"}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_job", "arguments": [1, 2]}}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 7}}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call"}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "not a uri"}}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": "<nope>"}}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "no/such/method"}',
    b'{"jsonrpc": "2.0", "method": "notifications/whatever"}',
    b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}]',
    b"[" * 500 + b"]" * 500,
]


@pytest.mark.parametrize("body", GARBAGE, ids=range(len(GARBAGE)))
def test_a_malformed_or_unknown_message_is_answered_without_a_500(client: httpx.Client, store: Store,
                                                                  body: bytes) -> None:
    """Held: an empty body, bad JSON, bad UTF-8, batches, unknown methods, deep nesting and huge numbers
    are JSON-RPC errors (or 4xx), never a 500 nor a traceback."""
    resp = client.post("/mcp", headers=_headers(_token(store, "t")), content=body)
    _no_500(resp)


@pytest.mark.parametrize("headers", [{"Content-Type": "text/plain"}, {"Accept": "text/html"},
                                     {"Content-Type": "application/json; charset=latin-1"},
                                     {"Mcp-Session-Id": "forged"}, {"Mcp-Protocol-Version": "1999-01-01"}])
def test_odd_headers_are_answered_without_a_500(client: httpx.Client, store: Store, headers: dict[str, str]) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    resp = client.post("/mcp", headers={**_headers(_token(store, "t")), **headers}, content=body)
    _no_500(resp)


def test_a_body_over_the_limit_is_a_413_and_other_methods_a_405(client: httpx.Client, store: Store) -> None:
    token = _token(store, "t")
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "write_file", "arguments": {"name": "x.json", "content": "a" * 3_000_000}}})
    resp = client.post("/mcp", headers=_headers(token), content=big)
    assert resp.status_code == 413, resp.text[:300]
    for method in ("GET", "DELETE", "PUT", "OPTIONS"):
        resp = client.request(method, "/mcp", headers=_headers(token))
        assert resp.status_code == 405 and resp.headers.get("allow") == "POST", (method, resp.status_code)


def test_a_web_page_on_another_origin_gets_no_cors_grant(client: httpx.Client, store: Store) -> None:
    """Held (DNS rebinding, a browser reaching /mcp on loopback): /mcp is reached with a bearer token only
    (no cookie is honoured), a preflight is a 405 with no Access-Control-Allow-* header, and the dashboard's
    session cookie opens nothing here."""
    pre = client.options("/mcp", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": "authorization, content-type"})
    assert not any(h.lower().startswith("access-control-allow") for h in pre.headers), pre.headers
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    resp = client.post("/mcp", content=body, headers={**ACCEPT, "Origin": "http://evil.example",
                                                      "Cookie": "runner_session=whatever"})
    assert resp.status_code == 401
    assert not any(h.lower().startswith("access-control-allow") for h in resp.headers)


@pytest.mark.parametrize("swap", ["link-other-thread", "link-etc", "fifo", "directory", "sparse"])
def test_a_file_a_job_swapped_for_a_link_fifo_or_huge_file_is_refused_at_once(client: httpx.Client, store: Store,
                                                                             jobs: Jobs, settings: Settings,
                                                                             swap: str) -> None:
    """Held: read_file, resources/read and resources/list of a name a job made a link to another thread's
    file or the host's, a FIFO (a read would block), a directory or a 1 GB sparse file answer at once,
    with none of the other file."""
    import os

    jobs.scripts.write(ThreadId.parse(OTHER), "secret.json", b'{"SECRET": 1}')
    jobs.scripts.write(ThreadId.parse(THREAD), "bait.json", b"{}")
    mine = Path(settings.data_dir) / ThreadId.parse(THREAD).dir_name / "jobs"
    theirs = Path(settings.data_dir) / ThreadId.parse(OTHER).dir_name / "jobs"
    target = mine / "bait.json"
    target.unlink()
    if swap == "link-other-thread":
        target.symlink_to(theirs / "secret.json")
    elif swap == "link-etc":
        target.symlink_to("/etc/passwd")
    elif swap == "fifo":
        os.mkfifo(target)
    elif swap == "directory":
        target.mkdir()
    else:
        with open(target, "wb") as f:
            f.truncate(1 << 30)
    token = _token(store, "t")
    with httpx.Client(base_url=client.base_url, timeout=10) as quick:
        text = _refused(_tool(quick, token, "read_file", {"name": "bait.json"}))
        assert "SECRET" not in text and "root:" not in text
        for method, params in (("resources/read", {"uri": "runner://jobs/bait.json"}), ("resources/list", {})):
            resp = _rpc(quick, token, method, params)
            _no_500(resp)
            assert "SECRET" not in resp.text and "root:" not in resp.text
        _no_500(_rpc(quick, token, "tools/call", {"name": "list_files", "arguments": {}}))


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


STDIO_GARBAGE = [b"\xff\xfe\xff\n", b"[" * 100_000 + b"\n", b"{}\n", b"null\n",
                 b'{"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": ' + b'{"a":' * 3000 + b"1"
                 + b"}" * 3000 + b"}\n",
                 b'{"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "get_job", '
                 b'"arguments": {"job_id": ' + b"9" * 5000 + b"}}}\n"]


@pytest.mark.parametrize("garbage", STDIO_GARBAGE, ids=["not-utf8", "deep", "empty", "null", "deep-params",
                                                      "big-int"])
def test_runner_mcp_over_stdio_survives_garbage_lines_without_a_traceback(settings: Settings, garbage: bytes) -> None:
    """Held: `runner mcp --thread` given a line that is not UTF-8, nested 100 000 deep, an empty object,
    null or a 5000-digit integer keeps its protocol stream JSON only, answers the next requests (a
    refused call as isError), and writes no traceback."""
    import queue
    import subprocess
    import sys
    import threading

    from tests.integration.helpers import ROOT, cli_env

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    lines = (_line(init) + _line({"jsonrpc": "2.0", "method": "notifications/initialized"}) + garbage
             + _line({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "get_job", "arguments": {"job_id": "x"}}})
             + _line({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "mcp", "--thread", THREAD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(settings), cwd=str(ROOT))
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    got: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [got.put(line) for line in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    by_id: dict[Any, Any] = {}
    try:
        proc.stdin.write(lines)
        proc.stdin.flush()
        while 3 not in by_id:
            answer = json.loads(got.get(timeout=60))  # every line of the protocol stream is JSON
            by_id[answer.get("id")] = answer
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        reader.join(timeout=60)
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert by_id[3]["result"]["tools"] and by_id[2]["result"]["isError"] is True, by_id
    assert b"Traceback" not in stderr and b"unexpected error" not in stderr, stderr[-3000:].decode(errors="replace")


def test_a_job_cannot_be_chained_after_another_threads_job(client: httpx.Client, store: Store, jobs: Jobs) -> None:
    """Held: after= names a job of the caller's own thread only (the other thread's job of that name is
    "no job named … in thread telegram:42")."""
    jobs.schedule_job(thread_id=OTHER, name="theirs", script_text="print(1)", at="in 1 hour")
    text = _refused(_tool(client, _token(store, "t"), "schedule_job",
                          {"name": "mine", "script": "print(2)", "after": "theirs"}))
    assert OTHER not in text, text


def test_a_page_of_another_site_cannot_call_mcp_on_loopback(client: httpx.Client, store: Store) -> None:
    """Held (the spec's DNS-rebinding guard): a request with an Origin that is not this server is refused
    with a sentence before the SDK sees it; the server's own Origin, and none (MCP clients), pass."""
    token = _token(store, "o")
    for origin in ("http://evil.example", "http://127.0.0.1.evil.example", "null"):
        resp = client.post("/mcp", headers={**_headers(token), "Origin": origin},
                           json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert resp.status_code == 403 and "another site" in resp.json()["detail"], (origin, resp.text[:300])
    own = client.post("/mcp", headers={**_headers(token), "Origin": str(client.base_url).rstrip("/")},
                      json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert own.status_code == 200, own.text[:300]
