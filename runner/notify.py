"""Outbox delivery. The notifier knows nothing of jobs beyond the outbox row.

A delivery loop claims due outbox rows with a lease (so a dead runner's messages are retried), hands
each to a :class:`Sender`, and records the outcome: sent, failed for good, or to be retried later.
Without a bot token the :class:`ConsoleSender` prints messages to the console.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from . import metrics
from .errors import DatabaseError, DatabaseUnavailable
from .outage import patiently
from .store import OUTBOX_CHANNEL, QUERIES, Database, Waker
from .text import visible, visible_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a sender did with one message: ``sent``, ``retry`` (after ``delay`` s) or ``failed``."""

    kind: str
    error: str | None = None
    delay: float = 0.0


class Sender(Protocol):
    """Delivers one outbox row."""

    def send(self, row: dict[str, Any]) -> Outcome: ...


class ConsoleSender:
    """Prints each message to a stream (standard output by default), framed by a header and a footer.

    Everything from the job (its text, its attachments' names) is shown with its control characters
    made visible (:func:`runner.text.visible`), and every line of its text begins with ``| ``: no line
    a job writes can pass for the sender's own header, footer or attachment list, or act on the terminal."""

    PREFIX = "| "

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def send(self, row: dict[str, Any]) -> Outcome:
        with self._lock:
            print(self.render(row), file=self.stream, flush=True)
        return Outcome("sent")

    @classmethod
    def render(cls, row: dict[str, Any]) -> str:
        """The block printed for one outbox row."""
        what = "failure notice" if row.get("kind") == "failure" else "message"
        header = (f"--- {what} for {visible_name(str(row['thread_id']))} from job "
                  f"{visible_name(str(row['job_name']))} (run {row['job_id']}) ---")
        text = visible(row.get("text") or "").rstrip("\n")
        lines = [header] + ([cls.PREFIX + line for line in text.split("\n")] if text else [])
        lines += [f"[attachment: {visible_name(name)}, {size} bytes]" for name, size in row.get("attachments") or []]
        return "\n".join([*lines, "-" * len(header)])


class NoChannelSender:
    """For threads with no chat to deliver to while only Telegram is configured: fail them visibly."""

    def send(self, row: dict[str, Any]) -> Outcome:
        return Outcome("failed", error=f"thread {row['thread_id']} has no Telegram chat to deliver to")


class Notifier:
    """The delivery loop over the outbox table."""

    def __init__(self, db: Database, sender: Sender, owner: str, *, lease_seconds: int = 60,
                 poll_interval: float = 30.0, batch: int = 50, without_chat: bool = False) -> None:
        self.db, self.sender, self.owner = db, sender, owner
        self.without_chat = without_chat
        self.lease_seconds, self.poll_interval, self.batch = lease_seconds, poll_interval, batch
        self.stopping = threading.Event()
        self._waker: Any = None

    def deliver_due(self) -> int:
        """Deliver every message that is due now. Returns how many were handled."""
        handled = 0
        while True:
            rows = self.db.all("claim_messages", {"limit": self.batch, "owner": self.owner,
                                                  "lease": self.lease_seconds, "without_chat": self.without_chat})
            if not rows:
                return handled
            for row in rows:
                self._deliver(row)
                handled += 1

    def _deliver(self, row: dict[str, Any]) -> None:
        try:
            outcome = self.sender.send(row)
        except Exception as exc:  # a sender bug is retried later, never loses the message
            log.exception("message %s: sender failed", row["id"])
            outcome = Outcome("retry", error=f"{type(exc).__name__}: {exc}", delay=30.0)
        params = {"id": row["id"], "owner": self.owner}
        if outcome.kind == "sent":
            self._exec("mark_sent", params)
            metrics.MESSAGES.labels("sent").inc()
            log.info("message %s for %s (job %s) sent", row["id"], row["thread_id"], row["job_name"])
        elif outcome.kind == "failed":
            self._exec("mark_failed", {**params, "error": outcome.error})
            metrics.MESSAGES.labels("failed").inc()
            log.warning("message %s for %s failed: %s", row["id"], row["thread_id"], outcome.error)
        else:
            self._exec("retry_later", {**params, "error": outcome.error, "delay": outcome.delay})

    def _exec(self, name: str, params: dict[str, Any]) -> None:
        """Record a delivery's outcome, waiting out an outage: a message sent and not recorded would
        be sent again once its lease ran out."""
        patiently(self._exec_once, self.stopping, name, params)

    def _exec_once(self, name: str, params: dict[str, Any]) -> None:
        with self.db.transaction() as conn:
            conn.execute(QUERIES[name], params)

    def run(self) -> None:
        """Deliver until :meth:`stop`, sleeping until the next retry or a NOTIFY; a database outage
        is waited out (logged once), however long."""
        self._waker = Waker(self.db, OUTBOX_CHANNEL)
        try:
            while not self.stopping.is_set():
                try:
                    self.deliver_due()
                    row = self.db.one("seconds_until_next_message")
                    secs = row["seconds"] if row and row["seconds"] is not None else self.poll_interval
                except DatabaseUnavailable:
                    self.db.wait_until_reachable(self.stopping)
                    continue
                except DatabaseError as exc:
                    log.warning("delivery: %s", exc)
                    secs = 5.0
                self._waker.sleep(min(max(secs, 0.0), self.poll_interval))
            try:
                self.deliver_due()
            except DatabaseUnavailable as exc:  # stopping during an outage: the messages wait in the outbox
                log.warning("delivery: %s", exc)
        finally:
            self._waker.close()

    def stop(self) -> None:
        """Finish the current pass and return from :meth:`run`."""
        self.stopping.set()
        if self._waker:
            self._waker.wake()
