"""API tokens (issue 14): their format, hashing, scope and expiry, and the limiter of failed sign-ins.
Pure logic: no database (tests/integration/test_token_store.py covers the table)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from runner import tokens
from runner.errors import ValidationError


def test_a_new_token_parses_back_and_only_its_hash_is_kept() -> None:
    made = tokens.new_token()
    assert made.text.startswith("rnr_")
    public_id, secret = tokens.parse(made.text)
    assert public_id == made.public_id
    assert secret not in made.text.split("_")[1]  # the public id is not the secret
    assert tokens.hash_secret(secret) == made.secret_hash
    assert secret.encode() not in made.secret_hash and made.secret_hash != secret.encode()


def test_two_tokens_differ() -> None:
    a, b = tokens.new_token(), tokens.new_token()
    assert a.text != b.text and a.public_id != b.public_id and a.secret_hash != b.secret_hash


@pytest.mark.parametrize("text", [
    "", "rnr_", "rnr__", "Bearer rnr_x_y", "rnr_abc", "xyz_0123456789abcdef_" + "A" * 43,
    "rnr_0123456789abcdef_" + "A" * 42, "rnr_0123456789abcdeg_" + "A" * 43, "rnr_0123456789abcdef_" + "A" * 4000,
    "rnr_0123456789abcdef_" + "A" * 42 + "\x00", "rnr_0123456789ABCDEF_" + "A" * 43,
])
def test_malformed_tokens_are_refused_before_any_lookup(text: str) -> None:
    assert tokens.parse(text) is None


def test_matching_is_by_hash_in_constant_time() -> None:
    made = tokens.new_token()
    _, secret = tokens.parse(made.text)
    assert tokens.matches(secret, made.secret_hash)
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert not tokens.matches(wrong, made.secret_hash)


@pytest.mark.parametrize("text, expected", [
    ("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    ("2w", timedelta(weeks=2)), (" 1d ", timedelta(days=1)), ("365d", timedelta(days=365)),
])
def test_expiry(text: str, expected: timedelta) -> None:
    assert tokens.parse_expiry(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "-1d", "90", "d", "1y", "1.5d", "99999d", "1d2h"])
def test_a_bad_expiry_says_what_to_write(text: str) -> None:
    with pytest.raises(ValidationError, match=r"write a number and a unit .*90d"):
        tokens.parse_expiry(text)


def test_scope_of_a_thread_token() -> None:
    scope = tokens.Scope(thread="telegram:42", admin=False, read_only=False)
    assert scope.reaches("telegram:42") and not scope.reaches("telegram:43")
    assert scope.may_write
    assert not tokens.Scope(thread="telegram:42", admin=False, read_only=True).may_write


def test_scope_of_an_admin_token() -> None:
    scope = tokens.Scope(thread=None, admin=True, read_only=False)
    assert scope.reaches("telegram:42") and scope.reaches("web:x")


def test_a_scope_is_either_a_thread_or_admin() -> None:
    with pytest.raises(ValueError):
        tokens.Scope(thread=None, admin=False, read_only=False)
    with pytest.raises(ValueError):
        tokens.Scope(thread="telegram:42", admin=True, read_only=False)


def test_failed_sign_ins_are_limited_per_address_and_recover() -> None:
    lim = tokens.FailureLimiter(burst=5, per_second=0.5)
    now = 1000.0
    for _ in range(5):
        assert lim.allowed("10.0.0.1", now)
        lim.failed("10.0.0.1", now)
    assert not lim.allowed("10.0.0.1", now)  # the sixth try inside the burst is refused
    assert lim.allowed("10.0.0.2", now)  # another address is not held back
    assert lim.retry_after("10.0.0.1", now) == pytest.approx(2.0)
    assert not lim.allowed("10.0.0.1", now + 1.9)
    assert lim.allowed("10.0.0.1", now + 2.0)  # one failure's worth has drained


def test_the_limiter_forgets_quiet_addresses() -> None:
    lim = tokens.FailureLimiter(burst=2, per_second=1.0, max_addresses=100)
    for i in range(1000):
        lim.failed(f"10.0.{i // 256}.{i % 256}", 1000.0 + i)
    assert len(lim) <= 100  # bounded memory, whatever an attacker sends


@pytest.mark.parametrize("name", ["laptop", "ci-1", "a.b_c", "x" * 64])
def test_good_names(name: str) -> None:
    assert tokens.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Laptop", "a b", "../x", "x" * 65, "é", "a\nb"])
def test_bad_names_say_what_to_use(name: str) -> None:
    with pytest.raises(ValidationError, match="lower-case letters"):
        tokens.validate_name(name)


def test_a_new_token_repr_hides_its_text() -> None:
    made = tokens.new_token()
    assert made.text not in repr(made) and made.text.split("_", 2)[2] not in repr(made)
