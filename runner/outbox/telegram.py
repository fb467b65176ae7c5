"""The Telegram sender, with aiogram.

Exactly once, as far as it can be (the loop, :mod:`runner.outbox.loop`, claims and records; this
sends):

* a message is claimed with a lease, chat by chat, oldest first (``in_chat_order``: a chat's messages
  keep their order);
* each part of a long text and each attachment is recorded as sent right after Telegram accepts it,
  so a retry (after an outage, a 429 or a restart) resumes after the last part that went out;
* the lease is renewed while a message is sent, and checked before every request (see
  :mod:`runner.outbox.lease`): a sender that has lost it (frozen or cut off past it) stops before its
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

Texts over 4,096 characters are split on line boundaries (:mod:`runner.outbox.split`). Text is always
sent as plain text (no parse mode), so a job cannot inject markup.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ..logsetup import redact
from ..store.outbox import OutboxStore
from .loop import OutboxLoop
from .sender import Message, Outcome, Sending
from .split import split_text

log = logging.getLogger(__name__)

PHOTO_LIMIT = 10 * 1024 * 1024
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")
T = TypeVar("T")


def make_bot(token: str, api_url: str | None = None, timeout: float = 20) -> Bot:
    """An aiogram Bot, pointed at ``api_url`` (a self-hosted Bot API server) when given. Plain text."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url)) if api_url else AiohttpSession()
    session.timeout = timeout
    return Bot(token=token, session=session, default=DefaultBotProperties(parse_mode=None))


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


