"""Attacks on the web dashboard (issue 15) from outside, with the source open: the runner's HTTP server
(uvicorn on loopback, the app of create_app) over a real Postgres, as tests/integration/test_dashboard.py
serves it. Job scripts are hostile: what a job wrote is put in the database as a job could leave it.

Tests that fail on the code of their commit are findings (each docstring names the promise it breaks);
the others are tries that held and keep holding."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from runner import tokens
from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store
from tests.conftest import EGRESS_IMAGE, JOB_IMAGE

THREAD, OTHER = "telegram:42", "telegram:43"
FRAME_HEADERS = ("content-security-policy", "x-frame-options", "cache-control", "x-content-type-options")


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    """The shared settings without the security suite's runtime parameter: nothing here starts a job."""
    return Settings.from_env({
        "DATABASE_URL": pg_url, "RUNNER_DATA_DIR": str(tmp_path / "files"), "RUNNER_IMAGE": JOB_IMAGE,
        "RUNNER_EGRESS_IMAGE": EGRESS_IMAGE, "RUNNER_ID": f"test-{uuid.uuid4().hex[:8]}",
        "RUNNER_POLL_INTERVAL": "2", "RUNNER_LEASE_SECONDS": "30", "RUNNER_TIMEOUT": "20",
    })


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)


@pytest.fixture
def app(settings: Settings, jobs: Jobs, store: Store) -> FastAPI:
    return create_app(settings, jobs, store)


@pytest.fixture
def base(app: FastAPI) -> Iterator[str]:
    server = HttpServer(app, "127.0.0.1:0")
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


def _sign_in(c: httpx.Client, token: str) -> str:
    """Sign ``c`` in with ``token``; the session cookie's value."""
    form = c.get("/signin")
    done = c.post("/signin", data={"token": token, "csrf": _csrf(form.text)})
    assert done.status_code == 303 and done.headers["location"] == "/", done.text
    return c.cookies["runner_session"]


@contextmanager
def _signed_in(base: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30, headers={"Origin": base}) as c:
        _sign_in(c, token)
        yield c


def _page_not_500(resp: httpx.Response) -> None:
    assert resp.status_code < 500, f"{resp.status_code}: {resp.text[:500]}"
    assert "Traceback" not in resp.text and "Internal Server Error" not in resp.text, resp.text[:500]


def _sql(pg_url: str, sql: str, params: dict[str, object]) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql, params)


def _finished(pg_url: str, job_id: int, output: str, reason: str) -> None:
    _sql(pg_url, "UPDATE scheduled_jobs SET status = 'failed', started_at = due_time, completed_at = due_time + "
             "interval '2 s', exit_code = 1, duration_ms = 2000, output_tail = %(o)s, error_message = %(r)s "
             "WHERE id = %(id)s", {"o": output, "r": reason, "id": job_id})


# --- findings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/jobs/%C2%B2", "/jobs/%C2%B2/cancel", "/jobs/%E2%91%A0"])
def test_a_job_id_of_a_unicode_digit_is_a_404_page_not_a_500(base: str, store: Store, path: str) -> None:
    """Promise: no 500 and no traceback for bad input (ids). web.job_id_of checks str.isdigit(), which
    is true for '²' and '①', then int() raises ValueError: GET /jobs/² answers 500 Internal Server Error."""
    with _signed_in(base, _token(store, "t")) as c:
        resp = c.get(path)
        _page_not_500(resp)
        assert resp.status_code == 404, resp.text[:500]


def test_a_button_post_to_a_unicode_digit_job_id_is_not_a_500(base: str, store: Store) -> None:
    """Promise: no 500 for bad input (ids, forms): POST /jobs/²/run with the session's CSRF value."""
    with _signed_in(base, _token(store, "t")) as c:
        csrf = _csrf(c.get("/jobs").text)
        resp = c.post("/jobs/%C2%B2/run", data={"csrf": csrf})
        _page_not_500(resp)


