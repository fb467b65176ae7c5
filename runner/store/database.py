"""Postgres: named queries, the connection pool and the LISTEN waker.

Queries live in ``sql/*.sql`` (one file per concept) and are split on ``-- name:`` headers once, at import. No SQL is
built by string formatting. psycopg errors are translated into :class:`DatabaseError` at this edge.
"""

from __future__ import annotations

import logging
import os
import re
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ..errors import DatabaseError, DatabaseUnavailable
from ..outage import Outage, patiently

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")


JOBS_CHANNEL = "runner_jobs"
OUTBOX_CHANNEL = "runner_outbox"
RECONNECT_TIMEOUT = 5.0  # seconds: the pool's give-up on one reconnection attempt; a ping's wait in an outage
LISTEN_CONNECT_TIMEOUT = 5  # seconds: a LISTEN connection to a host that does not answer at all

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


def load_query_files(directory: Path = SQL_DIR) -> dict[str, str]:
    """Every named query of the ``*.sql`` files in ``directory``; a name defined in two files is an error."""
    queries: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        for name, sql in load_queries(path.read_text(encoding="utf-8")).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice ({path.name})")
            queries[name] = sql
    return queries


QUERIES = load_query_files()


def listen_statement(channel: str) -> pgsql.Composed:
    """``LISTEN channel``, the channel quoted as an identifier: the one source of the statement, for the
    sync :meth:`Database.listen` (the :class:`Waker`) and the event loop's :meth:`Database.alisten`."""
    return pgsql.SQL("LISTEN {}").format(pgsql.Identifier(channel))


