"""The schema's migrations: numbered ``NNN_name.sql`` files shipped in the package, applied in order
under an advisory lock, and the check every command but ``up`` and ``migrate`` makes before it reads."""

from __future__ import annotations

import logging
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg

from ..errors import ConfigError
from .database import translate_errors

log = logging.getLogger(__name__)


def _migrations_dir() -> Traversable:
    """The schema's migrations: in a wheel, package data (the top-level migrations/ is shipped as
    runner/migrations, read through importlib.resources); in a source checkout, migrations/ itself."""
    packaged = resources.files("runner") / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


MIGRATIONS_DIR: Traversable = _migrations_dir()
MIGRATION_LOCK_KEY = 0x72756E6E  # "runn": serialises migrations of runners starting together


_MIGRATION_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")


def migration_files(directory: Traversable = MIGRATIONS_DIR) -> list[tuple[int, Traversable]]:
    """Numbered ``NNN_name.sql`` files in order; a duplicate number is an error."""
    if not directory.is_dir():
        raise ConfigError(f"migrations directory {directory} is missing")
    found: dict[int, Traversable] = {}
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            continue
        version = int(m[1])
        if version in found:
            raise ConfigError(f"two migrations are numbered {version}: {found[version].name}, {path.name}")
        found[version] = path
    return sorted(found.items())


def migrate(url: str, directory: Traversable = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction, under an advisory lock.

    Returns the names applied. Refuses to run against a schema newer than this runner knows.
    """
    files = migration_files(directory)
    known = max((v for v, _ in files), default=0)
    applied_now: list[str] = []
    with translate_errors("applying migrations"), psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
            newest = max(done, default=0)
            if newest > known:
                raise ConfigError(
                    f"the database schema is at version {newest} but this runner knows only up to {known}: "
                    "run a newer runner (this one would misread the tables)"
                )
            for version, path in files:
                if version in done:
                    continue
                sql = path.read_text(encoding="utf-8")
                with conn.transaction():
                    conn.execute(sql)  # a whole file, no parameters
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, path.name)
                    )
                log.info("applied migration %s", path.name)
                applied_now.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


def schema_versions(conn: psycopg.Connection[Any]) -> set[int] | None:
    """The migrations applied to the database on ``conn``; None if it has no runner schema at all."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    return {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}


def check_schema(url: str, directory: Traversable = MIGRATIONS_DIR) -> None:
    """Refuse, with what to do, a database whose schema is not the one this runner was built for.

    Only ``runner up`` and ``runner migrate`` apply migrations: every other command reads the schema
    as it is, so a newer binary run for a look (``runner jobs``) never alters a production database."""
    files = migration_files(directory)
    known = {v: p.name for v, p in files}
    with translate_errors("checking the database schema"), psycopg.connect(url, autocommit=True) as conn:
        done = schema_versions(conn)
    if done is None:
        raise ConfigError("the database has no runner schema yet: run `runner migrate` (or start `runner up`, "
                          "which applies the migrations)")
    newer = sorted(v for v in done if v not in known)
    if newer:
        raise ConfigError(f"the database schema is at version {max(done)} but this runner knows only up to "
                          f"{max(known, default=0)}: run a newer runner (this one would misread the tables)")
    missing = [known[v] for v in sorted(known) if v not in done]
    if missing:
        raise ConfigError(f"the database schema is older than this runner (it needs migration "
                          f"{', '.join(missing)}): run `runner migrate` first (or start `runner up`, which "
                          "applies the migrations)")


