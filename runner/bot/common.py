"""/start, /help and /tz."""

from __future__ import annotations

import asyncio

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message

from ..service import Jobs
from .util import thread_of

HELP = """I run small Python scripts on a schedule, each in a locked-down container, and send you what they write.

This chat's thread id is {thread}. Scripts live in its jobs/ directory; a script writes jobs/<name>_message.txt to message you, jobs/<name>_output.json for the next job, and files in jobs/<name>_attachments/ to send them along.

Commands:
/jobs - this chat's jobs
/job <id> - one job in detail, with its last runs
/run <id> - run it now
/logs <id> - the last run's exit status, reason and output
/pause <id>, /resume <id>, /cancel <id>
/schedule <when> - as the caption of a .py file (or a reply to one): save it and schedule it, e.g. /schedule daily 9am
/update <id> - as the caption of a .py file (or a reply to one): the job's new script
/approve <id> - a job runs only the script it was scheduled with; if jobs/<name>.py changed, see it and approve it
/tz <Area/City> - this chat's time zone (now {tz})"""


async def start(message: Message, jobs_service: Jobs) -> None:
    thread = thread_of(message.chat.id)
    tz = await asyncio.to_thread(jobs_service.thread_timezone, thread)
    await message.answer(HELP.format(thread=thread, tz=tz))


async def set_tz(message: Message, command: CommandObject, jobs_service: Jobs) -> None:
    thread = thread_of(message.chat.id)
    if not command.args:
        tz = await asyncio.to_thread(jobs_service.thread_timezone, thread)
        await message.answer(f"This chat's time zone is {tz}. Change it with /tz Area/City, e.g. /tz Europe/Berlin")
        return
    tz = await asyncio.to_thread(jobs_service.set_thread_timezone, thread, command.args.strip())
    await message.answer(f"Time zone set to {tz}. New schedules of this chat use it.")


def build() -> Router:
    """A fresh router (a router can belong to one Dispatcher only)."""
    r = Router(name="common")
    r.message.register(start, CommandStart())
    r.message.register(start, Command("help"))
    r.message.register(set_tz, Command("tz"))
    return r
