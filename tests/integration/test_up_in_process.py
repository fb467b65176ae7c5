"""`runner up` run in-process (as the HTTP API, MCP and tests will start it) leaves the caller's signal
handlers as it found them."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from runner.cli import main
from runner.settings import Settings


def test_runner_up_restores_the_signal_handlers_it_found(settings: Settings, caller_handlers: dict[int, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("RUNNER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RUNNER_IMAGE", settings.image)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.setenv("RUNNER_HTTP", "")
    assert main(["up", "--burst", "--no-build"]) == 0
    for sig, handler in caller_handlers.items():
        assert signal.getsignal(sig) is handler, signal.Signals(sig).name
