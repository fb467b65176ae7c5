"""A thread's settings through the HTTP API (issue 14): its time zone and its webhook. The secret is
the runner's, shown once (when first set or rotated), never in GET nor in the log; a URL outside the
operator's policy is a 422 saying why; read-only is 403, another thread's 404."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store

from .test_http_api import THREAD, _problem, _token

HOOK = "https://hooks.example.com/runner"
PATH = f"/v1/threads/{THREAD}/settings"


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)


@pytest.fixture
def client(settings: Settings, db: Database, store: Store) -> Iterator[httpx.Client]:
    s = settings.with_(webhook_allow=("*.example.com",), webhook_allow_addresses=("127.0.0.1:*",),
                       webhook_channels=("api=https://hooks.example.com/all",), webhook_secret="s" * 20)
    server = HttpServer(create_app(s, Jobs(s, db), store), "127.0.0.1:0")
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as c:
            yield c
    finally:
        server.stop()


def test_setting_a_webhook_shows_its_secret_once_and_get_never(client: httpx.Client, store: Store,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    auth = _token(store, "t")
    caplog.set_level(logging.DEBUG)
    first = client.get(PATH, headers=auth).json()
    assert first == {"timezone": "UTC", "webhook_url": None, "webhook": None, "webhook_secret": None}
    made = client.patch(PATH, headers=auth, json={"webhook_url": HOOK})
    assert made.status_code == 200, made.text
    secret = made.json()["webhook_secret"]
    assert secret.startswith("whsec_") and made.json()["webhook"] == "thread"
    again = client.patch(PATH, headers=auth, json={"webhook_url": HOOK + "/v2"}).json()
    assert again["webhook_url"] == HOOK + "/v2" and again["webhook_secret"] is None  # the same secret
    got = client.get(PATH, headers=auth)
    assert got.json()["webhook_url"] == HOOK + "/v2" and secret not in got.text
    assert store.thread_settings(THREAD)["has_secret"]
    rotated = client.post(f"{PATH}/webhook-secret", headers=auth).json()["webhook_secret"]
    assert rotated.startswith("whsec_") and rotated != secret
    removed = client.patch(PATH, headers=auth, json={"webhook_url": None}).json()
    assert removed["webhook_url"] is None and removed["webhook"] is None
    assert not store.thread_settings(THREAD)["has_secret"]
    _problem(client.post(f"{PATH}/webhook-secret", headers=auth), 409, "set webhook_url first")
    assert secret not in caplog.text and rotated not in caplog.text


@pytest.mark.parametrize("url, says", [
    ("http://hooks.example.com/x", "use https://"),
    ("https://evil.test/x", "outside what the operator allows"),
    ("https://10.0.0.1/x", "private or reserved address"),
    ("https://user:pw@hooks.example.com/x", "credentials"),
])
def test_a_url_the_policy_refuses_is_a_422_saying_why(client: httpx.Client, store: Store, url: str,
                                                      says: str) -> None:
    resp = client.patch(PATH, headers=_token(store, "t"), json={"webhook_url": url})
    _problem(resp, 422, says)
    assert "pw" not in resp.text or says == "credentials"
    assert store.thread_settings(THREAD)["webhook_url"] is None


def test_the_time_zone_is_validated_and_used_by_schedules_that_give_none(client: httpx.Client, store: Store) -> None:
    auth = _token(store, "t")
    _problem(client.patch(PATH, headers=auth, json={"timezone": "Mars/Olympus"}), 422, "Mars/Olympus")
    assert client.patch(PATH, headers=auth, json={"timezone": "Europe/Berlin"}).json()["timezone"] == "Europe/Berlin"
    job = client.post(f"/v1/threads/{THREAD}/jobs", headers=auth,
                      json={"name": "j", "script": "pass", "when": "tomorrow 9am"}).json()
    assert job["timezone"] == "Europe/Berlin"


def test_read_only_is_403_another_thread_404_and_admin_reaches_it(client: httpx.Client, store: Store) -> None:
    reader, other, admin = _token(store, "r", read_only=True), _token(store, "o", thread="telegram:43"), \
        _token(store, "a", thread=None)
    assert client.get(PATH, headers=reader).status_code == 200
    _problem(client.patch(PATH, headers=reader, json={"webhook_url": HOOK}), 403, "read-only")
    _problem(client.post(f"{PATH}/webhook-secret", headers=reader), 403, "read-only")
    for method in ("GET", "PATCH"):
        _problem(client.request(method, PATH, headers=other, json={"webhook_url": HOOK}), 404, "no thread")
    _problem(client.post(f"{PATH}/webhook-secret", headers=other), 404, "no thread")
    assert store.thread_settings(THREAD)["webhook_url"] is None
    made = client.patch(PATH, headers=admin, json={"webhook_url": "http://127.0.0.1:9/hook"}).json()
    assert made["webhook_url"] == "http://127.0.0.1:9/hook" and made["webhook_secret"]


def test_a_thread_of_a_channel_with_a_webhook_says_so(client: httpx.Client, store: Store) -> None:
    got = client.get("/v1/threads/api:bob/settings", headers=_token(store, "a", thread=None)).json()
    assert got["webhook"] == "channel" and got["webhook_url"] is None
    _problem(client.patch(PATH, headers=_token(store, "t"), json={"colour": "red"}), 422, "colour")


def test_the_typed_client_reads_and_changes_the_settings(client: httpx.Client, store: Store) -> None:
    """runner.client.Client speaks the settings endpoints with the same models (and the same refusals)."""
    from runner.client import ApiError, Client

    _, text = _token(store, "c")["Authorization"].split(" ", 1)
    with Client(str(client.base_url), text) as runner:
        assert runner.thread_settings().webhook_url is None
        made = runner.update_thread_settings(webhook_url=HOOK, timezone="Europe/Berlin")
        assert made.webhook == "thread" and made.timezone == "Europe/Berlin"
        assert made.webhook_secret is not None and made.webhook_secret.startswith("whsec_")
        assert runner.rotate_webhook_secret() != made.webhook_secret
        assert runner.thread_settings().webhook_secret is None
        with pytest.raises(ApiError) as refused:
            runner.update_thread_settings(webhook_url="http://10.0.0.1/hook")
        assert refused.value.status == 422 and "private or reserved address" in refused.value.detail
        assert runner.update_thread_settings(webhook_url=None).webhook is None


def test_authenticated_answers_are_never_cached(client: httpx.Client, store: Store) -> None:
    """An answer that shows a secret (or any thread's data) says Cache-Control: no-store."""
    auth = _token(store, "nc")
    made = client.patch(PATH, headers=auth, json={"webhook_url": HOOK})
    assert made.json()["webhook_secret"] and made.headers["cache-control"] == "no-store"
    for resp in (client.get(PATH, headers=auth), client.get(f"/v1/threads/{THREAD}/jobs", headers=auth),
                 client.get("/v1/me", headers=auth)):
        assert resp.headers["cache-control"] == "no-store", resp.headers
