"""The job card's buttons are aiogram CallbackData with the wire format of the cards already in chats,
and the error handlers read a refused command's id and name the same way the handlers do."""

from __future__ import annotations

import pytest
from aiogram.types import Chat, Message

from runner.bot.callbacks import ACTIONS, Action, JobButton
from runner.bot.errors import command_of, job_id_arg
from runner.bot.util import job_buttons


def test_buttons_keep_the_wire_format_of_cards_already_sent() -> None:
    assert JobButton(action=Action.RUN, job_id=7).pack() == "job:run:7"
    for action in Action:
        assert JobButton.unpack(f"job:{action.value}:12") == JobButton(action=action, job_id=12)
    assert set(ACTIONS) == set(Action)


def test_a_card_has_run_pause_or_resume_and_cancel() -> None:
    def data(paused: bool) -> list[str]:
        markup = job_buttons({"id": 5, "paused": paused})
        return [b.callback_data or "" for row in markup.inline_keyboard for b in row]

    assert data(False) == ["job:run:5", "job:pause:5", "job:cancel:5"]
    assert data(True) == ["job:run:5", "job:resume:5", "job:cancel:5"]


@pytest.mark.parametrize("raw", ["job:explode:5", "job:run:x", "job:run:5:6", "job:run", "other:run:5"])
def test_malformed_button_data_is_refused(raw: str) -> None:
    with pytest.raises((TypeError, ValueError)):
        JobButton.unpack(raw)


def _message(text: str, *, caption: bool = False) -> Message:
    body = {"caption": text} if caption else {"text": text}
    return Message(message_id=1, date=0, chat=Chat(id=42, type="private"), **body)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "command", "job"), [
    ("/cancel 12", "cancel", "12"),
    ("/logs #12", "logs", "12"),
    ("/job@runner_bot 012", "job", "12"),
    ("/approve 9 abcdef", "approve", "9"),
    ("/update x", "update", "x"),
    ("hello", "", "hello"),
    ("", "", ""),
])
def test_a_commands_name_and_job_id(text: str, command: str, job: str) -> None:
    name, args = command_of(_message(text))
    assert name == command and job_id_arg(args) == job


def test_a_caption_is_the_command_of_an_upload() -> None:
    assert command_of(_message("/Schedule daily 9am", caption=True)) == ("schedule", ["daily", "9am"])
