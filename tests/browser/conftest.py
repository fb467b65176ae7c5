"""The browser tests' parts: `runner up` in a subprocess over the test's Postgres (real scheduler, real
job containers, the dashboard on a free loopback port), and headless Chromium from Debian's packages
driven by Selenium through Debian's chromedriver (`make host-deps` installs both; the paths are given, so
Selenium never looks for a driver to download)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from runner import tokens
from runner.settings import Settings
from runner.store import Database, Store

from ..integration.helpers import ROOT, RUNNER_CLI, cli_env
from ..waiting import wait_for

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)


def _found(candidates: tuple[str, ...], name: str) -> str:
    for path in candidates:
        if Path(path).exists():
            return path
    on_path = shutil.which(name)
    if on_path:
        return on_path
    pytest.fail(f"{name} is not installed: `make host-deps` installs Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def runner_up(settings: Settings) -> Iterator[str]:
    """`runner up` serving the dashboard; its URL. Stopped (and its stderr checked) afterwards."""
    port = _free_port()
    env = cli_env(settings, RUNNER_ID=f"web-{settings.runner_id}", RUNNER_HTTP=f"127.0.0.1:{port}",
                  RUNNER_POLL_INTERVAL="1")
    proc = subprocess.Popen([*RUNNER_CLI, "up", "--no-build"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"runner up exited: {proc.communicate()[1][-2000:]}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 60, "runner up to answer /healthz")
        yield url
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err[-3000:]
        # its own database (DATABASE_URL): no token is made, the command that makes one is printed
        assert f"Dashboard on {url}/ : sign in with a token from" in out and "token create --admin" in out, out


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium, with a profile of its own under the test's temp dir."""
    options = webdriver.ChromeOptions()
    options.binary_location = _found(CHROMIUM, "chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"):
        options.add_argument(arg)
    service = Service(executable_path=_found(CHROMEDRIVER, "chromedriver"), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def make_token(db: Database, thread: str | None, read_only: bool = False) -> str:
    made = tokens.new_token()
    Store(db).create_token(made, name=f"web-{made.public_id[:6]}",
                           scope=tokens.Scope(thread=thread, admin=thread is None, read_only=read_only))
    return made.text
