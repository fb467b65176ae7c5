"""Attacks on webhook delivery and a thread's settings (issue 14) from outside, with the source open: the
settings API served by uvicorn on loopback over a real Postgres, the deliverer's real httpx client
against hostile receivers on 127.0.0.1 (raw sockets where a well-behaved HTTP server could not be as
bad), and runner.webhook's signature check fed hostile headers.

Tests that fail on the code of their commit are findings (each docstring names the promise it
breaks); the others are tries that held and keep holding. Traffic goes to 127.0.0.1 only; where a
name must resolve, the sender's own resolver hook answers (the check itself is the runner's)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner import tokens, webhook
from runner.app import delivery_store
from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.outbox import webhook as hooks
from runner.outbox.sender import Outcome
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store

from ..conftest import EGRESS_IMAGE, JOB_IMAGE
from ..integration.test_webhook_delivery import SECRET, Deliverer, queue, rows, set_hook, statuses
from ..waiting import wait_for
from ..webhookreceiver import Receiver

THREAD, OTHER = "api:bob", "api:alice"
PATH = f"/v1/threads/{THREAD}/settings"
CHANNEL_SECRET = "channel-secret-" + "x" * 20


# --- the settings API ------------------------------------------------------------------------------

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
def hook_settings(settings: Settings) -> Settings:
    """An operator who allows *.example.com and lists one loopback address, 127.0.0.1, for a receiver on
    the same host, with a channel-wide webhook for api:… threads signed with CHANNEL_SECRET."""
    return settings.with_(webhook_allow=("*.example.com",), webhook_allow_addresses=("127.0.0.1/32",),
                          webhook_channels=("api=https://hooks.example.com/all",), webhook_secret=CHANNEL_SECRET)


@pytest.fixture
def server(hook_settings: Settings, db: Database, store: Store) -> Iterator[HttpServer]:
    srv = HttpServer(create_app(hook_settings, Jobs(hook_settings, db), store), "127.0.0.1:0")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: HttpServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _auth(store: Store, name: str, thread: str | None = THREAD, read_only: bool = False) -> dict[str, str]:
    made = tokens.new_token()
    store.create_token(made, name=name, scope=tokens.Scope(thread=thread, admin=thread is None, read_only=read_only))
    return {"Authorization": f"Bearer {made.text}"}


def _problem(resp: httpx.Response, *statuses: int) -> str:
    """The problem's detail, after checking it is one of ``statuses`` (default: any 4xx), a problem+json,
    and a sentence rather than a traceback."""
    assert resp.status_code < 500, f"{resp.status_code}: {resp.text}"
    assert (resp.status_code in statuses) if statuses else 400 <= resp.status_code < 500, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    assert "Traceback" not in resp.text
    detail: str = resp.json()["detail"]
    assert len(detail) > 20, detail
    return detail


SSRF_URLS = [
    "https://127.0.0.2/", "https://[::1]/", "https://[0:0:0:0:0:0:0:1]/", "https://[::ffff:127.0.0.1]/",
    "http://[::ffff:127.0.0.1]:9000/", "https://[::ffff:7f00:1]/", "https://[::127.0.0.1]/",
    "https://[64:ff9b::7f00:1]/", "https://[2002:7f00:1::]/", "https://[fe80::1%25eth0]/",
    "https://169.254.169.254/latest/meta-data/", "https://[::ffff:169.254.169.254]/", "https://[fd00:ec2::254]/",
    "https://0.0.0.0/", "https://10.0.0.1/", "https://192.168.1.1/", "https://100.100.100.200/",
    "https://2130706433/", "https://0x7f000001/", "https://0177.0.0.1/", "https://0x7f.0.0.1/", "https://127.1/",
    "https://017700000001/", "https://127.0.0.1./", "https://localhost/", "https://hooks.example.com./",
    "https://HOOKS.EXAMPLE.COM../", "https://%31%32%37.0.0.1/", "https://hooks%2eexample.com/",
    "https://hooks.example.com%00.evil.com/", "https://ｈｏｏｋｓ.example.com/", "https://a.example.com\u3002evil.com/",
    "https://bücher.example.com/", "https://user:pw@hooks.example.com/", "https://hooks.example.com@127.0.0.1/",
    "https://hooks.example.com\\@127.0.0.1/", "https://127.0.0.2#@hooks.example.com/",
    "https://hooks.example.com.evil.com/", "https://example.com/", "https://evil.com/#.example.com",
    "http://hooks.example.com/", "ftp://hooks.example.com/", "file:///etc/passwd", "gopher://127.0.0.1:5432/",
    "//hooks.example.com/", "https:hooks.example.com", "https://[::1]:443@hooks.example.com/",
    "https://metadata.google.internal/", "https://hooks.example.com\t.evil.com/",
]


@pytest.mark.parametrize("url", SSRF_URLS)
def test_a_thread_token_cannot_set_a_webhook_to_a_private_or_unlisted_host(client: httpx.Client, store: Store,
                                                                            url: str) -> None:
    """Promise: a thread token can never make the runner connect to a private, loopback, link-local or
    metadata address, nor a host outside the operator's allow list: each form is a 422 saying why."""
    auth = _auth(store, "t")
    resp = client.patch(PATH, headers=auth, json={"webhook_url": url})
    _problem(resp, 422)
    assert store.thread_settings(THREAD)["webhook_url"] is None


