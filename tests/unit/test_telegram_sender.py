"""The Telegram sender (runner.outbox.telegram.TelegramSender) turns each Bot API answer into an
outcome for the loop, with a stand-in bot and a recording Sending; the real aiogram client against a
fake Bot API server is tests/integration/test_telegram.py."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiogram import Bot
from aiogram.exceptions import (
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import SendMessage

from runner.outbox import Outcome, split_text
from runner.outbox.telegram import DeliveryConfig, TelegramSender

TOKEN = "123456:secret-token"
METHOD = SendMessage(chat_id=1, text="x")


class StandInBot:
    """Answers each send_message with the next of ``answers`` (an exception is raised)."""

    def __init__(self, *answers: BaseException | None) -> None:
        self.answers = list(answers)
        self.texts: list[str] = []

    async def send_message(self, *, chat_id: str, text: str, request_timeout: float) -> None:
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        self.texts.append(text)


class Recorder:
    """A Sending that records what the sender did with it."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any]] = []

    async def before_request(self) -> None:
        self.steps.append(("request", None))

    async def part_sent(self, parts_sent: int) -> None:
        self.steps.append(("part", parts_sent))

    async def attachments(self) -> list[dict[str, Any]]:
        return []

    async def attachment_sent(self, attachment_id: int) -> None:
        self.steps.append(("attachment", attachment_id))

    async def migrate_chat(self, new_chat_id: str) -> None:
        self.steps.append(("migrate", new_chat_id))

    def event(self, name: str) -> None:
        self.steps.append(("event", name))


CFG = DeliveryConfig(per_chat_interval=0.0, global_per_second=1000.0, quick_retries=2, quick_wait=0.0,
                     backoff_base=2.0, backoff_max=300.0, lease_seconds=6, request_timeout=1.0)


def _send(bot: StandInBot, text: str = "hello", parts_sent: int = 0, attempts: int = 1) -> tuple[Outcome, Recorder]:
    sender = TelegramSender(cast(Bot, bot), TOKEN, CFG)
    sending = Recorder()
    message = {"id": 1, "chat_id": "42", "thread_id": "telegram:42", "text": text, "parts_sent": parts_sent,
               "attempts": attempts}
    return asyncio.run(sender.send(message, sending)), sending


def test_each_part_is_recorded_right_after_it_goes_out_and_a_retry_resumes_after_the_last() -> None:
    bot = StandInBot()
    text = "\n".join(f"line {i:04d} " + "x" * 90 for i in range(100))
    parts = split_text(text)
    assert len(parts) == 3
    outcome, sending = _send(bot, text, parts_sent=1)
    assert outcome == Outcome.sent()
    assert bot.texts == parts[1:], "the part recorded as sent is not sent again"
    assert sending.steps == [("request", None), ("part", 2), ("request", None), ("part", 3)]


def test_a_429_is_retried_after_telegrams_delay_and_pauses_only_its_chat() -> None:
    bot = StandInBot(TelegramRetryAfter(METHOD, "Too Many Requests", retry_after=7))
    sender = TelegramSender(cast(Bot, bot), TOKEN, CFG)
    message = {"id": 1, "chat_id": "42", "text": "x", "parts_sent": 0, "attempts": 1}

    async def go() -> tuple[Outcome, float]:
        outcome = await sender.send(message, Recorder())
        return outcome, sender.paused_until["42"] - asyncio.get_running_loop().time()

    outcome, paused = asyncio.run(go())
    assert outcome == Outcome.retry("rate limited by Telegram (retry after 7 s)", 7)
    assert 6 < paused <= 7 and list(sender.paused_until) == ["42"]


def test_a_refusal_fails_the_message_for_good_without_the_token() -> None:
    outcome, _ = _send(StandInBot(TelegramForbiddenError(METHOD, f"Forbidden: bot was blocked ({TOKEN})")))
    assert outcome.kind == "failed" and outcome.error is not None
    assert outcome.error.startswith("Telegram refused: Forbidden: bot was blocked") and TOKEN not in outcome.error


def test_a_migrated_chat_is_followed_and_the_message_retried_at_once() -> None:
    outcome, sending = _send(StandInBot(TelegramMigrateToChat(METHOD, "migrated", migrate_to_chat_id=-100777)))
    assert outcome == Outcome.retry("chat migrated to -100777", 0.0)
    assert ("migrate", "-100777") in sending.steps


def test_5xx_is_retried_at_once_then_backed_off_durably() -> None:
    quick, _ = _send(StandInBot(TelegramServerError(METHOD, "Bad Gateway")))
    assert quick == Outcome.sent(), "one 5xx is retried at once"
    later, sending = _send(StandInBot(*[TelegramServerError(METHOD, "Bad Gateway")] * 2), attempts=3)
    assert later.kind == "retry" and later.error == "Telegram unavailable: Telegram server says - Bad Gateway"
    assert 8 * 0.8 <= later.delay <= 8 * 1.2  # backoff_base * 2 ** (attempts - 1), with jitter
    assert sending.steps == [("request", None)] * 2
