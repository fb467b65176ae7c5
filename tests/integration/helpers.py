"""Small helpers for integration tests: run a runner in burst mode and capture its console messages,
wait on a condition, and give a ``runner`` subprocess its environment."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    database and never, say, a developer's real bot token. Then ``settings``' database, files directory
    and file store (RUNNER_FILES), images and container runtime (a test of runsc must run its
    subprocess's jobs under runsc too), then ``extra`` (setting names to values), which win."""
    env = {k: v for k, v in os.environ.items()
           if k != "DATABASE_URL" and not k.startswith(("RUNNER_", "TELEGRAM_"))}
    if settings is not None:
        env |= {"DATABASE_URL": settings.database_url or "", "RUNNER_DATA_DIR": str(settings.data_dir),
                "RUNNER_IMAGE": settings.image, "RUNNER_EGRESS_IMAGE": settings.egress_image}
        if settings.container_runtime:
            env["RUNNER_CONTAINER_RUNTIME"] = settings.container_runtime
        if settings.files != "local":
            env["RUNNER_FILES"] = settings.files
    return env | extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_token(db: Database, thread: str | None, read_only: bool = False) -> str:
    """A new token's text: of ``thread`` (None: an admin token)."""
    from runner import tokens

    made = tokens.new_token()
    Store(db).create_token(made, name=f"t-{made.public_id[:6]}",
                           scope=tokens.Scope(thread=thread, admin=thread is None, read_only=read_only))
    return made.text


@dataclass
class Served:
    """A `runner up` serving HTTP: its URL, and once it has stopped, what it printed."""

    url: str
    stdout: str = ""


@contextmanager
def serving(settings: Settings, name: str, **extra: str) -> Iterator[Served]:
    """`runner up` in a subprocess with its HTTP server on a free loopback port, until the block ends;
    then stopped, and its standard error checked for a traceback."""
    import httpx

    port = free_port()
    env = cli_env(settings, RUNNER_ID=f"{name}-{settings.runner_id}", RUNNER_HTTP=f"127.0.0.1:{port}", **extra)
    proc = subprocess.Popen([*RUNNER_CLI, "up", "--no-build"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    served = Served(f"http://127.0.0.1:{port}")

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"runner up exited: {proc.communicate()[1][-2000:]}")
        try:
            return httpx.get(f"{served.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 60, "runner up to answer /healthz")
        yield served
    finally:
        proc.terminate()
        served.stdout, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err[-3000:]