@pytest.mark.parametrize("url", ["https://93.184.216.34/hook", "https://1.1.1.1/", "https://[2606:4700:4700::1111]/",
                                 "https://[2001:4860:4860::8888]:8443/x", "https://8.8.8.8:22/"])
def test_a_public_address_literal_is_held_to_the_operators_host_allow_list(client: httpx.Client, store: Store,
                                                                           url: str) -> None:
    """Promise: a thread token can never make the runner connect to any host outside the operator's allow
    list. With RUNNER_WEBHOOK_ALLOW=*.example.com, a URL naming a public IP address literal skips the
    host patterns altogether (UrlPolicy._check_address checks only that the address is public), so any
    thread can send its deliveries to any public address on any port."""
    resp = client.patch(PATH, headers=_auth(store, "t"), json={"webhook_url": url})
    _problem(resp, 422)
    assert store.thread_settings(THREAD)["webhook_url"] is None


def test_a_listed_loopback_address_does_not_open_every_port_on_it(client: httpx.Client, store: Store,
                                                                  server: HttpServer, pg_url: str) -> None:
    """Promise: a thread token can never make the runner connect to a loopback address, or any host
    outside the operator's allow list (think: ports). The operator lists 127.0.0.1 for its receiver on
    the same host (the README's example, http://127.0.0.1:9000/); that opens every port of it to every
    thread: the runner's own API, Postgres, any local service, each POSTed to, its answer's status
    (and the start of its body, in the message's error) told back. RUNNER_WEBHOOK_ALLOW_ADDRESSES has no
    way to name the one port: this is a gap in the policy rather than in its check."""
    auth = _auth(store, "t")
    pg_port = httpx.URL(pg_url.replace("postgresql://", "http://", 1)).port
    for port in (server.port, pg_port, 22, 6379):
        resp = client.patch(PATH, headers=auth, json={"webhook_url": f"http://127.0.0.1:{port}/v1/jobs"})
        _problem(resp, 422)


@pytest.mark.parametrize("url", ["https://[::1", "https://[hooks.example.com/", "https://hooks.example.com]/",
                                 "http://[::1/x", "https://[::1]]/"])
def test_a_webhook_url_with_unbalanced_brackets_is_a_4xx_not_a_500(client: httpx.Client, store: Store,
                                                                    url: str) -> None:
    """Promise: bad input to the settings endpoints gets a 4xx problem with an actionable sentence, never
    a 500. (urllib's urlsplit raises ValueError("Invalid IPv6 URL") before UrlPolicy.check looks.)"""
    _problem(client.patch(PATH, headers=_auth(store, "t"), json={"webhook_url": url}), 422)


