"""Telegram delivery of the outbox, with aiogram.

Exactly once, as far as it can be:

* a message is claimed with a lease, chat by chat, oldest first (a chat's messages keep their order);
* each part of a long text and each attachment is recorded as sent right after Telegram accepts it,
  so a retry (after an outage, a 429 or a restart) resumes after the last part that went out;
* the lease is renewed while a message is sent, and checked before every request (see
  :mod:`runner.outbox_lease`): a sender that has lost it (frozen or cut off past it) stops before its
  next part, and a request never outlives it (its timeout is shorter than half the lease);
* the windows that cannot be closed, each at most one extra copy of one part: Telegram accepted a part
  and the runner died (or lost its lease) before the one-row UPDATE recording it, so that part is
  sent again after the lease expires (one database round trip long); and a request whose outcome is
  unknown (no answer within its timeout after it left): it is sent again, and counted in
  ``runner_telegram_unknown_outcomes_total``.

Rates: at most one message per second per chat and about 30 per second in all; a 429 pauses only its
chat for ``retry_after``; one slow or failing chat never holds up the others (each chat has its own
task). Transient faults (5xx, network) are retried a few times at once with tenacity, then with a
durable exponential backoff kept in the outbox row, forever: nothing queued is lost while Telegram is
down. Permanent faults (blocked by the user, chat not found, other 4xx) mark the message failed with
Telegram's reason. A group that became a supergroup is followed to ``migrate_to_chat_id``.

Texts over 4,096 characters are split on line boundaries (a line longer than that is cut). Text is
always sent as plain text (no parse mode), so a job cannot inject markup.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BufferedInputFile
from aiohttp import ClientConnectorError, ClientError, ConnectionTimeoutError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from .logsetup import redact
from .outage import apatiently
from .outbox_lease import LeaseLost, LeaseTooShort, OutboxLease
from .store import OUTBOX_CHANNEL, QUERIES, Database

log = logging.getLogger(__name__)

TEXT_LIMIT = 4096
PHOTO_LIMIT = 10 * 1024 * 1024
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")
T = TypeVar("T")


def make_bot(token: str, api_url: str | None = None, timeout: float = 20) -> Bot:
    """An aiogram Bot, pointed at ``api_url`` (a self-hosted Bot API server) when given. Plain text."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url)) if api_url else AiohttpSession()
    session.timeout = timeout
    return Bot(token=token, session=session, default=DefaultBotProperties(parse_mode=None))


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters (UTF-16 units, as Telegram counts),
    on line boundaries where possible."""
    if _utf16_len(text) <= limit:
        return [text] if text else []
    parts: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while _utf16_len(line) > limit:  # a single overlong line is cut
            cut = limit
            while _utf16_len(line[:cut]) > limit:
                cut -= 1
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:cut])
            line = line[cut:]
        if _utf16_len(current + line) > limit:
            parts.append(current)
            current = line
        else:
            current += line
    if current:
        parts.append(current)
    return [p.rstrip("\n") or p for p in parts]


class RateLimiter:
    """Spaces calls at least ``interval`` seconds apart (a token bucket of one)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            now = loop.time()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


@dataclass
class DeliveryConfig:
    """Rates and backoff; tests compress time by lowering them."""

    per_chat_interval: float = 1.0
    global_per_second: float = 30.0
    lease_seconds: int = 60
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    quick_retries: int = 3
    quick_wait: float = 0.5
    poll_interval: float = 30.0
    request_timeout: float = 20.0  # each send's timeout: shorter than half the lease

    def __post_init__(self) -> None:
        if self.request_timeout >= self.lease_seconds / 2:
            raise ValueError(f"the Bot API request timeout ({self.request_timeout} s) must be shorter than "
                             f"half the outbox lease ({self.lease_seconds} s)")


class _Permanent(Exception):
    pass


class _Later(Exception):
    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


def outcome_unknown(exc: TelegramNetworkError) -> bool:
    """A request that may have reached Telegram: no answer in time, or the connection broke after it
    was made. Not when the connection could not be made (then nothing left)."""
    cause = exc.__cause__
    if isinstance(cause, ClientConnectorError | ConnectionTimeoutError):
        return False
    return isinstance(cause, TimeoutError | ClientError)


