"""/schedule <when> and /update <id>: as the caption of an uploaded .py file, or as a reply to one."""

from __future__ import annotations

import asyncio
import io
import re

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from ..errors import ScheduleError
from ..schedule import parse_recurrence
from ..service import Jobs
from .util import thread_of, when

USAGE = ("Send a .py file with the caption /schedule <when> (or reply to one with it), e.g. "
         "/schedule daily 9am, /schedule tomorrow 8:30, /schedule in 10 minutes, /schedule now")
UPDATE_USAGE = "Send a .py file with the caption /update <job id> (or reply to one with it): the job's new script"


def split_when(text: str) -> tuple[str | None, str | None]:
    """'/schedule daily 9am' -> (None, 'daily 9am'); '/schedule tomorrow 9am' -> ('tomorrow 9am', None)."""
    try:
        parse_recurrence(text)
        return None, text
    except ScheduleError:
        return text, None


async def _script(message: Message, command: CommandObject, bot: Bot, upload_cap: int,
                  usage: str) -> tuple[str, str] | None:
    """The uploaded file's name and text, or None after telling the user what is wrong."""
    doc = message.document or (message.reply_to_message.document if message.reply_to_message else None)
    if doc is None or not (command.args or "").strip():
        await message.answer(usage)
        return None
    filename = doc.file_name or "job.py"
    if not filename.endswith(".py"):
        await message.answer(f"{filename} is not a .py file: a job is a Python script.")
        return None
    if doc.file_size and doc.file_size > upload_cap:
        await message.answer(f"{filename} is larger than {upload_cap} bytes; make it smaller.")
        return None
    buf = io.BytesIO()
    await bot.download(doc, destination=buf)
    try:
        return filename, buf.getvalue()[: upload_cap + 1].decode("utf-8")
    except UnicodeDecodeError:
        await message.answer(f"{filename} is not UTF-8 text; save it as UTF-8.")
        return None


async def schedule(message: Message, command: CommandObject, bot: Bot, jobs_service: Jobs, upload_cap: int) -> None:
    got = await _script(message, command, bot, upload_cap, USAGE)
    if got is None:
        return
    filename, text = got
    name = re.sub(r"[^a-z0-9_-]", "_", filename[:-3].lower())[:64] or "job"
    at, every = split_when((command.args or "").strip())
    thread = thread_of(message.chat.id)
    row = await asyncio.to_thread(lambda: jobs_service.schedule_job(  # a refusal: "Not scheduled: …"
        thread_id=thread, name=name, script_text=text, at=at, every=every,
        user_id=str(message.from_user.id) if message.from_user else ""))
    tz = await asyncio.to_thread(jobs_service.thread_timezone, thread)
    repeat = f", then {row['recurrence']}" if row["recurrence"] else ""
    await message.answer(f"Scheduled job {row['name']} (#{row['id']}) for {when(row['due_time'], row['timezone'] or tz)}{repeat}.")


async def update(message: Message, command: CommandObject, bot: Bot, jobs_service: Jobs, upload_cap: int) -> None:
    """A job's new script: checked like /schedule's, saved as its jobs/<name>.py and approved."""
    arg = (command.args or "").strip().lstrip("#")
    if arg and not arg.isdigit():
        await message.answer(UPDATE_USAGE)
        return
    got = await _script(message, command, bot, upload_cap, UPDATE_USAGE)
    if got is None:
        return
    thread = thread_of(message.chat.id)
    # a refusal is answered by runner.bot.errors: "No such job: <id>" or "Not updated: <reason>"
    done = await asyncio.to_thread(lambda: jobs_service.approve_script(int(arg), thread, script_text=got[1]))
    await message.answer(f"Job {done['job']['name']} (#{arg}) now runs the new {done['script_path']} "
                         f"(sha256 {done['sha256'][:12]}).")


def build() -> Router:
    """A fresh router (a router can belong to one Dispatcher only)."""
    r = Router(name="upload")
    r.message.register(schedule, Command("schedule"))
    r.message.register(update, Command("update"))
    return r
