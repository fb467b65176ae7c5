"""Postgres: named queries, the connection pool, the migrations runner and the embedded server.

Queries live in ``sql/queries.sql`` and are split on ``-- name:`` headers once, at import. No SQL is
built by string formatting. psycopg errors are translated into :class:`DatabaseError` at this edge.
"""

from __future__ import annotations

import logging
import os
import re
import select
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .errors import ConfigError, DatabaseError

log = logging.getLogger(__name__)

SQL_FILE = Path(__file__).with_name("sql") / "queries.sql"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_LOCK_KEY = 0x72756E6E  # "runn": serialises migrations of runners starting together
JOBS_CHANNEL = "runner_jobs"
OUTBOX_CHANNEL = "runner_outbox"

_HEADER = re.compile(r"^-- name: *([a-z_][a-z0-9_]*) *$", re.MULTILINE)


def load_queries(text: str) -> dict[str, str]:
    """Split a queries file on ``-- name: x`` headers into ``{"x": "sql"}`` (comment lines dropped)."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";").strip()
        if not sql:
            raise ValueError(f"query {name!r} is empty")
        queries[name] = sql
    return queries


QUERIES = load_queries(SQL_FILE.read_text(encoding="utf-8"))


def _describe(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else exc.__class__.__name__


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn psycopg errors into :class:`DatabaseError` with a message that says what failed."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"{what}: the database is unreachable ({_describe(exc)}); check DATABASE_URL") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"{what}: {_describe(exc)}") from exc


class Database:
    """A connection pool plus the named queries. One per process."""

    def __init__(self, url: str, *, max_size: int = 10) -> None:
        self.url = url
        with translate_errors("opening the connection pool"):
            self.pool = ConnectionPool(
                url, min_size=1, max_size=max_size, kwargs={"row_factory": dict_row},
                open=False, name="runner",
            )
            self.pool.open(wait=True, timeout=15)

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection inside one transaction (committed on success, rolled back on error)."""
        with translate_errors("database"), self.pool.connection() as conn:
            yield conn  # the pool commits on a clean exit, rolls back on an exception

    def all(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run the named query in its own transaction and return every row."""
        with self.transaction() as conn:
            cur = conn.execute(QUERIES[name], params or {})
            return cur.fetchall() if cur.description is not None else []

    def one(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Run the named query in its own transaction and return the first row, if any."""
        rows = self.all(name, params)
        return rows[0] if rows else None

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Run a fixed, parameterless statement (health checks and metrics)."""
        with self.transaction() as conn:
            cur = conn.execute(sql)  # type: ignore[call-overload]
            return cur.fetchall() if cur.description is not None else []

    def connect(self, *, timeout: float) -> psycopg.Connection[dict[str, Any]]:
        """A dedicated autocommit connection (not from the pool, so never waiting for a free one), for
        the lease heartbeat: it gives up connecting after ``timeout`` seconds, and a link that stops
        acknowledging what is sent is dropped after as long (``tcp_user_timeout``)."""
        with translate_errors("connecting to the database"):
            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                                   connect_timeout=max(1, round(timeout)),
                                   tcp_user_timeout=max(1000, int(timeout * 1000)))

    def listen(self, *channels: str) -> psycopg.Connection[Any]:
        """A dedicated autocommit connection LISTENing on ``channels`` (not from the pool)."""
        with translate_errors("listening for notifications"):
            conn = psycopg.connect(self.url, autocommit=True)
            for ch in channels:
                conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(ch)))
        return conn


class Waker:
    """Sleep until a deadline, a NOTIFY on a LISTEN connection, or :meth:`wake` from another thread."""

    def __init__(self, db: Database, channel: str) -> None:
        self.db, self.channel = db, channel
        self._r, self._w = os.pipe()
        self._lock = threading.Lock()
        self._closed = False
        os.set_blocking(self._w, False)
        self.conn = db.listen(channel)

    def wake(self) -> None:
        """Interrupt a :meth:`sleep` now (thread-safe; a no-op once closed, so a late stop() cannot
        write to a closed, or reused, descriptor)."""
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._w, b"x")
            except BlockingIOError:
                pass  # already woken

    def sleep(self, seconds: float) -> None:
        """Block up to ``seconds``; return early on a notification or a wake-up."""
        try:
            ready, _, _ = select.select([self.conn.fileno(), self._r], [], [], max(0.0, seconds))
        except InterruptedError:
            return
        if self._r in ready:
            try:
                os.read(self._r, 4096)
            except BlockingIOError:
                pass
        if self.conn.fileno() in ready:
            try:
                for _ in self.conn.notifies(timeout=0, stop_after=1000):
                    pass
            except psycopg.Error:
                self._reconnect()

    def _reconnect(self) -> None:
        try:
            self.conn.close()
        finally:
            self.conn = self.db.listen(self.channel)

    def close(self) -> None:
        """Close the LISTEN connection and the wake-up pipe."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.conn.close()
            os.close(self._r)
            os.close(self._w)


# --- migrations -------------------------------------------------------------------------------------

_MIGRATION_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """Numbered ``NNN_name.sql`` files in order; a duplicate number is an error."""
    if not directory.is_dir():
        raise ConfigError(f"migrations directory {directory} is missing")
    found: dict[int, Path] = {}
    for path in sorted(directory.iterdir()):
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            continue
        version = int(m[1])
        if version in found:
            raise ConfigError(f"two migrations are numbered {version}: {found[version].name}, {path.name}")
        found[version] = path
    return sorted(found.items())


def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
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
                    conn.execute(sql)  # type: ignore[call-overload]  # a whole file, no parameters
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


def check_schema(url: str, directory: Path = MIGRATIONS_DIR) -> None:
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


# --- the embedded server ----------------------------------------------------------------------------

_embedded_lock = threading.Lock()
_embedded: dict[Path, Any] = {}


def embedded_url(directory: Path) -> str:
    """Start (or join) the private Postgres kept in ``directory`` and return its URL.

    Used when DATABASE_URL is unset. It listens on a Unix socket in ``directory`` only, and stops
    when the last process using it exits.
    """
    directory = directory.absolute()
    with _embedded_lock:
        if directory not in _embedded:
            directory.mkdir(parents=True, exist_ok=True)
            try:
                with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
                    warnings.simplefilter("ignore")
                    import pgserver  # a PostgreSQL build shipped as a wheel

                    _embedded[directory] = pgserver.get_server(directory, cleanup_mode="stop")
            except Exception as exc:
                raise DatabaseError(
                    f"could not start the embedded Postgres in {directory}: {_describe(exc)}; "
                    "set DATABASE_URL to use your own server"
                ) from exc
        return str(_embedded[directory].get_uri())
