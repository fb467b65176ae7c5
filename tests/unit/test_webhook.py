"""Webhook signatures and the URL policy (issue 14). Pure logic; delivery has its own integration test."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from runner import webhook
from runner.errors import ValidationError

SECRET = "whsec_test_secret"
BODY = b'{"kind": "message", "text": "hi"}'


def test_a_signature_verifies_and_is_the_documented_hmac() -> None:
    header = webhook.sign(SECRET, BODY, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"  # what the README's ten-line receiver computes
    assert webhook.verify(SECRET, header, BODY, now=1_700_000_010)


@pytest.mark.parametrize("change", ["body", "secret", "timestamp", "old", "future", "garbage", "empty"])
def test_a_changed_or_stale_delivery_does_not_verify(change: str) -> None:
    header = webhook.sign(SECRET, BODY, timestamp=1_700_000_000)
    body, secret, now = BODY, SECRET, 1_700_000_010
    if change == "body":
        body = BODY + b" "
    elif change == "secret":
        secret = "whsec_other"
    elif change == "timestamp":
        header = header.replace("t=1700000000", "t=1700000001")
    elif change == "old":
        now = 1_700_000_000 + webhook.TOLERANCE_SECONDS + 1
    elif change == "future":
        now = 1_700_000_000 - webhook.TOLERANCE_SECONDS - 1
    elif change == "garbage":
        header = "t=abc,v1=zz"
    else:
        header = ""
    assert not webhook.verify(secret, header, body, now=now)


def test_any_of_several_signatures_verifies_so_secrets_can_be_rotated() -> None:
    old = webhook.sign("whsec_old", BODY, timestamp=1_700_000_000)
    new = webhook.sign(SECRET, BODY, timestamp=1_700_000_000)
    both = old + "," + new.split(",", 1)[1]
    assert webhook.verify(SECRET, both, BODY, now=1_700_000_000)
    assert webhook.verify("whsec_old", both, BODY, now=1_700_000_000)


def test_new_secrets_differ_and_are_prefixed() -> None:
    a, b = webhook.new_secret(), webhook.new_secret()
    assert a != b and a.startswith("whsec_") and len(a) > 40


POLICY = webhook.UrlPolicy(allow=("*",), allow_addresses=())


@pytest.mark.parametrize("url", ["https://hooks.example.com/runner", "https://example.com:8443/x?y=1",
                                 "HTTPS://Hooks.Example.COM/a"])
def test_public_https_urls_are_accepted(url: str) -> None:
    assert POLICY.check(url).startswith("https://")


@pytest.mark.parametrize("url, why", [
    ("http://hooks.example.com/x", "https"),
    ("ftp://example.com/x", "https"),
    ("https://127.0.0.1/x", "operator"),
    ("https://10.1.2.3/x", "operator"),
    ("https://169.254.169.254/latest", "operator"),
    ("https://[::1]/x", "operator"),
    ("https://[::ffff:127.0.0.1]/x", "operator"),
    ("https://localhost/x", "not a public host name"),
    ("https://user:pw@example.com/x", "credentials"),
    ("https:///x", "no host"),
    ("https://exa mple.com/x", "spaces"),
    ("https://exa_mple.com/x", "not a public host name"),
    ("https://example.com/" + "a" * 3000, "long"),
    ("https://example.com/\x00", "control"),
    ("", "https"),
])
def test_refused_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        POLICY.check(url)


def test_hosts_outside_the_operators_patterns_are_refused() -> None:
    policy = webhook.UrlPolicy(allow=("*.example.com",), allow_addresses=())
    assert policy.check("https://hooks.example.com/x")
    with pytest.raises(ValidationError, match=r"outside what the operator allows: \*\.example\.com"):
        policy.check("https://evil.test/x")
    with pytest.raises(ValidationError, match="no webhook"):
        webhook.UrlPolicy(allow=(), allow_addresses=()).check("https://hooks.example.com/x")


def test_an_address_the_operator_lists_is_allowed_over_http_too() -> None:
    policy = webhook.UrlPolicy(allow=("*",), allow_addresses=("127.0.0.1:8080",))
    assert policy.check("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"
    with pytest.raises(ValidationError, match="operator"):
        policy.check("http://127.0.0.2:8080/hook")


@pytest.mark.parametrize(("listed", "url", "ok"), [
    ("127.0.0.1", "http://127.0.0.1/hook", True),           # a bare address: the web's ports only
    ("127.0.0.1", "https://127.0.0.1/hook", True),
    ("127.0.0.1", "http://127.0.0.1:5432/hook", False),     # never the host's other services
    ("127.0.0.1:9000", "http://127.0.0.1:9000/", True),
    ("127.0.0.1:9000", "http://127.0.0.1:9001/", False),
    ("127.0.0.1:*", "http://127.0.0.1:22/", True),          # every port, when the operator says so
    ("[::1]:9000", "http://[::1]:9000/", True),
    ("[::1]:9000", "http://[::1]:22/", False),
    ("10.0.0.0/8:*", "http://10.1.2.3:8080/", True),
])
def test_a_listed_address_opens_only_the_ports_listed(listed: str, url: str, ok: bool) -> None:
    policy = webhook.UrlPolicy(allow=("*",), allow_addresses=(listed,))
    if ok:
        assert policy.check(url) == url
    else:
        with pytest.raises(ValidationError, match="is not open to webhooks"):
            policy.check(url)
    host, port = httpx_split(url)
    assert policy.address_allowed(host, port) is ok  # the same rule at delivery, for the resolved address


def httpx_split(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


@pytest.mark.parametrize("entry", ["127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", "[::1]", "::1:80:", "localhost:80"])
def test_a_bad_allowed_address_is_refused_at_start_up(entry: str) -> None:
    from runner.errors import ConfigError
    from runner.settings import Settings

    with pytest.raises(ConfigError, match="RUNNER_WEBHOOK_ALLOW_ADDRESSES: .* with an optional port"):
        Settings.from_env({"RUNNER_ID": "x", "RUNNER_WEBHOOK_ALLOW_ADDRESSES": entry})


def test_a_public_address_needs_an_operator_who_allows_any_host() -> None:
    with pytest.raises(ValidationError, match="allows only host names matching"):
        webhook.UrlPolicy(allow=("*.example.com",), allow_addresses=()).check("https://1.1.1.1/")
    assert webhook.UrlPolicy(allow=("*",), allow_addresses=()).check("https://1.1.1.1/") == "https://1.1.1.1/"


@pytest.mark.parametrize("address, ok", [
    ("93.184.216.34", True), ("2606:2800:220:1::1", True), ("127.0.0.1", False), ("10.0.0.1", False),
    ("192.168.1.1", False), ("169.254.169.254", False), ("::1", False), ("fe80::1", False),
    ("::ffff:10.0.0.1", False), ("100.64.0.1", False), ("0.0.0.0", False),
])
def test_resolved_addresses_must_be_public_unless_listed(address: str, ok: bool) -> None:
    assert POLICY.address_allowed(address) is ok
    assert webhook.UrlPolicy(allow=("*",), allow_addresses=(address,)).address_allowed(address)


def test_the_operators_webhook_settings_are_read_and_checked() -> None:
    from runner.errors import ConfigError
    from runner.settings import Settings

    s = Settings.from_env({"RUNNER_ID": "x", "RUNNER_WEBHOOK_ALLOW": "*.example.com",
                           "RUNNER_WEBHOOK_ALLOW_ADDRESSES": "127.0.0.1,10.0.0.0/8",
                           "RUNNER_WEBHOOK_CHANNELS": "api=https://hooks.example.com/all",
                           "RUNNER_WEBHOOK_SECRET": "s" * 16})
    assert s.webhook_channel_urls() == {"api": "https://hooks.example.com/all"}
    assert s.webhook_policy.address_allowed("10.1.2.3") and s.webhook_request_timeout == 10
    assert "s" * 16 not in repr(s)
    for env, says in [
        ({"RUNNER_WEBHOOK_CHANNELS": "api=https://hooks.example.com/all"}, "RUNNER_WEBHOOK_SECRET is not"),
        ({"RUNNER_WEBHOOK_CHANNELS": "https://hooks.example.com/all"}, "is not channel=url"),
        ({"RUNNER_WEBHOOK_CHANNELS": "api=https://10.0.0.1/x", "RUNNER_WEBHOOK_SECRET": "s" * 16}, "(api)"),
        ({"RUNNER_WEBHOOK_SECRET": "short"}, "too short"),
        ({"RUNNER_WEBHOOK_ALLOW_ADDRESSES": "localhost"}, "not an IP address or network"),
        ({"RUNNER_WEBHOOK_TIMEOUT": "30"}, "shorter than half of RUNNER_LEASE_SECONDS"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            Settings.from_env({"RUNNER_ID": "x", **env})
    assert Settings.from_env({"RUNNER_ID": "x", "RUNNER_LEASE_SECONDS": "6"}).webhook_request_timeout == 2
