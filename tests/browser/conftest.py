"""The browser tests' parts: `runner up` in a subprocess over the test's Postgres (real scheduler, real
job containers, the dashboard on a free loopback port), and headless Chromium from Debian's packages
driven by Selenium through Debian's chromedriver (`make host-deps` installs both; the paths are given, so
Selenium never looks for a driver to download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from runner.settings import Settings

from ..integration.helpers import serving

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


@pytest.fixture
def runner_up(settings: Settings) -> Iterator[str]:
    """`runner up` serving the dashboard; its URL. Stopped (and its stderr checked) afterwards."""
    with serving(settings, "web", RUNNER_POLL_INTERVAL="1") as served:
        yield served.url
    # its own database (DATABASE_URL): no token is made, the command that makes one is printed
    out, url = served.stdout, served.url
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
