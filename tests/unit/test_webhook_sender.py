"""The webhook sender's pure parts: the body it signs, how it reads an answer (sent, retried, failed),
Retry-After, and the address check before any connection. Delivery over real HTTP is in
tests/integration/test_webhook_delivery.py."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from runner import webhook
from runner.outbox.webhook import (
    AddressRefused,
    GuardedBackend,
    WebhookConfig,
    WebhookSender,
    payload,
    retry_after,
)

POLICY = webhook.UrlPolicy(allow=("*",), allow_addresses=("127.0.0.1:*",))
MESSAGE = {"id": 7, "thread_id": "api:bob", "job_id": 3, "job_name": "report", "kind": "failure", "text": "é\nx",
           "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "attempts": 3}


def test_the_body_carries_every_documented_field_and_base64_attachments() -> None:
    body = payload(MESSAGE, [{"filename": "a.png", "content": memoryview(b"\x00\xff")}])
    assert json.loads(body) == {"id": 7, "thread": "api:bob", "job_id": 3, "job_name": "report", "kind": "failure",
                                "text": "é\nx", "attachments": [{"name": "a.png", "content": "AP8="}],
                                "created_at": "2026-01-02T03:04:05+00:00"}


@pytest.mark.parametrize("status, kind, says", [
    (200, "sent", None), (204, "sent", None),
    (500, "retry", "answered 500: boom"), (503, "retry", "answered 503"), (408, "retry", "408"), (429, "retry", "429"),
    (400, "failed", "refused it with 400: boom"), (401, "failed", "401"), (404, "failed", "404"),
    (301, "failed", "redirects are not followed"), (307, "failed", "a redirect to /there"),
])
def test_each_answer_is_sent_retried_or_failed(status: int, kind: str, says: str | None) -> None:
    sender = WebhookSender(POLICY)
    out = sender._outcome(MESSAGE, status, httpx.Headers({"Location": "/there"}), b"boom")
    assert out.kind == kind
    assert (out.error is None) if says is None else (says in (out.error or ""))


def test_an_answer_is_kept_short_and_its_control_characters_made_visible() -> None:
    sender = WebhookSender(POLICY, config=WebhookConfig(excerpt=20))
    out = sender._outcome(MESSAGE, 400, httpx.Headers(), b"\x1b[2Jgo away" + b"x" * 500)
    assert out.error is not None and "\x1b" not in out.error and len(out.error) < 80


def test_retry_after_is_honoured_up_to_the_cap_and_a_bad_one_is_ignored() -> None:
    assert retry_after("7", 300) == 7 and retry_after("9999", 300) == 300
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 50 <= (retry_after(later, 300) or 0) <= 60
    assert retry_after("soon", 300) is None and retry_after(None, 300) is None
    sender = WebhookSender(POLICY, config=WebhookConfig(backoff_max=30))
    assert sender._outcome(MESSAGE, 429, httpx.Headers({"Retry-After": "12"}), b"").delay == 12
    backoff = sender._outcome(MESSAGE, 503, httpx.Headers(), b"").delay  # attempt 3: 2 * 2**2 = 8, jittered
    assert 6.4 <= backoff <= 9.6


def test_a_thread_without_its_own_webhook_uses_its_channels_with_the_operators_secret() -> None:
    sender = WebhookSender(POLICY, {"api": "https://hooks.example.com/all"}, "op-secret-0123456789")
    assert sender.target(MESSAGE) == ("https://hooks.example.com/all", "op-secret-0123456789")
    own = {**MESSAGE, "webhook_url": "https://mine.example.com/", "webhook_secret": "whsec_mine"}
    assert sender.target(own) == ("https://mine.example.com/", "whsec_mine")
    assert sender.target({**MESSAGE, "thread_id": "telegram:1"}) is None


def test_every_resolved_address_is_checked_before_connecting() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return {"good.example.com": ["93.184.216.34"], "mixed.example.com": ["93.184.216.34", "169.254.169.254"],
                "local.example.com": ["127.0.0.1", "::1"]}[host]

    backend = GuardedBackend(POLICY, resolver)
    assert asyncio.run(backend.resolve("good.example.com", 443)) == ["93.184.216.34"]
    with pytest.raises(AddressRefused, match="169.254.169.254"):
        asyncio.run(backend.resolve("mixed.example.com", 443))
    with pytest.raises(AddressRefused, match="::1"):  # 127.0.0.1 is listed, ::1 is not
        asyncio.run(backend.resolve("local.example.com", 443))


def test_a_request_timeout_of_half_the_lease_or_more_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than half"):
        WebhookConfig(request_timeout=30, lease_seconds=60)
