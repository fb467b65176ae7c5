"""The webhook sender: a thread's messages POSTed as signed JSON to its webhook URL (issue 14).

The loop (:mod:`runner.outbox.loop`) claims for it thread by thread (``order_key = "thread"``): the
oldest undelivered message of a thread first, one at a time per thread, each thread in a task of its
own, so a slow or failing receiver holds up only its own thread. One message is one POST:

* the body is JSON: ``id`` (the outbox id, also the ``Idempotency-Key`` header: a receiver that has
  seen it answers 2xx and does nothing), ``thread``, ``job_id``, ``job_name``, ``kind``, ``text``,
  ``attachments`` (``name`` and base64 ``content``) and ``created_at``;
* ``Runner-Signature: t=<unix seconds>,v1=<hex>`` signs the exact body bytes with the thread's secret
  (:func:`runner.webhook.sign`), or with RUNNER_WEBHOOK_SECRET for a channel's webhook;
* a 2xx is delivered; a 5xx, 408 or 429 (its ``Retry-After`` honoured up to the backoff's cap), a
  timeout or a refused connection is retried with an exponential backoff kept in the outbox row,
  forever; a redirect is never followed and fails the message, as any other 4xx does, with the
  receiver's status and the start of its answer (made visible, bounded).

Before connecting, the host is resolved and EVERY address it has is checked against the operator's
:class:`~runner.webhook.UrlPolicy`; the connection goes to a checked address (no second resolution
that could point elsewhere), while TLS still verifies, and SNI and Host still name, the URL's host.
No proxy from the environment is used. The whole request, connection to last byte read, is bounded
by ``request_timeout`` (shorter than half the lease), and at most ``read_limit`` bytes are read.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx

from .. import metrics, webhook
from ..errors import ValidationError
from ..text import visible
from .loop import OutboxLoop
from .sender import Message, Outcome, Sending

log = logging.getLogger(__name__)

USER_AGENT = "runner-webhook/1"
Resolver = Callable[[str, int], Awaitable[list[str]]]  # host, port -> its addresses


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address of ``host`` (the system's resolver)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressRefused(Exception):
    """The webhook's host resolves to an address the operator does not allow."""


