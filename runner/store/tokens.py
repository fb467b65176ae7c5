"""The store's part for API tokens: create, look up a presented one, list and revoke."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .. import tokens
from ..errors import NotFound, ValidationError
from .base import StoreBase


class TokensStore(StoreBase):
    """Reads and writes of ``api_tokens`` (queries in ``sql/tokens.sql``). Secrets never come here:
    only their hashes."""

    def create_token(self, made: tokens.NewToken, *, name: str, scope: tokens.Scope,
                     expires: timedelta | None = None) -> dict[str, Any]:
        """Keep a new token's hash under ``name``; a name a live token already has is refused."""
        row = self.db.one("insert_token", {
            "public_id": made.public_id, "name": tokens.validate_name(name), "secret_sha256": made.secret_hash,
            "thread_id": scope.thread, "admin": scope.admin, "read_only": scope.read_only,
            "expires_seconds": expires.total_seconds() if expires is not None else None,
        })
        if row is None:
            raise ValidationError(f"a token named {name!r} exists: revoke it first "
                                  f"(`runner token revoke {name}`) or choose another --name")
        return row

    def token_scope(self, text: str) -> tuple[int, tokens.Scope] | None:
        """The row id and scope of a presented token if it is well formed, live and its secret
        matches; None otherwise (which of these failed is not told)."""
        parsed = tokens.parse(text)
        if parsed is None:
            return None
        public_id, secret = parsed
        row = self.db.one("live_token", {"public_id": public_id})
        if row is None or not tokens.matches(secret, bytes(row["secret_sha256"])):
            return None
        return row["id"], tokens.Scope(thread=row["thread_id"], admin=row["admin"], read_only=row["read_only"])

    def token_is_live(self, token_id: int) -> bool:
        """Whether the token of row ``token_id`` is neither revoked nor expired now."""
        return self.db.one("token_is_live", {"id": token_id}) is not None

    def note_token_used(self, token_id: int) -> None:
        self.db.all("token_used", {"id": token_id})

    def list_tokens(self, *, include_revoked: bool = False) -> list[dict[str, Any]]:
        return self.db.all("list_tokens", {"include_revoked": include_revoked})

    def revoke_token(self, name: str) -> dict[str, Any]:
        row = self.db.one("revoke_token", {"name": name})
        if row is None:
            raise NotFound(f"no live token is named {name!r}: `runner token list` shows them")
        return row
