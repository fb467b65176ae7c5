"""What a sender is: it delivers one claimed outbox message to one channel and says what happened.

The delivery loop (:mod:`runner.outbox.loop`) claims messages, holds their leases and records the
outcomes; a sender only talks to its channel. One protocol fits every channel:

* ``send`` is a coroutine. The console prints at once; Telegram waits for rate limits and Bot API
  answers without holding a thread. A webhook sender awaits its HTTP request the same way.
* ``in_chat_order`` says how the loop claims for it: True, chat by chat, the oldest message of each
  chat first and one at a time per chat, each chat in a task of its own (Telegram: a chat's messages
  keep their order, and one slow chat never holds up the others); False, every due message in id
  order, in batches (the console, which has no chats). ``order_key`` (default ``"chat"``) names the
  key of that order: ``"thread"`` for the webhook sender, which takes only the threads that have a
  webhook, each thread's messages in order and one at a time.
* ``send`` is handed a :class:`Sending`: what the loop lets it do while it holds the message's lease,
  so a sender that sends in several requests (a long text's parts, the attachments) records each as
  it goes out and a retry resumes after it, and no request outlives the lease.
* ``request_timeout`` bounds each of the sender's requests; the loop refuses a lease shorter than twice
  that (0 for a sender that makes no requests).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from ..text import visible, visible_name

Message = dict[str, Any]  # an outbox row as claimed (see runner/store/sql/outbox.sql)


@dataclass(frozen=True)
class Outcome:
    """What a sender did with one message: ``sent``, ``retry`` (after ``delay`` s) or ``failed``."""

    kind: str
    error: str | None = None
    delay: float = 0.0

    @classmethod
    def sent(cls) -> Outcome:
        return cls("sent")

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls("failed", error=error)

    @classmethod
    def retry(cls, error: str, delay: float) -> Outcome:
        return cls("retry", error=error, delay=delay)


class Sending(Protocol):
    """What a sender may do while the loop holds a message's lease for it. Each step that records
    progress renews the lease; any of them raises :class:`~runner.outbox.lease.LeaseLost` once
    another runner holds the message (the sender then sends nothing more of it)."""

    async def before_request(self) -> None:
        """Call right before a request leaves: the lease must outlast it."""

    async def part_sent(self, parts_sent: int) -> None:
        """The first ``parts_sent`` parts of the text went out."""

    async def attachments(self) -> list[dict[str, Any]]:
        """The message's stored attachments (``id``, ``filename``, ``content``, ``sent``), in order."""

    async def attachment_sent(self, attachment_id: int) -> None:
        """That attachment went out (its bytes are not needed again)."""

    async def migrate_chat(self, new_chat_id: str) -> None:
        """The chat moved (a group became a supergroup): the thread and its messages follow it."""

    def event(self, name: str) -> None:
        """Count a delivery event the loop cannot see (``unknown``: a request that got no answer)."""


class Sender(Protocol):
    """Delivers one outbox message to one channel."""

    in_chat_order: bool
    request_timeout: float

    async def send(self, message: Message, sending: Sending) -> Outcome: ...


class ConsoleSender:
    """Prints each message to a stream (standard output by default), framed by a header and a footer.

    Everything from the job (its text, its attachments' names) is shown with its control characters
    made visible (:func:`runner.text.visible`), and every line of its text begins with ``| ``: no line
    a job writes can pass for the sender's own header, footer or attachment list, or act on the terminal."""

    PREFIX = "| "
    in_chat_order = False
    request_timeout = 0.0

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    async def send(self, message: Message, sending: Sending) -> Outcome:
        with self._lock:
            print(self.render(message), file=self.stream, flush=True)
        return Outcome.sent()

    @classmethod
    def render(cls, row: Message) -> str:
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

    in_chat_order = False
    request_timeout = 0.0

    async def send(self, message: Message, sending: Sending) -> Outcome:
        return Outcome.failed(f"thread {message['thread_id']} has no Telegram chat to deliver to")
