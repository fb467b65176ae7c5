"""Delivery of the outbox: one loop (:mod:`.loop`) and one sender per channel.

* :mod:`.loop`: claims due messages under a lease, hands each to a sender, records the outcome, wakes
  on NOTIFY and waits out database outages. Its store access is :class:`runner.store.outbox.OutboxStore`.
* :mod:`.sender`: the :class:`Sender` protocol and :class:`Outcome`; the console and no-channel senders.
* :mod:`.telegram`: the Telegram sender (aiogram; imported on its own, so the console path does not load it).
* :mod:`.webhook`: the webhook sender (httpx; signed JSON to a thread's URL, claimed thread by thread).
* :mod:`.split`: a text cut into parts of at most 4,096 UTF-16 units.
* :mod:`.lease`: the lease on one message while it is sent.

A new channel is one more sender class handed to :class:`OutboxLoop`.
"""

from __future__ import annotations

from .lease import LeaseLost, LeaseTooShort, OutboxLease
from .loop import OutboxLoop
from .sender import ConsoleSender, Message, NoChannelSender, Outcome, Sender, Sending
from .split import TEXT_LIMIT, split_text

__all__ = ["TEXT_LIMIT", "ConsoleSender", "LeaseLost", "LeaseTooShort", "Message", "NoChannelSender", "OutboxLease",
           "OutboxLoop", "Outcome", "Sender", "Sending", "split_text"]