@pytest.mark.parametrize("port", ["abc", "-1", "99999", "65536", "4 43", "0x1bb"])
def test_a_webhook_url_with_an_impossible_port_is_refused_when_set(client: httpx.Client, store: Store,
                                                                   port: str) -> None:
    """Promise: bad input to the settings endpoints gets a 4xx problem with an actionable sentence. A port
    that is no port (``:abc``, ``:99999``) is accepted today, and each delivery to it then dies in
    httpx as an "unexpected error" retried forever (see the delivery test below)."""
    resp = client.patch(PATH, headers=_auth(store, "t"), json={"webhook_url": f"https://hooks.example.com:{port}/x"})
    _problem(resp, 422)
    assert store.thread_settings(THREAD)["webhook_url"] is None


BAD_BODIES: list[Any] = [
    {"timezone": "Mars/Olympus_Mons"}, {"timezone": "../../../etc/passwd"}, {"timezone": "UTC\u0000"},
    {"timezone": ""}, {"timezone": " "}, {"timezone": "x" * 5000}, {"timezone": 5}, {"timezone": None},
    {"timezone": "Europe/Berlin\n"}, {"timezone": "/etc/localtime"}, {"timezone": "posix/../UTC"},
    {"webhook_url": 5}, {"webhook_url": ["https://hooks.example.com/"]}, {"webhook_url": {"a": 1}},
    {"webhook_url": ""}, {"webhook_url": " "}, {"webhook_url": "https://hooks.example.com/" + "a" * 3000},
    {"webhook_url": "https://hooks.example.com/\u0000"}, {"webhook_url": "https://hooks.example.com/\ud800"},
    {"webhook_secret": "mine"}, {"webhook": "channel"}, ["webhook_url"], "https://hooks.example.com/", 7, None,
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=[repr(b)[:40] for b in BAD_BODIES])
def test_bad_settings_input_is_a_4xx_problem_with_a_sentence(client: httpx.Client, store: Store, body: Any) -> None:
    """Promise: bad input to the settings endpoints gets a 4xx problem with an actionable sentence, never
    a 500 (and changes nothing)."""
    raw = json.dumps(body).encode()  # a lone surrogate goes as its JSON escape
    resp = client.patch(PATH, headers={**_auth(store, "t"), "Content-Type": "application/json"}, content=raw)
    _problem(resp)
    assert store.thread_settings(THREAD) == {"timezone": None, "webhook_url": None, "has_secret": False}


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b'{"webhook_url": "https://hooks.example.com/"}' * 2,
                                 b"[" * 10000 + b"]" * 10000])
def test_malformed_settings_bodies_are_a_4xx(client: httpx.Client, store: Store, raw: bytes) -> None:
    """Promise: bad input to the settings endpoints gets a 4xx problem, never a 500."""
    resp = client.patch(PATH, headers={**_auth(store, "t"), "Content-Type": "application/json"}, content=raw)
    _problem(resp)


@pytest.mark.parametrize("path", [OTHER, "API:bob", "api:bob ", "api:bob%00", "api:bob%2F..%2Fapi:alice",
                                  "api:bob:x", "api:", "telegram:1", "api%3Aalice"])
def test_a_thread_token_reaches_only_its_own_settings(client: httpx.Client, store: Store, path: str) -> None:
    """Promise: a thread token reaches only its own thread's settings (404 for others, telling nothing)."""
    auth = _auth(store, "t")
    set_on_other = client.patch(f"/v1/threads/{OTHER}/settings", headers=_auth(store, "admin", None),
                                json={"webhook_url": "https://hooks.example.com/alice"})
    assert set_on_other.status_code == 200
    alice_secret = set_on_other.json()["webhook_secret"]
    for resp in (client.get(f"/v1/threads/{path}/settings", headers=auth),
                 client.patch(f"/v1/threads/{path}/settings", headers=auth, json={"webhook_url": None}),
                 client.patch(f"/v1/threads/{path}/settings", headers=auth, json={"timezone": "Europe/Berlin"}),
                 client.post(f"/v1/threads/{path}/settings/webhook-secret", headers=auth)):
        detail = _problem(resp, 404)
        assert "hooks.example.com/alice" not in resp.text and alice_secret not in resp.text, detail
    alice = store.thread_settings(OTHER)
    assert alice["webhook_url"] == "https://hooks.example.com/alice" and alice["timezone"] is None


