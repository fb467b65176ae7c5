"""Refusals are answered the same way by every command and button (runner.bot.errors), through the real
aiogram client against the fake Bot API on 127.0.0.1 and a real Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database
from runner.telegram_part import TelegramService

from ..fakebotapi import FakeBotAPI

USER, CHAT = 1001, 42
THREAD = f"telegram:{CHAT}"


class AnsweringBotAPI(FakeBotAPI):
    """The fake Bot API, also recording what the bot answers to each button press."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.answers: list[dict[str, Any]] = []

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["method"] == "answerCallbackQuery" and request.match_info["token"] == self.token:
            form = await request.post()
            with self._lock:
                self.answers.append({"text": form.get("text"), "show_alert": form.get("show_alert") == "true"})
            return self._ok(True)
        return await super()._handle(request)


@pytest.fixture
def api() -> Iterator[AnsweringBotAPI]:
    fake = AnsweringBotAPI().start()
    yield fake
    fake.stop()


@pytest.fixture
def tjobs(settings: Settings, api: FakeBotAPI, db: Database) -> Jobs:
    tg = settings.with_(telegram_bot_token=api.token, telegram_api_url=api.url,
                        telegram_allowed_users=frozenset({USER}), poll_interval=1.0)
    return Jobs(tg, db)


@pytest.fixture
def service(tjobs: Jobs) -> Iterator[TelegramService]:
    svc = TelegramService(tjobs.settings, tjobs)
    svc.start()
    yield svc
    svc.stop()
    assert svc.error is None, svc.error


def _answer(api: AnsweringBotAPI, data: str) -> dict[str, Any]:
    before = len(api.answers)
    api.press(CHAT, USER, data)
    return api.wait_for(lambda: api.answers[before:])[0]  # type: ignore[no-any-return]


def test_buttons_answer_done_refused_unknown_and_no_such_job(service: TelegramService, api: AnsweringBotAPI,
                                                             tjobs: Jobs) -> None:
    mine = tjobs.schedule_job(thread_id=THREAD, name="mine", script_text="pass\n", at="in 1 hour")
    theirs = tjobs.schedule_job(thread_id="telegram:555", name="theirs", script_text="pass\n", at="in 1 hour")
    assert _answer(api, f"job:pause:{mine['id']}") == {"text": "Job mine is paused", "show_alert": False}
    assert _answer(api, f"job:cancel:{mine['id']}") == {"text": "Job mine is cancelled", "show_alert": False}
    refused = _answer(api, f"job:resume:{mine['id']}")
    assert refused == {"text": f"job {mine['id']} is cancelled; only a pending job can be paused or resumed",
                       "show_alert": True}
    assert _answer(api, f"job:cancel:{theirs['id']}") == {"text": f"No such job: {theirs['id']}", "show_alert": True}
    assert tjobs.get_job(theirs["id"])["status"] == "pending"
    for junk in ("job:explode:1", "job:run:x", f"job:run:{mine['id']}:9"):
        assert _answer(api, junk) == {"text": "Unknown button", "show_alert": False}, junk


def test_commands_answer_a_refusal_with_its_reason(service: TelegramService, api: AnsweringBotAPI,
                                                   tjobs: Jobs) -> None:
    done = tjobs.schedule_job(thread_id=THREAD, name="done", script_text="pass\n", at="in 1 hour")
    tjobs.cancel_job(done["id"], THREAD)
    api.command(CHAT, USER, "/tz Mars/Olympus")
    api.command(CHAT, USER, f"/cancel #{done['id']}")
    api.command(CHAT, USER, "/logs 999999")
    api.command(CHAT, USER, "/approve 999999 abc")
    api.upload(CHAT, USER, "/update 999999", "x.py", b"pass\n")
    api.upload(CHAT, USER, f"/update {done['id']}", "x.py", b"if x\n")
    api.upload(CHAT, USER, "/schedule sometimes", "x.py", b"pass\n")
    texts = api.wait_for(lambda: t if len(t := api.texts(CHAT)) >= 7 else None)
    assert len(texts) == 7, texts
    assert any("Mars/Olympus" in t and not t.startswith("Not ") for t in texts)
    assert f"job {done['id']} is already cancelled; only a pending or running job can be cancelled" in texts
    assert texts.count("No such job: 999999") == 3
    assert any(t.startswith("Not updated: ") and "syntax error at line 1" in t for t in texts), texts
    assert any(t.startswith("Not scheduled: could not understand the time 'sometimes'") for t in texts)
