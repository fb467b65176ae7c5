"""The side parts of ``runner up`` (the notifier, the Telegram service), each on a thread of its own,
restarted with a backoff (tenacity) when it dies: the process never runs half-alive, and /healthz
names a part that is down (503) until it runs again."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from . import metrics

log = logging.getLogger(__name__)


class PartEnded(Exception):
    """A part returned although nobody stopped it: as dead as one that raised."""


class Part:
    """Runs ``target`` on a thread until :meth:`stop`; when it raises (or returns unasked) it is
    reported dead, with the reason, and started again after a backoff of ``backoff_min`` doubling
    up to ``backoff_max`` seconds."""

    def __init__(self, name: str, target: Callable[[], None], stop: Callable[[], None], *,
                 backoff_min: float = 1.0, backoff_max: float = 60.0,
                 scrub: Callable[[str], str] = lambda text: text) -> None:
        self.name, self.target, self._stop_target, self.scrub = name, target, stop, scrub
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self._stopping = threading.Event()
        self._state = "starting"
        self.deaths = 0
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def status(self) -> str:
        """``ok`` while it runs; otherwise what happened (``dead: ...; restarting in N s``)."""
        return self._state

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop it for good (no restart) and wait for its thread."""
        self._stopping.set()
        self._stop_target()
        if self.thread.is_alive():
            self.thread.join(timeout=timeout)

    def _pause(self, seconds: float) -> None:
        """tenacity's sleep between lives: it ends early once stop() is called."""
        self._stopping.wait(seconds)

    def _main(self) -> None:
        retrying = Retrying(retry=retry_if_exception_type(BaseException),  # a cancelled event loop too
                            wait=wait_exponential(multiplier=self.backoff_min, max=self.backoff_max),
                            stop=stop_when_event_set(self._stopping), sleep=self._pause,
                            before_sleep=self._died, reraise=True)
        try:
            retrying(self._life)
        except BaseException as exc:  # noqa: BLE001 - stopping while it was dead: nothing left to do
            log.debug("%s: stopped while down: %s", self.name, exc)
        self._state = "stopped"

    def _life(self) -> None:
        if self._stopping.is_set():  # stopped during the backoff: not started again
            return
        self._state = "ok"
        self.target()
        if not self._stopping.is_set():
            raise PartEnded("it returned while nobody had stopped it")

    def _died(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        reason = self.scrub(f"{type(exc).__name__}: {exc}" if exc else "unknown")[:300]
        self.deaths += 1
        metrics.PART_DEATHS.labels(self.name).inc()
        self._state = f"dead: {reason}; restarting in {delay:.1f} s"
        log.error("%s died (%s); restarting it in %.1f s", self.name, reason, delay)
