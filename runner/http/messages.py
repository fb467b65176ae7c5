"""The messages feed of a thread: what its jobs said (messages and failure notices), for a client that
is not on Telegram. ``?after=<id>`` is the cursor (the last id the client has); ``?wait=<s>`` holds the
request until something newer is queued or the wait is over (long polling)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from ..store import Store
from . import models
from .auth import current_caller

router = APIRouter(prefix="/v1/threads/{thread}", tags=["messages"])
MAX_WAIT = 30
POLL_SECONDS = 0.5  # how often a held request looks again; NOTIFY-driven wake-ups can replace it


@router.get("/messages", response_model=models.Page[models.Message],
            summary="The thread's messages after a cursor, oldest first; wait holds the request until one comes")
async def messages(request: Request, thread: str,
                   after: Annotated[int, Query(ge=0, description="the last message id already seen")] = 0,
                   wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="seconds to wait for a new one")] = 0,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100) -> models.Page[models.Message]:
    caller = current_caller(request)
    tid = caller.thread(thread)
    authenticator = request.app.state.authenticate
    store: Store = request.app.state.store
    deadline = time.monotonic() + wait
    while True:
        rows = await run_in_threadpool(store.thread_messages, str(tid), after=after, limit=limit)
        if rows or time.monotonic() >= deadline or await request.is_disconnected():
            break
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        await run_in_threadpool(authenticator.still_live, caller)  # revoked while it waited: 401 at once
    if rows:  # and revoked between its authentication and the read: nothing handed over
        await run_in_threadpool(authenticator.still_live, caller)
    items = [models.Message.model_validate({**r, "attachments": list(r["attachments"] or [])}) for r in rows]
    return models.Page[models.Message](items=items, next_after=items[-1].id if len(items) == limit else None)
