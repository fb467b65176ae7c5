"""Attacks on the HTTP API (issue 14) from outside, with the source open: the API served by uvicorn on
loopback over a real Postgres, as tests/integration/test_http_api.py serves it.

Tests that fail on the code of their commit are findings (each docstring names the promise it
breaks); the others are tries that held and keep holding."""

from __future__ import annotations

import json
import socket
import uuid
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
from tests.conftest import EGRESS_IMAGE, JOB_IMAGE

THREAD, OTHER = "telegram:42", "telegram:43"


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


def _token(store: Store, name: str, thread: str | None = THREAD, read_only: bool = False) -> tuple[dict[str, str], str]:
    made = tokens.new_token()
    store.create_token(made, name=name, scope=tokens.Scope(thread=thread, admin=thread is None, read_only=read_only))
    return {"Authorization": f"Bearer {made.text}"}, made.text


def _auth(store: Store, name: str, thread: str | None = THREAD, read_only: bool = False) -> dict[str, str]:
    return _token(store, name, thread, read_only)[0]


def _is_problem(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    assert "Traceback" not in resp.text
    body: dict[str, object] = resp.json()
    assert body["status"] == status
    return body


def _not_a_500(resp: httpx.Response) -> None:
    assert resp.status_code < 500, f"{resp.status_code}: {resp.text}"
    if resp.status_code >= 400:
        _is_problem(resp, resp.status_code)


def _is_4xx_problem(resp: httpx.Response) -> dict[str, object]:
    assert 400 <= resp.status_code < 500, f"{resp.status_code}: {resp.text}"
    return _is_problem(resp, resp.status_code)


# --- findings: bad input answered with a 500 -----------------------------------------------------------


@pytest.mark.parametrize("when", ["in 1000000 weeks", "in 99999999999999 weeks", "9999-12-31T23:59:59-14:00"])
def test_preview_of_a_time_past_year_9999_is_a_4xx_not_a_500(client: httpx.Client, store: Store, when: str) -> None:
    """Promise: bad input is a clear 4xx problem+json, never a 500. parse_when lets Python's
    OverflowError (date value out of range / int too large to convert) out of "in N weeks" and of an
    ISO time with an offset at the end of year 9999; the API answers 500."""
    resp = client.post("/v1/preview", headers=_auth(store, "t"), json={"when": when})
    _is_4xx_problem(resp)


def test_a_job_scheduled_a_million_weeks_ahead_is_refused_with_a_4xx(client: httpx.Client, store: Store) -> None:
    """Promise: bad input is a clear 4xx problem+json, never a 500 (POST /jobs with when="in 1000000
    weeks": OverflowError -> 500)."""
    resp = client.post(f"/v1/threads/{THREAD}/jobs", headers=_auth(store, "t"),
                       json={"name": "far", "script": "pass", "when": "in 1000000 weeks"})
    _is_4xx_problem(resp)


def test_a_recurring_job_at_the_end_of_year_9999_does_not_poison_the_listing(client: httpx.Client,
                                                                              store: Store) -> None:
    """Held: a recurring job whose first run is 9999-12-31 22:30 is saved without breaking GET /jobs
    (its next runs are not rendered: the due time is past schedule.AFTER_SENTINEL)."""
    auth, admin = _auth(store, "t"), _auth(store, "root", None)
    made = client.post(f"/v1/threads/{THREAD}/jobs", headers=auth,
                       json={"name": "end", "script": "pass", "when": "9999-12-31 22:30", "every": "hourly",
                             "tz": "UTC"})
    assert made.status_code < 500, made.text
    listed = client.get(f"/v1/threads/{THREAD}/jobs", headers=auth)
    assert listed.status_code == 200, listed.text
    assert client.get(f"/v1/threads/{THREAD}/jobs", headers=admin).status_code == 200


def test_preview_of_a_recurrence_starting_at_the_end_of_year_9999_is_a_4xx(client: httpx.Client,
                                                                           store: Store) -> None:
    """Promise: bad input is a clear 4xx problem+json, never a 500 (preview "hourly" from
    9999-12-31 22:30: the second run overflows)."""
    resp = client.post("/v1/preview", headers=_auth(store, "t"),
                       json={"when": "9999-12-31 22:30", "every": "hourly", "tz": "UTC"})
    assert resp.status_code < 500, resp.text


@pytest.mark.parametrize("tz", ["Europe", "America", "Etc"])
def test_a_time_zone_that_names_a_directory_of_the_zone_database_is_a_4xx(client: httpx.Client, store: Store,
                                                                          tz: str) -> None:
    """Promise: bad input is a clear 4xx problem+json, never a 500. schedule.zone("Europe") lets
    zoneinfo's IsADirectoryError out (its text, with the host path of the tzdata package, goes to the log), so
    preview, POST /jobs and PATCH with tz="Europe" answer 500."""
    auth = _auth(store, "t")
    _is_4xx_problem(client.post("/v1/preview", headers=auth, json={"every": "hourly", "tz": tz}))
    _is_4xx_problem(client.post(f"/v1/threads/{THREAD}/jobs", headers=auth,
                                json={"name": "z", "script": "pass", "every": "hourly", "tz": tz}))


# --- tries that held: scope --------------------------------------------------------------------------


def _other_threads_job(client: httpx.Client, store: Store) -> int:
    theirs = _auth(store, "theirs", OTHER)
    made = client.post(f"/v1/threads/{OTHER}/jobs", headers=theirs,
                       json={"name": "secret-job", "script": "print('x')", "when": "in 1 hour"})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("GET", "", None), ("GET", "/runs", None), ("PATCH", "", {"when": "in 2 hours"}),
    ("PATCH", "", {"script": "print('pwned')"}), ("POST", "/cancel", None), ("POST", "/run", None),
    ("POST", "/pause", None), ("POST", "/resume", None),
])
def test_another_threads_job_id_is_a_missing_job_on_every_route(client: httpx.Client, store: Store, method: str,
                                                                 suffix: str, body: dict[str, str] | None) -> None:
    """Held: every job route with another thread's job id under one's own thread answers the very 404
    of a missing id, and leaves the job as it was."""
    job = _other_threads_job(client, store)
    mine = _auth(store, "mine")
    theirs_resp = client.request(method, f"/v1/threads/{THREAD}/jobs/{job}{suffix}", headers=mine, json=body)
    missing_resp = client.request(method, f"/v1/threads/{THREAD}/jobs/99999999{suffix}", headers=mine, json=body)
    a, b = _is_problem(theirs_resp, 404), _is_problem(missing_resp, 404)
    assert str(a["detail"]).replace(str(job), "N") == str(b["detail"]).replace("99999999", "N")
    assert "secret-job" not in theirs_resp.text and OTHER not in theirs_resp.text
    got = client.get(f"/v1/threads/{OTHER}/jobs/{job}", headers=_auth(store, "theirs2", OTHER)).json()
    assert got["status"] == "pending" and got["paused"] is False


