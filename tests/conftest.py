"""Shared fixtures. Integration and security tests start their own Postgres (testcontainers, a locally
built image: one server per session, a fresh database per test) and use the real Docker engine;
nothing here is a fake. Unit tests use none of them."""

from __future__ import annotations

import os

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # the reaper image cannot be pulled here



import itertools
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from psycopg import sql

from runner import sandbox
from runner.service import Jobs
from runner.settings import Settings
from runner.store import QUERIES, Database, migrate

from .engines import new_engine, second_engine  # noqa: F401  (fixtures: a second Docker engine of the test's own)

PG_IMAGE = os.environ.get("RUNNER_TEST_PG_IMAGE", "runner-postgres:15")
JOB_IMAGE = os.environ.get("RUNNER_IMAGE", "runner-sandbox:latest")
EGRESS_IMAGE = os.environ.get("RUNNER_EGRESS_IMAGE", "runner-egress:latest")
TEMPLATE = "runner_template"
_counter = itertools.count()
_NEEDS_ENGINE = ("integration", "security", "browser", "kit")  # the folders whose tests use the Docker engine and Postgres


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration and tests/security ``integration``, so that
    ``pytest -m "not integration"`` runs the fast ones alone and ``-m integration`` the rest."""
    for item in items:
        if item.path.parent.name in _NEEDS_ENGINE and item.path.parent.parent.name == "tests":
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    dc = docker.from_env()
    dc.ping()
    for image in (PG_IMAGE, JOB_IMAGE):
        try:
            dc.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {image} is missing: run `make images` (make test does it)")
    return dc


@pytest.fixture(scope="session")
def pg_admin_url(docker_client: docker.DockerClient) -> Iterator[str]:
    """A Postgres server for the session, with the migrations applied once to a template database."""
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(PG_IMAGE, username="runner", password="runner", dbname="postgres", driver=None)
    container.with_command("-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
    with container:
        url = container.get_connection_url()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        migrate(_with_db(url, TEMPLATE))
        yield url


def _with_db(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


STORE_KEY = pytest.StashKey[str]()


@pytest.fixture
def bare_url(pg_admin_url: str) -> Iterator[str]:
    """A database with no runner schema at all (not copied from the migrated template), dropped afterwards."""
    name = f"bare_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_db(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_url(pg_admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A clean, migrated database for one test (copied from the template), dropped afterwards."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(TEMPLATE)))
    url = _with_db(pg_admin_url, name)
    # The database's identity labels every container a runner starts for it: the leftover check
    # below looks only at this test's containers, so tests running beside it on the engine are left alone.
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(QUERIES["ensure_store_id"]).fetchone()
        assert row is not None
        request.node.stash[STORE_KEY] = row[0]
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings.from_env({
        "DATABASE_URL": pg_url,
        "RUNNER_DATA_DIR": str(tmp_path / "files"),
        "RUNNER_IMAGE": JOB_IMAGE,
        "RUNNER_EGRESS_IMAGE": EGRESS_IMAGE,
        "RUNNER_ID": f"test-{uuid.uuid4().hex[:8]}",
        "RUNNER_POLL_INTERVAL": "2",
        "RUNNER_LEASE_SECONDS": "30",
        "RUNNER_TIMEOUT": "20",
    })


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url or "", max_size=12)
    yield database
    database.close()


@pytest.fixture
def jobs(settings: Settings, db: Database) -> Jobs:
    return Jobs(settings, db)


@pytest.fixture(autouse=True)
def no_leftover_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test with a database must leave no container of that database behind."""
    yield
    store = request.node.stash.get(STORE_KEY, None)
    if store is None:
        return
    dc = docker.from_env()
    left = sandbox.managed_containers(dc, store)
    for c in left:
        c.remove(force=True)
    sandbox.release_uids(dc, store)  # the database is dropped: its uids on the engine go with it
    assert not left, f"job containers left behind: {[c.name for c in left]}"


@pytest.fixture
def store_id(pg_url: str, request: pytest.FixtureRequest) -> str:
    """The test database's identity: the label on every container a runner starts for it."""
    return request.node.stash[STORE_KEY]


@pytest.fixture
def caller_handlers() -> Iterator[dict[int, Any]]:
    """The caller's own SIGINT and SIGTERM handlers, installed for the test and put back after it whatever
    happens (for the tests that `runner up` restores what it found)."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    mine = {signal.SIGINT: lambda *_: None, signal.SIGTERM: lambda *_: None}
    for sig, handler in mine.items():
        signal.signal(sig, handler)
    yield mine
    for sig, handler in before.items():
        signal.signal(sig, handler)