class TelegramSender:
    """Sends one outbox message to its chat: the text's parts, then the attachments, under the rate
    limits. Runs in the bot's event loop."""

    in_chat_order = True

    def __init__(self, bot: Bot, token: str, config: DeliveryConfig | None = None) -> None:
        self.bot, self.token = bot, token
        self.cfg = config or DeliveryConfig()
        self.request_timeout = self.cfg.request_timeout
        self.limiter = RateLimiter(self.cfg.global_per_second)
        self.last_sent: dict[str, float] = {}
        self.paused_until: dict[str, float] = {}

    def scrub(self, text: str) -> str:
        """``text`` without the bot token."""
        return redact(text, self.token)

    async def send(self, message: Message, sending: Sending) -> Outcome:
        try:
            await self._send_parts(message, sending)
            await self._send_attachments(message, sending)
        except _Permanent as exc:
            return Outcome.failed(str(exc))
        except _Later as exc:
            return Outcome.retry(str(exc), exc.delay)
        return Outcome.sent()

    async def _send_parts(self, message: Message, sending: Sending) -> None:
        chat = message["chat_id"]
        parts = split_text(message["text"])
        for i in range(message["parts_sent"], len(parts)):
            await self._call(message, sending, lambda p=parts[i]: self.bot.send_message(  # type: ignore[misc]
                chat_id=chat, text=p, request_timeout=self.cfg.request_timeout))  # type: ignore[arg-type]
            await sending.part_sent(i + 1)

    async def _send_attachments(self, message: Message, sending: Sending) -> None:
        chat = message["chat_id"]
        for att in await sending.attachments():
            if att["sent"]:
                continue
            await self._call(message, sending, lambda a=att: self._send_file(  # type: ignore[misc]
                chat, a["filename"], bytes(a["content"]), sending))
            await sending.attachment_sent(att["id"])

    async def _send_file(self, chat: str, filename: str, content: bytes, sending: Sending) -> Any:
        file = BufferedInputFile(content, filename=filename)
        timeout: Any = self.cfg.request_timeout
        if filename.lower().endswith(PHOTO_SUFFIXES) and len(content) <= PHOTO_LIMIT:
            try:
                return await self.bot.send_photo(chat_id=chat, photo=file, request_timeout=timeout)
            except TelegramBadRequest:
                file = BufferedInputFile(content, filename=filename)  # not a photo Telegram accepts
                await sending.before_request()  # a second request: the lease must outlast it too
        return await self.bot.send_document(chat_id=chat, document=file, request_timeout=timeout)

    async def _chat_turn(self, chat: str) -> None:
        """Wait for the chat's turn: one message per ``per_chat_interval``, none while a 429 pauses it."""
        loop = asyncio.get_running_loop()
        at = max(self.last_sent.get(chat, -1e9) + self.cfg.per_chat_interval, self.paused_until.get(chat, 0.0))
        if at > loop.time():
            await asyncio.sleep(at - loop.time())

    async def _call(self, message: Message, sending: Sending, fn: Callable[[], Awaitable[T]]) -> T:
        """One Bot API call under the rate limits; exceptions become _Permanent or _Later."""
        chat = message["chat_id"]
        await self._chat_turn(chat)
        try:
            return await self._attempts(message, sending, fn)
        except TelegramRetryAfter as exc:
            self.paused_until[chat] = asyncio.get_running_loop().time() + exc.retry_after
            raise _Later(f"rate limited by Telegram (retry after {exc.retry_after} s)", exc.retry_after) from exc
        except TelegramMigrateToChat as exc:
            new = str(exc.migrate_to_chat_id)
            await sending.migrate_chat(new)
            raise _Later(f"chat migrated to {new}", 0.0) from exc
        except (TelegramForbiddenError, TelegramBadRequest, TelegramNotFound) as exc:
            raise _Permanent(f"Telegram refused: {self.scrub(exc.message)}") from exc
        except TelegramUnauthorizedError as exc:
            log.error("Telegram rejected the bot token: check TELEGRAM_BOT_TOKEN (messages are kept)")
            raise _Later("the bot token was rejected", self.cfg.backoff_max) from exc
        except (TelegramServerError, TelegramNetworkError, TelegramAPIError, ClientDecodeError, TimeoutError,
                OSError) as exc:  # ClientDecodeError: an answer that is not the Bot API's JSON (a proxy's page)
            delay = min(self.cfg.backoff_max, self.cfg.backoff_base * 2 ** max(0, message["attempts"] - 1))
            delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
            raise _Later(f"Telegram unavailable: {self.scrub(str(exc))[:200]}", delay) from exc

    async def _attempts(self, message: Message, sending: Sending, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn`` with a few quick retries of 5xx and network faults, each under both rate limits and
        leaving only while the lease outlasts it."""
        chat = message["chat_id"]
        loop = asyncio.get_running_loop()
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((TelegramServerError, TelegramNetworkError)),
            stop=stop_after_attempt(self.cfg.quick_retries),
            wait=wait_exponential(multiplier=self.cfg.quick_wait, max=self.cfg.quick_wait * 4),
            reraise=True,
        ):
            with attempt:
                await self.limiter.acquire()
                await sending.before_request()
                try:
                    return await fn()
                except TelegramNetworkError as exc:
                    if outcome_unknown(exc):
                        self._unknown(message, sending)
                    raise
                finally:
                    self.last_sent[chat] = loop.time()
        raise AssertionError("unreachable")  # pragma: no cover

    def _unknown(self, message: Message, sending: Sending) -> None:
        """The documented window: the request may have gone out. It is sent again (one extra copy at most)."""
        log.warning("message %s for chat %s: no answer from the Bot API within %g s; the part may have been "
                    "delivered and is sent again (counted in runner_telegram_unknown_outcomes_total)",
                    message["id"], message["chat_id"], self.cfg.request_timeout)
        sending.event("unknown")


def telegram_delivery(store: OutboxStore, bot: Bot, owner: str, token: str, config: DeliveryConfig | None = None,
                      on_event: Callable[[str], None] | None = None) -> OutboxLoop:
    """The delivery loop with the Telegram sender: chats with due messages, each in its own task."""
    cfg = config or DeliveryConfig()
    sender = TelegramSender(bot, token, cfg)
    return OutboxLoop(store, sender, owner, lease_seconds=cfg.lease_seconds, poll_interval=cfg.poll_interval,
                      bug_delay=cfg.backoff_max, on_event=on_event or (lambda _e: None), scrub=sender.scrub)
