"""The pytest plugin of the testing kit (entry point ``pytest11``; active once ``runner[testing]`` is
installed): the fixtures ``runner_service`` (one started :class:`RunnerContainer` for the session),
``thread`` (a fresh thread and its token for each test) and ``run_script``.

    def test_price_alert(run_script):
        outcome = run_script("jobs/check_price.py", name="check_price", files={"price.txt": "42"})
        assert outcome.status == "completed" and "42" in outcome.message
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..client import Client
from .container import RunnerContainer, RunnerImageMissing
from .scripts import Outcome
from .scripts import run_script as _run_script


@dataclass
class Thread:
    """A thread of the runner for one test: its id, a token for it and the typed client."""

    id: str
    token: str
    client: Client


@pytest.fixture(scope="session")
def runner_service() -> Iterator[RunnerContainer]:
    """The runner (with its Postgres) started once for the test session, removed at its end."""
    container = RunnerContainer()
    try:
        container.start()
    except RunnerImageMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield container
    finally:
        container.stop()


@pytest.fixture
def thread(runner_service: RunnerContainer) -> Iterator[Thread]:
    """A fresh thread (``kit:<random>``) and a token for it, so tests do not see each other's jobs."""
    thread_id = f"kit:{uuid.uuid4().hex[:16]}"
    token = runner_service.create_token(thread_id)
    client = Client(runner_service.get_api_url(), token, thread_id)
    try:
        yield Thread(thread_id, token, client)
    finally:
        client.close()


@pytest.fixture
def run_script(runner_service: RunnerContainer, thread: Thread) -> Callable[..., Outcome]:
    """``run_script(source_or_path, name="job", files={...}, allow_hosts=(), timeout=..., memory_mb=...)``:
    run the script once in the real sandbox, in this test's thread, and return its Outcome."""

    def run(source_or_path: str | Path, name: str = "job", **kw: Any) -> Outcome:
        return _run_script(thread.client, source_or_path, name, attachments_of=runner_service.get_attachments, **kw)

    return run
