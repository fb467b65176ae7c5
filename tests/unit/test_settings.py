"""Settings: one runner id per process, and every copy checked like the environment is."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runner.errors import ConfigError
from runner.settings import Settings


def test_one_runner_id_per_process() -> None:
    first, second = Settings.from_env({}), Settings.from_env({})
    assert first.runner_id and first.runner_id == second.runner_id
    assert Settings.from_env({"RUNNER_ID": "mine"}).runner_id == "mine"
    assert Settings().runner_id == first.runner_id  # built directly: still this process's id
    code = "from runner.settings import Settings; print(Settings.from_env({}).runner_id)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert other.stdout.strip() and other.stdout.strip() != first.runner_id  # another process, another runner


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"concurrency": 0}, "RUNNER_CONCURRENCY=0 is too small"),
     ({"lease_seconds": 1}, "RUNNER_LEASE_SECONDS=1 is too small"),
     ({"poll_interval": "fast"}, "is not a number"),
     ({"concurrency": 2.5}, "is not a whole number"),
     ({"timeout_seconds": 900}, "larger than RUNNER_MAX_TIMEOUT"),
     ({"memory_mb": 4096}, "larger than RUNNER_MAX_MEMORY_MB"),
     ({"default_timezone": "Mars/Olympus"}, "unknown time zone"),
     ({"egress_network": "host"}, "RUNNER_EGRESS_NETWORK"),
     ({"uid_range": (0, 10)}, "RUNNER_UID_RANGE"),
     ({"egress_block": ("not-a-net",)}, "RUNNER_EGRESS_BLOCK"),
     ({"egress_allow_addresses": ("10.0.0.0/8",)}, "RUNNER_EGRESS_ALLOW_ADDRESSES"),
     ({"no_such_setting": 1}, "no such setting: no_such_setting")],
)
def test_with_refuses_what_from_env_refuses(changes: dict[str, object], message: str) -> None:
    base = Settings.from_env({"RUNNER_ID": "x"})
    with pytest.raises(ConfigError, match=message):
        base.with_(**changes)


def test_with_keeps_valid_changes_and_the_runner_id() -> None:
    base = Settings.from_env({})
    changed = base.with_(concurrency=8, lease_seconds=6, poll_interval=1)
    assert (changed.concurrency, changed.lease_seconds, changed.poll_interval) == (8, 6, 1)
    assert changed.runner_id == base.runner_id