def test_after_naming_another_threads_job_is_refused_like_a_missing_name(client: httpx.Client, store: Store) -> None:
    """Held: ``after`` looks only in the caller's thread; the refusal is the same as for no such name."""
    _other_threads_job(client, store)
    mine = _auth(store, "mine")
    theirs = client.post(f"/v1/threads/{THREAD}/jobs", headers=mine,
                         json={"name": "chain", "script": "pass", "after": "secret-job"})
    missing = client.post(f"/v1/threads/{THREAD}/jobs", headers=mine,
                          json={"name": "chain", "script": "pass", "after": "nothing-here"})
    a, b = _is_4xx_problem(theirs), _is_4xx_problem(missing)
    assert theirs.status_code == missing.status_code
    assert str(a["detail"]).replace("secret-job", "N") == str(b["detail"]).replace("nothing-here", "N")


@pytest.mark.parametrize("path_thread", [
    "telegram:43", "TELEGRAM:42", "Telegram:42", "telegram:42%20", "%20telegram:42", "telegram%3A42x",
    "telegram:42%00", "telegram:042", "telegram_42", "telegram:42%0a", "telegram%EF%BC%9A42",
])
def test_a_thread_token_reaches_no_look_alike_thread(client: httpx.Client, store: Store, path_thread: str) -> None:
    """Held: a thread token reaches exactly its thread's text; every look-alike is a 404 problem."""
    resp = client.get(f"/v1/threads/{path_thread}/jobs", headers=_auth(store, "mine"))
    _is_problem(resp, 404)


