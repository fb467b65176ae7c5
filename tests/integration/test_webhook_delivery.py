"""Webhook delivery (issue 14): a thread's messages POSTed, signed, to a real receiver on 127.0.0.1
through its faults (500s, a receiver that hangs past the timeout, refused connections, a restart of
the receiver and of the runner's deliverer mid-stream): every message accepted exactly once by its
idempotency key, in order per thread, each signature verified; 4xx, redirects, a wrong secret and a
refused address fail the message with the reason recorded. Real parts: Postgres, httpx, HTTP."""

from __future__ import annotations

import base64
import io
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import webhook
from runner.app import Application, delivery_store
from runner.outbox import ConsoleSender, OutboxLoop
from runner.outbox import webhook as hooks
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store

from ..waiting import wait_for
from ..webhookreceiver import Receiver

SECRET = webhook.new_secret()


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


def make_sender(s: Settings, **kw: Any) -> hooks.WebhookSender:
    cfg = hooks.WebhookConfig(request_timeout=1.0, lease_seconds=s.lease_seconds, backoff_base=0.05, backoff_max=0.3)
    return hooks.WebhookSender(s.webhook_policy, s.webhook_channel_urls(), s.webhook_secret, cfg, **kw)


class Deliverer:
    """One runner's webhook deliverer, on a thread of its own, as ``runner up`` runs it."""

    def __init__(self, s: Settings, db: Database, name: str, poll: float = 1.0, **kw: Any) -> None:
        self.sender = make_sender(s, **kw)
        self.loop: OutboxLoop = hooks.webhook_delivery(delivery_store(db, s), self.sender, name, poll_interval=poll)
        self.thread = threading.Thread(target=hooks.run_blocking, args=(self.loop, self.sender), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


def set_hook(db: Database, thread: str, url: str, secret: str = SECRET) -> None:
    store = Store(db)
    store.set_thread_webhook(thread, url, secret)
    with db.transaction() as conn:  # the test's own secret, so the receiver knows it
        conn.execute("UPDATE threads SET webhook_secret = %s WHERE thread_id = %s", (secret, thread))


def queue(db: Database, thread: str, n: int, attachment: bool = False) -> list[int]:
    ids = []
    with db.transaction() as conn:
        for i in range(n):
            row = conn.execute("INSERT INTO outbox (job_id, kind, thread_id, job_name, text) "
                               "VALUES (NULL, 'message', %s, 'report', %s) RETURNING id",
                               (thread, f"{thread} message {i}")).fetchone()
            ids.append(row["id"])
            if attachment:
                conn.execute("INSERT INTO outbox_attachments (outbox_id, filename, content) VALUES (%s, 'a.bin', %s)",
                             (row["id"], bytes(range(256))))
    return ids


def rows(db: Database, ids: list[int]) -> list[dict[str, Any]]:
    with db.transaction() as conn:
        return conn.execute("SELECT * FROM outbox WHERE id = ANY(%s) ORDER BY id", (ids,)).fetchall()


def statuses(db: Database, ids: list[int]) -> list[str]:
    return [r["status"] for r in rows(db, ids)]


def test_every_message_arrives_once_in_order_through_500s_hangs_refusals_and_restarts(
        s: Settings, db: Database, receiver: Receiver) -> None:
    threads = ["api:a", "api:b", "api:c"]
    for t in threads:
        set_hook(db, t, f"{receiver.url}/{t}")
    set_hook(db, "api:slow", f"{receiver.url}/slow")
    receiver.always["/slow"] = "hang"  # a receiver that never answers holds up only its own thread
    slow = queue(db, "api:slow", 2)
    receiver.faults.extend(["500"] * 6 + ["hang", "hang", "503", "429"] + ["ok"] * 8 + ["down"])
    ids = {t: queue(db, t, 12, attachment=(t == "api:a")) for t in threads}
    everything = [i for t in threads for i in ids[t]]

    first = Deliverer(s, db, "runner-1")
    assert receiver.went_down.wait(30), "the receiver was never asked for its ninth good answer"
    wait_for(lambda: any("was refused or the host is unreachable" in (r["last_error"] or "")
                         for r in rows(db, everything)), 20, "a refused connection recorded as a retry")
    first.stop()  # the runner goes down mid-stream
    receiver.start()
    second = Deliverer(s, db, "runner-2")
    try:
        wait_for(lambda: statuses(db, everything) == ["sent"] * len(everything), 60, "every message sent")
        assert statuses(db, slow)[0] in ("pending", "sending") and not receiver.ids("api:slow")
    finally:
        second.stop()

    assert sorted(receiver.ids()) == sorted(everything)  # complete, and each id accepted once
    assert receiver.duplicates == []  # nothing answered 200 was sent again
    for t in threads:
        assert receiver.ids(t) == ids[t]  # in order per thread
    doc = next(d for d in receiver.accepted if d["id"] == ids["api:a"][0])
    assert doc["thread"] == "api:a" and doc["job_name"] == "report" and doc["kind"] == "message"
    assert doc["text"] == "api:a message 0" and doc["created_at"].endswith("+00:00")
    assert [(a["name"], base64.b64decode(a["content"])) for a in doc["attachments"]] == [("a.bin", bytes(range(256)))]
    headers = [h for p, h in receiver.requests if p == "/api:a" and h.get("Idempotency-Key") == str(doc["id"])]
    assert headers and all(h["Runner-Signature"].startswith("t=") for h in headers)


def test_a_receiver_with_another_secret_rejects_them_and_its_answer_is_recorded(
        s: Settings, db: Database, receiver: Receiver) -> None:
    set_hook(db, "api:w", f"{receiver.url}/w", secret=webhook.new_secret())
    ids = queue(db, "api:w", 2)
    d = Deliverer(s, db, "runner-1")
    try:
        wait_for(lambda: statuses(db, ids) == ["failed", "failed"], 20, "both failed")
    finally:
        d.stop()
    assert all(r["last_error"] == "the webhook receiver refused it with 401: bad signature" for r in rows(db, ids))
    assert receiver.ids() == []


@pytest.mark.parametrize("fault, why", [
    ("422", "the webhook receiver refused it with 422: receiver says 422"),
    ("302", "the webhook receiver answered 302, a redirect to /elsewhere: redirects are not followed"),
])
def test_a_4xx_or_a_redirect_fails_the_message_and_the_next_one_goes(
        s: Settings, db: Database, receiver: Receiver, fault: str, why: str) -> None:
    set_hook(db, "api:x", f"{receiver.url}/x")
    receiver.faults.append(fault)
    ids = queue(db, "api:x", 2)
    d = Deliverer(s, db, "runner-1")
    try:
        wait_for(lambda: statuses(db, ids) == ["failed", "sent"], 20, "the first failed, the second sent")
    finally:
        d.stop()
    assert rows(db, ids)[0]["last_error"].startswith(why)
    assert [p for p, _ in receiver.requests] == ["/x", "/x"]  # the redirect's Location was never asked for


def test_a_host_resolving_to_an_address_not_allowed_is_refused_at_delivery(
        s: Settings, db: Database, receiver: Receiver) -> None:
    answers = {"hooks.example.test": ["127.0.0.1", "10.0.0.5"]}

    async def resolver(host: str, port: int) -> list[str]:  # the name now points at a private address too
        return answers[host]

    with db.transaction() as conn:  # a URL the policy accepted when it was set
        conn.execute("INSERT INTO threads (thread_id, webhook_url, webhook_secret) VALUES ('api:r', %s, %s)",
                     (f"https://hooks.example.test:{receiver.port}/r", SECRET))
    ids = queue(db, "api:r", 1)
    d = Deliverer(s, db, "runner-1", resolver=resolver)
    try:
        wait_for(lambda: statuses(db, ids) == ["failed"], 20, "the message failed")
    finally:
        d.stop()
    assert "resolves to 10.0.0.5, a private or reserved address" in rows(db, ids)[0]["last_error"]
    assert receiver.requests == []  # nothing connected


def test_a_channel_webhook_takes_every_thread_of_the_channel_and_a_threads_own_wins(
        s: Settings, db: Database, receiver: Receiver) -> None:
    own = Receiver(SECRET + "x").start()
    try:
        cs = s.with_(webhook_channels=(f"api={receiver.url}/channel",), webhook_secret=SECRET)
        set_hook(db, "api:own", f"{own.url}/own", secret=SECRET + "x")
        ids = queue(db, "api:one", 2) + queue(db, "api:own", 1)
        other = queue(db, "cli:z", 1)  # another channel: not the webhook's
        d = Deliverer(cs, db, "runner-1")
        try:
            wait_for(lambda: statuses(db, ids) == ["sent"] * 3, 20, "the channel's messages sent")
        finally:
            d.stop()
        assert receiver.ids() == ids[:2] and own.ids() == ids[2:]
        assert statuses(db, other) == ["pending"]
    finally:
        own.stop()


def test_the_console_and_telegram_claims_leave_webhook_threads_alone(s: Settings, db: Database,
                                                                      receiver: Receiver) -> None:
    set_hook(db, "api:hooked", f"{receiver.url}/h")
    hooked, plain = queue(db, "api:hooked", 2), queue(db, "api:plain", 1)
    out = io.StringIO()
    assert OutboxLoop(delivery_store(db, s), ConsoleSender(out), "runner-1", lease_seconds=6).deliver_due() == 1
    assert statuses(db, plain) == ["sent"] and statuses(db, hooked) == ["pending", "pending"]
    assert "api:hooked" not in out.getvalue()
    with db.transaction() as conn:  # a Telegram thread that gets a webhook: its chat's claims skip it
        conn.execute("UPDATE outbox SET chat_id = '42' WHERE thread_id = 'api:hooked'")
    assert delivery_store(db, s).chats_with_due_messages() == []


def test_runner_up_delivers_by_webhook_without_a_bot_token_and_prints_the_rest(
        s: Settings, jobs: Jobs, db: Database, receiver: Receiver) -> None:
    set_hook(db, "api:hooked", f"{receiver.url}/h")
    for thread in ("api:hooked", "api:plain"):
        jobs.schedule_job(thread_id=thread, name="hello", at="now",
                          script_text=f"open('jobs/hello_message.txt', 'w').write('hello from {thread}')\n")
    out = io.StringIO()
    Application(s, burst=True, build_image=False, console=out).run()  # runs both, delivers, returns
    assert [d["text"] for d in receiver.accepted] == ["hello from api:hooked"]
    assert "| hello from api:plain" in out.getvalue() and "api:hooked" not in out.getvalue()

    later = queue(db, "api:hooked", 1)  # and the long-running runner delivers as messages come
    app = Application(s, build_image=False, console=out)
    runs = threading.Thread(target=app.run, daemon=True)
    runs.start()
    try:
        wait_for(lambda: receiver.ids()[-1:] == later, 30, "the new message delivered by the running runner")
        assert {p.name: p.status() for p in app.parts}["webhooks"] == "ok"
    finally:
        app.stop()
        runs.join(timeout=60)


def test_each_new_message_wakes_the_deliverer_at_once_not_at_the_poll_interval(
        s: Settings, db: Database, receiver: Receiver) -> None:
    """The LISTEN socket is read on every NOTIFY (psycopg's notifies(timeout=0) used to miss all but the first)."""
    set_hook(db, "api:n", f"{receiver.url}/n")
    d = Deliverer(s, db, "runner-1", poll=60.0)
    try:
        for _ in range(5):
            ids = queue(db, "api:n", 1)
            wait_for(lambda ids=ids: receiver.ids()[-1:] == ids, 10, "the message delivered well before the poll")
    finally:
        d.stop()


def _certificates(tmp: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``name`` signed by it (openssl), as a receiver's operator has."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", f"/CN={name}")
    (tmp / "ext.cnf").write_text(f"subjectAltName=DNS:{name}\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem",
        "-days", "2", "-extfile", "ext.cnf")
    return tmp / "ca.pem", tmp / "srv.pem", tmp / "srv.key"


def test_https_goes_to_the_checked_address_with_the_hosts_name_in_sni_host_and_certificate(
        s: Settings, db: Database, tmp_path: Path) -> None:
    name = "hooks.example.test"
    ca, cert, key = _certificates(tmp_path, name)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    tls = Receiver(SECRET, tls=server_tls).start()
    looked_up: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:  # the name's one address: this machine
        looked_up.append(host)
        return ["127.0.0.1"]

    try:
        with db.transaction() as conn:
            conn.execute("INSERT INTO threads (thread_id, webhook_url, webhook_secret) VALUES ('api:tls', %s, %s)",
                         (f"https://{name}:{tls.port}/hook", SECRET))
        ids = queue(db, "api:tls", 2)
        d = Deliverer(s, db, "runner-1", resolver=resolver, ssl_context=ssl.create_default_context(cafile=str(ca)))
        try:
            wait_for(lambda: statuses(db, ids) == ["sent", "sent"], 20, "both sent over TLS")
        finally:
            d.stop()
        assert tls.ids() == ids
        assert {h["Host"] for _, h in tls.requests} == {f"{name}:{tls.port}"}
        assert set(tls.sni) == {name} and set(looked_up) == {name}
    finally:
        tls.stop()
