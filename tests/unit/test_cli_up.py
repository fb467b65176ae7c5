"""``runner up``'s first line, and the application object before it has opened anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import __version__
from runner.app import Application
from runner.cli.ops import banner
from runner.settings import Settings


def _settings(**env: str) -> Settings:
    return Settings.from_env({"RUNNER_DATA_DIR": "/srv/runner", "RUNNER_IMAGE": "img:1", **env})


def test_the_banner_says_what_runner_up_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["/nowhere/bin/runner"])
    s = _settings(DATABASE_URL="postgresql://u:secret@db.example:5433/runner")
    line = banner(s, burst=False, telegram=False)
    assert line.startswith(f"runner {__version__}: database Postgres at db.example:5433/runner, data directory "
                           f"{Path('/srv/runner')}, image img:1, up to {s.concurrency} jobs at once. "
                           "Messages print here (no TELEGRAM_BOT_TOKEN). Schedule a first job from another terminal: ")
    assert "secret" not in line
    assert line.endswith("schedule examples/check_price.py --thread telegram:42 --name check_price "
                         "--at 'in 1 minute' --every 'daily 9am'")


def test_the_banner_of_a_burst_with_telegram() -> None:
    s = _settings(TELEGRAM_API_URL="http://127.0.0.1:9/")
    line = banner(s, burst=True, telegram=True)
    assert "database embedded Postgres in " in line
    assert " jobs at once (burst: run what is due, then exit). Messages go to Telegram via http://127.0.0.1:9/. " in line


def test_an_application_closes_and_stops_before_it_has_opened_anything() -> None:
    app = Application(_settings())
    app.stop()  # a signal before start-up: remembered, nothing to stop yet
    app.close()
    assert app.jobs is None and app.scheduler is None and app.http is None and app.parts == []


def test_a_closed_application_does_not_start_again() -> None:
    app = Application(_settings())
    app.close()
    with pytest.raises(RuntimeError, match="closed"):
        app.run()


def test_the_banner_says_where_the_api_is_and_how_to_get_a_token() -> None:
    s = Settings.from_env({"RUNNER_HTTP": "0.0.0.0:8080"})
    line = banner(s, burst=False, telegram=False)
    assert "API on http://127.0.0.1:8080/v1" in line and "token create --thread console:1" in line
    assert "API on" not in banner(Settings.from_env({}), burst=False, telegram=False)
