"""The dashboard in a real browser (issue 15): headless Chromium against `runner up` over a real
Postgres, running real job containers. A person signs in, sees a job that just ran with its output,
presses run now and sees the new run appear, pauses and resumes (by keyboard), cancels after the
confirmation, and signs out; a thread token cannot open another thread's job by its URL; a job that
prints markup and terminal escapes shows them literally and no dialog opens. Every page is saved as a
screenshot under the test's temp dir and checked not to be blank; every control has a label."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

from runner.service import Jobs
from runner.store import Database

from ..integration.helpers import make_token
from ..waiting import wait_for
from .png import colour_share

THREAD, OTHER = "web:person-1", "web:someone-else"
GREET = 'print("hello from the dashboard test")\nopen("jobs/greet_message.txt", "w").write("greetings, person")\n'
XSS = (
    "print('<script>alert(1)</script>')\n"
    "print('\"><img src=x onerror=alert(2)>')\n"
    "print('\\x1b[31mred\\x1b[0m \\x1b]0;owned\\x07')\n"
    "open('jobs/xss_message.txt', 'w').write('<script>alert(3)</script> \"><img src=x onerror=alert(4)>')\n"
)


def _screenshot(driver: webdriver.Chrome, tmp_path: Path, name: str) -> Path:
    """Save the page as tmp_path/screens/<name>.png and check it is not blank (not one colour)."""
    folder = tmp_path / "screens"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    colours, top_share = colour_share(path.read_bytes())
    assert colours > 2 and top_share < 0.99, f"{name}: looks blank ({colours} colours, top one {top_share:.1%})"
    return path


def _labels_ok(driver: webdriver.Chrome) -> None:
    """Every form control a person uses has a label; every button and link says what it does."""
    for control in driver.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select, textarea"):
        cid = control.get_attribute("id")
        labelled = bool(control.get_attribute("aria-label")) or (
            bool(cid) and bool(driver.find_elements(By.CSS_SELECTOR, f"label[for='{cid}']")))
        assert labelled, f"a {control.tag_name} without a label on {driver.current_url}"
    for action in driver.find_elements(By.CSS_SELECTOR, "button, a"):
        assert (action.get_attribute("textContent") or "").strip(), f"an unnamed control on {driver.current_url}"


def _no_dialog(driver: webdriver.Chrome) -> None:
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return
    raise AssertionError(f"a dialog opened: {alert.text!r}")


def _heading(driver: webdriver.Chrome) -> str:
    """The page's h1, or "" while the browser is between two pages (the element it found went stale)."""
    try:
        return str(driver.find_element(By.TAG_NAME, "h1").text)
    except (StaleElementReferenceException, WebDriverException):
        return ""


def _sign_in(driver: webdriver.Chrome, url: str, token: str, tmp_path: Path | None = None) -> None:
    driver.get(f"{url}/")
    assert driver.current_url.endswith("/signin"), driver.current_url  # no session: the sign-in form
    if tmp_path is not None:
        _labels_ok(driver)
        _screenshot(driver, tmp_path, "signin")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()
    try:
        wait_for(lambda: _heading(driver).startswith("Overview"), 15, "the Overview")
    except AssertionError:
        raise AssertionError(f"no Overview after signing in: {driver.current_url} {driver.get_cookies()}") from None


def _runs(driver: webdriver.Chrome, status: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, f"article.run h3 .status-{status}")


def _ran(jobs: Jobs, job_id: int, count: int) -> bool:
    return sum(r["status"] == "completed" for r in jobs.job_runs(job_id, limit=10)) >= count


