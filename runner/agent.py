"""The interface an AI agent drives: tool functions bound to one thread, their JSON Schema tool
definitions for function calling, and the text for the agent's system prompt.

The functions keep the shape of the original assistant's tools (``schedule_job(name, …)``,
``list_jobs(status="")``, ``cancel_job(job_id)``), so an existing agent can switch. Each returns
JSON-ready data and never raises for bad input: a refusal is ``{"ok": false, "error": "<what to
change>"}``, so the agent can correct itself without a human.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Any

from .errors import RunnerError
from .service import Jobs, Limits, Policy, public_row
from .settings import Settings
from .threads import ThreadId

_PROMPT = """You can schedule Python scripts that run later, on their own, in a sandbox.

Tools: schedule_job, list_jobs, get_job, get_job_logs, run_job_now, pause_job, resume_job, cancel_job,
update_job. Check a recurrence first with the schedule language below; a schedule you get wrong is
refused with the reason, never guessed.

How a job runs:
- The script is saved as jobs/<name>.py and runs with the working directory one level above jobs/, so
  open files as 'jobs/...'. Only this conversation's jobs/ directory is visible; other jobs of this
  conversation share it.
- To message the user, write the text to jobs/<name>_message.txt (UTF-8, at most {message}). It is sent
  after the run and then deleted. Write nothing to stay silent (e.g. only when a price drops).
- To pass data to a later job, write jobs/<name>_output.json; it stays. A job scheduled with
  after="<other job>" runs each time that job completes successfully and can read its output.
- To send files, put them in jobs/<name>_attachments/ (images go as photos, others as documents;
  at most {attachments} files, {attachment} each, {attachments_total} in all).
- Limits: {timeout} s of wall time, {memory} MiB of memory, {cpus} CPU, {pids} processes, {disk} MiB in jobs/
  (ask for more time or memory with timeout_seconds / memory_mb, up to {max_timeout} s and
  {max_memory} MiB). Standard library only.
- {network}
- A failing run (exception, non-zero exit, timeout) is reported to the user once with its reason;
  get_job_logs shows the output and the reason.
- A job runs only the script it was scheduled (or last updated) with. If jobs/<name>.py is changed
  afterwards (by another job, say), its runs are refused. To change a job's script, give the new source
  to update_job(job_id, script=...); approve_script="<sha256>" approves the file as it is now.
- Only the standard library and the job's own script are importable: files in jobs/ are data, not modules.

When: "now", "in 10 minutes", "tomorrow 9am", "next monday 8:30", "dec 24 18:00", ISO 8601.
Recurrence: "hourly", "daily 9am", "weekdays 8:30", "weekends 10am", "every monday 9am",
"mon,wed,fri 7:00", "monthly on the 1st 9am", "every 15 minutes", or a 5-field cron line. Times are in
the user's time zone unless you give tz (an IANA name such as "Europe/Berlin")."""

_OPEN_NETWORK = ("No network unless you grant host names with allow_hosts (e.g. [\"api.example.com\"]); then only "
                 "HTTP(S)\n  to those names works, through a proxy (urllib picks it up by itself).")


