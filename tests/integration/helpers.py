"""Small helpers for integration tests: run a runner in burst mode and capture its console messages,
wait on a condition, and give a ``runner`` subprocess its environment."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from runner.db import Database
from runner.notify import ConsoleSender, Notifier
from runner.scheduler import Scheduler
from runner.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RUNNER_CLI = [sys.executable, "-m", "runner.cli"]  # the command line, run from ROOT


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


def cli_env(settings: Settings | None = None, **extra: str) -> dict[str, str]:
    """The environment of a ``runner`` subprocess a test starts.

    This process's environment without the runner's own settings (``DATABASE_URL``, ``RUNNER_*``,
    ``TELEGRAM_*``) that the shell running the tests may carry: a test's runner must use the test's
    database and never, say, a developer's real bot token. Then ``settings``' database, files directory,
    images and container runtime (a test of runsc must run its subprocess's jobs under runsc too), then
    ``extra`` (setting names to values), which win."""
    env = {k: v for k, v in os.environ.items()
           if k != "DATABASE_URL" and not k.startswith(("RUNNER_", "TELEGRAM_"))}
    if settings is not None:
        env |= {"DATABASE_URL": settings.database_url or "", "RUNNER_DATA_DIR": str(settings.data_dir),
                "RUNNER_IMAGE": settings.image, "RUNNER_EGRESS_IMAGE": settings.egress_image}
        if settings.container_runtime:
            env["RUNNER_CONTAINER_RUNTIME"] = settings.container_runtime
    return env | extra
