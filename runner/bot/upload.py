"""/schedule <when>: as the caption of an uploaded .py file, or as a reply to one."""

from __future__ import annotations

import asyncio
import io
import re

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from ..api import Jobs
from ..errors import RunnerError, ScheduleError
from ..schedule import parse_recurrence
from .util import thread_of, when

USAGE = ("Send a .py file with the caption /schedule <when> (or reply to one with it), e.g. "
         "/schedule daily 9am, /schedule tomorrow 8:30, /schedule in 10 minutes, /schedule now")


def split_when(text: str) -> tuple[str | None, str | None]:
    """'/schedule daily 9am' -> (None, 'daily 9am'); '/schedule tomorrow 9am' -> ('tomorrow 9am', None)."""
    try:
        parse_recurrence(text)
        return None, text
    except ScheduleError:
        return text, None


async def schedule(message: Message, command: CommandObject, bot: Bot, jobs_service: Jobs, upload_cap: int) -> None:
    doc = message.document or (message.reply_to_message.document if message.reply_to_message else None)
    if doc is None or not (command.args or "").strip():
        await message.answer(USAGE)
        return
    filename = doc.file_name or "job.py"
    if not filename.endswith(".py"):
        await message.answer(f"{filename} is not a .py file: a job is a Python script.")
        return
    if doc.file_size and doc.file_size > upload_cap:
        await message.answer(f"{filename} is larger than {upload_cap} bytes; make it smaller.")
        return
    name = re.sub(r"[^a-z0-9_-]", "_", filename[:-3].lower())[:64] or "job"
    buf = io.BytesIO()
    await bot.download(doc, destination=buf)
    source = buf.getvalue()[: upload_cap + 1]
    at, every = split_when(command.args.strip())
    thread = thread_of(message.chat.id)
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        await message.answer(f"{filename} is not UTF-8 text; save it as UTF-8.")
        return
    try:
        row = await asyncio.to_thread(lambda: jobs_service.schedule_job(
            thread_id=thread, name=name, script_text=text, at=at, every=every,
            user_id=str(message.from_user.id) if message.from_user else ""))
        tz = await asyncio.to_thread(jobs_service.thread_timezone, thread)
    except RunnerError as exc:
        await message.answer(f"Not scheduled: {exc}")
        return
    repeat = f", then {row['recurrence']}" if row["recurrence"] else ""
    await message.answer(f"Scheduled job {row['name']} (#{row['id']}) for {when(row['due_time'], row['timezone'] or tz)}{repeat}.")


def build() -> Router:
    """A fresh router (a router can belong to one Dispatcher only)."""
    r = Router(name="upload")
    r.message.register(schedule, Command("schedule"))
    return r