@dataclass(frozen=True)
class WebhookConfig:
    """Timeouts, backoff and read bounds; tests compress time by lowering them."""

    request_timeout: float = 10.0
    lease_seconds: float = 60.0
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    read_limit: int = 4096  # bytes of an answer read at most
    excerpt: int = 300  # characters of an answer kept in the message's error

    def __post_init__(self) -> None:
        if self.request_timeout >= self.lease_seconds / 2:
            raise ValueError(f"the webhook request timeout ({self.request_timeout} s) must be shorter than half "
                             f"the outbox lease ({self.lease_seconds} s)")


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving each host itself: every address must be allowed, and the
    connection is made to one of those checked addresses (TLS, above it, still names the host)."""

    def __init__(self, policy: webhook.UrlPolicy, resolver: Resolver = resolve_host) -> None:
        self.policy, self.resolver = policy, resolver
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        addresses = await self.resolve(host, port)
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except httpcore.ConnectError:
                continue  # the next checked address, if any
        raise httpcore.ConnectError(f"the connection to {host} port {port} ({', '.join(addresses) or 'no address'}) "
                                    "was refused or the host is unreachable")

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, each checked; AddressRefused if any is not allowed."""
        try:
            addresses = await self.resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        refused = [a for a in addresses if not self.policy.address_allowed(a, port)]
        if refused:
            raise AddressRefused(f"{host} port {port} resolves to {', '.join(refused)}, a private or reserved "
                                 "address (or port) the operator does not allow (RUNNER_WEBHOOK_ALLOW_ADDRESSES)")
        return addresses

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_client(policy: webhook.UrlPolicy, timeout: float, resolver: Resolver = resolve_host,
                   ssl_context: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    """An httpx client that connects only to checked addresses, follows no redirect and ignores the
    environment's proxies. ``ssl_context``: the certificates trusted (default: the system's, via httpx)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx has no parameter for the network backend: its pool is made again with ours (same settings).
    transport._pool = httpcore.AsyncConnectionPool(  # noqa: SLF001
        ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False), max_connections=100, max_keepalive_connections=20,
        keepalive_expiry=5.0, network_backend=GuardedBackend(policy, resolver))
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


def payload(message: Message, attachments: list[dict[str, Any]]) -> bytes:
    """The exact JSON body of a delivery."""
    created = message["created_at"]
    doc = {
        "id": message["id"], "thread": message["thread_id"], "job_id": message["job_id"],
        "job_name": message["job_name"], "kind": message["kind"], "text": message["text"],
        "attachments": [{"name": a["filename"], "content": base64.b64encode(bytes(a["content"])).decode()}
                        for a in attachments],
        "created_at": created.astimezone(UTC).isoformat() if isinstance(created, datetime) else str(created),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def retry_after(value: str | None, cap: float) -> float | None:
    """A ``Retry-After`` header's seconds (a number or an HTTP date), at most ``cap``; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), cap))


class _Later(Exception):
    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class WebhookSender:
    """POSTs one outbox message to its thread's webhook. Runs on the webhook deliverer's event loop."""

    in_chat_order = True
    order_key = "thread"

    def __init__(self, policy: webhook.UrlPolicy, channels: dict[str, str] | None = None,
                 channel_secret: str | None = None, config: WebhookConfig | None = None,
                 resolver: Resolver = resolve_host, ssl_context: ssl.SSLContext | None = None) -> None:
        self.policy, self.channels, self.channel_secret = policy, dict(channels or {}), channel_secret
        self.resolver, self.ssl_context = resolver, ssl_context
        self.cfg = config or WebhookConfig()
        self.request_timeout = self.cfg.request_timeout
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> httpx.AsyncClient:
        """The client of the running event loop (a deliverer's new life has a new loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client, self._client_loop = guarded_client(self.policy, self.cfg.request_timeout, self.resolver,
                                                                self.ssl_context), loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = self._client_loop = None

    def target(self, message: Message) -> tuple[str, str] | None:
        """The URL and secret of the message's webhook: its thread's own, else its channel's."""
        if message.get("webhook_url") and message.get("webhook_secret"):
            return message["webhook_url"], message["webhook_secret"]
        url = self.channels.get(str(message["thread_id"]).partition(":")[0])
        return (url, self.channel_secret) if url and self.channel_secret else None

    async def send(self, message: Message, sending: Sending) -> Outcome:
        target = self.target(message)
        if target is None:
            return Outcome.failed(f"thread {message['thread_id']} has no webhook on this runner to deliver to")
        url, secret = target
        try:
            self.policy.check(url)
        except ValidationError as exc:
            return Outcome.failed(f"not delivered: {exc}")
        body = payload(message, await sending.attachments())
        await sending.before_request()
        started = time.monotonic()
        try:
            status, headers, answer = await self._post(url, secret, message["id"], body)
        except AddressRefused as exc:
            return Outcome.failed(f"not delivered: {exc}")
        except _Later as exc:
            return Outcome.retry(str(exc), self._backoff(message, exc.delay))
        metrics.WEBHOOK_SECONDS.observe(time.monotonic() - started)
        return self._outcome(message, status, headers, answer)

    async def _post(self, url: str, secret: str, message_id: int, body: bytes) -> tuple[int, httpx.Headers, bytes]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(message_id),
                   "Runner-Signature": webhook.sign(secret, body), "User-Agent": USER_AGENT,
                   "Accept-Encoding": "identity"}
        try:
            async with asyncio.timeout(self.cfg.request_timeout):
                async with self.client().stream("POST", url, content=body, headers=headers) as resp:
                    answer = bytearray()
                    async for chunk in resp.aiter_raw():
                        answer += chunk[: self.cfg.read_limit - len(answer)]
                        if len(answer) >= self.cfg.read_limit:
                            break
                    return resp.status_code, resp.headers, bytes(answer)
        except TimeoutError as exc:
            raise _Later(f"the webhook receiver did not answer within {self.cfg.request_timeout:g} s") from exc
        except httpx.TimeoutException as exc:
            raise _Later(f"the webhook receiver did not answer within {self.cfg.request_timeout:g} s") from exc
        except httpx.ConnectError as exc:
            raise _Later(f"the webhook receiver could not be reached: {visible(str(exc))[:200]}") from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:  # never again: set the URL right
            raise AddressRefused(f"the webhook URL cannot be used ({visible(str(exc))[:200]}): set a new one") from exc
        except httpx.TransportError as exc:
            raise _Later(f"the connection to the webhook receiver broke before its answer: "
                         f"{visible(str(exc))[:200]}") from exc

    def _outcome(self, message: Message, status: int, headers: httpx.Headers, answer: bytes) -> Outcome:
        if 200 <= status < 300:
            return Outcome.sent()
        said = visible(answer.decode("utf-8", "replace"))[: self.cfg.excerpt].strip()
        said = f": {said}" if said else ""
        if status >= 500 or status in (408, 429):
            delay = retry_after(headers.get("retry-after"), self.cfg.backoff_max)
            return Outcome.retry(f"the webhook receiver answered {status}{said}", self._backoff(message, delay))
        if 300 <= status < 400:
            where = visible(headers.get("location", ""))[:200]
            return Outcome.failed(f"the webhook receiver answered {status}, a redirect to {where or 'elsewhere'}: "
                                  "redirects are not followed, set the webhook to the final URL")
        return Outcome.failed(f"the webhook receiver refused it with {status}{said}")

    def _backoff(self, message: Message, delay: float | None) -> float:
        """The runner's own backoff, or the receiver's Retry-After when that is longer: a receiver can
        ask for more time, never for less (``Retry-After: 0`` on every answer would be a busy loop)."""
        attempts: int = message["attempts"]
        base = min(self.cfg.backoff_max, self.cfg.backoff_base * 2.0 ** max(0, attempts - 1))
        ours = base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
        return ours if delay is None else max(delay, ours)


def webhook_delivery(store: Any, sender: WebhookSender, owner: str, poll_interval: float = 30.0) -> OutboxLoop:
    """The delivery loop with the webhook sender: threads with a webhook, each in its own task."""
    return OutboxLoop(store, sender, owner, lease_seconds=sender.cfg.lease_seconds, poll_interval=poll_interval,
                      bug_delay=sender.cfg.backoff_max, on_event=metrics.on_webhook_event)


def run_blocking(loop: OutboxLoop, sender: WebhookSender) -> None:
    """The webhook deliverer on an event loop of its own, in the calling thread; its client closed after."""
    async def main() -> None:
        try:
            await loop.run()
        finally:
            await sender.aclose()

    asyncio.run(main())


def deliver_due(loop: OutboxLoop, sender: WebhookSender, timeout: float = 60.0) -> int:
    """Deliver what is due now by webhook and wait for it (burst mode); its client closed after."""
    async def main() -> int:
        try:
            return await loop.drain(timeout)
        finally:
            await sender.aclose()

    return asyncio.run(main())
