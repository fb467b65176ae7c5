"""/jobs, /job, /run, /cancel, /pause, /resume, /logs, /approve, and the buttons on a job's card.

Every lookup passes the chat's own thread id, so another chat's job id answers "no such job". A refusal
(``RunnerError``) is not caught here: runner.bot.errors answers it, for every handler alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from ..service import Jobs
from ..text import visible
from .callbacks import ACTIONS, JobButton
from .util import clip, job_buttons, job_card, thread_of, when


def _job_id(command: CommandObject) -> int | None:
    arg = (command.args or "").strip().lstrip("#")
    return int(arg) if arg.isdigit() else None


async def _need_id(message: Message, command: CommandObject) -> int | None:
    jid = _job_id(command)
    if jid is None:
        await message.answer(f"Give a job id: /{command.command} <id> (see /jobs)")
    return jid


async def list_jobs(message: Message, jobs_service: Jobs) -> None:
    thread = thread_of(message.chat.id)

    def overview() -> tuple[list[dict[str, Any]], str]:
        rows = jobs_service.list_jobs(thread_id=thread, limit=500)
        return rows, jobs_service.thread_timezone(thread)

    rows, tz = await asyncio.to_thread(overview)
    if not rows:
        await message.answer("No jobs in this chat yet. Send a .py file with the caption /schedule <when>.")
        return
    series: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:  # newest first
        series.setdefault(r["series_id"], []).append(r)
    lines = []
    for runs in series.values():
        head = next((r for r in runs if r["status"] in ("pending", "running")), runs[0])
        last = next((r for r in runs if r["status"] in ("completed", "failed", "cancelled")), None)
        nxt = when(head["due_time"], tz) if head["status"] == "pending" else head["status"]
        paused = " (paused)" if head.get("paused") else ""
        lines.append(f"#{head['id']} {head['name']} | next: {nxt}{paused} | {head['recurrence'] or 'once'} | "
                     f"last: {last['status'] if last else '-'}")
    await message.answer(clip("\n".join(lines)))


async def _act(message: Message, jid: int, action: Callable[..., Any], done: str) -> None:
    row = await asyncio.to_thread(action, jid, thread_of(message.chat.id))
    await message.answer(done.format(**row))


async def show_job(message: Message, command: CommandObject, jobs_service: Jobs) -> None:
    jid = await _need_id(message, command)
    if jid is None:
        return
    thread = thread_of(message.chat.id)
    row, runs, tz = await asyncio.to_thread(
        lambda: (jobs_service.get_job(jid, thread), jobs_service.job_runs(jid, thread),
                 jobs_service.thread_timezone(thread)))
    await message.answer(clip(job_card(row, runs, tz)), reply_markup=job_buttons(row))


async def run_now(message: Message, command: CommandObject, jobs_service: Jobs) -> None:
    if (jid := await _need_id(message, command)) is not None:
        await _act(message, jid, jobs_service.run_job_now, "Job {name} will run now (run #{id}).")


async def cancel(message: Message, command: CommandObject, jobs_service: Jobs) -> None:
    if (jid := await _need_id(message, command)) is not None:
        await _act(message, jid, jobs_service.cancel_job, "Job {name} (#{id}) is {status}.")


async def pause(message: Message, command: CommandObject, jobs_service: Jobs) -> None:
    if (jid := await _need_id(message, command)) is not None:
        await _act(message, jid, jobs_service.pause_job, "Job {name} (#{id}) is paused.")


async def resume(message: Message, command: CommandObject, jobs_service: Jobs) -> None:
    if (jid := await _need_id(message, command)) is not None:
        await _act(message, jid, jobs_service.resume_job, "Job {name} (#{id}) is resumed.")


async def logs(message: Message, command: CommandObject, jobs_service: Jobs) -> None:
    jid = await _need_id(message, command)
    if jid is None:
        return
    info = await asyncio.to_thread(jobs_service.get_job_logs, jid, thread_of(message.chat.id))
    head = f"Job {visible(info['name'], one_line=True)} (#{info['id']}): {info['status']}"
    if info["exit_code"] is not None:
        head += f", exit code {info['exit_code']}"
    if info["duration_ms"] is not None:
        head += f", {info['duration_ms']} ms"
    parts = [head]
    if info["error_message"]:
        parts.append(f"reason: {visible(info['error_message'], one_line=True)}")
    parts.append("output:\n" + (visible(info["output_tail"]) or "(none)"))
    await message.answer(clip("\n".join(parts)))


async def approve(message: Message, command: CommandObject, jobs_service: Jobs) -> None:
    """/approve <id> shows the job's script as it is now and its sha256; /approve <id> <sha256> approves
    exactly that version (a job runs only its approved script: runner/pinning.py)."""
    args = (command.args or "").split()
    if not args or not args[0].lstrip("#").isdigit():
        await message.answer("Give a job id: /approve <id> (see /jobs)")
        return
    jid, thread = int(args[0].lstrip("#")), thread_of(message.chat.id)
    if len(args) == 1:
        text, sha = await asyncio.to_thread(jobs_service.read_job_script, jid, thread)
        await message.answer(clip(text, 3000) or "(empty)")
        await message.answer(f"That is job #{jid}'s script now (sha256 {sha[:12]}). To run this version, "
                             f"send /approve {jid} {sha[:12]}")
        return
    done = await asyncio.to_thread(lambda: jobs_service.approve_script(jid, thread, sha256=args[1]))
    await message.answer(f"Approved {done['script_path']} (sha256 {done['sha256'][:12]}) for job "
                         f"{done['job']['name']} (#{jid}): its runs run this version.")


async def button(query: CallbackQuery, callback_data: JobButton, jobs_service: Jobs) -> None:
    """A button on a job's card (a refusal is answered by runner.bot.errors, as an alert)."""
    if query.message is None:  # too old for Telegram to say which chat it was in
        await query.answer()
        return
    method, said = ACTIONS[callback_data.action]
    row = await asyncio.to_thread(getattr(jobs_service, method), callback_data.job_id,
                                  thread_of(query.message.chat.id))
    await query.answer(f"Job {row['name']} {said}")


async def unknown_button(query: CallbackQuery) -> None:
    """A ``job:`` button this runner cannot read (malformed, or an action it does not have)."""
    await query.answer("Unknown button")


def build() -> Router:
    """A fresh router (a router can belong to one Dispatcher only)."""
    r = Router(name="jobs")
    r.message.register(list_jobs, Command("jobs"))
    r.message.register(show_job, Command("job"))
    r.message.register(run_now, Command("run"))
    r.message.register(cancel, Command("cancel"))
    r.message.register(pause, Command("pause"))
    r.message.register(resume, Command("resume"))
    r.message.register(logs, Command("logs"))
    r.message.register(approve, Command("approve"))
    r.callback_query.register(button, JobButton.filter())
    r.callback_query.register(unknown_button, F.data.startswith(f"{JobButton.__prefix__}:"))
    return r
