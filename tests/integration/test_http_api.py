"""The HTTP API (issue 14) in process, over a real Postgres: the routes, their scope and their
problem documents. (The same API under `runner up`, through the typed client, has its own test.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runner import tokens
from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store

THREAD, OTHER = "telegram:42", "telegram:43"


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)


@pytest.fixture
def client(settings: Settings, jobs: Jobs, store: Store) -> Iterator[httpx.Client]:
    """A real client over loopback to the API served by uvicorn."""
    server = HttpServer(create_app(settings, jobs, store), "127.0.0.1:0")
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as c:
            yield c
    finally:
        server.stop()


def _token(store: Store, name: str, thread: str | None = THREAD, read_only: bool = False) -> dict[str, str]:
    made = tokens.new_token()
    store.create_token(made, name=name, scope=tokens.Scope(thread=thread, admin=thread is None, read_only=read_only))
    return {"Authorization": f"Bearer {made.text}"}


def _problem(resp, status: int, says: str) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and says in body["detail"], body
    assert "Traceback" not in resp.text


def test_a_thread_token_schedules_lists_and_reads_its_jobs(client: httpx.Client, store: Store) -> None:
    auth = _token(store, "laptop")
    made = client.post(f"/v1/threads/{THREAD}/jobs", headers=auth,
                       json={"name": "hello", "script": "print('hi')", "every": "daily 9am", "tz": "Europe/Berlin"})
    assert made.status_code == 201, made.text
    job = made.json()
    assert job["name"] == "hello" and job["status"] == "pending" and job["timezone"] == "Europe/Berlin"
    assert len(job["next_runs"]) == 5 and all(t.endswith(("+01:00", "+02:00")) for t in job["next_runs"])
    listed = client.get(f"/v1/threads/{THREAD}/jobs", headers=auth).json()
    assert [j["id"] for j in listed] == [job["id"]]
    got = client.get(f"/v1/threads/{THREAD}/jobs/{job['id']}", headers=auth).json()
    assert got["id"] == job["id"] and got["recurrence"] == "daily 9am"


def test_another_threads_job_is_not_found_exactly_like_a_missing_one(client: httpx.Client, store: Store) -> None:
    mine, theirs = _token(store, "mine"), _token(store, "theirs", OTHER)
    job = client.post(f"/v1/threads/{OTHER}/jobs", headers=theirs, json={"name": "x", "script": "pass"}).json()
    via_my_thread = client.get(f"/v1/threads/{THREAD}/jobs/{job['id']}", headers=mine)
    missing = client.get(f"/v1/threads/{THREAD}/jobs/999999", headers=mine)
    _problem(via_my_thread, 404, "no such job")
    _problem(missing, 404, "no such job")
    assert via_my_thread.json()["detail"].replace(str(job["id"]), "N") == missing.json()["detail"].replace("999999", "N")
    _problem(client.get(f"/v1/threads/{OTHER}/jobs", headers=mine), 404, "there is no thread")
    _problem(client.post(f"/v1/threads/{OTHER}/jobs/{job['id']}/cancel", headers=mine), 404, "there is no thread")
    assert client.get(f"/v1/threads/{OTHER}/jobs/{job['id']}", headers=theirs).json()["status"] == "pending"


def test_an_admin_token_reaches_every_thread(client: httpx.Client, store: Store) -> None:
    admin = _token(store, "ops", thread=None)
    for thread in (THREAD, OTHER):
        assert client.post(f"/v1/threads/{thread}/jobs", headers=admin, json={"name": "x", "script": "pass"}).status_code == 201
    _problem(client.get("/v1/threads/bad id/jobs", headers=admin), 404, "thread id")


def test_a_read_only_token_reads_but_never_writes(client: httpx.Client, store: Store) -> None:
    writer, reader = _token(store, "w"), _token(store, "r", read_only=True)
    job = client.post(f"/v1/threads/{THREAD}/jobs", headers=writer, json={"name": "x", "script": "pass", "when": "in 1 hour"}).json()
    assert client.get(f"/v1/threads/{THREAD}/jobs", headers=reader).status_code == 200
    _problem(client.post(f"/v1/threads/{THREAD}/jobs", headers=reader, json={"name": "y", "script": "pass"}), 403, "read-only")
    for action in ("cancel", "pause", "resume", "run"):
        _problem(client.post(f"/v1/threads/{THREAD}/jobs/{job['id']}/{action}", headers=reader), 403, "read-only")
    _problem(client.patch(f"/v1/threads/{THREAD}/jobs/{job['id']}", headers=reader, json={"when": "now"}), 403, "read-only")
    assert client.get(f"/v1/threads/{THREAD}/jobs/{job['id']}", headers=writer).json()["status"] == "pending"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer " + tokens.new_token().text])
def test_without_a_valid_token_every_route_is_401(client: httpx.Client, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("get", f"/v1/threads/{THREAD}/jobs"), ("post", f"/v1/threads/{THREAD}/jobs"),
                         ("get", "/v1/me"), ("post", "/v1/preview"), ("get", f"/v1/threads/{THREAD}/jobs/1/runs")):
        resp = client.request(method, path, headers=headers, json={})
        _problem(resp, 401, "a valid token is needed")
        assert resp.headers["www-authenticate"].startswith("Bearer")


def test_revoked_and_expired_tokens_are_refused_at_once(client: httpx.Client, store: Store, db: Database) -> None:
    auth = _token(store, "laptop")
    assert client.get("/v1/me", headers=auth).status_code == 200
    store.revoke_token("laptop")
    _problem(client.get("/v1/me", headers=auth), 401, "revoked or expired")
    auth = _token(store, "short")
    db.query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'short'")
    _problem(client.get("/v1/me", headers=auth), 401, "revoked or expired")


def test_failed_sign_ins_are_slowed_down_per_address(client: httpx.Client, store: Store) -> None:
    good = _token(store, "laptop")
    statuses = [client.get("/v1/me", headers={"Authorization": "Bearer " + tokens.new_token().text}).status_code
                for _ in range(12)]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    refused = client.get("/v1/me", headers={"Authorization": "Bearer " + tokens.new_token().text})
    _problem(refused, 429, "too many failed sign-ins")
    assert int(refused.headers["retry-after"]) >= 1
    assert client.get("/v1/me", headers=good).status_code == 200  # a valid token is never locked out


@pytest.mark.parametrize("body, says", [
    ({"name": "../x", "script": "pass"}, "name: String should match pattern"),
    ({"name": "x", "script": "pass", "every": "daily 9"}, "'daily 9': the time is ambiguous"),
    ({"name": "x", "script": "def (:\n"}, "syntax error at line 1"),
    ({"name": "x", "script": "pass", "tz": "Mars/Olympus"}, "Mars/Olympus"),
    ({"name": "x", "script": "pass", "when": "w" * 10_000}, "when: String should have at most 200 characters"),
    ({"name": "x", "script": "pass", "timeout_seconds": 100_000}, "100000"),
    ({"name": "x", "script": "pass", "allow_hosts": ["10.0.0.1"]}, "not IP addresses"),
    ({"name": "x", "script": "pass", "after": "nothing"}, "no job named 'nothing'"),
])
def test_bad_input_is_a_422_that_says_what_to_change(client: httpx.Client, store: Store, body: dict[str, object],
                                                     says: str) -> None:
    _problem(client.post(f"/v1/threads/{THREAD}/jobs", headers=_token(store, "w"), json=body), 422, says)


def test_a_body_that_is_not_json_or_nested_too_deep_is_refused(client: httpx.Client, store: Store) -> None:
    auth = {**_token(store, "w"), "Content-Type": "application/json"}
    _problem(client.post(f"/v1/threads/{THREAD}/jobs", headers=auth, content=b"{not json"), 422, "not valid JSON")
    deep = b'{"name": "x", "script": "pass", "tz": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    resp = client.post(f"/v1/threads/{THREAD}/jobs", headers=auth, content=deep)
    assert 400 <= resp.status_code < 500, resp.text
    assert client.get("/v1/me", headers=auth).status_code == 200  # the server is unharmed


def test_preview_gives_the_next_times_without_creating_anything(client: httpx.Client, store: Store, jobs: Jobs) -> None:
    auth = _token(store, "r", read_only=True)
    resp = client.post("/v1/preview", headers=auth, json={"every": "weekdays 8:30", "tz": "Asia/Tokyo", "n": 3})
    assert resp.status_code == 200, resp.text
    times = resp.json()["times"]
    assert len(times) == 3 and all(t.endswith("T08:30:00+09:00") for t in times)
    _problem(client.post("/v1/preview", headers=auth, json={"every": "daily 9"}), 422, "'daily 9': the time is ambiguous")
    assert jobs.list_jobs() == []


def test_the_openapi_document_is_3_1_and_lists_the_routes(client: httpx.Client, store: Store) -> None:
    spec = client.get("/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "/v1/threads/{thread}/jobs" in spec["paths"] and "/v1/preview" in spec["paths"]
    _problem(client.get("/v1/nothing-here", headers=_token(store, "r")), 404, "GET /v1/openapi.json lists the API")
    _problem(client.get("/v1/nothing-here"), 401, "a valid token is needed")  # nothing under /v1 answers without one


def test_a_huge_body_is_refused_before_it_is_read(client: httpx.Client, store: Store) -> None:
    auth = _token(store, "w")
    huge = b'{"name": "x", "script": "' + b"#" * (10 * 1024 * 1024) + b'"}'
    resp = client.post(f"/v1/threads/{THREAD}/jobs", headers={**auth, "Content-Type": "application/json"}, content=huge)
    _problem(resp, 413, "larger than")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"#" * (1024 * 1024)

    resp = client.post(f"/v1/threads/{THREAD}/jobs", headers={**auth, "Content-Type": "application/json"}, content=chunks())
    _problem(resp, 413, "larger than")
    assert client.get("/v1/me", headers=auth).status_code == 200


def _queue(db: Database, jobs: Jobs, thread: str, name: str, text: str) -> int:
    from runner.store import QUERIES

    job = jobs.schedule_job(thread_id=thread, name=name, script_text="pass", at="in 1 hour")
    with db.transaction() as conn:
        row = conn.execute(QUERIES["queue_message"], {"job_id": job["id"], "kind": "message", "thread_id": thread,
                                                      "job_name": name, "text": text, "chat_id": None}).fetchone()
    assert row is not None
    return int(row["id"])


def test_the_messages_feed_pages_by_cursor_and_shows_no_other_thread(client: httpx.Client, store: Store,
                                                                     db: Database, jobs: Jobs) -> None:
    auth = _token(store, "r", read_only=True)
    first = _queue(db, jobs, THREAD, "a", "one")
    _queue(db, jobs, OTHER, "b", "not yours")
    second = _queue(db, jobs, THREAD, "c", "two")
    page = client.get(f"/v1/threads/{THREAD}/messages", headers=auth).json()
    assert [(m["id"], m["text"], m["kind"]) for m in page["items"]] == [(first, "one", "message"), (second, "two", "message")]
    assert page["next_after"] is None
    page = client.get(f"/v1/threads/{THREAD}/messages", headers=auth, params={"after": first, "limit": 1}).json()
    assert [m["text"] for m in page["items"]] == ["two"] and page["next_after"] == second
    assert client.get(f"/v1/threads/{THREAD}/messages", headers=auth, params={"after": second}).json()["items"] == []
    _problem(client.get(f"/v1/threads/{THREAD}/messages", headers=auth, params={"wait": 31}), 422, "wait")


def test_a_held_request_returns_as_soon_as_a_message_is_queued(client: httpx.Client, store: Store,
                                                               db: Database, jobs: Jobs) -> None:
    import threading
    import time

    auth = _token(store, "r", read_only=True)
    t0 = time.monotonic()
    empty = client.get(f"/v1/threads/{THREAD}/messages", headers=auth, params={"wait": 1.5}).json()
    assert empty["items"] == [] and time.monotonic() - t0 >= 1.5  # with nothing to say, it is held the wait
    got: list[dict[str, object]] = []
    t0 = time.monotonic()

    def pull() -> None:
        got.append(client.get(f"/v1/threads/{THREAD}/messages", headers=auth, params={"wait": 20}).json())

    puller = threading.Thread(target=pull)
    puller.start()
    queued = _queue(db, jobs, THREAD, "late", "here it is")
    puller.join(timeout=25)
    took = time.monotonic() - t0
    assert got and [m["id"] for m in got[0]["items"]] == [queued]  # type: ignore[union-attr]
    assert took < 10, f"the held request took {took:.1f} s to see a message queued at once"


def _jobs_dir(settings: Settings, thread: str = THREAD):  # type: ignore[no-untyped-def]
    from runner.threads import ThreadId

    return ThreadId.parse(thread).jobs_dir(settings.data_dir)


def test_files_are_written_read_listed_and_deleted(client: httpx.Client, store: Store, settings: Settings) -> None:
    auth = _token(store, "w")
    base = f"/v1/threads/{THREAD}/files"
    assert client.put(f"{base}/input.json", headers=auth, content=b'{"limit": 100}').status_code == 204
    assert client.get(f"{base}/input.json", headers=auth).content == b'{"limit": 100}'
    assert (_jobs_dir(settings) / "input.json").read_bytes() == b'{"limit": 100}'
    listed = client.get(base, headers=auth).json()
    assert [(f["name"], f["size"]) for f in listed["files"]] == [("input.json", 14)]
    assert client.put(f"{base}/input.json", headers=auth, content=b"[]").status_code == 204  # replaced whole
    assert client.get(f"{base}/input.json", headers=auth).content == b"[]"
    assert client.delete(f"{base}/input.json", headers=auth).status_code == 204
    _problem(client.get(f"{base}/input.json", headers=auth), 404, "there is no file jobs/input.json")
    _problem(client.delete(f"{base}/input.json", headers=auth), 404, "there is no file")


def test_files_of_another_thread_are_not_found_and_read_only_cannot_write(client: httpx.Client, store: Store) -> None:
    theirs, mine, reader = _token(store, "t", OTHER), _token(store, "m"), _token(store, "r", read_only=True)
    assert client.put(f"/v1/threads/{OTHER}/files/secret.txt", headers=theirs, content=b"theirs").status_code == 204
    _problem(client.get(f"/v1/threads/{OTHER}/files/secret.txt", headers=mine), 404, "there is no thread")
    _problem(client.get(f"/v1/threads/{THREAD}/files/secret.txt", headers=mine), 404, "there is no file")
    _problem(client.put(f"/v1/threads/{THREAD}/files/x.txt", headers=reader, content=b"x"), 403, "read-only")
    _problem(client.delete(f"/v1/threads/{THREAD}/files/x.txt", headers=reader), 403, "read-only")


def test_hostile_names_and_entries_in_jobs_are_refused_or_hidden(client: httpx.Client, store: Store,
                                                                 settings: Settings) -> None:
    import os

    auth = _token(store, "w")
    base = f"/v1/threads/{THREAD}/files"
    assert client.put(f"{base}/ok.txt", headers=auth, content=b"ok").status_code == 204
    jobs_dir = _jobs_dir(settings)
    (jobs_dir / "secret").write_text("outside the API's reach")
    os.symlink("/etc/passwd", jobs_dir / "link.txt")
    os.mkfifo(jobs_dir / "fifo.txt")
    os.link(jobs_dir / "secret", jobs_dir / "hard.txt")
    fd = os.open(jobs_dir, os.O_RDONLY)
    try:
        os.close(os.open(b"caf\xe9.txt", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))  # not UTF-8
    finally:
        os.close(fd)
    listed = client.get(base, headers=auth).json()
    names = [f["name"] for f in listed["files"]]
    assert "ok.txt" in names and "link.txt" not in names and "fifo.txt" not in names
    assert listed["other"] >= 3
    _problem(client.get(f"{base}/link.txt", headers=auth), 422, "symbolic link")
    _problem(client.get(f"{base}/fifo.txt", headers=auth), 422, "not a regular file")  # and did not block
    _problem(client.get(f"{base}/hard.txt", headers=auth), 422, "hard links")
    for bad in (".hidden", "a%00b", "..", "%2E%2E", "x" * 129):
        resp = client.put(f"{base}/{bad}", headers=auth, content=b"x")
        assert resp.status_code in (404, 422), (bad, resp.status_code)
    assert client.put(f"{base}/link.txt", headers=auth, content=b"replaced").status_code == 204
    assert not os.path.islink(jobs_dir / "link.txt") and (jobs_dir / "link.txt").read_bytes() == b"replaced"
    assert Path("/etc/passwd").read_bytes()[:4] != b"repl"  # the link's target was never written


def test_a_file_too_large_or_past_the_threads_limit_is_refused(client: httpx.Client, store: Store) -> None:
    auth = _token(store, "w")
    from runner.service.files import FILE_CAP

    _problem(client.put(f"/v1/threads/{THREAD}/files/big.bin", headers=auth, content=b"x" * (FILE_CAP + 1)),
             422, "at most")
