"""``runner token create|list|revoke``: the API's bearer tokens. A new token is printed once, alone
on standard output (``TOKEN=$(runner token create …)`` works); only its hash is kept."""

from __future__ import annotations

import argparse
from typing import Any

from .. import tokens
from ..errors import ValidationError
from ..settings import Settings
from ..store import Store
from ..threads import validate_thread_id
from .format import cell, fmt_time, print_json
from .jobs import open_jobs


def _scope(args: argparse.Namespace) -> tokens.Scope:
    if args.admin == (args.thread is not None):
        raise ValidationError("give --thread THREAD (a token for one thread) or --admin (every thread), not both")
    thread = validate_thread_id(args.thread) if args.thread is not None else None
    return tokens.Scope(thread=thread, admin=args.admin, read_only=args.read_only)


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    scope = _scope(args)
    expires = tokens.parse_expiry(args.expires) if args.expires else None
    made = tokens.new_token()
    name = tokens.validate_name(args.name or f"token-{made.public_id[:8]}")
    with open_jobs(settings) as jobs:
        Store(jobs.db).create_token(made, name=name, scope=scope, expires=expires)
    if args.json:
        print_json({"name": name, "token": made.text, "thread": scope.thread, "admin": scope.admin,
                    "read_only": scope.read_only})
    else:
        print(made.text)
    return 0


def _reach(row: dict[str, Any]) -> str:
    reach = "every thread" if row["admin"] else row["thread_id"]
    return reach + (" (read-only)" if row["read_only"] else "")


def _state(row: dict[str, Any]) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    return "expired" if row["expired"] else "live"


def cmd_token_list(args: argparse.Namespace, settings: Settings) -> int:
    with open_jobs(settings) as jobs:
        rows = Store(jobs.db).list_tokens(include_revoked=args.all)
    if args.json:
        print_json([{"name": r["name"], "thread": r["thread_id"], "admin": r["admin"], "read_only": r["read_only"],
                     "state": _state(r), "created_at": r["created_at"], "expires_at": r["expires_at"],
                     "last_used_at": r["last_used_at"]} for r in rows])
        return 0
    tz = settings.default_timezone
    print(f"{'NAME':<20} {'REACHES':<32} {'STATE':<8} {'CREATED':<24} {'EXPIRES':<24} LAST USED")
    for r in rows:
        print(f"{cell(r['name'], 20):<20} {cell(_reach(r), 32):<32} {_state(r):<8} {fmt_time(r['created_at'], tz):<24} "
              f"{fmt_time(r['expires_at'], tz):<24} {fmt_time(r['last_used_at'], tz)}")
    return 0


def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with open_jobs(settings) as jobs:
        Store(jobs.db).revoke_token(args.name)
    print(f"revoked {args.name}: it is refused from now on")
    return 0


def add_parser(sub: Any) -> None:
    """``runner token …`` under the subcommands ``sub``."""
    tk = sub.add_parser("token", help="the HTTP API's bearer tokens: create, list, revoke")
    tsub = tk.add_subparsers(dest="token_command", required=True, parser_class=type(tk))
    cr = tsub.add_parser("create", help="make a token and print it once (only its hash is kept)")
    cr.add_argument("--thread", help="the one thread it reaches, e.g. telegram:42")
    cr.add_argument("--admin", action="store_true", help="reach every thread instead")
    cr.add_argument("--read-only", action="store_true", help="it may read, never change anything")
    cr.add_argument("--name", help="its name, for list and revoke (default token-<id>)")
    cr.add_argument("--expires", help="refuse it after this long: 90d, 12h, 30m, 2w (default never)")
    cr.add_argument("--json", action="store_true", help='print {"name", "token", "thread", ...} as JSON')
    cr.set_defaults(func=cmd_token_create)
    ls = tsub.add_parser("list", help="names, scopes, created, expires and last used (never the secret)")
    ls.add_argument("--all", action="store_true", help="revoked tokens too")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_token_list)
    rv = tsub.add_parser("revoke", help="refuse a token from now on")
    rv.add_argument("name")
    rv.set_defaults(func=cmd_token_revoke)
