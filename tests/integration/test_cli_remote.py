"""The command line on another host: `runner --url … --token …` (or RUNNER_URL/RUNNER_TOKEN) drives
`runner up` through its HTTP API, with no database and no data directory of its own, and prints what
the local commands print. Real `runner up` in a subprocess, a real Postgres, real job containers, the
CLI in subprocesses."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.client import Client
from runner.settings import Settings
from runner.store import Database

from .helpers import ROOT, RUNNER_CLI, cli_env, make_token, serving, wait_for

THREAD = "web:cli-1"

HELLO = '''
import json
print("hello from the job")
name = json.load(open("jobs/input.json"))["name"]
open("jobs/hello_message.txt", "w").write(f"hello, {name}")
'''

# Where the remote CLI would find a database and a data directory, if it looked: nowhere.
NO_LOCAL = {"DATABASE_URL": "postgresql://nobody@db.invalid:1/none", "RUNNER_DATA_DIR": "/nonexistent/runner-data"}


@pytest.fixture
def runner_up(settings: Settings) -> Iterator[str]:
    """`runner up` serving its API on a free loopback port (as in test_api_end_to_end): its URL."""
    with serving(settings, "cli") as served:
        yield served.url


def _token(db: Database, thread: str | None = THREAD, read_only: bool = False) -> str:
    return make_token(db, thread, read_only)


def remote(url: str, token: str, *args: str, stdin: str | None = None,
           **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI with its remote runner and token in the environment (as it should be given)."""
    return subprocess.run([*RUNNER_CLI, *args], env=cli_env(None, **NO_LOCAL, RUNNER_URL=url, RUNNER_TOKEN=token, **env),
                          cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def local(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI beside the database, for comparison."""
    return subprocess.run([*RUNNER_CLI, *args], env=cli_env(settings), cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, (r.args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    return r.stdout


def refused(r: subprocess.CompletedProcess[str], sentence: str, token: str) -> str:
    """A refusal: a non-zero exit, one line on stderr holding ``sentence``, and the token nowhere."""
    assert r.returncode != 0, (r.args, r.stdout, r.stderr)
    assert sentence in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert token not in r.stderr + r.stdout
    return r.stderr


def test_schedule_list_get_logs_and_files_through_the_api(runner_up: str, settings: Settings, db: Database,
                                                          tmp_path: Path) -> None:
    url, token = runner_up, _token(db)
    script = tmp_path / "hello.py"
    script.write_text(HELLO)
    assert ok(remote(url, token, "files", "put", "input.json", stdin='{"name": "Ada"}')) == \
        "wrote jobs/input.json (15 bytes)\n"
    out = ok(remote(url, token, "schedule", str(script), "--name", "hello", "--at", "in 2 seconds"))
    assert out.startswith("scheduled job ") and " (hello) for " in out, out
    job_id = int(out.split()[2])

    listed = ok(remote(url, token, "jobs"))
    assert listed.splitlines()[0].split() == ["ID", "NAME", "STATUS", "DUE", "RECURRENCE", "THREAD", "RESULT"]
    assert f"{job_id}  hello" in listed and THREAD in listed
    rows = json.loads(ok(remote(url, token, "jobs", "--json")))  # it is due in 2 s: it may be running already
    assert [(r["id"], r["name"], r["thread_id"]) for r in rows] == [(job_id, "hello", THREAD)]
    assert rows[0]["status"] in ("pending", "running", "completed")
    got = ok(remote(url, token, "get", str(job_id)))
    assert "name: hello" in got and f"thread_id: {THREAD}" in got and "\nruns:\n" in got

    with Client(url, token) as client:  # the run, awaited without the CLI
        wait_for(lambda: client.get_job(job_id).status in ("completed", "failed"), 90, "the job's run to finish")
        wait_for(lambda: client.messages(), 30, "the job's message to be queued")
    logs = ok(remote(url, token, "logs", str(job_id)))
    assert logs.startswith(f"job {job_id} (hello): completed, exit code 0, "), logs
    assert "  hello, Ada\n" in logs and "  hello from the job\n" in logs
    # The same lines as the local mode prints (its database and data directory are this runner's).
    assert logs == ok(local(settings, "logs", str(job_id)))
    assert ok(remote(url, token, "jobs")) == ok(local(settings, "jobs", "--thread", THREAD))
    info = json.loads(ok(remote(url, token, "logs", str(job_id), "--json")))
    assert info["exit_code"] == 0 and [m["text"] for m in info["messages"]] == ["hello, Ada"]

    again = ok(remote(url, token, "run", str(job_id)))  # a finished one-off runs again, as a new run
    assert again.startswith("job ") and again.endswith(" (hello) will run now\n"), again
    with Client(url, token) as client:
        wait_for(lambda: client.get_job(int(again.split()[1])).status == "completed", 90, "the run now to finish")

    assert {"hello.py", "input.json"} <= set(ok(remote(url, token, "files", "ls")).splitlines())
    assert ok(remote(url, token, "files", "cat", "input.json")) == '{"name": "Ada"}'
    assert ok(remote(url, token, "files", "rm", "input.json")) == "removed jobs/input.json\n"
    refused(remote(url, token, "files", "cat", "input.json"), "there is no file jobs/input.json", token)
    assert len(ok(remote(url, token, "next", "weekdays 8:30", "--tz", "Asia/Tokyo", "-n", "3")).splitlines()) == 3


def test_options_on_the_command_line_and_each_job_verb(runner_up: str, db: Database) -> None:
    token = _token(db)
    env = cli_env(None, **NO_LOCAL)

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*RUNNER_CLI, "--url", runner_up, "--token", token, *args], env=env, cwd=ROOT,
                              input=stdin, capture_output=True, text=True, timeout=60, check=False)

    out = ok(cli("schedule", "-", "--name", "daily", "--every", "daily 9am", "--tz", "Europe/Berlin",
                 "--timeout", "30", "--memory", "128", "--retries", "2", "--overlap", "queue", stdin="print(1)\n"))
    assert out.startswith("scheduled job ") and out.rstrip().endswith(", then daily 9am"), out
    job_id = int(out.split()[2])
    job = json.loads(ok(cli("get", str(job_id), "--json")))["job"]
    assert (job["timezone"], job["timeout_seconds"], job["memory_mb"]) == ("Europe/Berlin", 30, 128)
    assert len(job["next_runs"]) == 5
    assert ok(cli("pause", str(job_id))) == f"job {job_id} (daily) is paused\n"
    assert ok(cli("resume", str(job_id))) == f"job {job_id} (daily) is resumed\n"
    updated = ok(cli("update", str(job_id), "--every", "hourly"))
    assert updated.startswith(f"job {job_id} (daily) updated: next ") and updated.rstrip().endswith("then hourly")
    approved = ok(cli("update", str(job_id), "--script", "-", stdin="print(2)\n"))
    assert approved.startswith("approved jobs/daily.py (sha256 ") and f"for job {job_id} (daily)" in approved
    assert ok(cli("cancel", str(job_id))) == f"job {job_id} (daily) cancelled\n"
    assert json.loads(ok(cli("jobs", "--status", "cancelled", "--json")))[0]["id"] == job_id


def test_refusals_are_the_apis_sentences(runner_up: str, db: Database, tmp_path: Path) -> None:
    url, token = runner_up, _token(db)
    script = tmp_path / "x.py"
    script.write_text("print(1)\n")
    sched = ("schedule", str(script), "--name", "x")
    refused(remote(url, token, *sched, "--at", "yesterday 9am"), "runner: could not understand the time", token)
    refused(remote(url, token, *sched, "--every", "daily 9"), "'daily 9': the time is ambiguous", token)
    refused(remote(url, token, "get", "999999"), "runner: no such job: 999999", token)

    reader = _token(db, read_only=True)
    refused(remote(url, reader, *sched), "this token is read-only", reader)
    assert ok(remote(url, reader, "jobs")) == f"no jobs in thread {THREAD}\n"

    never = "rnr_0123456789abcdef_" + "A" * 43  # well-formed, never issued
    said = refused(remote(url, never, "jobs"), "a valid token is needed", never)
    assert "(the token given by RUNNER_TOKEN)" in said
    # at DEBUG too (httpx and httpcore stay at WARNING whatever the level: runner.logsetup.QUIET), never the token
    debug = remote(url, never, "jobs", RUNNER_LOG_LEVEL="DEBUG")
    assert debug.returncode == 1 and never not in debug.stderr + debug.stdout
    assert debug.stderr.splitlines()[-1].startswith("runner: a valid token is needed")
    refused(remote(url, "not-a-token", "jobs"), "the token given by RUNNER_TOKEN is not a runner token", "not-a-token")

    admin = _token(db, thread=None)
    refused(remote(url, admin, "jobs"), "name one with --thread THREAD", admin)
    assert ok(remote(url, admin, "jobs", "--thread", "web:other")) == "no jobs in thread web:other\n"
    refused(remote(url, token, "jobs", "--thread", "web:other"), "there is no thread 'web:other' for this token",
            token)
    refused(remote(url, token, "up"), "it needs the database, not a URL", token)
    refused(remote(url, token, "token", "list"), "it needs the database, not a URL", token)


def test_the_file_verbs_beside_the_database_too(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "prices.json"
    source.write_bytes(b'{"limit": 100}\n')
    t = ("--thread", "telegram:7")
    assert ok(local(settings, "files", "put", "prices.json", str(source), *t)) == "wrote jobs/prices.json (15 bytes)\n"
    assert (settings.data_dir / "telegram_7" / "jobs" / "prices.json").read_bytes() == b'{"limit": 100}\n'
    assert json.loads(ok(local(settings, "files", "ls", "--json", *t))) == ["prices.json"]
    assert ok(local(settings, "files", "cat", "prices.json", *t)) == '{"limit": 100}\n'
    (settings.data_dir / "telegram_7" / "jobs" / "link.json").symlink_to("/etc/passwd")  # as a job may leave
    assert ok(local(settings, "files", "ls", *t)) == "prices.json\n"
    bad = local(settings, "files", "cat", "link.json", *t)
    assert bad.returncode == 1 and "root:" not in bad.stdout and "Traceback" not in bad.stderr, bad
    assert ok(local(settings, "files", "rm", "prices.json", *t)) == "removed jobs/prices.json\n"
    assert ok(local(settings, "files", "ls", *t)) == "no files in jobs/\n"
    said = local(settings, "files", "put", "../escape.json", str(source), *t)
    assert said.returncode == 1 and "file name '../escape.json' is not allowed" in said.stderr, said
