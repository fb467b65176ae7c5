"""Every named query in runner/store/sql/*.sql parses and fits the schema the migrations make.

A query is only run by the code path that needs it, some only in a fault (a renewed lease, an adopted
run): a broken one (a bad merge, a renamed column) must fail here, not in production's first outage."""

from __future__ import annotations

import re

import psycopg

from runner.store import QUERIES

PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def numbered(text: str) -> str:
    """The query with each ``%(name)s`` made ``$n`` (the same name, the same number)."""
    numbers: dict[str, int] = {}
    return PLACEHOLDER.sub(lambda m: f"${numbers.setdefault(m.group(1), len(numbers) + 1)}", text)


def unparsable(url: str, queries: dict[str, str]) -> dict[str, str]:
    """The queries Postgres refuses to PREPARE (parse and analyse: tables, columns, types; nothing runs),
    each placeholder made an untyped parameter ($n) whose type Postgres infers, with the reason."""
    refused = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, text in sorted(queries.items()):
            try:
                conn.execute(f"PREPARE q AS {numbered(text).strip().rstrip(';')}")  # type: ignore[arg-type]
                conn.execute("DEALLOCATE q")
            except psycopg.Error as exc:
                refused[name] = str(exc).splitlines()[0]
    return refused


def test_every_query_parses_against_the_schema(pg_url: str) -> None:
    assert len(QUERIES) > 40
    assert unparsable(pg_url, QUERIES) == {}


def test_a_broken_query_is_found(pg_url: str) -> None:
    broken = {"cut": "UPDATE outbox SET status = 'sent' WHERE id = %(id)s AND\n", "column": "SELECT nope FROM outbox"}
    assert set(unparsable(pg_url, broken)) == {"cut", "column"}
