"""The one delivery loop over the outbox, whatever the channel.

It claims due messages under a lease (so a dead runner's messages are retried), hands each to a
:class:`~runner.outbox.sender.Sender` while a heartbeat renews the lease, and records the outcome:
sent, failed for good, or to be retried later. It sleeps until the next retry is due, a NOTIFY on the
outbox channel, or the poll interval, and waits out a database outage however long it lasts: an
outcome the channel reported is recorded once the database is back, never sent again.

How it claims is the sender's choice (``in_chat_order``): key by key, the oldest message of each
key first, one task per key (Telegram: by chat; a webhook, ``order_key = "thread"``: by thread, only
the threads delivered by webhook); or every due message in id order, in batches (the console).

It runs on an event loop: in the bot's (Telegram), or on one of its own in a thread of its own
(:meth:`OutboxLoop.run_blocking`, :meth:`OutboxLoop.deliver_due`: the console). :meth:`stop` may be
called from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential, wait_random

from .. import metrics
from ..errors import DatabaseError, DatabaseUnavailable
from ..outage import apatiently
from ..store.outbox import OutboxStore
from .lease import LeaseLost, LeaseTooShort, OutboxLease
from .sender import Message, Outcome, Sender

log = logging.getLogger(__name__)

T = TypeVar("T")
BUG_DELAY = 30.0  # seconds before a message whose sender raised is tried again
LEASE_SHORT_DELAY = 1.0  # seconds before a message whose lease could not be renewed in time is tried again


def count_outcome(event: str) -> None:
    """The console's events: only messages sent and failed are counted (the other events are Telegram's)."""
    if event in ("sent", "failed"):
        metrics.MESSAGES.labels(event).inc()


class _Held:
    """The :class:`~runner.outbox.sender.Sending` of one message: its lease, and the owner-checked
    steps that record its progress."""

    def __init__(self, loop: OutboxLoop, message: Message, lease: OutboxLease) -> None:
        self.loop, self.message, self.lease = loop, message, lease
        self.id: int = message["id"]

    async def before_request(self) -> None:
        await self.lease.before_request()

    async def part_sent(self, parts_sent: int) -> None:
        await self.lease.renew(lambda: self.loop.owned(self.loop.store.part_sent, self.id, parts_sent))

    async def attachments(self) -> list[dict[str, Any]]:
        return await self.loop.query(self.loop.store.attachments_of, self.id)

    async def attachment_sent(self, attachment_id: int) -> None:
        await self.lease.renew(lambda: self.loop.owned(self.loop.store.attachment_sent, attachment_id, self.id))

    async def migrate_chat(self, new_chat_id: str) -> None:
        thread, old = self.message["thread_id"], self.message["chat_id"]
        await asyncio.to_thread(self.loop.store.migrate_chat, thread, old, new_chat_id)
        log.info("thread %s: chat %s migrated to %s", thread, old, new_chat_id)

    def event(self, name: str) -> None:
        self.loop.on_event(name)


class OutboxLoop:
    """Delivers the outbox through one sender until stopped."""

    def __init__(self, store: OutboxStore, sender: Sender, owner: str, *, lease_seconds: float = 60,
                 poll_interval: float = 30.0, batch: int = 50, without_chat: bool = False,
                 bug_delay: float = BUG_DELAY, on_event: Callable[[str], None] = count_outcome,
                 scrub: Callable[[str], str] = str) -> None:
        if sender.request_timeout >= lease_seconds / 2:
            raise ValueError(f"the sender's request timeout ({sender.request_timeout} s) must be shorter than "
                             f"half the outbox lease ({lease_seconds} s)")
        self.store, self.sender, self.owner = store, sender, owner
        self.lease_seconds, self.poll_interval, self.batch = lease_seconds, poll_interval, batch
        self.without_chat, self.bug_delay = without_chat, bug_delay
        self.on_event, self.scrub = on_event, scrub
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- starting and stopping ----------------------------------------------------------------------

    def _bind(self) -> None:
        """Attach to the running event loop (a thread's loop may be a new one each time)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.stopping, self.wake = asyncio.Event(), asyncio.Event()
            self._loop = loop  # set before the flag is read: a stop() in between sees the loop
        if self._stop_requested.is_set():
            self._stopped()

    def _stopped(self) -> None:
        self.stopping.set()
        self.wake.set()

    def stop(self) -> None:
        """Finish the current pass and return from :meth:`run` (thread-safe)."""
        self._stop_requested.set()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:  # called on the loop itself: at once
                self._stopped()
                return
        except RuntimeError:
            pass  # another thread: no running loop here
        try:
            loop.call_soon_threadsafe(self._stopped)
        except RuntimeError:
            pass  # the loop closed meanwhile: nothing runs to be stopped

    def run_blocking(self) -> None:
        """:meth:`run` on an event loop of its own, in the calling thread."""
        asyncio.run(self.run())

    def deliver_due(self, timeout: float = 600.0) -> int:
        """:meth:`drain` on an event loop of its own: deliver what is due now. Returns how many were handled."""
        return asyncio.run(self.drain(timeout))

    # --- the loop -----------------------------------------------------------------------------------

    async def query(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store call off the event loop, waiting out a database outage (until stopped)."""
        return await apatiently(asyncio.to_thread, self.stopping, fn, *args, **kwargs)

    async def owned(self, fn: Callable[..., bool], *args: Any) -> bool:
        """An owner-checked store update that renews the lease; False if another runner holds the message."""
        return await self.query(fn, *args, owner=self.owner, lease=self.lease_seconds)

    async def run(self) -> None:
        """Deliver until :meth:`stop`, sleeping until a NOTIFY, the next retry, or the poll interval."""
        self._bind()
        listener = asyncio.create_task(self._listen(), name="outbox-listener")
        try:
            while not self.stopping.is_set():
                self.wake.clear()  # before the pass: a stop() or NOTIFY during it is not lost
                secs = await self._pass()
                if self.stopping.is_set():
                    break
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=min(max(secs, 0.05), self.poll_interval))
                except TimeoutError:
                    pass
            if not self.sender.in_chat_order:
                await self._last_pass()
        finally:
            listener.cancel()
            for task in self.workers.values():
                task.cancel()
            await asyncio.gather(listener, *self.workers.values(), return_exceptions=True)

    @property
    def by_thread(self) -> bool:
        """Keyed by thread (the webhook deliverer) rather than by chat."""
        return getattr(self.sender, "order_key", "chat") == "thread"

    def _due_keys(self) -> list[str]:
        return self.store.webhook_threads_with_due_messages() if self.by_thread else self.store.chats_with_due_messages()

    def _claim_head(self, key: str) -> Message | None:
        claim = self.store.claim_webhook_head if self.by_thread else self.store.claim_chat_head
        return claim(key, owner=self.owner, lease=self.lease_seconds)

    def _next_due(self) -> float | None:
        return (self.store.seconds_until_next_webhook_message() if self.by_thread
                else self.store.seconds_until_next_message())

    async def _pass(self) -> float:
        """One pass; the seconds until the next one is due."""
        try:
            await self.dispatch()
            secs = await self.query(self._next_due)
        except DatabaseError as exc:  # unreachable only once stopping, or a query that failed: again shortly
            log.warning("delivery: %s", self.scrub(str(exc)))
            return 5.0
        return secs if secs is not None else self.poll_interval

    async def _last_pass(self) -> None:
        """Stopped: what the scheduler finished last is delivered now, unless the database is away
        (then the messages wait in the outbox)."""
        try:
            await self.dispatch()
        except DatabaseUnavailable as exc:
            log.warning("delivery: %s", self.scrub(str(exc)))

    async def _listen(self) -> None:
        """Wake the loop on each NOTIFY; through an outage, connect again with a backoff."""
        async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10.0) + wait_random(0, 0.5),
                                           retry=retry_if_exception_type(Exception), reraise=True):
            with attempt:
                if self.stopping.is_set():
                    return
                await self._listen_once()

    async def _listen_once(self) -> None:
        try:
            async with await self.store.listen() as conn:
                self.wake.set()  # anything queued while it was not listening is looked at now
                await _each_notification(conn, self.wake.set)
            if not self.stopping.is_set():
                raise DatabaseUnavailable("the LISTEN connection ended")
        except Exception as exc:  # the outage itself is logged once, by the queries
            log.debug("outbox listener: %s", exc)
            raise

    async def dispatch(self) -> int:
        """One pass over what is due. Returns how many messages (in batches) or chats (in chat order)
        it took up."""
        if self.sender.in_chat_order:
            return await self._dispatch_chats()
        return await self._deliver_batches()

    async def drain(self, timeout: float) -> int:
        """Deliver what is due now and wait for it (burst mode and tests). Returns how many were handled."""
        self._bind()
        if not self.sender.in_chat_order:
            return await self._deliver_batches()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        started = 0
        while loop.time() < deadline:
            started += await self._dispatch_chats()
            running = [t for t in self.workers.values() if not t.done()]
            if not running:
                break
            await asyncio.wait(running, timeout=max(0.0, deadline - loop.time()))
        return started

    # --- claiming -----------------------------------------------------------------------------------

    async def _deliver_batches(self) -> int:
        """Every due message, in id order, a batch at a time."""
        handled = 0
        while True:
            claimed_at = time.monotonic()
            rows = await self.query(self.store.claim_messages, owner=self.owner, lease=self.lease_seconds,
                                 limit=self.batch, without_chat=self.without_chat)
            if not rows:
                return handled
            for row in rows:
                await self._deliver(row, claimed_at)
                handled += 1

    async def _dispatch_chats(self) -> int:
        """A task for every chat with a due message that has none running."""
        started = 0
        for chat in await self.query(self._due_keys):
            task = self.workers.get(chat)
            if task is None or task.done():
                self.workers[chat] = asyncio.create_task(self._chat_worker(chat), name=f"chat-{chat}")
                started += 1
        for chat in [c for c, t in self.workers.items() if t.done()]:
            del self.workers[chat]
        return started

    async def _chat_worker(self, chat: str) -> None:
        """A chat's messages, oldest first, until none is due or one must wait."""
        while not self.stopping.is_set():
            claimed_at = time.monotonic()
            row = await self.query(self._claim_head, chat)
            if row is None:
                return
            outcome = await self._deliver(row, claimed_at)
            if outcome is None or outcome.kind == "retry":
                return  # the chat waits; a later pass starts it again when its head is due

    # --- one message --------------------------------------------------------------------------------

    async def _deliver(self, row: Message, claimed_at: float) -> Outcome | None:
        """Send one claimed message under its lease and record the outcome; None if the lease was lost."""
        lease = OutboxLease(lambda: self.owned(self.store.renew_outbox_lease, row["id"]),
                            self.lease_seconds, self.sender.request_timeout, claimed_at)
        beat = asyncio.create_task(lease.heartbeat(), name=f"lease-{row['id']}")
        try:
            outcome = await self.sender.send(row, _Held(self, row, lease))
        except LeaseLost:
            log.warning("message %s for %s: lost its lease to another runner, which sends the rest; "
                        "stopped before the next part", row["id"], self._where(row))
            self.on_event("lease_lost")
            return None
        except LeaseTooShort as exc:
            outcome = Outcome.retry(str(exc), LEASE_SHORT_DELAY)
        except Exception as exc:  # a sender bug is retried later, never loses the message nor ends the loop
            log.exception("message %s for %s: unexpected error while sending", row["id"], self._where(row))
            outcome = Outcome.retry(f"unexpected error: {type(exc).__name__}", self.bug_delay)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        await self._record(row, outcome)
        return outcome

    async def _record(self, row: Message, outcome: Outcome) -> None:
        """Record a delivery's outcome, waiting out an outage: a message sent and not recorded would be
        sent again once its lease ran out."""
        rid, where = row["id"], self._where(row)
        if outcome.kind == "sent":
            await self.query(self.store.mark_sent, rid, owner=self.owner)
            to = f" to chat {row['chat_id']}" if self.sender.in_chat_order and not self.by_thread else ""
            log.info("message %s for %s (job %s) sent%s", rid, row["thread_id"], row["job_name"], to)
        elif outcome.kind == "failed":
            await self.query(self.store.mark_failed, rid, outcome.error, owner=self.owner)
            log.warning("message %s for %s failed: %s", rid, where, outcome.error)
        else:
            await self.query(self.store.retry_later, rid, outcome.error, outcome.delay, owner=self.owner)
            log.info("message %s for %s: %s; retrying in %.1f s", rid, where, outcome.error, outcome.delay)
        self.on_event(outcome.kind)

    def _where(self, row: Message) -> str:
        """Where a message goes, for the log: its chat (for a sender in chat order), else its thread."""
        return f"chat {row['chat_id']}" if self.sender.in_chat_order and not self.by_thread else str(row["thread_id"])


async def _each_notification(conn: Any, then: Callable[[], None]) -> None:
    """Call ``then`` for each NOTIFY on ``conn`` until it fails. The event loop wakes only when the
    connection's socket has something to read (psycopg's own ``notifies()`` looks every 0.1 s, which
    cost an idle runner ten times the CPU). What arrived is read with libpq directly: psycopg's
    ``notifies(timeout=0)`` gives up before reading, and its wait replaces this reader on the socket
    and removes it, so every NOTIFY after the first went unseen until the poll interval."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    fd = conn.fileno()
    pgconn = conn.pgconn
    loop.add_reader(fd, readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            try:
                pgconn.consume_input()  # the connection only LISTENs: nothing else reads it
            except Exception as exc:  # a closed or broken connection
                raise DatabaseUnavailable("the LISTEN connection ended") from exc
            while pgconn.notifies() is not None:
                then()
            if conn.closed or conn.broken:
                raise DatabaseUnavailable("the LISTEN connection ended")
    finally:
        loop.remove_reader(fd)