def test_the_messages_feed_of_another_thread_is_not_reached(client: httpx.Client, store: Store, db: Database) -> None:
    """Held: the feed filters by the caller's thread; another thread's path is a 404."""
    mine = _auth(store, "mine")
    resp = client.get(f"/v1/threads/{OTHER}/messages", headers=mine, params={"wait": 0})
    _is_problem(resp, 404)
    own = client.get(f"/v1/threads/{THREAD}/messages", headers=mine, params={"after": 0})
    assert own.status_code == 200 and own.json()["items"] == []


def test_a_read_only_token_changes_nothing(client: httpx.Client, store: Store) -> None:
    """Held: every write of a read-only token is a 403."""
    rw, ro = _auth(store, "rw"), _auth(store, "ro", read_only=True)
    job = client.post(f"/v1/threads/{THREAD}/jobs", headers=rw,
                      json={"name": "a", "script": "pass", "when": "in 1 hour"}).json()["id"]
    assert client.put(f"/v1/threads/{THREAD}/files/in.json", headers=rw, content=b"{}").status_code == 204
    tries = [("POST", "/jobs", {"name": "b", "script": "pass"}), ("PATCH", f"/jobs/{job}", {"when": "in 3 hours"}),
             ("POST", f"/jobs/{job}/cancel", None), ("POST", f"/jobs/{job}/run", None),
             ("POST", f"/jobs/{job}/pause", None), ("DELETE", "/files/in.json", None)]
    for method, path, body in tries:
        _is_problem(client.request(method, f"/v1/threads/{THREAD}{path}", headers=ro, json=body), 403)
    _is_problem(client.put(f"/v1/threads/{THREAD}/files/x.json", headers=ro, content=b"1"), 403)
    assert client.get(f"/v1/threads/{THREAD}/files/in.json", headers=ro).content == b"{}"


def test_a_revoked_token_is_refused_at_once_and_no_token_is_echoed(client: httpx.Client, store: Store) -> None:
    """Held: revocation is 401 on the next request; no answer carries a token's text."""
    auth, text = _token(store, "gone")
    assert client.get("/v1/me", headers=auth).status_code == 200
    store.revoke_token("gone")
    resp = client.get("/v1/me", headers=auth)
    _is_problem(resp, 401)
    assert text not in resp.text and text.split("_")[1] not in resp.text
    for header in (f"Bearer {text}x", f"Bearer {text[:-1]}", f"bearer  {text}", f"Basic {text}",
                   f"Bearer {text.upper()}"):
        refused = client.get("/v1/me", headers={"Authorization": header})
        assert refused.status_code in (401, 429) and text not in refused.text


def _failed_sign_ins(client: httpx.Client, n: int, spoof: bool) -> list[int]:
    out = []
    for i in range(n):
        forged = {"X-Forwarded-For": f"203.0.113.{i}", "X-Real-IP": f"198.51.100.{i}"} if spoof else {}
        out.append(client.get("/v1/me", headers={"Authorization": "Bearer rnr_nope", **forged}).status_code)
    return out


def test_without_forged_headers_a_failed_sign_in_flood_is_slowed(client: httpx.Client) -> None:
    """Held (the baseline of the next test): ten failures, then 429 with Retry-After."""
    statuses = _failed_sign_ins(client, 12, spoof=False)
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429], statuses


