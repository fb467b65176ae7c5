"""Creating a job by a multipart upload (issue 14): the script as a file part, the other fields as form
fields, refused with exactly the sentences of the JSON body; and hostile uploads (a 10 MiB file, a file
name with ../ or a NUL, NUL and non-UTF-8 bytes in the script, too many parts), each a 4xx that says
why, with nothing saved and the server unharmed. Over loopback to uvicorn, on a real Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runner import tokens
from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store

THREAD = "telegram:42"
JOBS = f"/v1/threads/{THREAD}/jobs"
BOUNDARY = "----runner-test-boundary"


@pytest.fixture
def api(settings: Settings, jobs: Jobs, db: Database) -> Iterator[dict[str, Any]]:
    store = Store(db)
    auth = {}
    for name, read_only in (("writer", False), ("reader", True)):
        made = tokens.new_token()
        store.create_token(made, name=name, scope=tokens.Scope(thread=THREAD, admin=False, read_only=read_only))
        auth[name] = {"Authorization": f"Bearer {made.text}"}
    server = HttpServer(create_app(settings, jobs, store), "127.0.0.1:0")
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers=auth["writer"], timeout=30) as http:
            yield {"http": http, "reader": auth["reader"]}
    finally:
        server.stop()


def _form(*parts: tuple[str, bytes, bytes | None]) -> tuple[bytes, dict[str, str]]:
    """A multipart body written byte by byte (so that a hostile file name reaches the server as is):
    each part is (field, value, file name or None for a plain field)."""
    out = b""
    for field, value, filename in parts:
        disposition = b'form-data; name="' + field.encode() + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"\r\nContent-Type: text/x-python'
        out += b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n"
    out += b"--" + BOUNDARY.encode() + b"--\r\n"
    return out, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _problem(resp: httpx.Response, status: int, says: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    detail: str = resp.json()["detail"]
    assert says in detail and "Traceback" not in resp.text, detail
    return detail


def test_a_script_uploaded_as_a_file_part_is_saved_and_scheduled(api: dict[str, Any], settings: Settings,
                                                                  jobs: Jobs) -> None:
    source = "print('hello from an upload')\n"
    resp = api["http"].post(JOBS, files={"script": ("hello.py", source.encode(), "text/x-python")},
                            data={"name": "hello", "every": "daily 9am", "tz": "Europe/Berlin",
                                  "timeout_seconds": "45", "allow_hosts": ["api.example.com", "*.example.org"]})
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert (job["name"], job["recurrence"], job["timezone"], job["timeout_seconds"]) == (
        "hello", "daily 9am", "Europe/Berlin", 45)
    assert job["allow_hosts"] == ["api.example.com", "*.example.org"] and len(job["next_runs"]) == 5
    assert [p.read_text() for p in settings.data_dir.rglob("hello.py")] == [source]
    # the script as a plain form field works too
    plain = api["http"].post(JOBS, content=_form(("name", b"plain", None), ("script", b"pass", None),
                                                 ("when", b"in 1 hour", None))[0], headers=_form()[1])
    assert plain.status_code == 201, plain.text
    assert [r["name"] for r in jobs.list_jobs(thread_id=THREAD)] == ["plain", "hello"]


@pytest.mark.parametrize("fields", [
    {"name": "../x", "script": "pass"},
    {"name": "x", "script": "pass", "every": "daily 9"},
    {"name": "x", "script": "def (:\n"},
    {"name": "x", "script": "pass", "tz": "Mars/Olympus"},
    {"name": "x", "script": "pass", "when": "w" * 10_000},
    {"name": "x", "script": "pass", "timeout_seconds": "100000"},
    {"name": "x", "script": "pass", "retries": "eleven"},
    {"name": "x", "script": "pass", "after": "nothing"},
    {"name": "x", "script": "pass", "colour": "blue"},
    {"script": "pass"},
])
def test_an_upload_is_refused_with_exactly_the_sentence_of_the_json_body(api: dict[str, Any], jobs: Jobs,
                                                                          fields: dict[str, str]) -> None:
    as_json = api["http"].post(JOBS, json={k: int(v) if v.isdigit() else v for k, v in fields.items()})
    script = fields.get("script")
    rest = {k: v for k, v in fields.items() if k != "script"}
    uploaded = api["http"].post(JOBS, data=rest, files={"script": ("x.py", script.encode(), "text/x-python")}
                                if script is not None else None)
    if script is None:  # no file part at all: a form of text fields only
        uploaded = api["http"].post(JOBS, content=_form(*((k, v.encode(), None) for k, v in rest.items()))[0],
                                    headers=_form()[1])
    assert as_json.status_code == 422, as_json.text
    assert _problem(uploaded, 422, "") == as_json.json()["detail"]
    assert jobs.list_jobs() == []


def _hostile(api: dict[str, Any], body: bytes, headers: dict[str, str], status: int, says: str) -> None:
    _problem(api["http"].post(JOBS, content=body, headers=headers), status, says)


def test_hostile_uploads_are_4xx_with_a_reason_and_save_nothing(api: dict[str, Any], jobs: Jobs,
                                                                 settings: Settings) -> None:
    name = ("name", b"x", None)
    big, headers = _form(name, ("script", b"#" * (10 * 1024 * 1024), b"x.py"))
    _hostile(api, big, headers, 413, "larger than")
    for filename, status, says in ((b"../../etc/cron.d/x.py", 422, "has a path in it"),
                                   (b"..\\x.py", 422, "has a path in it"), (b"..", 422, "has a path in it"),
                                   (b"x\x00.py", 422, "control character"), (b"x\x1b[2J.py", 422, "control character"),
                                   (b"x\r.py", 400, "the form cannot be read")):  # a CR ends the part's header
        _hostile(api, *_form(name, ("script", b"pass", filename)), status, says)
    _hostile(api, *_form(name, ("script", b"print('a')\x00\n", b"x.py")), 422, "cannot be compiled")
    _hostile(api, *_form(name, ("script", b"print('\xff\xfe')\n", b"x.py")), 422,
             "script: the uploaded file is not UTF-8 text (byte 7): save it as UTF-8")
    _hostile(api, *_form(name, ("script", b"pass", b"a.py"), ("script", b"pass", b"b.py")), 400, "Too many files")
    _hostile(api, *_form(name, ("name", b"y", None), ("script", b"pass", None)), 422, "name: is given more than once")
    _hostile(api, *_form(*((f"f{i}", b"x", None) for i in range(100))), 400, "Too many fields")
    _hostile(api, b"--nope\r\ngarbage", {"Content-Type": "multipart/form-data"}, 400, "the form cannot be read")
    _hostile(api, b"name=x&script=pass", {"Content-Type": "text/plain"}, 415, "multipart/form-data")
    _hostile(api, b"name=x&script=pass", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
             "multipart/form-data")
    assert jobs.list_jobs() == []
    assert not list((settings.data_dir).rglob("*.py"))
    # a read-only token is refused before its upload is parsed; and the server still serves
    _problem(api["http"].post(JOBS, files={"script": ("x.py", b"pass")}, data={"name": "x"}, headers=api["reader"]),
             403, "read-only")
    assert api["http"].get("/v1/me").status_code == 200


def test_the_openapi_document_offers_json_and_the_multipart_form(api: dict[str, Any]) -> None:
    spec = api["http"].get("/v1/openapi.json").json()
    body = spec["paths"]["/v1/threads/{thread}/jobs"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    schemas = spec["components"]["schemas"]
    as_json, form = (schemas[body[kind]["schema"]["$ref"].rsplit("/", 1)[-1]]
                     for kind in ("application/json", "multipart/form-data"))
    assert form["required"] == as_json["required"] == ["name", "script"]
    assert form["properties"]["script"]["type"] == "string" and "maxLength" not in form["properties"]["script"]
    assert set(form["properties"]) == set(as_json["properties"])