def _reload_until(driver: webdriver.Chrome, condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Reload the page until ``condition`` holds on it (a page is rendered once: it shows news on a reload)."""
    def reloaded() -> object:
        driver.refresh()
        try:
            return condition()
        except WebDriverException:  # the page went away while it was looked at: look again
            return False

    wait_for(reloaded, timeout, what, interval=0.5)


def _tab_to(driver: webdriver.Chrome, element_id: str, most: int = 40) -> list[str]:
    """Press Tab from the top of the page until ``element_id`` has the focus; what was reached on the way."""
    driver.find_element(By.TAG_NAME, "body").send_keys("")  # the page has the focus, nothing in it yet
    reached = []
    for _ in range(most):
        webdriver.ActionChains(driver).send_keys(Keys.TAB).perform()
        focused = driver.switch_to.active_element
        reached.append(focused.get_attribute("id") or (focused.get_attribute("textContent") or "").strip())
        if reached[-1] == element_id:
            return reached
    raise AssertionError(f"Tab never reached #{element_id}: it reached {reached}")


def test_a_person_signs_in_follows_a_job_acts_on_it_and_signs_out(runner_up: str, browser: webdriver.Chrome,
                                                                  jobs: Jobs, db: Database, tmp_path: Path) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="greet", script_text=GREET, at="now", every="daily 9am",
                            tz="Europe/Berlin")
    wait_for(lambda: _ran(jobs, job["id"], 1), 120, "the first run of greet")
    _sign_in(browser, runner_up, make_token(db, THREAD), tmp_path)
    _labels_ok(browser)
    assert browser.find_element(By.CSS_SELECTOR, "table.counts td.status-completed").text == "1"  # greet's run
    assert browser.find_elements(By.CSS_SELECTOR, "svg.histogram rect.bar")  # drawn on the server
    _screenshot(browser, tmp_path, "overview")

    browser.find_element(By.LINK_TEXT, "Jobs").click()
    row = wait_for(lambda: browser.find_elements(By.LINK_TEXT, "greet"), 10, "greet in the Jobs")
    assert "every day" in browser.page_source or "daily 9am" in browser.page_source
    _labels_ok(browser)
    _screenshot(browser, tmp_path, "jobs")
    row[0].click()

    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "pre.output"), 10, "the job's page")
    outputs = " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, "pre.output"))
    assert "hello from the dashboard test" in outputs
    assert "greetings, person" in " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, "pre.message"))
    assert "open(\"jobs/greet_message.txt\"" in browser.find_element(By.CSS_SELECTOR, "pre.script").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "ol.times li")) == 5
    _labels_ok(browser)
    _screenshot(browser, tmp_path, "job")

    # every action on the page is reached by keyboard, in order: the skip link and the header first
    reached = _tab_to(browser, "cancel")
    for wanted in ("Skip to the content", "Overview", "Jobs", "signout", "run-now", "pause"):
        assert wanted in reached, (wanted, reached)

    browser.find_element(By.ID, "run-now").click()
    wait_for(lambda: "will run now" in browser.page_source, 10, "the run-now notice")
    wait_for(lambda: _ran(jobs, job["id"], 2), 120, "the run pressed for")
    _reload_until(browser, lambda: len(_runs(browser, "completed")) >= 2 and browser.find_elements(By.ID, "pause"),
                  "the new run on the page, and the next one pending")

    _tab_to(browser, "pause")
    webdriver.ActionChains(browser).send_keys(Keys.ENTER).perform()  # pressed by keyboard
    wait_for(lambda: browser.find_elements(By.ID, "resume"), 10, "the paused job's Resume button")
    assert "(paused)" in browser.page_source and jobs.job_runs(job["id"], limit=1)[0]["paused"]
    browser.find_element(By.ID, "resume").click()
    wait_for(lambda: browser.find_elements(By.ID, "pause"), 10, "the resumed job's Pause button")
    assert not jobs.job_runs(job["id"], limit=1)[0]["paused"]

    browser.find_element(By.ID, "cancel").click()
    wait_for(lambda: browser.find_elements(By.ID, "confirm-cancel"), 10, "the confirmation")
    assert jobs.job_runs(job["id"], limit=1)[0]["status"] == "pending"  # asking is not cancelling
    _labels_ok(browser)
    _screenshot(browser, tmp_path, "cancel")
    browser.find_element(By.ID, "confirm-cancel").click()
    wait_for(lambda: "is cancelled" in browser.page_source, 10, "the cancelled notice")
    series = [(r["id"], r["status"], r["due_time"].isoformat()) for r in jobs.job_runs(job["id"], limit=10)]
    assert series[0][1] == "cancelled", f"the series after the cancel (newest first): {series}"

    browser.find_element(By.ID, "signout").click()
    wait_for(lambda: "You are signed out" in browser.page_source, 10, "the signed-out page")
    browser.get(f"{runner_up}/jobs/{job['id']}")
    assert browser.current_url.endswith("/signin") and "hello from" not in browser.page_source


def test_another_threads_job_is_a_404_page_and_a_hostile_job_shows_its_text_literally(
        runner_up: str, browser: webdriver.Chrome, jobs: Jobs, db: Database, tmp_path: Path) -> None:
    xss = jobs.schedule_job(thread_id=THREAD, name="xss", script_text=XSS, at="now")
    theirs = jobs.schedule_job(thread_id=OTHER, name="theirs", script_text="print('private')", every="hourly")
    wait_for(lambda: _ran(jobs, xss["id"], 1), 120, "the run of the xss job")
    _sign_in(browser, runner_up, make_token(db, THREAD))

    browser.get(f"{runner_up}/jobs/{theirs['id']}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert "theirs" not in browser.page_source and "private" not in browser.page_source
    _labels_ok(browser)
    _screenshot(browser, tmp_path, "not-found")

    browser.get(f"{runner_up}/jobs/{xss['id']}")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "pre.output"), 10, "the xss job's page")
    _no_dialog(browser)
    output = browser.find_element(By.CSS_SELECTOR, "pre.output").text
    assert "<script>alert(1)</script>" in output and '"><img src=x onerror=alert(2)>' in output
    assert "\\x1b[31mred" in output and "\\x1b]0;owned\\x07" in output  # escapes shown, not acted on
    message = browser.find_element(By.CSS_SELECTOR, "pre.message").text
    assert "<script>alert(3)</script>" in message and "onerror=alert(4)>" in message
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script, body script")
    _screenshot(browser, tmp_path, "xss-job")
    for page in ("/", "/jobs"):  # the overview and the list show its name and reason as text too
        browser.get(f"{runner_up}{page}")
        _no_dialog(browser)
        assert not browser.find_elements(By.CSS_SELECTOR, "img, script")
