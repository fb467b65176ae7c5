"""The file verbs of the command line in either store (RUNNER_FILES=local|postgres), `runner files
migrate` both ways over a hostile local tree, and the HTTP API and MCP on the database's files: real
subprocesses, a real server, a real Postgres."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.shared.memory import create_connected_server_and_client_session

from runner import tokens
from runner.filerules import FileCaps
from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.mcp.backend import Local
from runner.mcp.server import build_server
from runner.mcp.tools import Binding
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store
from runner.threads import ThreadId

from .helpers import ROOT, RUNNER_CLI, cli_env

THREAD = "telegram:7"
T = ("--thread", THREAD)


def cli(settings: Settings, *args: str, stdin: bytes | None = None, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*RUNNER_CLI, *args], env=cli_env(settings, **env), cwd=ROOT, input=stdin,
                          capture_output=True, timeout=120, check=False)


def ok(r: subprocess.CompletedProcess[bytes]) -> str:
    assert r.returncode == 0, (r.args, r.stdout, r.stderr)
    assert b"Traceback" not in r.stderr, r.stderr
    return r.stdout.decode()


def refused(r: subprocess.CompletedProcess[bytes], says: str) -> None:
    err = r.stderr.decode()
    assert r.returncode == 1 and says in err and len(err.strip().splitlines()) == 1, (r.stdout, err)
    assert "Traceback" not in err


@pytest.mark.parametrize("store", ["local", "postgres"])
def test_the_file_verbs_in_either_store(settings: Settings, tmp_path: Path, store: str) -> None:
    s = settings.with_(files=store)
    source = tmp_path / "prices.json"
    source.write_bytes(b'{"limit": 100}\n')
    assert ok(cli(s, "files", "ls", *T)) == "no files in jobs/\n"
    assert ok(cli(s, "files", "put", "prices.json", str(source), *T)) == "wrote jobs/prices.json (15 bytes)\n"
    assert ok(cli(s, "files", "put", "raw.bin", "-", *T, stdin=b"\x00\xff\x1b[2J")) == "wrote jobs/raw.bin (6 bytes)\n"
    assert json.loads(ok(cli(s, "files", "ls", "--json", *T))) == ["prices.json", "raw.bin"]
    assert ok(cli(s, "files", "cat", "prices.json", *T)) == '{"limit": 100}\n'
    assert cli(s, "files", "cat", "raw.bin", *T).stdout == b"\x00\xff\x1b[2J"  # to a pipe: the bytes as they are
    assert ok(cli(s, "files", "rm", "prices.json", *T)) == "removed jobs/prices.json\n"
    refused(cli(s, "files", "cat", "prices.json", *T), "there is no file jobs/prices.json")
    refused(cli(s, "files", "put", "../escape.json", str(source), *T), "file name '../escape.json' is not allowed")
    refused(cli(s, "files", "rm", "prices.json", *T), "there is no file jobs/prices.json")
    said = ok(cli(s, "schedule", "-", *T, "--name", "hello", "--at", "in 1 hour", stdin=b"print(1)\n"))
    assert said.startswith("scheduled job 1 (hello)")
    assert ok(cli(s, "files", "cat", "hello.py", *T)) == "print(1)\n"  # runner schedule saves it in the same store
    in_dir = [(ThreadId.parse(THREAD).jobs_dir(s.data_dir) / n).exists() for n in ("raw.bin", "hello.py")]
    assert in_dir == [store == "local"] * 2
    refused(cli(s, "files", "ls", *T, RUNNER_FILES="nfs"), "RUNNER_FILES='nfs' is not a file store: use local")


def _hostile_tree(jobs: Path) -> dict[str, bytes]:
    """A jobs/ as jobs may leave it: the plain files the store takes (returned), and what it must not."""
    good = {"prices.json": b'{"limit": 100}', "hello.py": b"print(1)\n", "check_attachments/note.bin": b"\x00\xff",
            "a/b/c.txt": b"deep"}
    for name, data in good.items():
        (jobs / name).parent.mkdir(parents=True, exist_ok=True)
        (jobs / name).write_bytes(data)
    os.utime(jobs / "prices.json", (1_700_000_000, 1_700_000_000))
    os.symlink("/etc/shadow", jobs / "shadow.txt")
    os.mkfifo(jobs / "fifo.txt")
    (jobs / "secret").write_text("x")
    os.link(jobs / "secret", jobs / "hard.txt")
    (jobs / ".hidden").write_text("x")
    (jobs / "big.bin").write_bytes(b"x" * (2 * 1024 * 1024 + 1))  # past RUNNER_MAX_FILE_MB=2
    fd = os.open(jobs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(os.open(b"caf\xe9.txt", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    return good


def test_migrate_copies_a_local_tree_into_the_database_and_back(settings: Settings, db: Database) -> None:
    s = settings.with_(max_file_mb=2)
    env = {"RUNNER_MAX_FILE_MB": "2"}
    jobs = ThreadId.parse(THREAD).jobs_dir(s.data_dir)
    jobs.mkdir(parents=True)
    good = _hostile_tree(jobs)
    said = ok(cli(s, "files", "migrate", "--to", "postgres", **env))
    lines = said.splitlines()
    assert lines[0] == f"{THREAD}: 4 files copied to the database, 0 already there", said
    for shown in ("shadow.txt: a symbolic link", "fifo.txt: not a regular file", "hard.txt: ", "secret: ",
                  ".hidden: its name", "big.bin: larger than the 2 MiB", "caf\\xe9.txt: its name"):
        assert any(line.startswith(f"  not copied: jobs/{shown}") for line in lines), (shown, said)
    assert len(lines) == 8
    store = Store(db)
    stored = store.thread_files(THREAD)
    assert {n: c for n, (c, _) in stored.items()} == good
    assert stored["prices.json"][1] == datetime.fromtimestamp(1_700_000_000, UTC)  # its time kept
    assert ok(cli(s, "files", "migrate", "--to", "postgres", *T, **env)).startswith(
        f"{THREAD}: 0 files copied to the database, 4 already there")  # idempotent
    assert json.loads(ok(cli(s, "files", "ls", "--json", *T, RUNNER_FILES="postgres"))) == ["hello.py", "prices.json"]

    shutil.rmtree(jobs.parent)
    assert ok(cli(s, "files", "migrate", "--to", "local", **env)) == \
        f"{THREAD}: 4 files copied to the data directory, 0 already there\n"
    assert {str(p.relative_to(jobs)): p.read_bytes() for p in jobs.rglob("*") if p.is_file()} == good
    assert os.stat(jobs / "prices.json").st_mtime == 1_700_000_000
    assert ok(cli(s, "files", "migrate", "--to", "local", *T, **env)) == \
        f"{THREAD}: 0 files copied to the data directory, 4 already there\n"
    assert json.loads(ok(cli(s, "files", "ls", "--json", *T))) == ["hello.py", "prices.json"]


def test_migrate_refuses_a_thread_past_its_limits_whole_and_copies_the_others(settings: Settings,
                                                                              db: Database) -> None:
    s = settings.with_(disk_mb=1)
    for thread, name in (("telegram:7", "a.bin"), ("telegram:8", "small.txt")):
        jobs = ThreadId.parse(thread).jobs_dir(s.data_dir)
        jobs.mkdir(parents=True)
        (jobs / name).write_bytes(b"a" * 600 * 1024 if name == "a.bin" else b"small")
    store = Store(db)
    assert store.put_thread_files(THREAD, {"b.bin": b"b" * 600 * 1024}, FileCaps.of(s)) is None
    r = cli(s, "files", "migrate", "--to", "postgres", RUNNER_DISK_MB="1")
    assert r.returncode == 1 and b"Traceback" not in r.stderr, r
    assert r.stdout.decode().splitlines() == [
        "telegram:7: not copied: the thread's files would hold 1200 KiB, more than its 1 MiB limit: delete files first",
        "telegram:8: 1 file copied to the database, 0 already there"]
    assert set(store.thread_files(THREAD)) == {"b.bin"} and set(store.thread_files("telegram:8")) == {"small.txt"}


def test_nothing_to_migrate_is_said_so(settings: Settings) -> None:
    assert ok(cli(settings, "files", "migrate", "--to", "local")) == "no thread has files to copy\n"
    assert ok(cli(settings, "files", "migrate", "--to", "postgres", *T)) == \
        f"{THREAD}: 0 files copied to the database, 0 already there\n"
    refused(cli(settings, "files", "migrate", "--to", "local", RUNNER_URL="https://runner.example",
                RUNNER_TOKEN=tokens.new_token().text), "it needs the database, not a URL")


# --- the API and MCP on the database's files ---------------------------------------------------------------

@pytest.fixture
def stored(settings: Settings, db: Database) -> Jobs:
    return Jobs(settings.with_(files="postgres"), db)


@pytest.fixture
def api(stored: Jobs, db: Database) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    store = Store(db)
    made = tokens.new_token()
    store.create_token(made, name="w", scope=tokens.Scope(thread=THREAD, admin=False, read_only=False))
    server = HttpServer(create_app(stored.settings, stored, store), "127.0.0.1:0")
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as c:
            yield c, {"Authorization": f"Bearer {made.text}"}
    finally:
        server.stop()


def test_the_api_reads_and_writes_the_databases_files(api: tuple[httpx.Client, dict[str, str]], stored: Jobs) -> None:
    client, auth = api
    base = f"/v1/threads/{THREAD}/files"
    assert client.put(f"{base}/input.json", headers=auth, content=b'{"n": 1}').status_code == 204
    assert client.get(f"{base}/input.json", headers=auth).content == b'{"n": 1}'
    stored.store.put_thread_files(THREAD, {"run_attachments/x.png": b"png"}, FileCaps.of(stored.settings))
    listed = client.get(base, headers=auth).json()
    assert [(f["name"], f["size"]) for f in listed["files"]] == [("input.json", 8)] and listed["other"] == 1
    assert client.delete(f"{base}/input.json", headers=auth).status_code == 204
    missing = client.get(f"{base}/input.json", headers=auth)
    assert missing.status_code == 404 and "there is no file jobs/input.json" in missing.json()["detail"]
    made = client.post(f"/v1/threads/{THREAD}/jobs", headers=auth, json={"name": "hello", "script": "print(1)"})
    assert made.status_code == 201, made.text
    assert stored.files.read(ThreadId.parse(THREAD), "hello.py") == b"print(1)"
    assert not (stored.settings.data_dir / "telegram_7").exists()


def test_mcp_tools_read_and_write_the_databases_files(stored: Jobs) -> None:
    binding = Binding(Local(stored.settings, stored, stored.files, THREAD), read_only=False)
    server = build_server(stored.settings, lambda _request: binding)

    async def scenario() -> None:
        async with create_connected_server_and_client_session(server, raise_exceptions=True) as session:
            wrote = await session.call_tool("write_file", {"name": "input.json", "content": '{"n": 2}'})
            assert not wrote.isError, wrote.content
            read = await session.call_tool("read_file", {"name": "input.json"})
            assert read.structuredContent and read.structuredContent["content"] == '{"n": 2}'
            listed = await session.call_tool("list_files", {})
            assert listed.structuredContent and [f["name"] for f in listed.structuredContent["files"]] == ["input.json"]
            bad = await session.call_tool("write_file", {"name": "../x", "content": "x"})
            assert bad.isError and "is not allowed" in bad.content[0].text  # type: ignore[union-attr]

    anyio.run(scenario)
    assert Store(stored.db).thread_files(THREAD)["input.json"][0] == b'{"n": 2}'
