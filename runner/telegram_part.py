"""The Telegram side of ``runner up``: the bot (long polling) and outbox delivery, in one event loop
on their own thread, next to the scheduler's threads."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from . import metrics
from .bot import COMMANDS, build_dispatcher
from .logsetup import redact
from .outbox import OutboxLoop
from .outbox.telegram import DeliveryConfig, make_bot, telegram_delivery
from .service import Jobs
from .settings import Settings
from .store import Store
from .supervise import Part

log = logging.getLogger(__name__)


def delivery_config(settings: Settings) -> DeliveryConfig:
    """Delivery rates and backoff from the settings."""
    return DeliveryConfig(per_chat_interval=settings.telegram_per_chat_interval,
                          global_per_second=settings.telegram_per_second, lease_seconds=settings.lease_seconds,
                          backoff_max=settings.telegram_backoff_max, poll_interval=settings.poll_interval,
                          request_timeout=settings.request_timeout)


class TelegramService:
    """Runs the bot and the delivery loop until :meth:`stop`, on a :class:`~runner.supervise.Part`:
    if either dies, the whole service is started again with a backoff, and /healthz names it."""

    def __init__(self, settings: Settings, jobs: Jobs, *, polling: bool = True) -> None:
        assert settings.telegram_bot_token
        self.settings, self.jobs, self.polling = settings, jobs, polling
        self.loop: asyncio.AbstractEventLoop | None = None
        token = settings.telegram_bot_token
        self.part = Part("telegram", self._main, self._stop_life, scrub=lambda text: redact(text, token))
        self.delivery: OutboxLoop | None = None
        self._dp: Any = None
        self._started = threading.Event()
        self.error: BaseException | None = None

    @property
    def thread(self) -> threading.Thread:
        return self.part.thread

    def start(self) -> None:
        self.part.start()
        self._started.wait(timeout=30)

    def _main(self) -> None:
        """One life of the service: a fresh event loop, bot and dispatcher. Raises when it dies."""
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._run())
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self._started.set()
            loop.close()

    async def _run(self) -> None:
        s = self.settings
        token = s.telegram_bot_token or ""
        bot = make_bot(token, s.telegram_api_url, timeout=s.request_timeout)
        store = Store(self.jobs.db)
        store.route_channels(tuple(s.webhook_channel_urls()))  # those threads go by webhook
        self.delivery = telegram_delivery(store, bot, s.runner_id, token, delivery_config(s),
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
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if not self.delivery.stopping.is_set():  # one ended while nobody stopped it: the service died
                ended = next(iter(done))
                error = ended.exception()
                raise RuntimeError(f"its {ended.get_name()} task stopped: "
                                   f"{f'{type(error).__name__}: {error}' if error else 'it returned'}") from error
            await asyncio.gather(*tasks)
        finally:
            await self._end(tasks)
            await bot.session.close()

    async def _end(self, tasks: list[asyncio.Task[Any]]) -> None:
        """End this life's tasks: polling is stopped the dispatcher's way (its own tasks go with it)."""
        if self.delivery is not None:
            self.delivery.stop()
        if self.polling and self._dp is not None and any(t.get_name() == "polling" and not t.done() for t in tasks):
            try:
                await asyncio.wait_for(self._dp.stop_polling(), timeout=10)
            except (RuntimeError, TimeoutError):
                pass  # polling had not started, or would not stop: cancelled below
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def drain(self, timeout: float = 60) -> None:
        """Deliver everything due now (burst mode)."""
        if self.delivery is not None and self.loop is not None:
            asyncio.run_coroutine_threadsafe(self.delivery.drain(timeout), self.loop).result(timeout + 5)

    def status(self) -> str:
        """``ok`` while the bot and the delivery run (for /healthz)."""
        return self.part.status()

    def _stop_life(self) -> None:
        """Stop polling and delivery of the current life, if it runs."""
        loop = self.loop
        if loop is None or loop.is_closed():
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
            asyncio.run_coroutine_threadsafe(_stop(), loop).result(timeout=15)
        except (RuntimeError, TimeoutError):
            pass

    def stop(self) -> None:
        """Stop polling and delivery for good, and wait for the thread."""
        self.part.stop(timeout=20)
