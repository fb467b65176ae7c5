"""One place answers a refused request, for every handler (aiogram's error handlers): a job the chat
does not have is "No such job: <id>", any other :class:`RunnerError` is its one-line reason.

Handlers just call the service and let a ``RunnerError`` rise. Any other exception is a bug: aiogram
logs it and the user gets no answer, as before."""

from __future__ import annotations

from aiogram import Dispatcher
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import CallbackQuery, ErrorEvent, Message

from ..errors import NotFound, RunnerError
from .callbacks import JobButton

ALERT_CAP = 190  # characters: Telegram cuts a callback answer at 200

# Commands whose refusals say what was not done.
REFUSED_PREFIX = {"schedule": "Not scheduled: ", "update": "Not updated: "}


def command_of(message: Message) -> tuple[str, list[str]]:
    """A command message's command (without '/' and '@bot') and its arguments."""
    words = (message.text or message.caption or "").split()
    if not words or not words[0].startswith("/"):
        return "", words
    return words[0][1:].partition("@")[0].lower(), words[1:]


def job_id_arg(args: list[str]) -> str:
    """The job id a command names (its first argument, '#' allowed): digits as a number reads them."""
    arg = args[0].lstrip("#") if args else ""
    return str(int(arg)) if arg.isdigit() else arg


def _button_job(query: CallbackQuery) -> str:
    try:
        return str(JobButton.unpack(query.data or "").job_id)
    except (TypeError, ValueError):
        return ""


async def no_such_job(event: ErrorEvent) -> None:
    update = event.update
    if update.message is not None:
        await update.message.answer(f"No such job: {job_id_arg(command_of(update.message)[1])}")
    elif update.callback_query is not None:
        await update.callback_query.answer(f"No such job: {_button_job(update.callback_query)}", show_alert=True)


async def refused(event: ErrorEvent) -> None:
    update, reason = event.update, str(event.exception)
    if update.message is not None:
        await update.message.answer(REFUSED_PREFIX.get(command_of(update.message)[0], "") + reason)
    elif update.callback_query is not None:
        await update.callback_query.answer(reason[:ALERT_CAP], show_alert=True)


def install(dp: Dispatcher) -> None:
    """The error handlers, on the Dispatcher so they cover every router (the first that matches wins)."""
    dp.errors.register(no_such_job, ExceptionTypeFilter(NotFound))
    dp.errors.register(refused, ExceptionTypeFilter(RunnerError))