def test_a_read_only_token_cannot_write_settings(client: httpx.Client, store: Store) -> None:
    """Promise: read-only tokens cannot write (403), and the secret is not rotated nor shown."""
    admin = _auth(store, "admin", None)
    secret = client.patch(PATH, headers=admin, json={"webhook_url": "https://hooks.example.com/bob"}).json()["webhook_secret"]
    ro = _auth(store, "ro", read_only=True)
    for resp in (client.patch(PATH, headers=ro, json={"webhook_url": "https://evil.example.com/"}),
                 client.patch(PATH, headers=ro, json={"webhook_url": None}),
                 client.patch(PATH, headers=ro, json={"timezone": "Asia/Tokyo"}),
                 client.post(f"{PATH}/webhook-secret", headers=ro)):
        _problem(resp, 403)
        assert secret not in resp.text
    with store.db.transaction() as conn:
        row = conn.execute("SELECT webhook_url, webhook_secret FROM threads WHERE thread_id = %s", (THREAD,)).fetchone()
    assert row["webhook_url"] == "https://hooks.example.com/bob" and row["webhook_secret"] == secret
    assert client.get(PATH, headers=ro).json()["webhook_secret"] is None


def test_the_secret_is_visible_only_in_the_answer_that_made_it(client: httpx.Client, store: Store,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """Promise: a thread's secret is never visible to anyone but the one who set/rotated it: not in GET,
    any error, log line, metric, the messages feed, another thread's answers, the OpenAPI document; nor
    the operator's channel secret anywhere."""
    caplog.set_level(logging.DEBUG)
    auth, other = _auth(store, "t"), _auth(store, "o", OTHER)
    made = client.patch(PATH, headers=auth, json={"webhook_url": "https://hooks.example.com/bob"}).json()["webhook_secret"]
    rotated = client.post(f"{PATH}/webhook-secret", headers=auth).json()["webhook_secret"]
    assert made and rotated and made != rotated
    seen = [
        client.get(PATH, headers=auth), client.get(PATH, headers=other),
        client.patch(PATH, headers=auth, json={"webhook_url": "https://hooks.example.com/bob2"}),  # same secret kept
        client.patch(PATH, headers=auth, json={"webhook_url": "https://127.0.0.9/"}),  # an error
        client.patch(PATH, headers=auth, json={"timezone": "Nowhere/Land"}),
        client.get(f"/v1/threads/{OTHER}/settings", headers=other),
        client.patch(f"/v1/threads/{OTHER}/settings", headers=other, json={"webhook_url": "https://hooks.example.com/bob"}),
        client.get(f"/v1/threads/{THREAD}/messages", headers=auth), client.get(f"/v1/threads/{OTHER}/messages", headers=other),
        client.get("/v1/openapi.json"), client.get("/openapi.json"), client.get("/metrics"), client.get("/healthz"),
        client.get(PATH), client.get(PATH, headers={"Authorization": "Bearer " + rotated}),
    ]
    text = "\n".join(r.text for r in seen) + "\n".join(str(r.headers) for r in seen) + caplog.text
    for secret in (made, rotated, CHANNEL_SECRET):
        assert secret not in text
        assert secret[6:20] not in text


# --- a receiver's attacks on the sender -----------------------------------------------------------

class _Sending:
    """The outbox's side of one delivery, for the sender alone (no lease to renew: nothing else runs)."""

    async def before_request(self) -> None:
        pass

    async def attachments(self) -> list[dict[str, Any]]:
        return []


def _message(url: str, text: str = "hello") -> dict[str, Any]:
    return {"id": 7, "thread_id": THREAD, "job_id": None, "job_name": "report", "kind": "message", "text": text,
            "created_at": datetime.now(UTC), "attempts": 1, "webhook_url": url, "webhook_secret": SECRET}


def _sender(resolver: hooks.Resolver = hooks.resolve_host, timeout: float = 1.0,
            allow_addresses: tuple[str, ...] = ("127.0.0.1/32:*",)) -> hooks.WebhookSender:
    policy = webhook.UrlPolicy(allow=("*.example.com",), allow_addresses=allow_addresses)
    return hooks.WebhookSender(policy, config=hooks.WebhookConfig(request_timeout=timeout, lease_seconds=30),
                               resolver=resolver)


def _send(sender: hooks.WebhookSender, url: str, text: str = "hello") -> tuple[Outcome, float]:
    async def once() -> Outcome:
        try:
            return await sender.send(_message(url, text), _Sending())  # type: ignore[arg-type]
        finally:
            await sender.aclose()

    started = time.monotonic()
    outcome = asyncio.run(once())
    return outcome, time.monotonic() - started


class RawReceiver:
    """A TCP listener on 127.0.0.1 that answers each connection with ``behave(conn)``: as hostile as a
    receiver can be below HTTP. ``accepted`` counts the connections made to it."""

    def __init__(self, behave: Callable[[socket.socket, bytes], None]) -> None:
        self.behave, self.accepted, self.done = behave, 0, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            self.behave(conn, conn.recv(65536))
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self.done.set()
        self.sock.close()
        self.thread.join(timeout=5)


def _endless_body(conn: socket.socket, first: bytes) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        conn.sendall(b"10000\r\n" + b"A" * 0x10000 + b"\r\n")


def _endless_length(conn: socket.socket, first: bytes) -> None:
    conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 99999999999\r\n\r\n")
    while True:
        conn.sendall(b"B" * 65536)


def _drip(conn: socket.socket, first: bytes) -> None:
    for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 10000:
        conn.sendall(bytes([b]))
        time.sleep(0.05)  # the receiver's drip, not the test's synchronisation


def _hang(conn: socket.socket, first: bytes) -> None:
    conn.recv(1)  # until the runner gives up and closes
    time.sleep(3)


def _header_bomb(conn: socket.socket, first: bytes) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-A: " + b"a" * 1000 + b"\r\n" * 1)
    for i in range(100000):
        conn.sendall(b"X-%d: %s\r\n" % (i, b"b" * 100))


def _continue_forever(conn: socket.socket, first: bytes) -> None:
    while True:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")


def _bad_status(conn: socket.socket, first: bytes) -> None:
    conn.sendall(b"HTTP/1.1 2000 \x1b[31mOK\r\nContent-Length: 2\r\n\r\nok")


def _evil_redirect(conn: socket.socket, first: bytes) -> None:
    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\x1b]0;pwned\x07\xe2\x80\xae\r\n"
                 b"Content-Length: 0\r\n\r\n")