def _size(n: int) -> str:
    """Bytes as the prompt states them: '64 KiB', '10 MiB', '1500 bytes'."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def _network(settings: Settings) -> str:
    allow = settings.egress_allow
    if not allow:
        return "No network: this runner grants no host names (allow_hosts is refused)."
    if "*" in allow:
        return _OPEN_NETWORK
    return _OPEN_NETWORK + f"\n  This runner grants only names within: {', '.join(allow)}."


def system_prompt(settings: Settings) -> str:
    """The text for the agent's system prompt, stating the limits in force on this runner (``settings``):
    its defaults and maxima, not constants, so an agent never plans with limits the runner does not have."""
    s = settings
    return _PROMPT.format(
        message=_size(s.message_cap), attachments=s.max_attachments, attachment=_size(s.attachment_cap),
        attachments_total=_size(s.attachments_total_cap), timeout=s.timeout_seconds, memory=s.memory_mb,
        cpus=f"{s.cpus:g}", pids=s.pids_limit, disk=s.disk_mb, max_timeout=s.max_timeout_seconds,
        max_memory=s.max_memory_mb, network=_network(s))


class AgentTools:
    """The tool functions, bound to one conversation's thread (parsed here, once: a malformed thread id
    is a :class:`~runner.errors.ValidationError` of the caller that binds the tools, not of the agent)."""

    def __init__(self, jobs: Jobs, thread_id: ThreadId | str, user_id: str = "") -> None:
        self.jobs, self.thread_id, self.user_id = jobs, ThreadId.parse(thread_id), user_id

    def _call(self, fn: Callable[[], Any]) -> dict[str, Any]:
        try:
            result = fn()
        except RunnerError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **result} if isinstance(result, dict) else {"ok": True, "result": result}

    def schedule_job(self, name: str, script: str, when: str = "now", recurrence: str = "", tz: str = "",
                     allow_hosts: list[str] | None = None, after: str = "", timeout_seconds: int = 0,
                     memory_mb: int = 0, retries: int = 0) -> dict[str, Any]:
        """Save a Python script as jobs/<name>.py and schedule it.

        Args:
            name: job name, 1-64 of a-z, 0-9, '_' or '-'; it names the script and its files.
            script: the Python source code of the job.
            when: first run: "now", "in 10 minutes", "tomorrow 9am", an ISO 8601 time. With a recurrence and
                when left at "now", the first run is the recurrence's next time. Ignored with after.
            recurrence: repeat rule, e.g. "daily 9am", "weekdays 8:30", "0 9 * * 1-5"; empty for a one-off job.
            tz: IANA time zone of the schedule; empty for the user's zone.
            allow_hosts: host names the job may reach over HTTP(S); empty for no network.
            after: name of another job of this conversation; this job then runs each time that one completes.
            timeout_seconds: wall-time limit in seconds; 0 for the runner's default (the system prompt states it).
            memory_mb: memory limit in MiB; 0 for the runner's default (the system prompt states it).
            retries: how often a failed run is retried, with backoff; 0 for none.
        """
        return self._call(lambda: {"job": public_row(self.jobs.schedule_job(
            thread_id=self.thread_id, name=name, script_text=script, user_id=self.user_id,
            at=None if after or (recurrence and when == "now") else when or None, every=recurrence or None,
            tz=tz or None, allow_hosts=allow_hosts or (), after=after or None,
            limits=Limits(timeout_seconds=timeout_seconds or None, memory_mb=memory_mb or None),
            policy=Policy(retries=retries or None)))})

    def list_jobs(self, status: str = "") -> dict[str, Any]:
        """List this conversation's jobs (one entry per run, newest first).

        Args:
            status: only runs with this status: pending, running, completed, failed or cancelled; empty for all.
        """
        return self._call(lambda: {"jobs": [public_row(r) for r in self.jobs.list_jobs(
            thread_id=self.thread_id, status=status or None)]})

    def get_job(self, job_id: int) -> dict[str, Any]:
        """One job with its latest runs.

        Args:
            job_id: the job's id.
        """
        return self._call(lambda: {"job": public_row(self.jobs.get_job(job_id, self.thread_id)),
                                   "runs": [public_row(r) for r in self.jobs.job_runs(job_id, self.thread_id)]})

    def get_job_logs(self, job_id: int) -> dict[str, Any]:
        """A run's status, exit code, reason, output tail and messages.

        Args:
            job_id: the run's id.
        """
        return self._call(lambda: {"logs": self.jobs.get_job_logs(job_id, self.thread_id)})

    def run_job_now(self, job_id: int) -> dict[str, Any]:
        """Run a job now (a recurring job then continues on its schedule).

        Args:
            job_id: the job's id.
        """
        return self._call(lambda: {"job": public_row(self.jobs.run_job_now(job_id, self.thread_id))})

    def pause_job(self, job_id: int) -> dict[str, Any]:
        """Pause a job until it is resumed.

        Args:
            job_id: the job's id.
        """
        return self._call(lambda: {"job": public_row(self.jobs.pause_job(job_id, self.thread_id))})

    def resume_job(self, job_id: int) -> dict[str, Any]:
        """Resume a paused job.

        Args:
            job_id: the job's id.
        """
        return self._call(lambda: {"job": public_row(self.jobs.resume_job(job_id, self.thread_id))})

    def cancel_job(self, job_id: int) -> dict[str, Any]:
        """Cancel a job; a recurring job stops recurring.

        Args:
            job_id: the job's id.
        """
        return self._call(lambda: {"job": public_row(self.jobs.cancel_job(job_id, self.thread_id))})

    def update_job(self, job_id: int, when: str = "", recurrence: str | None = None, tz: str = "",
                   timeout_seconds: int = 0, memory_mb: int = 0, allow_hosts: list[str] | None = None,
                   retries: int | None = None, script: str = "", approve_script: str = "") -> dict[str, Any]:
        """Change a job's schedule, limits, network grant or script, keeping its history.

        Args:
            job_id: the job's id.
            when: a new time for its next run; empty to keep it.
            recurrence: a new repeat rule; "" to make it one-off; omit to keep it.
            tz: a new IANA time zone; empty to keep it.
            timeout_seconds: a new wall-time limit; 0 to keep it.
            memory_mb: a new memory limit; 0 to keep it.
            allow_hosts: a new list of host names; omit to keep it.
            retries: a new number of retries; omit to keep it.
            script: a new version of the job's Python source; it replaces jobs/<name>.py and is approved.
                Empty to keep the script.
            approve_script: a job runs only the script approved for it; when jobs/<name>.py was changed
                (by a job), runs are refused with its sha256. Give that sha256 (its first 12 digits are
                enough) to approve the file as it is now. Empty to leave the approval as it is.
        """
        changes = (when, recurrence is not None, tz, timeout_seconds, memory_mb, allow_hosts is not None,
                   retries is not None)

        def update() -> dict[str, Any]:
            out: dict[str, Any] = {}
            if script or approve_script:
                done = self.jobs.approve_script(job_id, self.thread_id, script_text=script or None,
                                                sha256=approve_script or None)
                out = {"job": public_row(done["job"]), "approved_sha256": done["sha256"]}
            if not out or any(changes):
                out["job"] = public_row(self.jobs.update_job(
                    job_id, self.thread_id, at=when or None, every=recurrence, tz=tz or None,
                    limits=Limits(timeout_seconds=timeout_seconds or None, memory_mb=memory_mb or None),
                    allow_hosts=allow_hosts, policy=Policy(retries=retries)))
            return out

        return self._call(update)


TOOL_NAMES = ("schedule_job", "list_jobs", "get_job", "get_job_logs", "run_job_now", "pause_job", "resume_job",
              "cancel_job", "update_job")


def _json_type(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _json_type(args[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": _json_type(item)}
    return {str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"},
            bool: {"type": "boolean"}}[annotation]


def _arg_docs(doc: str) -> dict[str, str]:
    out: dict[str, str] = {}
    in_args, last = False, None
    for line in doc.splitlines():
        if line.strip() == "Args:":
            in_args = True
            continue
        m = re.match(r"( +)(\w+): (.*)", line)
        if in_args and m and len(m[1]) <= 4:
            last = m[2]
            out[last] = m[3].strip()
        elif in_args and last and line.startswith("        "):
            out[last] += " " + line.strip()
    return out


def tool_definitions(style: str = "anthropic") -> list[dict[str, Any]]:
    """JSON Schema tool definitions generated from :class:`AgentTools`' signatures and docstrings.

    ``style``: "anthropic" ({name, description, input_schema}) or "openai" ({type: function, function:
    {name, description, parameters}})."""
    tools = []
    for name in TOOL_NAMES:
        fn = getattr(AgentTools, name)
        hints = typing.get_type_hints(fn)
        doc = inspect.getdoc(fn) or ""
        docs = _arg_docs(doc)
        props: dict[str, Any] = {}
        required = []
        for pname, param in inspect.signature(fn).parameters.items():
            if pname == "self":
                continue
            props[pname] = {**_json_type(hints[pname]), "description": docs.get(pname, "")}
            if param.default is inspect.Parameter.empty:
                required.append(pname)
        schema = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
        description = doc.split("\n\n")[0]
        if style == "openai":
            tools.append({"type": "function", "function": {"name": name, "description": description,
                                                           "parameters": schema}})
        else:
            tools.append({"name": name, "description": description, "input_schema": schema})
    return tools


def call_tool(tools: AgentTools, name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    """Dispatch a model's tool call (arguments as a dict or a JSON string) to ``tools``."""
    if name not in TOOL_NAMES:
        return {"ok": False, "error": f"unknown tool {name!r}; the tools are {', '.join(TOOL_NAMES)}"}
    args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
    try:
        return getattr(tools, name)(**args)  # type: ignore[no-any-return]
    except TypeError as exc:
        return {"ok": False, "error": f"bad arguments for {name}: {exc}"}