@pytest.mark.parametrize("page", ["%C2%B2", "%C2%B9%C2%B2"])
def test_a_page_number_of_unicode_superscript_digits_is_not_a_500(base: str, store: Store, page: str) -> None:
    """Promise: no 500 for bad input (query strings). pages._page_number checks str.isdigit() and then
    int(): GET /jobs?page=² answers 500."""
    with _signed_in(base, _token(store, "t")) as c:
        _page_not_500(c.get(f"/jobs?page={page}"))


def test_signing_in_with_a_thread_token_many_times_does_not_sign_the_admin_out(app: FastAPI, base: str,
                                                                               store: Store) -> None:
    """Promise: a session lasts until its sign-out, its idle or age limit, or its token's revocation
    (sessions.py). The session table is one LRU of MAX_SESSIONS for every token together: whoever holds
    any token (a read-only thread token) can sign in MAX_SESSIONS times and so push every other session
    out, the admin's too. Shown here with the table's bound lowered to 5 (the code's is 10 000: the
    same loop, 10 000 sign-ins)."""
    app.state.dashboard.sessions.max_sessions = 5
    low = _token(store, "low", read_only=True)
    with _signed_in(base, _token(store, "root", None)) as admin:
        assert admin.get("/").status_code == 200
        with httpx.Client(base_url=base, timeout=30, headers={"Origin": base}) as attacker:
            for _ in range(5):
                attacker.cookies.clear()
                _sign_in(attacker, low)
        resp = admin.get("/")
        assert resp.status_code == 200, "the admin was signed out by another token's sign-ins"