def test_x_forwarded_for_does_not_reset_the_failed_sign_in_limit(client: httpx.Client) -> None:
    """Promise broken: failed-auth floods are rate-limited per address (X-Forwarded-For spoofing).
    uvicorn.Config's defaults (proxy_headers=True, forwarded_allow_ips="127.0.0.1,::1") rewrite the
    client address from X-Forwarded-For for every connection that comes from loopback, and HttpServer
    keeps them. So any client whose connection arrives from 127.0.0.1 (a local process, or anyone
    behind an SSH tunnel, socat, `docker -p`, a TCP-level forwarder, the usual ways to reach a
    loopback-bound RUNNER_HTTP) names its own address: a fresh bucket per request, an unbounded
    flood, and it can evict real addresses from the limiter's 10,000-entry table, or put its
    failures on someone else's address to lock them out."""
    statuses = _failed_sign_ins(client, 15, spoof=True)
    assert 429 in statuses, statuses


def test_a_forged_x_forwarded_for_can_lock_out_another_address(server: HttpServer, store: Store) -> None:
    """Promise broken: the limiter counts per (real) address. Through the same loopback default, a
    client that sends X-Forwarded-For: <victim> spends the victim's bucket; the victim, coming through
    the same forwarder with its real address, is refused with a valid token."""
    auth = _auth(store, "victim")
    with httpx.Client(base_url=server.url, timeout=30) as attacker:
        for _ in range(12):
            attacker.get("/v1/me", headers={"Authorization": "Bearer rnr_nope", "X-Forwarded-For": "192.0.2.7"})
    with httpx.Client(base_url=server.url, timeout=30) as victim:
        resp = victim.get("/v1/me", headers={**auth, "X-Forwarded-For": "192.0.2.7"})
    assert resp.status_code == 200, resp.text


# --- tries that held: bad input ----------------------------------------------------------------------


def test_deep_json_and_odd_bodies_are_4xx_problems(client: httpx.Client, store: Store) -> None:
    """Held: deep nesting, non-JSON, odd content types, NaN and huge numbers are 4xx problems."""
    auth = _auth(store, "t")
    url = f"/v1/threads/{THREAD}/jobs"
    bodies: list[tuple[bytes, str]] = [
        (b"[" * 200_000 + b"]" * 200_000, "application/json"), (b'{"name":' * 50_000, "application/json"),
        (b"\xff\xfe\x00", "application/json"), (b"name=a&script=b", "application/x-www-form-urlencoded"),
        (b'{"name":"a","script":"pass"}', "text/plain"), (b'{"name":"a","script":"pass","cpus":NaN}', "application/json"),
        (b'{"name":"a","script":"pass","cpus":Infinity}', "application/json"),
        (b'{"name":"a","script":"pass","timeout_seconds":1' + b"0" * 4000 + b"}", "application/json"),
        (b'{"name":"a","script":"pass","memory_mb":1e400}', "application/json"),
    ]
    for body, ctype in bodies:
        _is_4xx_problem(client.post(url, headers={**auth, "Content-Type": ctype}, content=body))
    assert client.get("/v1/me", headers=auth).status_code == 200


@pytest.mark.parametrize("path", [
    f"/v1/threads/{THREAD}/jobs/1{'0' * 30}", f"/v1/threads/{THREAD}/jobs/-1", f"/v1/threads/{THREAD}/jobs/1e3",
    f"/v1/threads/{THREAD}/jobs/{'9' * 5000}/runs", f"/v1/threads/{THREAD}/messages?after=1{'0' * 30}",
    f"/v1/threads/{THREAD}/messages?after={'9' * 5000}", f"/v1/threads/{THREAD}/messages?wait=nan",
    f"/v1/threads/{THREAD}/messages?wait=inf", f"/v1/threads/{THREAD}/files/..%2F..%2Fetc%2Fpasswd",
    f"/v1/threads/{THREAD}/files/%2e%2e", f"/v1/threads/{THREAD}/files/a%00b", f"/v1/threads/{THREAD}/files/%1b%5b2J",
    f"/v1/threads/{THREAD}/files/{'a' * 5000}", f"/v1/threads/{THREAD}/files/%C3%A9t%C3%A9.json",
    f"/v1/threads/{THREAD}/jobs?status={'x' * 60_000}",
])
def test_odd_paths_and_query_values_are_4xx_problems(client: httpx.Client, store: Store, path: str) -> None:
    """Held: odd ids, encodings and huge query values answer a problem document (a missing job or
    file is a 404) or, for a cursor past every message, an empty page; never a 500."""
    _not_a_500(client.get(path, headers=_auth(store, "t")))


