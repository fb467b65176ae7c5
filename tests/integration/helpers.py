"""Small helpers for integration tests: run a runner in burst mode and capture its console messages,
wait on a condition, and give a ``runner`` subprocess its environment."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import docker

from runner.outbox import ConsoleSender, OutboxLoop
from runner.scheduler import Scheduler
from runner.settings import Settings
from runner.store import Database, Store

from ..waiting import wait_for

__all__ = ["ROOT", "RUNNER_CLI", "cli_env", "run_burst", "wait_for"]

ROOT = Path(__file__).resolve().parents[2]
RUNNER_CLI = [sys.executable, "-m", "runner.cli"]  # the command line, run from ROOT


def run_burst(settings: Settings, db: Database, dc: docker.DockerClient) -> str:
    """Run everything due, deliver the messages to a captured console, and return what it printed."""
    Scheduler(settings, db, dc).run(burst=True)
    out = io.StringIO()
    OutboxLoop(Store(db), ConsoleSender(out), settings.runner_id).deliver_due()
    return out.getvalue()


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