def test_a_form_over_the_servers_body_limit_is_a_dashboard_page(base: str, store: Store) -> None:
    """Promise (runner.dashboard._html_errors): outside the API an error is a page, not a problem document,
    "a form too large" included, and every page carries the frame and cache headers. A form over the
    server's 2 MiB body limit (runner.http.serve) is answered by the server itself before the app: an
    application/problem+json 413 saying "send a smaller script or file", without Content-Security-Policy,
    X-Frame-Options or Cache-Control. Reproduce: POST /signin with a 3 MB form."""
    with _signed_in(base, _token(store, "t")) as c:
        for path in ("/signin", "/jobs/1/run"):
            resp = c.post(path, content=b"csrf=" + b"a" * 3_000_000,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert resp.status_code == 413
            assert resp.headers["content-type"].startswith("text/html"), resp.headers
            for header in FRAME_HEADERS:
                assert header in resp.headers, header


# --- held: escaping of what a job wrote ------------------------------------------------------------------

HOSTILE = ('<script>alert(1)</script>"><svg onload=alert(2)><a href="javascript:alert(3)">x</a>'
           '<style>body{background:url(//evil)}</style></pre></textarea><!-- '
           '\x1b]8;;http://evil\x07link\x1b]8;;\x07 \u202egnp.exe\u202c \u2066iso\u2069 \x1b[2J \u200b\ufeff')


def _no_markup_of_the_job(html: str) -> None:
    for bad in ("<script", "<svg onload", "<a href=\"javascript", "<style>", "</textarea>", "<!-- ", "\x1b",
                "\u202e", "\u2066", "\u200b", "\ufeff"):
        assert bad not in html, (bad, html[:3000])


def test_hostile_output_reason_message_and_script_are_shown_as_text(base: str, store: Store, jobs: Jobs,
                                                                    pg_url: str) -> None:
    """Held: output, reason, the message, the delivery error and the script itself are escaped text with
    terminal escapes, bidi controls and invisible characters made visible, on every page that shows them."""
    job = jobs.schedule_job(thread_id=THREAD, name="evil", script_text="print(1)\n# " + HOSTILE + "\n",
                            at="in 1 hour")
    _finished(pg_url, job["id"], HOSTILE, "Traceback: " + HOSTILE)
    _sql(pg_url, "INSERT INTO outbox (job_id, thread_id, job_name, kind, text, status, last_error) VALUES "
             "(%(id)s, %(t)s, 'evil', 'message', %(x)s, 'failed', %(x)s)", {"id": job["id"], "t": THREAD, "x": HOSTILE})
    for token in (_token(store, "t"), _token(store, "root", None)):
        with _signed_in(base, token) as c:
            for path in ("/", "/jobs", "/jobs?status=failed", f"/jobs/{job['id']}", f"/jobs/{job['id']}/cancel"):
                resp = c.get(path)
                assert resp.status_code == 200, (path, resp.text[:500])
                _no_markup_of_the_job(resp.text)
            assert "\\u202e" in c.get(f"/jobs/{job['id']}").text


@pytest.mark.parametrize("query", ["thread=%3Cscript%3Ealert(1)%3C/script%3E", "status=%3Cscript%3E",
                                   "status=%22%3E%3Cimg%20src%3Dx%3E", "thread=a%00b", "status=%00",
                                   "page=-1", "page=99999999999999999999", "page=%00", "thread=%ff%fe"])
def test_a_query_string_is_never_reflected_as_markup_nor_a_500(base: str, store: Store, query: str) -> None:
    """Held: a filter's value is checked before use; a refusal quotes it escaped, and a NUL never reaches
    Postgres."""
    with _signed_in(base, _token(store, "root", None)) as c:
        for path in ("/", "/jobs"):
            resp = c.get(f"{path}?{query}")
            _page_not_500(resp)
            assert "<script" not in resp.text and "<img" not in resp.text


def test_the_signin_page_reflects_no_text_of_the_url(base: str) -> None:
    """Held: ?why= picks a fixed sentence; anything else shows nothing."""
    with httpx.Client(base_url=base, timeout=30) as c:
        resp = c.get("/signin?why=%3Cscript%3Ealert(1)%3C/script%3E")
        assert resp.status_code == 200 and "<script" not in resp.text and "alert(1)" not in resp.text


# --- held: sessions, CSRF, scope ---------------------------------------------------------------------------


def test_the_session_cookie_is_httponly_strict_opaque_and_new_at_each_sign_in(base: str, store: Store) -> None:
    """Held: no fixation (a cookie set before sign-in is replaced by a new random one, and the planted one
    is not a session); the cookie holds no part of the token."""
    token = _token(store, "t")
    planted = {"Cookie": "runner_session=planted-by-attacker"}
    with httpx.Client(base_url=base, timeout=30, headers={"Origin": base}) as c:
        form = c.get("/signin", headers=planted)
        assert form.status_code == 200
        csrf = _csrf(form.text)
        done = c.post("/signin", data={"token": token, "csrf": csrf},
                      headers={"Cookie": f"runner_session=planted-by-attacker; runner_signin={csrf}"})
        assert done.status_code == 303, done.text[:300]
        cookie = done.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower(), cookie
        found = re.search(r"runner_session=([^;]+)", cookie)
        assert found is not None, cookie
        sid = found[1]
        assert sid != "planted-by-attacker" and len(sid) >= 40
        public_id, secret = tokens.parse(token) or ("?", "?")
        assert public_id not in sid and secret not in sid and secret[:12] not in cookie
    with httpx.Client(base_url=base, timeout=30) as other:
        other.cookies.set("runner_session", "planted-by-attacker")
        assert other.get("/").status_code == 303


def test_sign_out_and_revocation_end_the_session_for_a_replayed_cookie(base: str, store: Store) -> None:
    """Held: after sign-out the old cookie value (replayed) is no session; revoking the token ends its
    other sessions at their next request, GET or POST."""
    token = _token(store, "t")
    with _signed_in(base, token) as c:
        sid = c.cookies["runner_session"]
        out = c.post("/signout", data={"csrf": _csrf(c.get("/").text)})
        assert out.status_code == 303
    with httpx.Client(base_url=base, timeout=30, cookies={"runner_session": sid}) as replay:
        assert replay.get("/").status_code == 303
    with _signed_in(base, token) as c:
        csrf = _csrf(c.get("/").text)
        store.revoke_token("t")
        assert c.get("/").status_code == 303
        resp = c.post("/signout", data={"csrf": csrf})
        assert resp.status_code in (303, 401), resp.text[:300]


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
def test_a_cross_site_action_is_refused(base: str, store: Store, jobs: Jobs, origin: str) -> None:
    """Held: a POST whose Origin is another site (another loopback port is the same *site* for
    SameSite, so the cookie is sent: the Origin check and the CSRF value refuse it) is a 403 page."""
    job = jobs.schedule_job(thread_id=THREAD, name="victim", script_text="print(1)", at="in 1 hour")
    with _signed_in(base, _token(store, "t")) as c:
        csrf = _csrf(c.get(f"/jobs/{job['id']}").text)
        resp = c.post(f"/jobs/{job['id']}/pause", data={"csrf": csrf}, headers={"Origin": origin})
        assert resp.status_code == 403, resp.text[:300]
        for forged in ({"csrf": "x"}, {}, {"csrf": csrf + "x"}):
            assert c.post(f"/jobs/{job['id']}/cancel", data=forged).status_code == 403
    assert not jobs.get_job(job["id"])["paused"] and jobs.get_job(job["id"])["status"] == "pending"


def test_a_session_csrf_value_does_not_work_for_another_session(base: str, store: Store, jobs: Jobs) -> None:
    """Held: each session has its own CSRF secret."""
    job = jobs.schedule_job(thread_id=THREAD, name="victim", script_text="print(1)", at="in 1 hour")
    with _signed_in(base, _token(store, "a")) as a, _signed_in(base, _token(store, "b")) as b:
        theirs = _csrf(a.get("/").text)
        assert b.post(f"/jobs/{job['id']}/cancel", data={"csrf": theirs}).status_code == 403
    assert jobs.get_job(job["id"])["status"] == "pending"


def test_a_thread_token_reaches_no_other_thread_in_the_dashboard(base: str, store: Store, jobs: Jobs,
                                                                 pg_url: str) -> None:
    """Held: another thread's job page, cancel page and buttons are a 404 like a missing job; ?thread=
    of another thread shows the token's own thread; nothing of the other thread is on any page."""
    theirs = jobs.schedule_job(thread_id=OTHER, name="theirs", script_text="print('SECRET-OTHER')", at="in 1 hour")
    _finished(pg_url, theirs["id"], "SECRET-OUTPUT", "SECRET-REASON")
    with _signed_in(base, _token(store, "t")) as c:
        csrf = _csrf(c.get("/").text)
        for path in (f"/jobs/{theirs['id']}", f"/jobs/{theirs['id']}/cancel"):
            assert c.get(path).status_code == 404
        for action in ("run", "pause", "resume", "cancel"):
            assert c.post(f"/jobs/{theirs['id']}/{action}", data={"csrf": csrf}).status_code == 404
        for path in ("/", "/jobs", f"/?thread={OTHER}", f"/jobs?thread={OTHER}", f"/jobs?thread={OTHER}&status=failed"):
            resp = c.get(path)
            assert resp.status_code == 200
            assert "SECRET" not in resp.text and OTHER not in resp.text and "theirs" not in resp.text, path
    assert jobs.get_job(theirs["id"])["status"] == "failed"


def test_a_read_only_token_cannot_act(base: str, store: Store, jobs: Jobs) -> None:
    """Held: no buttons, and a POST with the right CSRF value is a 403 page that changes nothing."""
    job = jobs.schedule_job(thread_id=THREAD, name="victim", script_text="print(1)", at="in 1 hour")
    with _signed_in(base, _token(store, "ro", read_only=True)) as c:
        page = c.get(f"/jobs/{job['id']}")
        assert 'id="run-now"' not in page.text and 'id="pause"' not in page.text
        csrf = _csrf(page.text)
        for action in ("run", "pause", "cancel"):
            assert c.post(f"/jobs/{job['id']}/{action}", data={"csrf": csrf}).status_code == 403
    row = jobs.get_job(job["id"])
    assert row["status"] == "pending" and not row["paused"]


# --- held: headers, caching, and no 500 for bad input ---------------------------------------------------------


def test_every_page_and_error_page_forbids_framing_and_caching(base: str, store: Store) -> None:
    """Held: the sign-in page, a 404 of no route, a 405, a job page of a missing job and the redirects all
    carry frame-ancestors 'none', X-Frame-Options, no-store and nosniff."""
    with httpx.Client(base_url=base, timeout=30) as c:
        answers = [c.get("/signin"), c.get("/no/such/page"), c.get("/signout"), c.get("/"),
                   c.post("/signin", data={"x": "y"})]
    with _signed_in(base, _token(store, "t")) as s:
        answers += [s.get("/"), s.get("/jobs/999999"), s.get("/jobs/x"), s.post("/jobs/1/run", data={})]
    for resp in answers:
        _page_not_500(resp)
        for header in FRAME_HEADERS:
            assert header in resp.headers, (resp.request.url, resp.status_code, header)
        assert "no-store" in resp.headers["cache-control"] and "DENY" in resp.headers["x-frame-options"]
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]


