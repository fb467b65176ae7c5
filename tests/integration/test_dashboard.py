"""The web dashboard (issue 15) in process over a real Postgres and real HTTP (uvicorn on loopback):
sign-in, the session cookie, CSRF, scope, escaping of what a job wrote and the error pages. The same
pages in a real browser are tests/browser/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from runner import tokens
from runner.dashboard.firstrun import first_admin_token, sign_in_hint
from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store

THREAD, OTHER = "telegram:42", "telegram:43"
HOSTILE = '<script>alert(1)</script> "><img src=x onerror=alert(2)> \x1b[31mred\x1b]0;title\x07'


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)


@pytest.fixture
def base(settings: Settings, jobs: Jobs, store: Store) -> Iterator[str]:
    server = HttpServer(create_app(settings, jobs, store), "127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _token(store: Store, name: str, thread: str | None = THREAD, read_only: bool = False) -> str:
    made = tokens.new_token()
    store.create_token(made, name=name, scope=tokens.Scope(thread=thread, admin=thread is None, read_only=read_only))
    return made.text


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found[1]


@contextmanager
def _signed_in(base: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30, headers={"Origin": base}) as c:
        form = c.get("/signin")
        assert form.status_code == 200 and 'type="password"' in form.text
        done = c.post("/signin", data={"token": token, "csrf": _csrf(form.text)})
        assert done.status_code == 303 and done.headers["location"] == "/", done.text
        cookie = done.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower(), cookie
        parsed = tokens.parse(token)
        assert parsed is not None and token not in cookie and parsed[1] not in cookie  # (a secret may hold "_")
        yield c


def _finished(db: Database, job_id: int, status: str, output: str, reason: str | None = None) -> None:
    db.query(f"UPDATE scheduled_jobs SET status = '{status}', started_at = due_time + interval '120 ms', "
             f"completed_at = due_time + interval '2 s', exit_code = {0 if status == 'completed' else 1}, "
             f"duration_ms = 1880, output_tail = $${output}$$, error_message = "
             f"{'NULL' if reason is None else '$$' + reason + '$$'} WHERE id = {job_id}")


def test_a_page_needs_a_session_and_a_bad_token_is_refused_with_a_sentence(base: str, store: Store) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        for path in ("/", "/jobs", "/jobs/1"):
            resp = c.get(path)
            assert resp.status_code == 303 and resp.headers["location"].startswith("/signin"), path
        form = c.get("/signin")
        bad = c.post("/signin", data={"token": "rnr_nope", "csrf": _csrf(form.text)})
        assert bad.status_code == 401 and "That token is not valid" in bad.text
        assert "runner_session" not in bad.headers.get("set-cookie", "")
        forged = c.post("/signin", data={"token": _token(store, "x"), "csrf": "forged"})
        assert forged.status_code == 303 and "runner_session" not in forged.headers.get("set-cookie", "")


def test_what_a_job_wrote_is_shown_as_text_and_no_script_may_run(base: str, store: Store, jobs: Jobs,
                                                                  db: Database) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="xss", script_text="print('x')", every="daily 9am",
                            tz="Europe/Berlin")
    _finished(db, job["id"], "failed", HOSTILE, reason=HOSTILE)
    with _signed_in(base, _token(store, "t")) as c:
        page = c.get(f"/jobs/{job['id']}")
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "&lt;img src=x onerror=alert(2)&gt;" in page.text
        assert "\x1b" not in page.text and "\x07" not in page.text and "\\x1b[31mred" in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp  # default-src 'none': no script at all
        overview = c.get("/")
        assert overview.status_code == 200 and "<script>alert" not in overview.text and "&lt;script&gt;" in overview.text
        listing = c.get("/jobs")
        assert "every day at 09:00" in listing.text or "daily 9am" in listing.text
        assert "<script>alert" not in listing.text


def test_a_thread_token_cannot_see_another_threads_job_and_bad_ids_are_404_pages(base: str, store: Store,
                                                                                  jobs: Jobs) -> None:
    theirs = jobs.schedule_job(thread_id=OTHER, name="secret", script_text="pass", every="hourly")
    mine = jobs.schedule_job(thread_id=THREAD, name="mine", script_text="pass", every="hourly")
    with _signed_in(base, _token(store, "t")) as c:
        for path in (f"/jobs/{theirs['id']}", "/jobs/999999", "/jobs/abc", "/jobs/-1", "/jobs/9" * 30,
                     f"/jobs/{theirs['id']}/cancel", "/no/such/page"):
            resp = c.get(path)
            assert resp.status_code == 404, (path, resp.status_code)
            assert resp.headers["content-type"].startswith("text/html") and "Not found" in resp.text, path
            assert "Traceback" not in resp.text and "secret" not in resp.text
        listing = c.get("/jobs", params={"thread": OTHER})  # the filter is an admin's: a thread token keeps its own
        assert "mine" in listing.text and "secret" not in listing.text
        act = c.post(f"/jobs/{theirs['id']}/pause", data={"csrf": _csrf(listing.text)})
        assert act.status_code == 404
        assert jobs.get_job(theirs["id"])["paused"] is False
        assert c.get(f"/jobs/{mine['id']}").status_code == 200
    with _signed_in(base, _token(store, "admin", thread=None)) as admin:
        both = admin.get("/jobs").text
        assert "mine" in both and "secret" in both
        only = admin.get("/jobs", params={"thread": OTHER}).text
        assert "secret" in only and ">mine<" not in only


def test_actions_need_the_sessions_csrf_value_and_pause_resume_run_and_cancel(base: str, store: Store,
                                                                               jobs: Jobs) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="tick", script_text="pass", every="daily 9am")
    with _signed_in(base, _token(store, "t")) as c:
        page = c.get(f"/jobs/{job['id']}")
        csrf = _csrf(page.text)
        assert c.post(f"/jobs/{job['id']}/pause", data={"csrf": "wrong"}).status_code == 403
        assert c.post(f"/jobs/{job['id']}/pause", data={}).status_code == 403
        other_site = c.post(f"/jobs/{job['id']}/pause", data={"csrf": csrf}, headers={"Origin": "http://evil.example"})
        assert other_site.status_code == 403
        assert c.post(f"/jobs/{job['id']}/pause", data={"csrf": csrf}, headers={"Origin": "null"}).status_code == 403
        assert jobs.get_job(job["id"])["paused"] is False
        behind_tls = base.replace("http://", "https://")  # a TLS proxy: the browser's scheme is not the server's
        done = c.post(f"/jobs/{job['id']}/pause", data={"csrf": csrf}, headers={"Origin": behind_tls})
        assert done.status_code == 303 and jobs.get_job(job["id"])["paused"] is True
        shown = c.get(done.headers["location"]).text
        assert "Job tick is paused." in shown and 'id="resume"' in shown
        again = c.post(f"/jobs/{job['id']}/pause", data={"csrf": csrf})
        assert again.status_code == 303  # a refusal of the service is the page's notice, in its words
        c.post(f"/jobs/{job['id']}/resume", data={"csrf": csrf})
        assert jobs.get_job(job["id"])["paused"] is False
        confirm = c.get(f"/jobs/{job['id']}/cancel")
        assert confirm.status_code == 200 and 'id="confirm-cancel"' in confirm.text
        assert jobs.get_job(job["id"])["status"] == "pending"  # asking is not cancelling
        c.post(f"/jobs/{job['id']}/cancel", data={"csrf": csrf})
        assert jobs.get_job(job["id"])["status"] == "cancelled"
        refused = c.get(c.post(f"/jobs/{job['id']}/pause", data={"csrf": csrf}).headers["location"]).text
        assert "Not done: job" in refused


def test_a_read_only_token_sees_no_buttons_and_is_refused(base: str, store: Store, jobs: Jobs) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="ro", script_text="pass", every="hourly")
    with _signed_in(base, _token(store, "ro", read_only=True)) as c:
        page = c.get(f"/jobs/{job['id']}").text
        assert 'id="run-now"' not in page and "read-only" in page
        resp = c.post(f"/jobs/{job['id']}/run", data={"csrf": _csrf(page)})
        assert resp.status_code == 403 and "read-only" in resp.text


def test_revoking_the_token_ends_the_session_and_sign_out_ends_it_too(base: str, store: Store) -> None:
    _token(store, "gone")
    with _signed_in(base, store_token := _token(store, "revoked")) as c:
        assert c.get("/").status_code == 200
        store.revoke_token("revoked")
        ended = c.get("/")
        assert ended.status_code == 303 and ended.headers["location"] == "/signin?why=ended"
        assert "revoked" in c.get("/signin?why=ended").text
    assert store_token
    with _signed_in(base, _token(store, "out")) as c:
        page = c.get("/")
        out = c.post("/signout", data={"csrf": _csrf(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/signin?why=out"
        assert c.get("/").status_code == 303


def test_the_overview_counts_the_last_day(base: str, store: Store, jobs: Jobs, db: Database) -> None:
    ok = jobs.schedule_job(thread_id=THREAD, name="good", script_text="pass")
    bad = jobs.schedule_job(thread_id=THREAD, name="bad", script_text="pass")
    jobs.schedule_job(thread_id=THREAD, name="soon", script_text="pass", at="in 20 minutes")
    _finished(db, ok["id"], "completed", "fine")
    _finished(db, bad["id"], "failed", "boom", reason="exit code 1: ValueError: no price")
    figures = store.overview(THREAD)
    assert figures.runs == {"completed": 1, "failed": 1}
    assert [f["name"] for f in figures.failures] == ["bad"]
    assert [j["name"] for j in figures.next_hour] == ["soon"]
    assert figures.lateness.n == 2 and figures.lateness.p50 == pytest.approx(120, abs=1)
    assert sum(figures.lateness.counts) == 2 and figures.lateness.counts[3] == 2  # 100-250 ms
    assert store.overview(OTHER).runs == {}
    with _signed_in(base, _token(store, "t")) as c:
        page = c.get("/").text
        assert "ValueError: no price" in page and "soon" in page and "<svg" in page and "120 ms" in page


def test_on_embedded_defaults_a_first_admin_token_is_made_once(settings: Settings, store: Store) -> None:
    embedded = settings.with_(database_url=None)  # what `make run` runs on (the store here is the test's)
    assert first_admin_token(settings, store) is None  # an operator's own database: nothing is made
    made = first_admin_token(embedded, store)
    assert made is not None
    found = store.token_scope(made)
    assert found is not None and found[1].admin and not found[1].read_only
    assert first_admin_token(embedded, store) is None  # one live admin token is enough
    hint = sign_in_hint("http://127.0.0.1:8080", "runner", made)
    assert hint.splitlines()[-1] == made and "http://127.0.0.1:8080/ " in hint
    store.revoke_token("dashboard")
    assert first_admin_token(embedded, store) is not None  # none live again: a new one
    assert "token create --admin" in sign_in_hint("http://127.0.0.1:8080", "runner", None)


def test_odd_requests_are_pages_with_a_sentence_never_a_traceback(base: str, store: Store, jobs: Jobs) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="odd", script_text="pass", every="hourly")
    with _signed_in(base, _token(store, "t")) as c:
        csrf = _csrf(c.get("/").text)
        big = c.post(f"/jobs/{job['id']}/pause", data={"csrf": csrf, "x": "a" * 20_000})
        many = c.post(f"/jobs/{job['id']}/pause", content="&".join(f"f{i}=1" for i in range(50)),
                      headers={"content-type": "application/x-www-form-urlencoded"})
        wrong_method = c.get("/signout")
        trailing = c.get("/jobs/")
        for resp, status in ((big, 413), (many, 400), (wrong_method, 405), (trailing, 404)):
            assert resp.status_code == status, (status, resp.status_code, resp.text[:300])
            assert resp.headers["content-type"].startswith("text/html") and "Traceback" not in resp.text
        assert jobs.get_job(job["id"])["paused"] is False
        api = c.get("/v1/nope")  # the API's own paths keep their problem documents
        assert api.status_code in (401, 404) and api.headers["content-type"].startswith("application/problem+json")
