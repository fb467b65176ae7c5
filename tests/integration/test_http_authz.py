"""The authorization matrix of the HTTP API (issue 14): every route × {no token, a malformed one, a
well-formed one never issued, revoked, expired, read-only, another thread's, admin}: the right status,
and no data of another thread in any body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runner import tokens
from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store

THREAD, OTHER = "telegram:42", "telegram:43"
SECRET_TEXT = "only-thread-43-knows-this"

WRITES = {"POST", "PATCH", "PUT", "DELETE"}


def _routes(job: int, other_job: int) -> list[tuple[str, str, dict[str, Any]]]:
    t = f"/v1/threads/{THREAD}"
    return [
        ("GET", "/v1/me", {}),
        ("GET", "/v1/limits", {}),
        ("POST", "/v1/preview", {"json": {"every": "daily 9am"}}),
        ("GET", f"{t}/jobs", {}),
        ("POST", f"{t}/jobs", {"json": {"name": "new", "script": "pass", "when": "in 1 hour"}}),
        ("GET", f"{t}/jobs/{job}", {}),
        ("PATCH", f"{t}/jobs/{job}", {"json": {"when": "in 2 hours"}}),
        ("POST", f"{t}/jobs/{job}/pause", {}),
        ("POST", f"{t}/jobs/{job}/resume", {}),
        ("POST", f"{t}/jobs/{job}/run", {}),
        ("GET", f"{t}/jobs/{job}/runs", {}),
        ("GET", f"{t}/jobs/{job}/runs?limit=1&before={job + 1}", {}),
        # a cursor past another thread's newer job still pages through this thread's only
        ("GET", f"{t}/jobs?status=pending&limit=5&before={other_job + 1}", {}),
        ("POST", f"{t}/jobs/{job}/cancel", {}),
        ("GET", f"{t}/files", {}),
        ("PUT", f"{t}/files/in.txt", {"content": b"x"}),
        ("GET", f"{t}/files/in.txt", {}),
        ("DELETE", f"{t}/files/in.txt", {}),
        ("GET", f"{t}/messages", {}),
        ("GET", f"{t}/settings", {}),
        ("PATCH", f"{t}/settings", {"json": {"timezone": "Europe/Berlin"}}),
        ("POST", f"{t}/settings/webhook-secret", {}),
        # another thread's job through this thread's path: as missing as a job that does not exist
        ("GET", f"{t}/jobs/{other_job}", {}),
        ("GET", f"{t}/jobs/{other_job}/runs", {}),
        ("POST", f"{t}/jobs/{other_job}/cancel", {}),
        ("PATCH", f"{t}/jobs/{other_job}", {"json": {"script": "print('mine now')"}}),
    ]


@pytest.fixture
def world(settings: Settings, jobs: Jobs, db: Database) -> Iterator[dict[str, Any]]:
    store = Store(db)
    many = tokens.FailureLimiter(burst=100_000)  # the matrix fails on purpose, hundreds of times
    server = HttpServer(create_app(settings, jobs, store, limiter=many), "127.0.0.1:0")
    server.start()

    def make(name: str, thread: str | None, read_only: bool = False) -> str:
        made = tokens.new_token()
        store.create_token(made, name=name, scope=tokens.Scope(thread=thread, admin=thread is None,
                                                                read_only=read_only))
        return made.text

    toks = {"thread": make("thread", THREAD), "read_only": make("reader", THREAD, read_only=True),
            "other": make("other", OTHER), "admin": make("admin", None), "revoked": make("revoked", THREAD),
            "expired": make("expired", THREAD)}
    store.revoke_token("revoked")
    db.query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'expired'")
    toks.update(none="", malformed="rnr_nope", never_issued=tokens.new_token().text)
    job = jobs.schedule_job(thread_id=THREAD, name="mine", script_text="pass", at="in 1 hour")["id"]
    other_job = jobs.schedule_job(thread_id=OTHER, name="theirs", script_text=f"print({SECRET_TEXT!r})",
                                  at="in 1 hour")["id"]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
            yield {"client": client, "tokens": toks, "job": job, "other_job": other_job, "jobs": jobs}
    finally:
        server.stop()


def _expected(kind: str, method: str, path: str, other_job: int) -> set[int]:
    if kind in ("none", "malformed", "never_issued", "revoked", "expired"):
        return {401}
    if f"/jobs/{other_job}" in path:
        return {403} if kind == "read_only" and method in WRITES else {404}
    if kind == "other":
        return {200} if path.startswith(("/v1/me", "/v1/limits", "/v1/preview")) else {404}
    if kind == "read_only" and method in WRITES and path != "/v1/preview":
        return {403}
    if kind == "read_only" and path.endswith("/files/in.txt"):
        return {404}  # the thread token deleted it before, and this one cannot write it
    return {200, 201, 204, 409, 422}  # reached: the route's own answer (422: e.g. pausing a job an earlier token
    # cancelled; 409: a new webhook secret for a thread with no webhook)


def test_every_route_answers_each_kind_of_token_as_it_should(world: dict[str, Any]) -> None:
    client, toks = world["client"], world["tokens"]
    wrong = []
    for kind, token in toks.items():
        for method, path, kw in _routes(world["job"], world["other_job"]):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            resp = client.request(method, path, headers=headers, **kw)
            want = _expected(kind, method, path, world["other_job"])
            if resp.status_code not in want:
                wrong.append(f"{kind:12} {method:6} {path}: {resp.status_code} (want {sorted(want)}) {resp.text[:120]}")
            if resp.status_code >= 400:
                assert resp.headers["content-type"].startswith("application/problem+json"), (kind, method, path)
            assert SECRET_TEXT not in resp.text and "theirs" not in resp.text, (kind, method, path, resp.text[:300])
            assert "Traceback" not in resp.text
    assert wrong == [], "\n".join(wrong)
    theirs = world["jobs"].get_job(world["other_job"])
    assert theirs["status"] == "pending", "no token of thread 42 changed thread 43's job"


def test_a_reached_route_really_reached_its_thread(world: dict[str, Any]) -> None:
    """The matrix's 'reached' answers are real: the thread token sees its own job, the admin both."""
    client, toks = world["client"], world["tokens"]
    mine = client.get(f"/v1/threads/{THREAD}/jobs", headers={"Authorization": f"Bearer {toks['thread']}"}).json()
    assert [j["name"] for j in mine] == ["mine"]
    theirs = client.get(f"/v1/threads/{OTHER}/jobs", headers={"Authorization": f"Bearer {toks['admin']}"}).json()
    assert [j["name"] for j in theirs] == ["theirs"]