def test_a_half_sent_request_does_not_stop_others_being_served(server: HttpServer, client: httpx.Client,
                                                               store: Store) -> None:
    """Held (as far as one slow client goes): a client that declares a body and never sends it, and
    one that never finishes its headers, do not stop another from being answered."""
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        slow[0].sendall(b"PUT /v1/threads/telegram:42/files/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nab")
        slow[1].sendall(b"GET /v1/me HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        assert client.get("/v1/me", headers=_auth(store, "t")).status_code == 200
    finally:
        for s in slow:
            s.close()


def test_a_body_over_the_limit_is_a_413_even_unannounced(server: HttpServer, store: Store) -> None:
    """Held: a chunked body past the limit is refused with 413 before the app sees it."""
    auth = _auth(store, "t")

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    with httpx.Client(base_url=server.url, timeout=30) as c:
        resp = c.put(f"/v1/threads/{THREAD}/files/big.bin", headers=auth, content=chunks())
    assert resp.status_code == 413, resp.text
    assert json.loads(resp.text)["status"] == 413


# --- the thread's limits under concurrency --------------------------------------------------------------


def test_concurrent_file_writes_keep_the_threads_disk_limit(settings: Settings, jobs: Jobs, store: Store) -> None:
    """Promise broken: the files API keeps the thread's disk limit (RUNNER_DISK_MB). Files.write
    measures jobs/ (_check_room) and then writes, with nothing held between the two, so PUTs sent at
    once all measure the same free room and all write: with a 2 MiB limit, eight parallel 1 MiB PUTs
    leave far more than 2 MiB (without RUNNER_JOBS_QUOTA=loop nothing else bounds it). One client
    with a thread token multiplies the limit by its parallelism, up to the host's disk."""
    import threading

    small = settings.with_(disk_mb=2)
    srv = HttpServer(create_app(small, jobs, store), "127.0.0.1:0")
    srv.start()
    auth, data, n = _auth(store, "t"), b"x" * (1024 * 1024), 8
    gate = threading.Barrier(n)
    statuses: list[int] = []

    def put(i: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            gate.wait()
            statuses.append(c.put(f"/v1/threads/{THREAD}/files/f{i}.bin", headers=auth, content=data).status_code)

    try:
        workers = [threading.Thread(target=put, args=(i,)) for i in range(n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            listed = c.get(f"/v1/threads/{THREAD}/files", headers=auth).json()["files"]
    finally:
        srv.stop()
    total = sum(f["size"] for f in listed)
    assert total <= 2 * 1024 * 1024, f"{total} bytes in jobs/ under a 2 MiB limit; PUT statuses {sorted(statuses)}"


def test_many_long_polls_at_once_leave_the_api_answering(server: HttpServer, store: Store) -> None:
    """Many held /messages?wait=… requests at once (one token) must not stop another caller's request
    from being answered promptly."""
    import asyncio
    import time

    auth, other = _auth(store, "poller"), _auth(store, "other", OTHER)

    async def attack() -> float:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as c:
            polls = [asyncio.create_task(c.get(f"/v1/threads/{THREAD}/messages", headers=auth,
                                               params={"wait": 8})) for _ in range(300)]
            took = 0.0
            for _ in range(15):  # one after another while the held requests arrive and poll
                started = time.monotonic()
                resp = await c.get(f"/v1/threads/{OTHER}/jobs", headers=other)
                took = max(took, time.monotonic() - started)
                assert resp.status_code == 200, resp.text
            for p in polls:
                p.cancel()
            return took

    took = asyncio.run(attack())
    assert took < 3.0, f"another thread's GET /jobs took {took:.1f} s behind 300 long-polls"


# --- tries that held: what a job left in jobs/ ---------------------------------------------------------


def test_hostile_entries_in_jobs_are_neither_followed_nor_blocking(client: httpx.Client, store: Store,
                                                                   settings: Settings, tmp_path: Path) -> None:
    """Held: a FIFO, a symlink and a hard link to a file outside, a sparse file past the cap and names
    that are not UTF-8 or carry terminal escapes: no read blocks, none is followed or shown, the
    listing counts them as other."""
    import os

    auth = _auth(store, "t")
    assert client.put(f"/v1/threads/{THREAD}/files/ok.json", headers=auth, content=b"{}").status_code == 204
    jobs_dir = settings.data_dir / "telegram_42" / "jobs"
    outside = tmp_path / "outside-secret.txt"
    outside.write_bytes(b"TOP-SECRET")
    os.mkfifo(jobs_dir / "pipe.json")
    (jobs_dir / "link.json").symlink_to(outside)
    os.link(outside, jobs_dir / "hard.json")
    with open(jobs_dir / "sparse.bin", "wb") as f:
        f.truncate(1 << 40)
    for raw in (b"\xff\xfe.json", b"\x1b[2Jx.json"):
        with open(os.path.join(os.fsencode(jobs_dir), raw), "wb") as f:
            f.write(b"1")
    for name in ("pipe.json", "link.json", "hard.json", "sparse.bin"):
        resp = client.get(f"/v1/threads/{THREAD}/files/{name}", headers=auth)
        _is_4xx_problem(resp)
        assert b"TOP-SECRET" not in resp.content
    listing = client.get(f"/v1/threads/{THREAD}/files", headers=auth)
    assert listing.status_code == 200
    names = [f["name"] for f in listing.json()["files"]]
    assert "pipe.json" not in names and "link.json" not in names and "\x1b" not in listing.text
    assert listing.json()["other"] >= 4
    os.unlink(jobs_dir / "sparse.bin")  # a terabyte counts against the disk limit: no PUT passes beside it
    put = client.put(f"/v1/threads/{THREAD}/files/link.json", headers=auth, content=b"new")
    assert put.status_code == 204, put.text
    assert outside.read_bytes() == b"TOP-SECRET"


def test_a_jobs_directory_that_is_a_link_is_not_followed(client: httpx.Client, store: Store,
                                                         settings: Settings, tmp_path: Path) -> None:
    """Held: if the thread's jobs/ itself (or its thread directory) is a symlink, the files API
    neither reads nor writes through it."""
    import shutil

    auth = _auth(store, "t")
    assert client.put(f"/v1/threads/{THREAD}/files/ok.json", headers=auth, content=b"{}").status_code == 204
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.json").write_bytes(b"TOP-SECRET")
    jobs_dir = settings.data_dir / "telegram_42" / "jobs"
    shutil.rmtree(jobs_dir)
    jobs_dir.symlink_to(elsewhere)
    got = client.get(f"/v1/threads/{THREAD}/files/secret.json", headers=auth)
    assert got.status_code != 200 and b"TOP-SECRET" not in got.content
    _not_a_500(got)
    _not_a_500(client.get(f"/v1/threads/{THREAD}/files", headers=auth))
    put = client.put(f"/v1/threads/{THREAD}/files/planted.json", headers=auth, content=b"x")
    _not_a_500(put)
    assert not (elsewhere / "planted.json").exists()


# --- unauthenticated clients and the server's memory and sockets --------------------------------------


def _answer_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sends back within ``seconds``: b"" if it closes, b"<silent>" if nothing comes."""
    sock.settimeout(seconds)
    try:
        return sock.recv(4096)
    except TimeoutError:
        return b"<silent>"


def test_an_unauthenticated_body_is_refused_before_it_is_buffered(server: HttpServer) -> None:
    """Promise broken: huge bodies and failed-auth floods leave the server up. BodyLimit reads every
    request body whole, up to 2 MiB, *before* the app (and so the token check and the failed-sign-in
    limiter) sees the request: a client with no token at all that declares Content-Length: 2000000
    and sends 1 MiB gets no 401, the server waits for the rest and keeps what came. There is no
    connection limit, so N such connections hold N x 2 MiB of the runner's memory (the scheduler
    shares the process under `runner up`), and the limiter never counts them."""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"PUT /v1/threads/telegram:42/files/x.bin HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n")
        s.sendall(b"x" * (1024 * 1024))
        got = _answer_within(s, 5)
    assert got.startswith(b"HTTP/1.1 401"), got[:200]


def test_a_client_that_never_finishes_its_headers_is_dropped(server: HttpServer) -> None:
    """Promise broken: slowloris-ish clients. uvicorn (h11) has no timeout for a request's headers or
    body, and HttpServer sets no limit_concurrency: a connection that sends half a request line and
    then nothing is held open indefinitely (here: still open and silent after 20 s), so a few thousand
    idle sockets exhaust the runner's file descriptors, which it also needs for Docker, Postgres and
    the jobs' files."""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /v1/me HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        got = _answer_within(s, 20)
    assert got != b"<silent>", "the server still holds a half-sent request after 20 s"


def test_a_trailing_slash_does_not_redirect_to_a_host_the_client_names(server: HttpServer, store: Store) -> None:
    """Promise: bad input (odd paths) is a 4xx problem+json. Starlette's redirect_slashes (FastAPI's
    default) answers GET /v1/me/ with a 307 whose Location is built from the request's Host header:
    Host: evil.example gets Location: http://evil.example/v1/me (a host-header open redirect; a
    client that follows it with its bearer token, e.g. curl --location-trusted, hands the token over)."""
    auth = _auth(store, "t")
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as c:
        resp = c.get("/v1/me/", headers={**auth, "Host": "evil.example"})
    assert "evil.example" not in resp.headers.get("location", ""), (resp.status_code, resp.headers)


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "HEAD", "CONNECT", "PROPFIND", "DELETE"])
def test_odd_methods_are_4xx_problems(client: httpx.Client, store: Store, method: str) -> None:
    """Held: methods the API does not route answer 405 (or 4xx) as a problem document; none echoes
    the request's headers (TRACE) or the token."""
    auth, text = _token(store, "t")
    resp = client.request(method, f"/v1/threads/{THREAD}/jobs", headers=auth)
    assert 400 <= resp.status_code < 500 and text not in resp.text, (resp.status_code, resp.text)


def test_a_held_long_poll_stops_serving_a_token_revoked_meanwhile(client: httpx.Client, store: Store,
                                                                  db: Database, jobs: Jobs) -> None:
    """Promise broken: a revoked token gets 401 at once. /messages checks the token once, when the
    request arrives, then polls the store for up to 30 s: a message queued after the token was
    revoked is still handed to the held request. (A client that re-polls as soon as each answer
    comes keeps a revoked token reading up to 30 s more, and every message in that window.)"""
    import threading

    from runner.store import QUERIES
    from tests.waiting import wait_for

    auth = _auth(store, "soon-gone", read_only=True)
    job = jobs.schedule_job(thread_id=THREAD, name="talker", script_text="pass", at="in 1 hour")
    got: list[httpx.Response] = []
    puller = threading.Thread(target=lambda: got.append(
        client.get(f"/v1/threads/{THREAD}/messages", headers=auth, params={"wait": 15})))
    puller.start()
    wait_for(lambda: any(t["name"] == "soon-gone" and t["last_used_at"] for t in store.list_tokens()), 10,
             "the held request to be authenticated")
    store.revoke_token("soon-gone")
    with db.transaction() as conn:
        conn.execute(QUERIES["queue_message"], {"job_id": job["id"], "kind": "message", "thread_id": THREAD,
                                                "job_name": "talker", "text": "said after revocation", "chat_id": None})
    puller.join(timeout=25)
    assert got, "the held request did not return"
    assert "said after revocation" not in got[0].text, (got[0].status_code, got[0].text)


def test_an_expired_token_is_refused_as_soon_as_it_expires(client: httpx.Client, store: Store) -> None:
    """Held: expiry is the database's clock at each request; the first request after it is a 401."""
    from datetime import timedelta

    from tests.waiting import wait_for

    made = tokens.new_token()
    store.create_token(made, name="brief", scope=tokens.Scope(thread=THREAD, admin=False, read_only=False),
                       expires=timedelta(seconds=2))
    auth = {"Authorization": f"Bearer {made.text}"}
    assert client.get("/v1/me", headers=auth).status_code == 200
    wait_for(lambda: client.get("/v1/me", headers=auth).status_code == 401, 10, "the token to expire")
    _is_problem(client.get(f"/v1/threads/{THREAD}/jobs", headers=auth), 401)


def test_concurrent_file_writes_keep_the_threads_file_count(settings: Settings, jobs: Jobs, store: Store) -> None:
    """Promise broken: the files API keeps the thread's file limit (RUNNER_MAX_FILES), by the same
    measure-then-write race as the disk limit: with a limit of 10 entries, 30 parallel PUTs of new
    names all pass the count."""
    import threading

    small = settings.with_(max_files=10)
    srv = HttpServer(create_app(small, jobs, store), "127.0.0.1:0")
    srv.start()
    auth, n = _auth(store, "t"), 30
    gate = threading.Barrier(n)

    def put(i: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            gate.wait()
            c.put(f"/v1/threads/{THREAD}/files/n{i}.txt", headers=auth, content=b"x" * 4096)

    try:
        workers = [threading.Thread(target=put, args=(i,)) for i in range(n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            listed = c.get(f"/v1/threads/{THREAD}/files", headers=auth).json()
    finally:
        srv.stop()
    count = len(listed["files"]) + listed["other"]
    assert count <= 10, f"{count} entries in jobs/ under a limit of 10"


def test_one_write_at_a_time_keeps_the_threads_file_count(settings: Settings, jobs: Jobs, store: Store) -> None:
    """Held (the baseline of the test above): PUTs one after another stop at the limit with a 422."""
    srv = HttpServer(create_app(settings.with_(max_files=10), jobs, store), "127.0.0.1:0")
    srv.start()
    auth = _auth(store, "t")
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            statuses = [c.put(f"/v1/threads/{THREAD}/files/n{i}.txt", headers=auth, content=b"x").status_code
                        for i in range(12)]
    finally:
        srv.stop()
    assert statuses[:10] == [204] * 10 and statuses[10:] == [422, 422], statuses


def test_the_limiters_memory_is_bounded_however_many_addresses_fail() -> None:
    """Held: 50,000 failing addresses leave at most max_addresses entries (the oldest go)."""
    limiter = tokens.FailureLimiter(max_addresses=1000)
    for i in range(50_000):
        limiter.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", float(i))
    assert len(limiter) == 1000


@pytest.fixture
def behind_proxy(settings: Settings, jobs: Jobs, store: Store) -> Iterator[httpx.Client]:
    """The API as served behind a reverse proxy on loopback (RUNNER_HTTP_TRUSTED_PROXIES=127.0.0.1)."""
    srv = HttpServer(create_app(settings, jobs, store), "127.0.0.1:0", trusted_proxies=("127.0.0.1/32",))
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            yield c
    finally:
        srv.stop()


def _fail_as(client: httpx.Client, forwarded: str) -> int:
    return client.get("/v1/me", headers={"Authorization": "Bearer rnr_nope", "X-Forwarded-For": forwarded}).status_code


def test_behind_a_trusted_proxy_failures_count_against_the_forwarded_client(behind_proxy: httpx.Client) -> None:
    """Held: behind the operator's proxy each client has its own bucket (one flooding client does not
    slow down the others), and a client cannot reset its bucket by prepending addresses of its own to
    the X-Forwarded-For its proxy extends: the nearest address not a trusted proxy is the one counted."""
    flood = [_fail_as(behind_proxy, "203.0.113.7") for _ in range(11)]
    assert flood[:10] == [401] * 10 and flood[10] == 429, flood
    assert _fail_as(behind_proxy, "198.51.100.9") == 401  # another client behind the same proxy
    assert _fail_as(behind_proxy, "192.0.2.1, 203.0.113.7") == 429  # a forged prefix changes nothing


def test_trusted_proxies_must_be_addresses() -> None:
    """A mistyped proxy list is refused at start-up with the setting's name, not ignored."""
    from runner.errors import ConfigError
    with pytest.raises(ConfigError, match="RUNNER_HTTP_TRUSTED_PROXIES: 'proxy.local' is not an IP address"):
        Settings.from_env({"RUNNER_HTTP_TRUSTED_PROXIES": "proxy.local"})
