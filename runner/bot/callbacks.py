"""The buttons on a job's card, as aiogram's CallbackData: packed ``job:<action>:<id>``, parsed and
validated by aiogram's filter, so no handler splits strings.

The packed form is the wire format of buttons already sent to chats: keep it (a card sent by an
older runner must still work after an upgrade)."""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData


class Action(StrEnum):
    RUN = "run"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


class JobButton(CallbackData, prefix="job"):
    """One button: what to do to which job."""

    action: Action
    job_id: int


# The service method each button calls, and what the bot answers when it is done.
ACTIONS: dict[Action, tuple[str, str]] = {
    Action.RUN: ("run_job_now", "will run now"),
    Action.PAUSE: ("pause_job", "is paused"),
    Action.RESUME: ("resume_job", "is resumed"),
    Action.CANCEL: ("cancel_job", "is cancelled"),
}
