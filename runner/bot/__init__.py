"""The Telegram bot: routers per command group, an authorization middleware, services injected
through the Dispatcher's keyword arguments (aiogram's multi-file bot pattern).

The handlers call the synchronous :class:`runner.service.Jobs` in a worker thread, and only ever with
the chat's own thread id, so a chat sees and changes only its own jobs.
"""

from __future__ import annotations

from aiogram import Dispatcher
from aiogram.types import BotCommand

from ..service import Jobs
from . import auth, common, errors, jobs, upload

COMMANDS = [
    BotCommand(command="jobs", description="this chat's jobs"),
    BotCommand(command="job", description="one job in detail: /job <id>"),
    BotCommand(command="run", description="run a job now: /run <id>"),
    BotCommand(command="logs", description="last run's status and output: /logs <id>"),
    BotCommand(command="pause", description="pause a job: /pause <id>"),
    BotCommand(command="resume", description="resume a job: /resume <id>"),
    BotCommand(command="cancel", description="cancel a job: /cancel <id>"),
    BotCommand(command="schedule", description="caption of a .py file: /schedule <when>"),
    BotCommand(command="update", description="caption of a .py file: /update <id> (a job's new script)"),
    BotCommand(command="approve", description="approve a job's changed script: /approve <id>"),
    BotCommand(command="tz", description="set this chat's time zone: /tz Europe/Berlin"),
    BotCommand(command="help", description="what this bot does"),
]


def build_dispatcher(service: Jobs, allowed_users: frozenset[int], *, upload_cap: int) -> Dispatcher:
    """A Dispatcher with every router, the auth middleware, the error handlers (a refusal answered the
    same way for every command and button), and ``service`` injected into handlers."""
    dp = Dispatcher(jobs_service=service, upload_cap=upload_cap)
    guard = auth.AllowedUsers(allowed_users)
    dp.message.outer_middleware(guard)
    dp.callback_query.outer_middleware(guard)
    dp.include_routers(common.build(), jobs.build(), upload.build())
    errors.install(dp)
    return dp
