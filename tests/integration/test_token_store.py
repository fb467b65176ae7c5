"""API tokens in a real Postgres (issue 14): only hashes are stored, a token reaches what its scope
says, and a revoked or expired one is refused at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from runner import tokens
from runner.errors import NotFound, ValidationError
from runner.store import Database, Store


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)


def _make(store: Store, name: str, scope: tokens.Scope, expires: timedelta | None = None) -> str:
    made = tokens.new_token()
    store.create_token(made, name=name, scope=scope, expires=expires)
    return made.text


THREAD = tokens.Scope(thread="telegram:42", admin=False, read_only=False)


def test_a_token_is_found_by_its_text_and_its_secret_is_not_stored(store: Store, db: Database) -> None:
    text = _make(store, "laptop", THREAD)
    found = store.token_scope(text)
    assert found is not None and found[1] == THREAD
    rows = db.query("SELECT * FROM api_tokens")
    secret = text.split("_", 2)[2]
    assert len(rows) == 1 and all(secret not in str(v) for v in rows[0].values())
    assert bytes(rows[0]["secret_sha256"]) == tokens.hash_secret(secret)


def test_a_wrong_secret_with_a_real_public_id_is_refused(store: Store) -> None:
    text = _make(store, "laptop", THREAD)
    forged = text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")
    assert store.token_scope(forged) is None
    assert store.token_scope(tokens.new_token().text) is None  # well formed, never issued
    assert store.token_scope("not a token") is None


def test_scopes_round_trip(store: Store) -> None:
    admin = tokens.Scope(thread=None, admin=True, read_only=False)
    reader = tokens.Scope(thread="telegram:42", admin=False, read_only=True)
    a, r = _make(store, "ops", admin), _make(store, "reader", reader)
    assert store.token_scope(a)[1] == admin  # type: ignore[index]
    assert store.token_scope(r)[1] == reader  # type: ignore[index]


def test_revoked_is_refused_at_once_and_its_name_may_be_reused(store: Store) -> None:
    text = _make(store, "laptop", THREAD)
    with pytest.raises(ValidationError, match="a token named 'laptop' exists: revoke it first"):
        _make(store, "laptop", THREAD)
    store.revoke_token("laptop")
    assert store.token_scope(text) is None
    again = _make(store, "laptop", THREAD)
    assert store.token_scope(again) is not None and store.token_scope(text) is None
    with pytest.raises(NotFound, match="no live token is named 'nope'"):
        store.revoke_token("nope")
    names = [(r["name"], r["revoked_at"] is None) for r in store.list_tokens(include_revoked=True)]
    assert names == [("laptop", False), ("laptop", True)] or names == [("laptop", True), ("laptop", False)]
    assert [r["name"] for r in store.list_tokens()] == ["laptop"]


def test_an_expired_token_is_refused(store: Store, db: Database) -> None:
    text = _make(store, "short", THREAD, expires=timedelta(hours=1))
    assert store.token_scope(text) is not None
    db.query("UPDATE api_tokens SET expires_at = now() - interval '1 second'")
    assert store.token_scope(text) is None
    assert store.list_tokens()[0]["expired"] is True


def test_last_used_is_noted_at_most_once_a_minute(store: Store, db: Database) -> None:
    text = _make(store, "laptop", THREAD)
    found = store.token_scope(text)
    assert found is not None
    store.note_token_used(found[0])
    first = db.query("SELECT last_used_at FROM api_tokens")[0]["last_used_at"]
    assert first is not None
    store.note_token_used(found[0])
    assert db.query("SELECT last_used_at FROM api_tokens")[0]["last_used_at"] == first