def _evil_body(conn: socket.socket, first: bytes) -> None:
    body = b"\x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07 \xe2\x80\xaeevil\r\nSet-Cookie: a=b" + b"\x00" * 10
    conn.sendall(b"HTTP/1.1 400 Bad\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def _garbage(conn: socket.socket, first: bytes) -> None:
    conn.sendall(b"\x00\xff" * 5000)


def _gzip_bomb(conn: socket.socket, first: bytes) -> None:
    import gzip
    bomb = gzip.compress(b"\x00" * 50_000_000)
    conn.sendall(b"HTTP/1.1 400 Bad\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb)


HOSTILE = {"endless chunked body": _endless_body, "endless content-length": _endless_length, "slow drip": _drip,
           "hang": _hang, "header bomb": _header_bomb, "endless 100 Continue": _continue_forever,
           "bad status line": _bad_status, "escapes in Location": _evil_redirect, "escapes in body": _evil_body,
           "garbage": _garbage, "gzip bomb": _gzip_bomb}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_receiver_costs_the_sender_one_bounded_request(name: str) -> None:
    """Promise: a receiver cannot harm the runner: a huge or endless response, a slow drip, a hang, a
    malicious status line or headers each end within the request timeout, read a bounded amount, and
    leave a message error of visible text only (no terminal escapes, no bidi overrides, no NUL)."""
    rx = RawReceiver(HOSTILE[name])
    try:
        outcome, took = _send(_sender(timeout=1.0), rx.url)
    finally:
        rx.stop()
    assert took < 3.0, f"{name}: the request took {took:.1f} s with a 1 s timeout"
    assert outcome.kind in ("retry", "failed", "sent"), outcome
    error = outcome.error or ""
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]", error), repr(error)
    assert len(error) < 1000, len(error)


def test_a_redirect_to_loopback_is_never_followed() -> None:
    """Promise: a thread token can never make the runner connect elsewhere through redirects: a 307 to
    another port (listed loopback even) fails the message and the target sees no connection."""
    target = RawReceiver(lambda c, _: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    redirect = RawReceiver(lambda c, _: c.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: " + target.url.encode()
                                               + b"\r\nContent-Length: 0\r\n\r\n"))
    try:
        outcome, _ = _send(_sender(), redirect.url)
    finally:
        redirect.stop()
        target.stop()
    assert outcome.kind == "failed" and "redirect" in (outcome.error or ""), outcome
    assert redirect.accepted == 1 and target.accepted == 0


ANSWERS: dict[str, list[str]] = {
    "private": ["10.0.0.1"], "loopback (unlisted)": ["127.0.0.2"], "mixed public and loopback": ["93.184.216.34", "127.0.0.2"],
    "metadata": ["169.254.169.254"], "IPv6 loopback": ["::1"], "IPv4-mapped loopback": ["::ffff:127.0.0.2"],
    "IPv4-mapped listed loopback": ["::ffff:127.0.0.1"], "link-local with scope": ["fe80::1%lo"],
    "NAT64 of loopback": ["64:ff9b::7f00:2"], "6to4 of loopback": ["2002:7f00:2::1"], "unspecified": ["0.0.0.0"],
    "ULA": ["fd00::1"], "CGNAT": ["100.64.0.1"], "broadcast": ["255.255.255.255"],
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_a_name_resolving_to_a_forbidden_address_is_refused_before_connecting(name: str) -> None:
    """Promise: a thread token can never make the runner connect to a private, loopback, link-local or
    metadata address (think: DNS answers that change between the check at PATCH and the connect): the
    answer at delivery is checked, every address of it, and nothing is connected to."""
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ANSWERS[name]

    outcome, _ = _send(_sender(resolver), "https://hooks.example.com/x")
    assert calls == ["hooks.example.com"]
    assert outcome.kind == "failed" and "private or reserved" in (outcome.error or ""), outcome


async def _hanging_resolver(host: str, port: int) -> list[str]:
    await asyncio.sleep(60)
    return ["127.0.0.1"]


async def _failing_resolver(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def _empty_resolver(host: str, port: int) -> list[str]:
    return []


@pytest.mark.parametrize("resolver", [_hanging_resolver, _failing_resolver, _empty_resolver])
def test_a_hostile_dns_answer_costs_one_bounded_retry(resolver: hooks.Resolver) -> None:
    """Promise: a receiver (here, the name's DNS) cannot harm the runner: a lookup that hangs is bounded
    by the request timeout, and one that fails or answers nothing is a retry with a sentence."""
    outcome, took = _send(_sender(resolver, timeout=1.0), "https://hooks.example.com/x")
    assert took < 3.0 and outcome.kind == "retry", (took, outcome)
    assert outcome.error and "Traceback" not in outcome.error


def test_a_rebinding_name_is_connected_to_at_the_checked_address_only() -> None:
    """Promise: DNS answers that change between check and connect cannot redirect the connection: the
    resolver is asked once per connection, and the socket goes to the address that was checked. The
    first answer is the listed 127.0.0.1, every later one 127.0.0.2 (unlisted): the one connection made
    must come from the first answer and reach the listener on 127.0.0.1."""
    target = RawReceiver(lambda c, _: c.sendall(b"HTTP/1.1 204 No Content\r\n\r\n"))
    answers = iter([["127.0.0.1"]])

    async def resolver(host: str, port: int) -> list[str]:
        return next(answers, ["127.0.0.2"])

    try:
        # TLS is not spoken by the raw listener: the connection is what is checked, not the answer.
        outcome, _ = _send(_sender(resolver), f"https://hooks.example.com:{target.port}/x")
    finally:
        target.stop()
    assert target.accepted == 1 and outcome.kind == "retry", outcome


def test_a_job_text_cannot_forge_fields_of_the_delivery() -> None:
    """Promise: a delivery cannot be forged by a job's text: quotes, newlines, a second JSON document and
    header-like lines in the text stay inside ``text``; the body's thread is the runner's."""
    got: list[tuple[bytes, bytes]] = []

    def capture(conn: socket.socket, first: bytes) -> None:
        conn.settimeout(2)
        data = first
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += conn.recv(65536)
        got.append((head, body))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    rx = RawReceiver(capture)
    evil = ('", "thread": "api:alice", "id": 1, "x": "\r\nRunner-Signature: t=1,v1=00\r\n\r\n{"thread":"api:alice"}'
            "\u2028\u2029\x7f")
    try:
        outcome, _ = _send(_sender(), rx.url, text=evil)
    finally:
        rx.stop()
    assert outcome.kind == "sent", outcome
    [(head, body)] = got
    doc = json.loads(body)
    assert doc["thread"] == THREAD and doc["id"] == 7 and doc["text"] == evil
    assert head.count(b"Runner-Signature") == 1
    sig = re.search(rb"Runner-Signature: (\S+)", head).group(1).decode()  # type: ignore[union-attr]
    assert webhook.verify(SECRET, sig, body)
    assert not webhook.verify(SECRET, sig, body.replace(b"api:bob", b"api:alice"))


# --- the signature -------------------------------------------------------------------------------

def test_a_signature_cannot_be_reused_for_another_body_or_time() -> None:
    """Promise: a signature cannot be reused for another body: not with the body changed, with the
    timestamp moved (the dot-separated prefix), with v1 entries shuffled in, or past the tolerance."""
    body, now = b'{"id":1,"text":"pay 10"}', 1_800_000_000
    header = webhook.sign(SECRET, body, timestamp=now)
    assert webhook.verify(SECRET, header, body, now=now)
    v1 = header.partition(",v1=")[2]
    assert not webhook.verify(SECRET, header, b'{"id":1,"text":"pay 99"}', now=now)
    assert not webhook.verify(SECRET, f"t={now + 1},v1={v1}", body, now=now)
    assert not webhook.verify(SECRET, f"t={now // 10},v1={v1}", str(now % 10).encode() + b"." + body, now=now // 10)
    assert not webhook.verify(SECRET, f"t={now},t={now},v1={v1}", body, now=now)
    assert not webhook.verify(SECRET, header, body, now=now + webhook.TOLERANCE_SECONDS + 1)
    assert not webhook.verify(SECRET, f"t={now},v1={v1.upper()}", body, now=now)
    assert not webhook.verify("whsec_other", header, body, now=now)


HOSTILE_HEADERS = ["t=\u00b2,v1=" + "0" * 64, "t=" + "9" * 5000 + ",v1=" + "0" * 64, "t=\u0661\u0662,v1=" + "0" * 64,
                   "", ",,,", "t", "t=", "v1=", "t=1," * 10000, "t=-1,v1=00", "t=1e9,v1=" + "0" * 64, "\x00" * 100]


@pytest.mark.parametrize("header", HOSTILE_HEADERS, ids=[repr(h)[:30] for h in HOSTILE_HEADERS])
def test_verify_refuses_a_hostile_signature_header_without_raising(header: str) -> None:
    """Promise: a receiver checks a delivery with runner.webhook.verify, which answers whether it signs
    the body: a hostile header (a superscript digit, which str.isdigit accepts and int refuses; a
    timestamp of 5000 digits, past int's conversion limit) must be False, not a ValueError that turns
    the receiver's check into its 500."""
    assert webhook.verify(SECRET, header, b"{}") is False


# --- the deliverer, over the real outbox ---------------------------------------------------------

@pytest.fixture
def s(settings: Settings) -> Settings:
    return settings.with_(webhook_allow_addresses=("127.0.0.1/32:*",), lease_seconds=6, webhook_timeout=1.0,
                          poll_interval=1.0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET).start()
    yield r
    r.release.set()
    r.stop()


class RealDeliverer(Deliverer):
    """A deliverer with the runner's own backoff (2 s doubling), not the delivery tests' compressed one."""

    def __init__(self, s: Settings, db: Database, name: str) -> None:
        self.sender = hooks.WebhookSender(s.webhook_policy, config=hooks.WebhookConfig(
            request_timeout=1.0, lease_seconds=s.lease_seconds))
        self.loop = hooks.webhook_delivery(delivery_store(db, s), self.sender, name, poll_interval=1.0)
        self.thread = threading.Thread(target=hooks.run_blocking, args=(self.loop, self.sender), daemon=True)
        self.thread.start()


def _holds_within(predicate: Callable[[], bool], seconds: float) -> bool:
    """Whether ``predicate`` comes true within ``seconds`` (polled; False when the time is up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _requests_to(receiver: Receiver, path: str) -> int:
    with receiver.lock:
        return sum(1 for p, _ in receiver.requests if p == path)


def test_a_receiver_answering_retry_after_zero_cannot_spin_the_deliverer(s: Settings, db: Database,
                                                                        receiver: Receiver) -> None:
    """Promise: a receiver cannot harm the runner. A 429 (or 503) with ``Retry-After: 0`` is honoured as
    is: no floor under it, so a receiver that always says so is asked again at once, forever, each try a
    claim, a POST and a record in Postgres (a busy loop the receiver drives). With the runner's backoff
    (2 s doubling) a message retried for 4 s should see at most a handful of attempts."""
    set_hook(db, "api:hot", f"{receiver.url}/hot")
    receiver.always["/hot"] = "429"  # answered with Retry-After: 0
    queue(db, "api:hot", 1)
    d = RealDeliverer(s, db, "runner-1")
    try:
        wait_for(lambda: _requests_to(receiver, "/hot") >= 1, 20, "the first attempt")
        first = _requests_to(receiver, "/hot")
        spun = _holds_within(lambda: _requests_to(receiver, "/hot") - first >= 8, 4.0)
        attempts = _requests_to(receiver, "/hot") - first
    finally:
        d.stop()
    assert not spun, f"{attempts} more attempts in 4 s: Retry-After: 0 is obeyed with no floor"


def test_one_threads_hostile_receiver_does_not_delay_another_thread(s: Settings, db: Database,
                                                                   receiver: Receiver) -> None:
    """Promise: one thread's bad receiver must not delay other threads' delivery: beside a thread whose
    receiver hangs, one that drips, and one that answers 429 Retry-After: 0, a good thread's messages
    arrive promptly, in order, once each."""
    drip = RawReceiver(_drip)
    try:
        set_hook(db, "api:hang", f"{receiver.url}/hang")
        receiver.always["/hang"] = "hang"
        set_hook(db, "api:hot", f"{receiver.url}/hot")
        receiver.always["/hot"] = "429"
        set_hook(db, "api:drip", drip.url)
        for t in ("api:hang", "api:hot", "api:drip"):
            queue(db, t, 3)
        set_hook(db, "api:good", f"{receiver.url}/good")
        d = RealDeliverer(s, db, "runner-1")
        try:
            wait_for(lambda: _requests_to(receiver, "/hot") >= 2 and _requests_to(receiver, "/hang") >= 1, 20,
                     "the bad receivers being tried")
            started = time.monotonic()
            good = queue(db, "api:good", 5)
            wait_for(lambda: statuses(db, good) == ["sent"] * 5, 15, "the good thread's messages")
            took = time.monotonic() - started
        finally:
            d.stop()
    finally:
        drip.stop()
    assert receiver.ids("api:good") == good and receiver.duplicates == []
    assert took < 5.0, f"the good thread waited {took:.1f} s"


def test_a_bad_port_accepted_earlier_fails_with_a_sentence_not_an_unexpected_error_forever(
        s: Settings, db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Promise: every error a user sees is an actionable sentence; bad input is refused. A webhook URL
    whose port is no port (``:abc``, which PATCH accepts today) ends in httpx.InvalidURL inside the
    sender: the loop records "unexpected error: InvalidURL", logs a traceback, and retries it every
    backoff_max (5 min) forever instead of failing the message saying the port is wrong."""
    caplog.set_level(logging.INFO)
    set_hook(db, "api:port", "https://hooks.example.com:abc/x")
    [mid] = queue(db, "api:port", 1)
    d = RealDeliverer(s, db, "runner-1")
    try:
        wait_for(lambda: rows(db, [mid])[0]["last_error"] or rows(db, [mid])[0]["status"] == "failed", 20,
                 "the message's first outcome")
    finally:
        d.stop()
    row = rows(db, [mid])[0]
    assert SECRET not in caplog.text and SECRET not in (row["last_error"] or "")
    assert row["status"] == "failed" and "unexpected error" not in (row["last_error"] or ""), dict(row)
    assert "Traceback" not in caplog.text
