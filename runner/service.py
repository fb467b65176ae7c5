"""The Telegram side of ``runner up``: the bot (long polling) and outbox delivery, in one event loop
on their own thread, next to the scheduler's threads."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from . import metrics
from .api import Jobs
from .bot import COMMANDS, build_dispatcher
from .settings import Settings
from .telegram import DeliveryConfig, RedactingFilter, TelegramDelivery, make_bot

log = logging.getLogger(__name__)


def delivery_config(settings: Settings) -> DeliveryConfig:
    """Delivery rates and backoff from the settings."""
    return DeliveryConfig(per_chat_interval=settings.telegram_per_chat_interval,
                          global_per_second=settings.telegram_per_second, lease_seconds=settings.lease_seconds,
                          backoff_max=settings.telegram_backoff_max, poll_interval=settings.poll_interval,
                          request_timeout=settings.request_timeout)


def install_redaction(token: str) -> None:
    """Keep the token out of every log line, whoever logs it."""
    flt = RedactingFilter(token)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)


class TelegramService:
    """Runs the bot and the delivery loop until :meth:`stop`."""

    def __init__(self, settings: Settings, jobs: Jobs, *, polling: bool = True) -> None:
        assert settings.telegram_bot_token
        self.settings, self.jobs, self.polling = settings, jobs, polling
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="telegram", daemon=True)
        self.delivery: TelegramDelivery | None = None
        self._dp: Any = None
        self._started = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        self.thread.start()
        self._started.wait(timeout=30)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._run())
        except BaseException as exc:  # reported by stop()
            self.error = exc
            log.error("telegram service stopped: %s", exc)
        finally:
            self._started.set()
            self.loop.close()

    async def _run(self) -> None:
        s = self.settings
        token = s.telegram_bot_token or ""
        bot = make_bot(token, s.telegram_api_url, timeout=s.request_timeout)
        self.delivery = TelegramDelivery(self.jobs.db, bot, s.runner_id, token, delivery_config(s),
                                         on_event=metrics.on_message_event)
        self._dp = build_dispatcher(self.jobs, s.telegram_allowed_users, upload_cap=s.script_cap)
        tasks = [asyncio.create_task(self.delivery.run(), name="delivery")]
        if self.polling:
            try:
                await bot.set_my_commands(COMMANDS)
            except Exception as exc:  # not fatal: commands still work without the menu
                log.warning("could not set the bot's command menu: %s", exc)
            tasks.append(asyncio.create_task(
                self._dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=10),
                name="polling"))
        self._started.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            await bot.session.close()

    def drain(self, timeout: float = 60) -> None:
        """Deliver everything due now (burst mode)."""
        if self.delivery is not None:
            asyncio.run_coroutine_threadsafe(self.delivery.drain(timeout), self.loop).result(timeout + 5)

    def stop(self) -> None:
        """Stop polling and delivery, and wait for the thread."""
        if self.loop.is_closed():
            return

        async def _stop() -> None:
            if self.delivery is not None:
                self.delivery.stop()
            if self._dp is not None and self.polling:
                try:
                    await self._dp.stop_polling()
                except RuntimeError:
                    pass  # polling had not started

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(timeout=15)
        except (RuntimeError, TimeoutError):
            pass
        self.thread.join(timeout=20)
