"""A fake Telegram Bot API server on 127.0.0.1, so the real aiogram client can be tested end to end.

It speaks the Bot API's HTTP shape (``/bot<token>/<method>``, form or multipart bodies, JSON answers)
for the methods the runner uses, records every call, and can misbehave on demand: 429 with
``retry_after``, an outage (502s), a blocked chat (403), a missing chat (400), a migrated group
(400 with ``migrate_to_chat_id``).

Two ways of being slow, for the lease tests: ``slow_next`` sends are held ``slow_seconds`` before they
are accepted (a client that gives up first has sent nothing: Telegram never accepted it), and
``silent_next`` sends are accepted at once but answered only after ``silent_seconds`` (a client that
gives up first does not know that its message went out). Each client that gives up is recorded in
``abandoned``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Sent:
    method: str
    chat_id: str
    text: str | None
    filename: str | None
    at: float
    reply_markup: Any = None
    size: int = 0


@dataclass
class Abandoned:
    method: str
    chat_id: str
    text: str | None
    accepted: bool  # True: recorded as sent before the client gave up (the unknown outcome)
    after: float  # seconds the client waited


@dataclass
class FakeBotAPI:
    token: str = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"
    sent: list[Sent] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    migrated: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    rate_limit_next: int = 0
    garbled_next: int = 0  # sends answered with a 500 whose body is not JSON (a proxy's error page)
    retry_after: int = 1
    down_until: float = 0.0
    slow_chats: dict[str, float] = field(default_factory=dict)
    slow_next: int = 0  # sends held slow_seconds before they are accepted
    slow_seconds: float = 0.0
    silent_next: int = 0  # sends accepted at once, answered after silent_seconds
    silent_seconds: float = 0.0
    abandoned: list[Abandoned] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)  # answerCallbackQuery calls: id, text, show_alert
    holding: int = 0  # requests being held now
    on_accept: Any = None  # called with each Sent as it is accepted, before it is answered

    def __post_init__(self) -> None:
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._cond: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._lock = threading.RLock()
        self.port = 0
        self.host = "127.0.0.1"

    # --- lifecycle (a thread with its own loop, so sync tests can drive it) ---------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, host: str = "127.0.0.1") -> FakeBotAPI:
        """Serve on ``host`` (a Docker bridge's gateway address lets containers reach it) and a free port."""
        self.host = host
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=main, daemon=True, name="fake-bot-api")
        self._thread.start()
        ready.wait(10)
        return self

    async def _serve(self) -> None:
        self._cond = asyncio.Condition()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.*}", self._file)
        self._runner = web.AppRunner(app, access_log=None)  # its log lines are not the runner's
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # --- test helpers ---------------------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; return its update id."""
        update_id = next(self._update_ids)

        async def add() -> None:
            assert self._cond is not None
            async with self._cond:
                self._updates.append({"update_id": update_id, **update})
                self._cond.notify_all()
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(add(), self._loop).result(5)
        return update_id

    def command(self, chat: int, user: int, text: str, **extra: Any) -> int:
        """A user writes ``text`` in a private chat; return the update's id."""
        entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text.startswith("/") else []
        msg = {"message_id": next(self._message_ids), "date": int(time.time()),
               "chat": {"id": chat, "type": "private" if chat > 0 else "group", "title": "g"},
               "from": {"id": user, "is_bot": False, "first_name": "User"}, **extra}
        if "document" in extra:
            msg["caption"] = text
            msg["caption_entities"] = entities
        else:
            msg["text"] = text
            msg["entities"] = entities
        return self.push({"message": msg})

    def upload(self, chat: int, user: int, caption: str, filename: str, content: bytes) -> int:
        """A user sends a file with a caption; return the update's id."""
        file_id = f"file{len(self.files) + 1}"
        self.files[file_id] = content
        return self.command(chat, user, caption, document={"file_id": file_id, "file_unique_id": f"u{file_id}",
                                                    "file_name": filename, "file_size": len(content)})

    def press(self, chat: int, user: int, data: str) -> str:
        """A user presses an inline button; return the callback query's id (see ``answer_to``)."""
        query_id = f"cq{next(self._message_ids)}"
        self.push({"callback_query": {
            "id": query_id, "from": {"id": user, "is_bot": False, "first_name": "User"},
            "chat_instance": "ci", "data": data,
            "message": {"message_id": next(self._message_ids), "date": int(time.time()),
                        "chat": {"id": chat, "type": "private"}, "text": "card"},
        }})
        return query_id

    def answer_to(self, query_id: str, timeout: float = 20) -> dict[str, Any]:
        """Wait for the bot's answer to the button press ``query_id`` (its text and show_alert)."""
        return self.wait_for(lambda: [a for a in self.answers if a["callback_query_id"] == query_id], timeout)[0]

    def texts(self, chat: int | str) -> list[str]:
        with self._lock:
            return [s.text or "" for s in self.sent if s.chat_id == str(chat) and s.method == "sendMessage"]

    def wait_for(self, predicate: Any, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"fake Bot API: condition not met in {timeout} s; sent={self.sent[-5:]}")

    # --- the API --------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        form = await request.post()
        data: dict[str, Any] = {}
        for key, value in form.items():
            data[key] = value
        self.calls.append(method)
        if method == "getMe":
            return self._ok({"id": 42, "is_bot": True, "first_name": "runner", "username": "runner_bot"})
        if method == "answerCallbackQuery":
            with self._lock:
                self.answers.append({"callback_query_id": str(data.get("callback_query_id")),
                                     "text": data.get("text"), "show_alert": data.get("show_alert") == "true"})
            return self._ok(True)
        if method in ("deleteWebhook", "setMyCommands", "close"):
            return self._ok(True)
        if method == "getUpdates":
            return await self._get_updates(data)
        if method == "getFile":
            fid = str(data["file_id"])
            return self._ok({"file_id": fid, "file_unique_id": f"u{fid}", "file_size": len(self.files[fid]),
                             "file_path": f"documents/{fid}.py"})
        if method in ("sendMessage", "sendPhoto", "sendDocument"):
            return await self._send(method, data, request)
        return self._error(404, f"Not Found: method {method}")

    async def _get_updates(self, data: dict[str, Any]) -> web.Response:
        offset = int(data.get("offset", 0) or 0)
        timeout = float(data.get("timeout", 0) or 0)
        assert self._cond is not None
        async with self._cond:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if not self._updates and timeout:
                try:
                    await asyncio.wait_for(self._cond.wait(), timeout=min(timeout, 1.0))
                except TimeoutError:
                    pass
            return self._ok(list(self._updates))

    async def _hold(self, request: web.Request, seconds: float) -> float | None:
        """Hold a request ``seconds``; return how long its client waited if it gave up first."""
        t0 = time.monotonic()
        self.holding += 1
        try:
            while (waited := time.monotonic() - t0) < seconds:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return waited
                await asyncio.sleep(0.02)
            return None
        finally:
            self.holding -= 1

    async def _send(self, method: str, data: dict[str, Any], request: web.Request) -> web.Response:
        chat = str(data.get("chat_id"))
        now = time.monotonic()
        refused = self._refusal(chat, now)
        if refused is not None:
            return refused
        if chat in self.slow_chats:
            await asyncio.sleep(self.slow_chats[chat])
        if self.slow_next > 0:
            self.slow_next -= 1
            waited = await self._hold(request, self.slow_seconds)
            if waited is not None:  # the client gave up before Telegram accepted: nothing was sent
                with self._lock:
                    self.abandoned.append(Abandoned(method, chat, data.get("text"), False, waited))
                return self._error(504, "Gateway Timeout")
        filename, size = self._attachment(method, data)
        markup = data.get("reply_markup")
        with self._lock:
            self.sent.append(Sent(method, chat, data.get("text"), filename, now,
                                  json.loads(markup) if isinstance(markup, str) else None, size))
        if self.on_accept is not None:
            self.on_accept(self.sent[-1])
        if self.silent_next > 0:
            self.silent_next -= 1
            waited = await self._hold(request, self.silent_seconds)
            if waited is not None:  # sent, but the client will never know
                with self._lock:
                    self.abandoned.append(Abandoned(method, chat, data.get("text"), True, waited))
        return self._ok(self._message(method, chat, data, filename))

    def _refusal(self, chat: str, now: float) -> web.Response | None:
        """The failure a send meets before anything is sent (an outage, a garbled or rate-limited answer,
        a chat that cannot be written to), or None."""
        if now < self.down_until:
            return self._error(502, "Bad Gateway")
        if self.garbled_next > 0:
            self.garbled_next -= 1
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return self._error(429, f"Too Many Requests: retry after {self.retry_after}",
                               {"retry_after": self.retry_after})
        if chat in self.blocked:
            return self._error(403, "Forbidden: bot was blocked by the user")
        if chat in self.missing:
            return self._error(400, "Bad Request: chat not found")
        if chat in self.migrated:
            return self._error(400, "Bad Request: group chat was upgraded to a supergroup chat",
                               {"migrate_to_chat_id": int(self.migrated[chat])})
        return None

    @staticmethod
    def _attachment(method: str, data: dict[str, Any]) -> tuple[str | None, int]:
        """The file name and size of a sendPhoto's or sendDocument's file; (None, 0) for a message."""
        field_name = {"sendPhoto": "photo", "sendDocument": "document"}.get(method)
        if not field_name:
            return None, 0
        f = data.get(field_name)
        if isinstance(f, str) and f.startswith("attach://"):  # aiogram sends files by reference
            f = data.get(f.removeprefix("attach://"))
        return getattr(f, "filename", None), len(f.file.read()) if hasattr(f, "file") else 0

    def _message(self, method: str, chat: str, data: dict[str, Any], filename: str | None) -> dict[str, Any]:
        """The Message object Telegram answers a send with."""
        msg: dict[str, Any] = {"message_id": next(self._message_ids), "date": int(time.time()),
                               "chat": {"id": int(chat), "type": "private"}}
        if method == "sendMessage":
            msg["text"] = data.get("text", "")
        elif method == "sendPhoto":
            msg["photo"] = [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]
        else:
            msg["document"] = {"file_id": "d", "file_unique_id": "d", "file_name": filename}
        return msg

    async def _file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        fid = path.rsplit("/", 1)[-1].removesuffix(".py")
        if request.match_info["token"] != self.token or fid not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[fid])

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code)
