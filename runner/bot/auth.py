"""Only listed Telegram users get answers; others get one polite refusal, and it is logged."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject

log = logging.getLogger(__name__)

REFUSAL = "Sorry, this is a private bot and you are not on its list of users."


class AllowedUsers(BaseMiddleware):
    """Outer middleware: drop updates from users not in ``TELEGRAM_ALLOWED_USERS``."""

    def __init__(self, allowed: frozenset[int]) -> None:
        self.allowed = allowed
        self.refused: set[int] = set()

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        user = getattr(event, "from_user", None)
        if user is not None and user.id in self.allowed:
            return await handler(event, data)
        uid = user.id if user is not None else None
        log.warning("refused an update from Telegram user %s (not in TELEGRAM_ALLOWED_USERS)", uid)
        if uid is not None and uid not in self.refused:
            self.refused.add(uid)
            if isinstance(event, Message):
                await event.answer(REFUSAL)
            elif isinstance(event, CallbackQuery):
                await event.answer(REFUSAL, show_alert=True)
        return None
