"""A typed client of the runner's HTTP API, over httpx, with the API's own models (runner.http.models).

    from runner.client import Client
    with Client("http://127.0.0.1:8080", token) as runner:
        job = runner.schedule_job("check_price", open("check_price.py").read(), every="daily 9am")
        for message in runner.messages(wait=30):
            print(message.text)

The thread is the token's own for a thread token, or the one given for an admin token. Every refusal
raises :class:`ApiError`, carrying the HTTP status and the problem's ``detail`` (the sentence that says
what to change)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from .http import models
from .http.models import Job, Message, Run

__all__ = ["ApiError", "Client", "Job", "Message", "Run"]


class ApiError(Exception):
    """The API refused a request: ``status`` is the HTTP status, ``detail`` what to change."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


class Client:
    """The runner's API for one thread."""

    def __init__(self, url: str, token: str, thread: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                  timeout=timeout, transport=transport)
        try:
            self.thread = thread or self._own_thread()
        except BaseException:
            self._http.close()  # a token refused here leaves no connection open
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing ------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ApiError(0, f"could not reach the runner at {self._http.base_url}: {exc}") from None
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, _detail(resp))
        return resp

    def _thread_path(self, rest: str) -> str:
        return f"/v1/threads/{quote(self.thread, safe=':')}{rest}"

    def _own_thread(self) -> str:
        me = self._request("GET", "/v1/me").json()
        if me["thread"] is None:
            raise ApiError(400, "an admin token reaches every thread: give the thread, Client(url, token, thread=...)")
        return str(me["thread"])

    def _job(self, method: str, rest: str, **kw: Any) -> Job:
        return Job.model_validate(self._request(method, self._thread_path(rest), **kw).json())

    # --- jobs ----------------------------------------------------------------------------------------

    def schedule_job(self, name: str, script: str, when: str = "now", every: str | None = None,
                     tz: str | None = None, timeout_seconds: int | None = None, memory_mb: int | None = None,
                     allow_hosts: Sequence[str] = (), after: str | None = None, **policies: Any) -> Job:
        """Save ``script`` as jobs/<name>.py and schedule it (``when`` is ignored with ``after``, and with
        ``every`` when left at "now": the first run is then the recurrence's next time)."""
        body = models.JobCreate.model_validate({
            "name": name, "script": script, "when": None if after or (every and when == "now") else when,
            "every": every, "tz": tz, "timeout_seconds": timeout_seconds, "memory_mb": memory_mb,
            "allow_hosts": list(allow_hosts), "after": after, **policies})
        return self._job("POST", "/jobs", json=body.model_dump(exclude_none=True))

    def list_jobs(self, status: str | None = None, *, limit: int = 100, before: int | None = None) -> list[Job]:
        """One page of the thread's jobs (one per run), newest first: at most ``limit`` (up to 200), with
        ids below ``before`` if given. :meth:`iter_jobs` goes through all of them."""
        return self._jobs_page(status, limit, before)[0]

    def iter_jobs(self, status: str | None = None, *, page: int = 200) -> Iterator[Job]:
        """Every job of the thread, newest first, fetched ``page`` at a time (following each page's
        ``Link: rel="next"``)."""
        before: int | None = None
        while True:
            jobs, before = self._jobs_page(status, page, before)
            yield from jobs
            if before is None:
                return

    def _jobs_page(self, status: str | None, limit: int, before: int | None) -> tuple[list[Job], int | None]:
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {}),
                                  **({"before": before} if before else {})}
        resp = self._request("GET", self._thread_path("/jobs"), params=params)
        return [Job.model_validate(r) for r in resp.json()], _next_before(resp)

    def get_job(self, job_id: int) -> Job:
        return self._job("GET", f"/jobs/{int(job_id)}")

    def runs(self, job_id: int, limit: int = 20, *, before: int | None = None) -> list[Run]:
        """A job's runs, newest first: at most ``limit`` (up to 100), with ids below ``before`` if given."""
        params: dict[str, Any] = {"limit": limit, **({"before": before} if before else {})}
        rows = self._request("GET", self._thread_path(f"/jobs/{int(job_id)}/runs"), params=params).json()
        return [Run.model_validate(r) for r in rows]

    def update(self, job_id: int, **fields: Any) -> Job:
        body = models.JobUpdate.model_validate(fields)
        return self._job("PATCH", f"/jobs/{int(job_id)}", json=body.model_dump(exclude_unset=True))

    def cancel(self, job_id: int) -> Job:
        return self._job("POST", f"/jobs/{int(job_id)}/cancel")

    def run_now(self, job_id: int) -> Job:
        return self._job("POST", f"/jobs/{int(job_id)}/run")

    def pause(self, job_id: int) -> Job:
        return self._job("POST", f"/jobs/{int(job_id)}/pause")

    def resume(self, job_id: int) -> Job:
        return self._job("POST", f"/jobs/{int(job_id)}/resume")

    # --- files, messages, schedules ------------------------------------------------------------------

    def write_file(self, name: str, data: bytes | str) -> None:
        content = data.encode("utf-8") if isinstance(data, str) else data
        self._request("PUT", self._thread_path(f"/files/{quote(name, safe='')}"), content=content,
                      headers={"Content-Type": "application/octet-stream"})

    def read_file(self, name: str) -> bytes:
        return self._request("GET", self._thread_path(f"/files/{quote(name, safe='')}")).content

    def list_files(self) -> list[str]:
        return [f["name"] for f in self._request("GET", self._thread_path("/files")).json()["files"]]

    def delete_file(self, name: str) -> None:
        self._request("DELETE", self._thread_path(f"/files/{quote(name, safe='')}"))

    def file_infos(self) -> tuple[list[models.FileInfo], int]:
        """The plain files of the thread's jobs/ (name, size, modified), and how many other entries it holds."""
        got = self._request("GET", self._thread_path("/files")).json()
        return [models.FileInfo.model_validate(f) for f in got["files"]], int(got.get("other", 0))

    def preview_schedule(self, when: str | None = None, every: str | None = None, tz: str | None = None,
                         n: int = 5) -> models.PreviewResult:
        """The next ``n`` times of ``every`` from ``when`` (or the one time ``when`` names), and their zone."""
        body = models.Preview.model_validate({"when": when, "every": every, "tz": tz, "n": n})
        got = self._request("POST", "/v1/preview", json=body.model_dump(exclude_none=True)).json()
        return models.PreviewResult.model_validate(got)

    def limits(self) -> dict[str, Any]:
        """The limits in force on the runner (GET /v1/limits)."""
        got: dict[str, Any] = self._request("GET", "/v1/limits").json()
        return got

    def messages(self, after: int | None = None, wait: float = 0) -> list[Message]:
        """The thread's messages after the id ``after`` (all with None), waiting up to ``wait`` seconds
        for one when there is none yet."""
        params = {"after": after or 0, "wait": wait}
        page = self._request("GET", self._thread_path("/messages"), params=params,
                             timeout=self._http.timeout.read + wait if self._http.timeout.read else None).json()
        return [Message.model_validate(m) for m in page["items"]]

    # --- the thread's settings ----------------------------------------------------------------------

    def thread_settings(self) -> models.ThreadSettingsView:
        """The thread's time zone and webhook (never its secret)."""
        got = self._request("GET", self._thread_path("/settings")).json()
        return models.ThreadSettingsView.model_validate(got)

    def update_thread_settings(self, **fields: Any) -> models.ThreadSettingsView:
        """Change ``timezone`` and/or ``webhook_url`` (None removes the webhook). The answer carries
        ``webhook_secret`` only when a webhook was first set: keep it, it is not shown again."""
        body = models.ThreadSettings.model_validate(fields)
        got = self._request("PATCH", self._thread_path("/settings"), json=body.model_dump(exclude_unset=True)).json()
        return models.ThreadSettingsView.model_validate(got)

    def rotate_webhook_secret(self) -> str:
        """A new signing secret for the thread's webhook (the old one stops signing at once)."""
        got = self._request("POST", self._thread_path("/settings/webhook-secret")).json()
        return models.WebhookSecret.model_validate(got).webhook_secret

    def preview(self, expr: str, tz: str | None = None, n: int = 5) -> list[datetime]:
        """The next ``n`` times of a recurrence (or the one time of a one-off ``when``), creating nothing."""
        body = models.Preview.model_validate({"every" if _recurring(expr) else "when": expr, "tz": tz, "n": n})
        got = self._request("POST", "/v1/preview", json=body.model_dump(exclude_none=True)).json()
        return models.PreviewResult.model_validate(got).times


def _next_before(resp: httpx.Response) -> int | None:
    """The ``before`` cursor of the next page, from the answer's ``Link: <…>; rel="next"``; None: last page."""
    nxt = resp.links.get("next", {}).get("url")
    found = parse_qs(urlsplit(nxt).query).get("before") if nxt else None
    return int(found[0]) if found and found[0].isdigit() else None


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500] or resp.reason_phrase
    return str(body.get("detail") or body) if isinstance(body, dict) else str(body)


def _recurring(expr: str) -> bool:
    from .errors import ScheduleError
    from .schedule import parse_recurrence

    try:
        parse_recurrence(expr)
    except ScheduleError:
        return False
    return True
