"""`runner token create|list|revoke` against a real database (issue 14): the token printed once and
alone, only its hash stored, list never showing a secret, revoke refusing it at once."""

from __future__ import annotations

import json
import subprocess

from runner.settings import Settings
from runner.store import Database, Store

from .helpers import ROOT, RUNNER_CLI, cli_env


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNNER_CLI, "token", *args], env=cli_env(settings), cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_create_prints_the_token_alone_and_it_works(settings: Settings, db: Database) -> None:
    r = cli(settings, "create", "--thread", "telegram:42", "--name", "laptop", "--expires", "90d")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert r.stdout == token + "\n" and token.startswith("rnr_")  # TOKEN=$(runner token create ...) works
    found = Store(db).token_scope(token)
    assert found is not None and found[1].thread == "telegram:42" and not found[1].read_only
    assert all(token.split("_", 2)[2] not in str(v) for row in db.query("SELECT * FROM api_tokens")
               for v in row.values())


def test_json_list_and_revoke(settings: Settings, db: Database) -> None:
    r = cli(settings, "create", "--admin", "--read-only", "--name", "ops", "--json")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["name"] == "ops" and made["thread"] is None and made["admin"] and made["read_only"]
    listed = cli(settings, "list")
    assert listed.returncode == 0 and "ops" in listed.stdout and "every thread (read-only)" in listed.stdout
    assert made["token"] not in listed.stdout and made["token"].split("_", 2)[2] not in listed.stdout
    assert cli(settings, "revoke", "ops").returncode == 0
    assert Store(db).token_scope(made["token"]) is None
    rows = json.loads(cli(settings, "list", "--all", "--json").stdout)
    assert [(r["name"], r["state"]) for r in rows] == [("ops", "revoked")]
    assert json.loads(cli(settings, "list", "--json").stdout) == []


def test_refusals_are_one_line_and_say_what_to_do(settings: Settings) -> None:
    cases = [
        (("create",), "give --thread THREAD (a token for one thread) or --admin"),
        (("create", "--thread", "telegram:42", "--admin"), "not both"),
        (("create", "--thread", "bad id"), "thread id 'bad id' is not allowed"),
        (("create", "--thread", "telegram:42", "--expires", "1y"), "write a number and a unit"),
        (("create", "--thread", "telegram:42", "--name", "Bad Name"), "token name 'Bad Name' is not allowed"),
        (("revoke", "nope"), "no live token is named 'nope'"),
    ]
    for args, says in cases:
        r = cli(settings, *args)
        assert r.returncode == 1 and says in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert r.stdout == ""
    assert cli(settings, "create", "--thread", "telegram:42", "--name", "twice").returncode == 0
    again = cli(settings, "create", "--thread", "telegram:42", "--name", "twice")
    assert again.returncode == 1 and "a token named 'twice' exists: revoke it first" in again.stderr
