"""The one delivery loop (runner.outbox.loop) over an in-memory outbox: what it records for each
outcome a sender reports, the order it keeps per chat, and lease loss. The database's side (the
queries, leases across runners, outages) is covered by the integration tests."""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Any, cast

import pytest

from runner.outbox import ConsoleSender, NoChannelSender, OutboxLoop, Outcome, Sending
from runner.store.outbox import OutboxStore

from ..waiting import wait_for


class MemoryOutbox:
    """The OutboxStore methods the loop calls, over a list of rows; records what it was told."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = {r["id"]: {"status": "pending", "due": True, "parts_sent": 0, "attempts": 0, "kind": "message",
                               "job_id": 1, "job_name": "j", "chat_id": None, "attachments": [], **r} for r in rows}
        self.recorded: list[tuple[str, int, Any]] = []
        self.owner_holds = True

    @staticmethod
    def _due(row: dict[str, Any]) -> bool:
        return bool(row["status"] == "pending" and row["due"])

    def _claim(self, row: dict[str, Any]) -> dict[str, Any]:
        row["status"], row["attempts"] = "sending", row["attempts"] + 1
        return dict(row)

    def claim_messages(self, *, owner: str, lease: float, limit: int, without_chat: bool = False) -> list[dict[str, Any]]:
        due = [r for r in self.rows.values() if self._due(r) and not (without_chat and r["chat_id"])]
        return [self._claim(r) for r in sorted(due, key=lambda r: r["id"])[:limit]]

    def chats_with_due_messages(self, limit: int = 1000) -> list[str]:
        return sorted({r["chat_id"] for r in self.rows.values() if self._due(r) and r["chat_id"]})

    def claim_chat_head(self, chat_id: str, *, owner: str, lease: float) -> dict[str, Any] | None:
        undelivered = sorted((r for r in self.rows.values() if r["chat_id"] == chat_id
                              and r["status"] in ("pending", "sending")), key=lambda r: r["id"])
        return self._claim(undelivered[0]) if undelivered and self._due(undelivered[0]) else None

    def seconds_until_next_message(self) -> float | None:
        return None

    async def listen(self) -> Any:
        raise OSError("no database here")

    def renew_outbox_lease(self, message_id: int, *, owner: str, lease: float) -> bool:
        return self.owner_holds

    def part_sent(self, message_id: int, parts_sent: int, *, owner: str, lease: float) -> bool:
        self.recorded.append(("part_sent", message_id, parts_sent))
        return self.owner_holds

    def attachments_of(self, message_id: int) -> list[dict[str, Any]]:
        return []

    def mark_sent(self, message_id: int, *, owner: str) -> None:
        self.rows[message_id]["status"] = "sent"
        self.recorded.append(("sent", message_id, None))

    def mark_failed(self, message_id: int, error: str | None, *, owner: str) -> None:
        self.rows[message_id]["status"] = "failed"
        self.recorded.append(("failed", message_id, error))

    def retry_later(self, message_id: int, error: str | None, delay: float, *, owner: str) -> None:
        self.rows[message_id].update(status="pending", due=False)  # not due again within the test
        self.recorded.append(("retry", message_id, (error, delay)))


class ChatSender:
    """A sender in chat order whose outcome for each message is given by its text."""

    in_chat_order = True
    request_timeout = 1.0

    def __init__(self) -> None:
        self.sent: list[int] = []

    async def send(self, message: dict[str, Any], sending: Sending) -> Outcome:
        await sending.before_request()
        if message["text"] == "boom":
            raise RuntimeError("a sender bug")
        if message["text"] == "later":
            return Outcome.retry("rate limited", 7.0)
        if message["text"] == "refused":
            return Outcome.failed("Telegram refused: chat not found")
        self.sent.append(message["id"])
        await sending.part_sent(1)
        return Outcome.sent()


def _loop(store: MemoryOutbox, sender: Any, events: list[str] | None = None, **kw: Any) -> OutboxLoop:
    on_event = events.append if events is not None else (lambda _e: None)
    return OutboxLoop(cast(OutboxStore, store), sender, "me", lease_seconds=6, on_event=on_event, **kw)


def test_the_console_gets_every_due_message_in_order_and_each_is_recorded_sent() -> None:
    store = MemoryOutbox([{"id": i, "thread_id": "console:1", "text": f"m{i}"} for i in (3, 1, 2)])
    out = io.StringIO()
    events: list[str] = []
    assert _loop(store, ConsoleSender(out), events, batch=2).deliver_due() == 3
    assert [line for line in out.getvalue().splitlines() if line.startswith("| ")] == ["| m1", "| m2", "| m3"]
    assert store.recorded == [("sent", 1, None), ("sent", 2, None), ("sent", 3, None)]
    assert events == ["sent"] * 3


def test_without_a_chat_the_no_channel_sender_fails_the_message_visibly() -> None:
    store = MemoryOutbox([{"id": 1, "thread_id": "console:1", "text": "x"}])
    _loop(store, NoChannelSender()).deliver_due()
    assert store.recorded == [("failed", 1, "thread console:1 has no Telegram chat to deliver to")]


def test_a_sender_bug_is_retried_later_and_the_next_messages_still_go() -> None:
    store = MemoryOutbox([{"id": 1, "thread_id": "a", "chat_id": "10", "text": "boom"},
                          {"id": 2, "thread_id": "b", "chat_id": "20", "text": "fine"}])
    sender = ChatSender()
    events: list[str] = []
    asyncio.run(_loop(store, sender, events, bug_delay=30.0).drain(10))
    assert ("retry", 1, ("unexpected error: RuntimeError", 30.0)) in store.recorded
    assert sender.sent == [2] and ("sent", 2, None) in store.recorded
    assert sorted(events) == ["retry", "sent"]


def test_a_chat_keeps_its_order_a_retry_holds_its_later_messages_and_a_failure_does_not() -> None:
    store = MemoryOutbox([{"id": 1, "thread_id": "a", "chat_id": "10", "text": "refused"},
                          {"id": 2, "thread_id": "a", "chat_id": "10", "text": "one"},
                          {"id": 3, "thread_id": "a", "chat_id": "10", "text": "later"},
                          {"id": 4, "thread_id": "a", "chat_id": "10", "text": "held back"},
                          {"id": 5, "thread_id": "b", "chat_id": "20", "text": "other chat"}])
    sender = ChatSender()
    asyncio.run(_loop(store, sender).drain(0.5))  # the chat's later messages are due: drain waits them out
    assert sorted(sender.sent) == [2, 5]
    assert [r for r in store.recorded if r[1] in (1, 2, 3, 4)] == [
        ("failed", 1, "Telegram refused: chat not found"), ("part_sent", 2, 1), ("sent", 2, None),
        ("retry", 3, ("rate limited", 7.0))]
    assert store.rows[4]["attempts"] == 0, "the message after a retried one waits its turn"


def test_a_lost_lease_records_nothing_and_stops_the_chat() -> None:
    store = MemoryOutbox([{"id": 1, "thread_id": "a", "chat_id": "10", "text": "one"}])
    store.owner_holds = False
    events: list[str] = []
    asyncio.run(_loop(store, ChatSender(), events).drain(10))
    assert store.recorded == [("part_sent", 1, 1)]
    assert events == ["lease_lost"]


def test_stop_from_another_thread_ends_run() -> None:
    loop = _loop(MemoryOutbox([]), ConsoleSender(io.StringIO()), poll_interval=30.0)
    runner = threading.Thread(target=loop.run_blocking)
    runner.start()
    wait_for(lambda: loop._loop is not None and loop._loop.is_running(), 10, "the loop to run")
    loop.stop()
    runner.join(timeout=10)
    assert not runner.is_alive(), "stop() woke the loop out of its 30 s sleep"


def test_once_stopped_the_console_loop_delivers_a_last_pass() -> None:
    store = MemoryOutbox([{"id": 1, "thread_id": "console:1", "text": "finished as the scheduler drained"}])
    out = io.StringIO()
    loop = _loop(store, ConsoleSender(out))
    loop.stop()
    loop.run_blocking()
    assert store.recorded == [("sent", 1, None)]
    assert "| finished as the scheduler drained" in out.getvalue()


def test_a_lease_shorter_than_twice_the_senders_request_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than half the outbox lease"):
        _loop(MemoryOutbox([]), type("Slow", (ChatSender,), {"request_timeout": 3.0})())