class TelegramDelivery:
    """Delivers the outbox to Telegram until stopped. Runs in the bot's event loop."""

    def __init__(self, db: Database, bot: Bot, owner: str, token: str,
                 config: DeliveryConfig | None = None, on_event: Callable[[str], None] | None = None) -> None:
        self.db, self.bot, self.owner, self.token = db, bot, owner, token
        self.cfg = config or DeliveryConfig()
        self.limiter = RateLimiter(self.cfg.global_per_second)
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.last_sent: dict[str, float] = {}
        self.paused_until: dict[str, float] = {}
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.on_event = on_event or (lambda _e: None)

    async def _db(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """A named query off the event loop, waiting out a database outage (until stopped): a part
        Telegram accepted is recorded once the database is back, not sent again."""
        return await apatiently(asyncio.to_thread, self.stopping, self.db.all, name, params)

    # --- the loop --------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start a task per chat with due messages; sleep until a NOTIFY, the next retry, or the poll."""
        listener = asyncio.create_task(self._listen())
        try:
            while not self.stopping.is_set():
                try:
                    await self.dispatch()
                    row = (await self._db("seconds_until_next_message", {}))[0]
                    secs = row["seconds"] if row["seconds"] is not None else self.cfg.poll_interval
                except Exception as exc:  # the database is down: try again shortly
                    log.warning("telegram delivery: %s", redact(str(exc), self.token))
                    secs = 5.0
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=min(max(secs, 0.05), self.cfg.poll_interval))
                except TimeoutError:
                    pass
        finally:
            listener.cancel()
            for task in self.workers.values():
                task.cancel()
            await asyncio.gather(listener, *self.workers.values(), return_exceptions=True)

    async def _listen(self) -> None:
        """Wake the loop on each NOTIFY; through an outage, connect again with a backoff (tenacity)."""
        async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10.0) + wait_random(0, 0.5),
                                           retry=retry_if_exception_type(Exception), reraise=True):
            with attempt:
                if self.stopping.is_set():
                    return
                await self._listen_once()

    async def _listen_once(self) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(self.db.url, autocommit=True, connect_timeout=5) as conn:
                await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                self.wake.set()  # anything queued while it was not listening is looked at now
                async for _ in conn.notifies():
                    self.wake.set()
            if not self.stopping.is_set():
                raise psycopg.OperationalError("the LISTEN connection ended")
        except psycopg.Error as exc:
            log.debug("outbox listener: %s", exc)  # the outage itself is logged once, by the queries
            raise

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    async def dispatch(self) -> None:
        """One pass: a worker task for every chat with a due message that has none running."""
        for row in await self._db("chats_with_due_messages", {"limit": 1000}):
            chat = row["chat_id"]
            task = self.workers.get(chat)
            if task is None or task.done():
                self.workers[chat] = asyncio.create_task(self._chat_worker(chat), name=f"chat-{chat}")
        for chat in [c for c, t in self.workers.items() if t.done()]:
            del self.workers[chat]

    async def drain(self, timeout: float) -> None:
        """Deliver what is due now and wait for the chat tasks (burst mode and tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            await self.dispatch()
            running = [t for t in self.workers.values() if not t.done()]
            if not running:
                return
            await asyncio.wait(running, timeout=max(0.0, deadline - loop.time()))

    # --- one chat --------------------------------------------------------------------------------------

    async def _chat_worker(self, chat: str) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            pause = self.paused_until.get(chat, 0.0) - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            claimed_at = time.monotonic()
            rows = await self._db("claim_chat_head", {"chat_id": chat, "owner": self.owner,
                                                      "lease": self.cfg.lease_seconds})
            if not rows:
                return
            row = rows[0]
            try:
                await self._send_leased(row, claimed_at)
            except LeaseLost:
                log.warning("message %s for chat %s: lost its lease to another runner, which sends the rest; "
                            "stopped before the next part", row["id"], chat)
                self.on_event("lease_lost")
                return
            except LeaseTooShort as exc:
                await self._later(row, chat, _Later(str(exc), 1.0))
                return
            except _Permanent as exc:
                await self._db("mark_failed", {"id": row["id"], "owner": self.owner, "error": str(exc)})
                log.warning("message %s for chat %s failed: %s", row["id"], chat, exc)
                self.on_event("failed")
                continue
            except _Later as exc:
                await self._later(row, chat, exc)
                return  # the chat waits; a later pass restarts it when the message is due
            except Exception as exc:  # a bug or an answer nobody foresaw must not end the chat's deliveries
                log.exception("message %s for chat %s: unexpected error while sending", row["id"], chat)
                await self._later(row, chat, _Later(f"unexpected error: {type(exc).__name__}", self.cfg.backoff_max))
                return
            await self._db("mark_sent", {"id": row["id"], "owner": self.owner})
            log.info("message %s for %s (job %s) sent to chat %s", row["id"], row["thread_id"], row["job_name"], chat)
            self.on_event("sent")

    async def _later(self, row: dict[str, Any], chat: str, exc: _Later) -> None:
        await self._db("retry_later", {"id": row["id"], "owner": self.owner, "error": str(exc),
                                       "delay": exc.delay})
        log.info("message %s for chat %s: %s; retrying in %.1f s", row["id"], chat, exc, exc.delay)
        self.on_event("retry")

    async def _send_leased(self, row: dict[str, Any], claimed_at: float) -> None:
        """Send one claimed row while a heartbeat keeps its lease."""
        lease = OutboxLease(lambda: self._owned("renew_outbox_lease", {"id": row["id"]}),
                            self.cfg.lease_seconds, self.cfg.request_timeout, claimed_at)
        beat = asyncio.create_task(lease.heartbeat(), name=f"lease-{row['id']}")
        try:
            await self._send_row(row, lease)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)

    async def _owned(self, name: str, params: dict[str, Any]) -> bool:
        """Run an owner-checked outbox update (it renews the lease); False if it changed no row."""
        return bool(await self._db(name, {**params, "owner": self.owner, "lease": self.cfg.lease_seconds}))

    async def _send_row(self, row: dict[str, Any], lease: OutboxLease) -> None:
        chat, rid = row["chat_id"], row["id"]
        parts = split_text(row["text"])
        for i in range(row["parts_sent"], len(parts)):
            await self._call(chat, row, lease, lambda p=parts[i]: self.bot.send_message(
                chat_id=chat, text=p, request_timeout=self.cfg.request_timeout))  # type: ignore[arg-type]
            await lease.renew(lambda n=i + 1: self._owned("part_sent", {"id": rid, "parts_sent": n}))
        for att in await self._db("attachments_of", {"outbox_id": rid}):
            if att["sent"]:
                continue
            await self._call(chat, row, lease,
                             lambda a=att: self._send_file(chat, a["filename"], bytes(a["content"]), lease))
            await lease.renew(lambda a=att: self._owned("attachment_sent", {"id": a["id"], "outbox_id": rid}))

    async def _send_file(self, chat: str, filename: str, content: bytes, lease: OutboxLease) -> Any:
        file = BufferedInputFile(content, filename=filename)
        timeout: Any = self.cfg.request_timeout
        if filename.lower().endswith(PHOTO_SUFFIXES) and len(content) <= PHOTO_LIMIT:
            try:
                return await self.bot.send_photo(chat_id=chat, photo=file, request_timeout=timeout)
            except TelegramBadRequest:
                file = BufferedInputFile(content, filename=filename)  # not a photo Telegram accepts
                await lease.before_request()  # a second request: the lease must outlast it too
        return await self.bot.send_document(chat_id=chat, document=file, request_timeout=timeout)

    async def _call(self, chat: str, row: dict[str, Any], lease: OutboxLease, fn: Callable[[], Awaitable[T]]) -> T:
        """One Bot API call under the rate limits; exceptions become _Permanent or _Later."""
        loop = asyncio.get_running_loop()
        wait = self.last_sent.get(chat, -1e9) + self.cfg.per_chat_interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type((TelegramServerError, TelegramNetworkError)),
                stop=stop_after_attempt(self.cfg.quick_retries),
                wait=wait_exponential(multiplier=self.cfg.quick_wait, max=self.cfg.quick_wait * 4),
                reraise=True,
            ):
                with attempt:
                    await self.limiter.acquire()
                    await lease.before_request()
                    try:
                        return await fn()
                    except TelegramNetworkError as exc:
                        if outcome_unknown(exc):
                            self._unknown(row, chat)
                        raise
                    finally:
                        self.last_sent[chat] = loop.time()
        except TelegramRetryAfter as exc:
            self.paused_until[chat] = loop.time() + exc.retry_after
            raise _Later(f"rate limited by Telegram (retry after {exc.retry_after} s)", exc.retry_after) from exc
        except TelegramMigrateToChat as exc:
            new = str(exc.migrate_to_chat_id)
            await asyncio.to_thread(self._migrate, row["thread_id"], chat, new)
            raise _Later(f"chat migrated to {new}", 0.0) from exc
        except TelegramForbiddenError as exc:
            raise _Permanent(f"Telegram refused: {redact(exc.message, self.token)}") from exc
        except (TelegramBadRequest, TelegramNotFound) as exc:
            raise _Permanent(f"Telegram refused: {redact(exc.message, self.token)}") from exc
        except TelegramUnauthorizedError as exc:
            log.error("Telegram rejected the bot token: check TELEGRAM_BOT_TOKEN (messages are kept)")
            raise _Later("the bot token was rejected", self.cfg.backoff_max) from exc
        except (TelegramServerError, TelegramNetworkError, TelegramAPIError, ClientDecodeError, TimeoutError,
                OSError) as exc:  # ClientDecodeError: an answer that is not the Bot API's JSON (a proxy's page)
            delay = min(self.cfg.backoff_max, self.cfg.backoff_base * 2 ** max(0, row["attempts"] - 1))
            delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
            raise _Later(f"Telegram unavailable: {redact(str(exc), self.token)[:200]}", delay) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _unknown(self, row: dict[str, Any], chat: str) -> None:
        """The documented window: the request may have gone out. It is sent again (one extra copy at most)."""
        log.warning("message %s for chat %s: no answer from the Bot API within %g s; the part may have been "
                    "delivered and is sent again (counted in runner_telegram_unknown_outcomes_total)",
                    row["id"], chat, self.cfg.request_timeout)
        self.on_event("unknown")

    def _migrate(self, thread_id: str, old: str, new: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(QUERIES["migrate_chat"], {"thread_id": thread_id, "old_chat_id": old, "new_chat_id": new})
        log.info("thread %s: chat %s migrated to %s", thread_id, old, new)