@pytest.mark.parametrize("cookie", ["runner_session=\"", "runner_session=%00", "runner_session=;;;=;",
                                    "runner_session=" + "a" * 8000, "=; runner_signin=\"\\\"",
                                    "runner_session=\u00ff".encode().decode("latin-1")])
def test_a_malformed_cookie_is_no_session_and_no_500(base: str, cookie: str) -> None:
    """Held: a cookie header of any shape is read as no session (a redirect to sign in)."""
    with httpx.Client(base_url=base, timeout=30) as c:
        for method, path in (("GET", "/"), ("GET", "/jobs"), ("POST", "/signout"), ("POST", "/signin"),
                             ("POST", "/jobs/1/run")):
            resp = c.request(method, path, headers={"Cookie": cookie.encode("latin-1")}, data={"csrf": "x"})
            _page_not_500(resp)


@pytest.mark.parametrize("token", ["rnr_\x00", "rnr_" + "0" * 16 + "_" + "\x00" * 43, "\u00e9" * 100,
                                   "rnr_" + "a" * 16 + "_" + "\u0661" * 43, "x" * 15000])
def test_a_strange_token_at_sign_in_is_a_sentence_not_a_500(base: str, token: str) -> None:
    """Held: NUL bytes, non-ASCII letters and digits, and an overlong token are "not valid"."""
    with httpx.Client(base_url=base, timeout=30, headers={"Origin": base}) as c:
        form = c.get("/signin")
        resp = c.post("/signin", data={"token": token, "csrf": _csrf(form.text)})
        _page_not_500(resp)
        assert resp.status_code in (401, 413, 429), resp.text[:300]
        assert "runner_session" not in resp.headers.get("set-cookie", "")


