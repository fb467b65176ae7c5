"""A thread's settings: its time zone and its webhook (the URL its messages are POSTed to, signed).

The webhook's secret is made by the runner (:func:`runner.webhook.new_secret`) and shown only in the
answer that made it (setting a first URL, or rotating); GET never shows it. A URL must pass the
operator's policy (:class:`runner.webhook.UrlPolicy`): https, an allowed host, no private address
unless the operator lists it; a refused URL is a 422 saying why."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request

from .. import webhook
from ..service import Jobs
from ..settings import Settings
from ..store import Store
from ..threads import ThreadId
from . import models
from .auth import CallerDep
from .problems import Problem

router = APIRouter(prefix="/v1/threads/{thread}/settings", tags=["settings"])


def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


JobsDep = Annotated[Jobs, Depends(_jobs)]


def _view(jobs: Jobs, tid: ThreadId, secret: str | None = None) -> models.ThreadSettingsView:
    s: Settings = jobs.settings
    row = jobs.store.thread_settings(str(tid))
    channel = str(tid).partition(":")[0] in s.webhook_channel_urls()
    via: Literal["thread", "channel"] | None = "thread" if row["webhook_url"] else ("channel" if channel else None)
    return models.ThreadSettingsView(timezone=row["timezone"] or s.default_timezone, webhook_url=row["webhook_url"],
                                     webhook=via, webhook_secret=secret)


@router.get("", response_model=models.ThreadSettingsView, summary="The thread's time zone and webhook")
def get_settings(thread: str, caller: CallerDep, jobs: JobsDep) -> models.ThreadSettingsView:
    return _view(jobs, caller.thread(thread))


@router.patch("", response_model=models.ThreadSettingsView,
              summary="Change the thread's time zone or webhook (null webhook_url removes it)")
def patch_settings(thread: str, body: models.ThreadSettings, caller: CallerDep,
                   jobs: JobsDep) -> models.ThreadSettingsView:
    tid = caller.thread(thread)
    caller.writing()
    given = body.model_fields_set
    url = None
    if "webhook_url" in given and body.webhook_url is not None:
        url = jobs.settings.webhook_policy.check(body.webhook_url)  # ValidationError: a 422 saying why
    if "timezone" in given:
        if body.timezone is None:
            raise Problem(422, "timezone cannot be removed: give an IANA zone such as Europe/Berlin")
        jobs.set_thread_timezone(tid, body.timezone)
    secret = None
    if "webhook_url" in given:
        store: Store = jobs.store
        fresh = webhook.new_secret()
        secret = fresh if store.set_thread_webhook(str(tid), url, fresh) else None
    return _view(jobs, tid, secret)


@router.post("/webhook-secret", response_model=models.WebhookSecret,
             summary="Make a new webhook signing secret (shown once; the old one stops at once)")
def rotate_secret(thread: str, caller: CallerDep, jobs: JobsDep) -> models.WebhookSecret:
    tid = caller.thread(thread)
    caller.writing()
    secret = webhook.new_secret()
    if not jobs.store.rotate_webhook_secret(str(tid), secret):
        raise Problem(409, f"thread {tid} has no webhook of its own: set webhook_url first "
                      "(PATCH /v1/threads/{thread}/settings)")
    return models.WebhookSecret(webhook_secret=secret)