def describe(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else exc.__class__.__name__


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn psycopg errors into :class:`DatabaseError` with a message that says what failed."""
    try:
        yield
    except psycopg.OperationalError as exc:  # the pool's timeouts are OperationalErrors too
        raise DatabaseUnavailable(f"{what}: the database is unreachable ({describe(exc)}); check DATABASE_URL") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"{what}: {describe(exc)}") from exc


class Database:
    """A connection pool plus the named queries. One per process."""

    def __init__(self, url: str, *, max_size: int = 10) -> None:
        self.url = url
        self.outage = Outage()
        with translate_errors("opening the connection pool"):
            # reconnect_timeout: a connection attempt that failed through an outage is given up after
            # a few seconds and the next request starts afresh, so the pool's own backoff (doubling,
            # without a cap) never leaves it minutes behind a server that is back.
            self.pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
                url, min_size=1, max_size=max_size, kwargs={"row_factory": dict_row},
                open=False, name="runner", reconnect_timeout=RECONNECT_TIMEOUT,
            )
            self.pool.open(wait=True, timeout=15)

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()

    @contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection inside one transaction (committed on success, rolled back on error).

        ``timeout`` bounds the wait for a connection (the pool's 30 s by default; a few seconds
        while the database is known to be down, so that callers get back to waiting it out)."""
        if timeout is None and self.outage.down:
            timeout = RECONNECT_TIMEOUT
        with self._tracked("database"), self.pool.connection(timeout=timeout) as conn:
            yield conn  # the pool commits on a clean exit, rolls back on an exception

    @contextmanager
    def _statement(self, timeout: float | None = None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection for one statement, in autocommit: the statement is then its own
        transaction, as inside :meth:`transaction`, without the BEGIN and COMMIT round trips (a third
        of the cost of a lookup by primary key; the API pays it on every request)."""
        if timeout is None and self.outage.down:
            timeout = RECONNECT_TIMEOUT
        with self._tracked("database"), self.pool.connection(timeout=timeout) as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                if not conn.closed:  # (a broken one is the pool's to discard)
                    conn.autocommit = False

    @contextmanager
    def _tracked(self, what: str) -> Iterator[None]:
        """:func:`translate_errors`, noting in :attr:`outage` when the database stops or starts answering."""
        try:
            with translate_errors(what):
                yield
        except DatabaseUnavailable as exc:
            self.outage.began(describe(exc.__cause__ or exc))
            raise
        if self.outage.down and self.outage.ended():
            self._drop_broken()

    def _drop_broken(self) -> None:
        """After an outage: replace the idle pooled connections the server's restart has broken."""
        try:
            self.pool.check()
        except Exception as exc:  # noqa: BLE001 - a best effort; a broken one is dropped on use anyway
            log.debug("checking the pool after an outage: %s", exc)

    def ping(self, timeout: float = 3.0) -> None:
        """``SELECT 1``, waiting at most about ``timeout`` s for a connection; DatabaseUnavailable if none."""
        with self.transaction(timeout=timeout) as conn:
            conn.execute("SELECT 1")

    def wait_until_reachable(self, stopping: threading.Event, tick: Any = None) -> bool:
        """Block until the database answers (True) or ``stopping`` is set (False), trying again with
        a backoff; ``tick()`` is called before each try (the caller is alive, only waiting)."""

        def probe() -> None:
            if tick is not None:
                tick()
            self.ping(timeout=RECONNECT_TIMEOUT)

        try:
            patiently(probe, stopping)
        except DatabaseUnavailable:
            return False
        return True

    def all(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run the named query (one statement, so its own transaction) and return every row."""
        with self._statement() as conn:
            cur = conn.execute(QUERIES[name], params or {})
            return cur.fetchall() if cur.description is not None else []

    def one(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Run the named query in its own transaction and return the first row, if any."""
        rows = self.all(name, params)
        return rows[0] if rows else None

    def query(self, sql: str, timeout: float | None = None) -> list[dict[str, Any]]:
        """Run a fixed, parameterless statement (health checks and metrics)."""
        with self._statement(timeout=timeout) as conn:
            cur = conn.execute(sql)  # a fixed statement the caller gives (health checks)
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
        with self._tracked("listening for notifications"):
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=LISTEN_CONNECT_TIMEOUT)
            for ch in channels:
                conn.execute(listen_statement(ch))
        return conn

    async def alisten(self, *channels: str) -> psycopg.AsyncConnection[Any]:
        """:meth:`listen` for an event loop: a dedicated autocommit async connection LISTENing on
        ``channels``. Its failures are not noted as an outage: the queries do that, once."""
        with translate_errors("listening for notifications"):
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True,
                                                         connect_timeout=LISTEN_CONNECT_TIMEOUT)
            try:
                for ch in channels:
                    await conn.execute(listen_statement(ch))
            except BaseException:
                await conn.close()
                raise
        return conn


class Waker:
    """Sleep until a deadline, a NOTIFY on a LISTEN connection, or :meth:`wake` from another thread.

    The LISTEN connection only makes the wake-up prompt: while the database is away the Waker sleeps
    on its own clock and connects again at a later :meth:`sleep`, never raising."""

    def __init__(self, db: Database, channel: str) -> None:
        self.db, self.channel = db, channel
        self._r, self._w = os.pipe()
        self._lock = threading.Lock()
        self._closed = False
        os.set_blocking(self._w, False)
        self.conn: psycopg.Connection[Any] | None = None
        self._connect()

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
        if self.conn is None:
            self._connect()
        fd = self._fileno()
        try:
            ready, _, _ = select.select([self._r] + ([fd] if fd is not None else []), [], [], max(0.0, seconds))
        except InterruptedError:
            return
        if self._r in ready:
            try:
                os.read(self._r, 4096)
            except BlockingIOError:
                pass
        if fd is not None and fd in ready and self.conn is not None:
            try:
                self.conn.pgconn.consume_input()  # raises at the end of the stream (the server went away)
                for _ in self.conn.notifies(timeout=0, stop_after=1000):
                    pass
            except psycopg.Error:
                self._drop()
            if self.conn is not None and (self.conn.closed or self.conn.broken):
                self._drop()  # the server went away (it may say so without an exception)
            if self.conn is None:
                self._connect()

    def _fileno(self) -> int | None:
        if self.conn is None:
            return None
        if self.conn.closed or self.conn.broken:
            self._drop()
            return None
        try:
            return self.conn.fileno()
        except psycopg.Error:
            self._drop()
            return None

    def _connect(self) -> None:
        """LISTEN again; on failure stay without a connection (the caller's queries see the outage)."""
        try:
            self.conn = self.db.listen(self.channel)
        except DatabaseError as exc:
            log.debug("LISTEN %s: %s", self.channel, exc)
            self.conn = None

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def close(self) -> None:
        """Close the LISTEN connection and the wake-up pipe."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._drop()
            os.close(self._r)
            os.close(self._w)