@pytest.mark.parametrize("body,ctype", [(b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
                                        (b"a=" + b"&a=" * 50, "application/x-www-form-urlencoded"),
                                        (b"--x\r\nContent-Disposition: form-data; name=csrf\r\n\r\nz\r\n--x--",
                                         "multipart/form-data; boundary=x"),
                                        (b"{\"csrf\": 1}", "application/json"),
                                        (b"x" * 20000, "application/x-www-form-urlencoded")])
def test_a_strange_form_body_is_a_refusal_page_not_a_500(base: str, store: Store, body: bytes, ctype: str) -> None:
    """Held: bytes that are not UTF-8, too many fields, other content types and a form too large are a
    refusal page."""
    with _signed_in(base, _token(store, "t")) as c:
        for path in ("/signin", "/signout", "/jobs/1/pause"):
            resp = c.post(path, content=body, headers={"Content-Type": ctype})
            _page_not_500(resp)
            assert resp.status_code in (303, 400, 403, 404, 413), (path, resp.status_code)


# --- held: what a job left in its directory ----------------------------------------------------------------


def _jobs_dir(settings: Settings, thread: str) -> Path:
    from runner.threads import ThreadId

    return Path(settings.data_dir) / ThreadId.parse(thread).dir_name / "jobs"


@pytest.mark.parametrize("swap", ["link-other-thread", "link-etc", "fifo", "directory", "sparse", "jobs-dir-link"])
def test_a_script_a_job_swapped_for_a_link_fifo_or_huge_file_is_a_sentence_on_the_job_page(
        base: str, store: Store, jobs: Jobs, settings: Settings, swap: str) -> None:
    """Held: a job can replace its own jobs/<name>.py (or jobs/ itself) with a link to another thread's
    file or the host's, a FIFO (a read would block), a directory or a sparse file of 1 GB; the job page
    still answers at once, shows none of the other file and says why the script is not shown."""
    import os

    other = jobs.schedule_job(thread_id=OTHER, name="theirs", script_text="print('SECRET-OF-43')\n", at="in 1 hour")
    job = jobs.schedule_job(thread_id=THREAD, name="mine", script_text="print(1)\n", at="in 1 hour")
    mine, theirs = _jobs_dir(settings, THREAD), _jobs_dir(settings, OTHER)
    script = mine / "mine.py"
    if swap == "jobs-dir-link":
        (mine / "mine.py").unlink()
        mine.rmdir()
        mine.symlink_to(theirs)
        (theirs / "mine.py").write_text("print('SECRET-OF-43')\n")
    else:
        script.unlink()
        if swap == "link-other-thread":
            script.symlink_to(theirs / "theirs.py")
        elif swap == "link-etc":
            script.symlink_to("/etc/passwd")
        elif swap == "fifo":
            os.mkfifo(script)
        elif swap == "directory":
            script.mkdir()
        else:
            with open(script, "wb") as f:
                f.truncate(1 << 30)
    assert other["id"]
    with httpx.Client(base_url=base, timeout=10, headers={"Origin": base}) as c:
        _sign_in(c, _token(store, "t"))
        resp = c.get(f"/jobs/{job['id']}")
        _page_not_500(resp)
        assert resp.status_code == 200, resp.text[:300]
        assert "SECRET-OF-43" not in resp.text and "root:" not in resp.text


def test_a_flood_of_bad_sign_ins_is_slowed_but_never_locks_out_a_valid_token(base: str, store: Store) -> None:
    """Held: past the burst of failures the sign-in form answers 429 with a sentence; a valid token from
    the same address is still let in (a page that brute-forces tokens from the operator's own browser,
    through DNS rebinding, cannot lock the operator out)."""
    token = _token(store, "t")
    with httpx.Client(base_url=base, timeout=30, headers={"Origin": base}) as c:
        statuses = []
        for i in range(14):
            form = c.get("/signin")
            statuses.append(c.post("/signin", data={"token": f"rnr_{i:016x}_" + "A" * 43,
                                                    "csrf": _csrf(form.text)}).status_code)
        assert statuses[0] == 401 and statuses[-1] == 429, statuses
        c.cookies.clear()
        assert _sign_in(c, token)


@pytest.mark.parametrize("method,path", [("HEAD", "/"), ("HEAD", "/jobs/1"), ("OPTIONS", "/"), ("PUT", "/jobs/1/run"),
                                         ("DELETE", "/signout"), ("PATCH", "/signin"), ("TRACE", "/"),
                                         ("GET", "/jobs/1/run"), ("GET", "/%2e%2e/%2e%2e/etc/passwd"),
                                         ("GET", "/static/..%2fdashboard.css"), ("GET", "/jobs/" + "9" * 5000)])
def test_an_odd_method_or_path_is_a_page_not_a_500(base: str, store: Store, method: str, path: str) -> None:
    with _signed_in(base, _token(store, "t")) as c:
        resp = c.request(method, path)
        _page_not_500(resp)
        assert "root:" not in resp.text
