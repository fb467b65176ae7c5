"""Small helpers for integration tests: run a runner in burst mode and capture its console messages."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import docker

from runner.db import Database
from runner.notify import ConsoleSender, Notifier
from runner.scheduler import Scheduler
from runner.settings import Settings


def run_burst(settings: Settings, db: Database, dc: docker.DockerClient) -> str:
    """Run everything due, deliver the messages to a captured console, and return what it printed."""
    Scheduler(settings, db, dc).run(burst=True)
    out = io.StringIO()
    Notifier(db, ConsoleSender(out), settings.runner_id).deliver_due()
    return out.getvalue()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
