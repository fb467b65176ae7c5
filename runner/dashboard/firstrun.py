"""How a person signs in to the dashboard the first time: what `runner up` says about it.

On embedded defaults (no DATABASE_URL: `make run` on a developer's machine) a runner that finds no live
admin token makes one, named ``dashboard``, and shows it once, on a line of its own after the first, as `runner token create`
would (only its hash is kept). With a database of the operator's own (compose, a server) nothing is
made: the line says which command makes a token."""

from __future__ import annotations

from .. import tokens
from ..errors import ValidationError
from ..settings import Settings
from ..store import Store

TOKEN_NAME = "dashboard"


def first_admin_token(settings: Settings, store: Store) -> str | None:
    """A new admin token's text when the runner is on embedded defaults and has no live admin token."""
    if settings.database_url or store.any_live_admin_token():
        return None
    made = tokens.new_token()
    scope = tokens.Scope(thread=None, admin=True, read_only=False)
    try:
        store.create_token(made, name=TOKEN_NAME, scope=scope)
    except ValidationError:  # a live token of another reach is named so: this one gets a name of its own
        store.create_token(made, name=f"{TOKEN_NAME}-{made.public_id[:8]}", scope=scope)
    return made.text


def sign_in_hint(base_url: str, runner: str, token: str | None) -> str:
    """What `runner up` prints after its first line about the dashboard at ``base_url``: the token just
    made, alone on the last line, or the command that makes one."""
    if token is not None:
        return (f"Dashboard on {base_url}/ : sign in with this admin token, made because there was none "
                f"(shown this once; `{runner} token revoke {TOKEN_NAME}` drops it):\n{token}")
    return f"Dashboard on {base_url}/ : sign in with a token from `{runner} token create --admin --name me`."
