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
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from . import toolschema
from .errors import RunnerError, ValidationError
from .http import jobs as http_jobs
from .http import models
from .http.problems import validation_detail
from .service import Jobs, public_row
from .settings import Settings
from .threads import ThreadId

_PROMPT = """You can schedule Python scripts that run later, on their own, in a sandbox.

Tools: {tools}. Check a recurrence first with the schedule language below; a schedule you get wrong is
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
  {logs_tool} shows the output and the reason.
- A job runs only the script it was scheduled (or last updated) with. If jobs/<name>.py is changed
  afterwards (by another job, say), its runs are refused. To change a job's script, give the new source
  to update_job(job_id, script=...){approve}.
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


AGENT_TOOLS = ("schedule_job", "list_jobs", "get_job", "get_job_logs", "run_job_now", "pause_job", "resume_job",
               "cancel_job", "update_job")
MCP_TOOLS = ("schedule_job", "list_jobs", "get_job", "get_job_runs", "run_job_now", "pause_job", "resume_job",
             "update_job", "cancel_job", "preview_schedule", "list_files", "read_file", "write_file")


def system_prompt(settings: Settings, *, mcp: bool = False) -> str:
    """The text for the agent's system prompt, stating the limits in force on this runner (``settings``):
    its defaults and maxima, not constants, so an agent never plans with limits the runner does not have.
    ``mcp``: naming the MCP server's tools (runner.mcp) rather than these function-calling ones."""
    s = settings
    tools, logs = (MCP_TOOLS, "get_job_runs") if mcp else (AGENT_TOOLS, "get_job_logs")
    approve = "" if mcp else '; approve_script="<sha256>" approves the file as it is now'
    return _PROMPT.format(
        tools=", ".join(tools), logs_tool=logs, approve=approve,
        message=_size(s.message_cap), attachments=s.max_attachments, attachment=_size(s.attachment_cap),
        attachments_total=_size(s.attachments_total_cap), timeout=s.timeout_seconds, memory=s.memory_mb,
        cpus=f"{s.cpus:g}", pids=s.pids_limit, disk=s.disk_mb, max_timeout=s.max_timeout_seconds,
        max_memory=s.max_memory_mb, network=_network(s))


LIST_PAGE: int = models.JobQuery.model_fields["limit"].default


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
                     memory_mb: int = 0, retries: int = 0, **fields: Any) -> dict[str, Any]:
        """Save a Python script as jobs/<name>.py and schedule it.

        The arguments are the fields of the HTTP API's JobCreate (``recurrence`` is its ``every``; its
        other fields, such as ``cpus`` or ``overlap``, come in ``fields``). As the original tools did, an
        empty string or 0 means "not given". With a recurrence and ``when`` left at "now", the first run
        is the recurrence's next time; ``when`` is ignored with ``after``.
        """
        def schedule() -> dict[str, Any]:
            body = models.JobCreate.model_construct(
                name=name, script=script, when=None if after or (recurrence and when == "now") else when or None,
                every=recurrence or None, tz=tz or None, allow_hosts=list(allow_hosts or ()), after=after or None,
                timeout_seconds=timeout_seconds or None, memory_mb=memory_mb or None, retries=retries or None,
                **_checked(models.JobCreate, fields, "schedule_job"))
            return {"job": public_row(http_jobs.schedule(self.jobs, self.thread_id, body, self.user_id))}

        return self._call(schedule)

    def list_jobs(self, status: str = "", limit: int = LIST_PAGE, before: int = 0) -> dict[str, Any]:
        """List this conversation's jobs (one entry per run, newest first), a page at a time.

        Args (those of the HTTP API's JobQuery): ``status`` only runs with this status (empty: all);
        at most ``limit``; ``before`` only ids below this one (0: from the newest). The answer's
        ``next_before`` is the ``before`` of the next page (None: this is the last).
        """
        def page() -> dict[str, Any]:
            rows, next_before = self.jobs.jobs_page(self.thread_id, status=status or None, limit=limit,
                                                    before=before or None)
            return {"jobs": [public_row(r) for r in rows], "next_before": next_before}

        return self._call(page)

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
                   retries: int | None = None, script: str = "", approve_script: str = "",
                   **fields: Any) -> dict[str, Any]:
        """Change a job's schedule, limits, network grant or script, keeping its history.

        The arguments are the fields of the HTTP API's JobUpdate (``recurrence`` is its ``every``: ""
        makes the job one-off, None keeps it; its other fields come in ``fields``); an empty string or 0
        keeps what the job has. ``script`` replaces jobs/<name>.py and approves it; ``approve_script``
        (a sha256, or its first 12+ digits, as a refusal states it) approves the file as it is now.
        """
        changes = (when, recurrence is not None, tz, timeout_seconds, memory_mb, allow_hosts is not None,
                   retries is not None)

        def update() -> dict[str, Any]:
            extra = _checked(models.JobUpdate, fields, "update_job")
            body = models.JobUpdate.model_construct(timeout_seconds=timeout_seconds or None,
                                                    memory_mb=memory_mb or None, retries=retries, **extra)
            out: dict[str, Any] = {}
            if script or approve_script:
                done = self.jobs.approve_script(job_id, self.thread_id, script_text=script or None,
                                                sha256=approve_script or None)
                out = {"job": public_row(done["job"]), "approved_sha256": done["sha256"]}
            if not out or any(changes) or extra:
                out["job"] = public_row(self.jobs.update_job(
                    job_id, self.thread_id, at=when or None, every=recurrence, tz=tz or None,
                    limits=http_jobs.limits_of(body), allow_hosts=allow_hosts, policy=http_jobs.policy_of(body)))
            return out

        return self._call(update)


def _checked(model: type[BaseModel], fields: dict[str, Any], tool: str) -> dict[str, Any]:
    """The further fields of a tool's model, each validated by the model (a ValidationError that says
    which and why otherwise); a name the tool does not take is refused."""
    allowed = set(toolschema.argument_names(toolschema.inputs()[tool]))
    target = model.model_construct()
    for name, value in fields.items():
        if name not in allowed or name not in model.model_fields:
            raise ValidationError(f"{tool} takes no argument {name!r}: it takes {', '.join(sorted(allowed))}")
        try:
            model.__pydantic_validator__.validate_assignment(target, name, value)
        except PydanticValidationError as exc:
            raise ValidationError(validation_detail(exc.errors(include_url=False))) from None
    return {name: getattr(target, name) for name in fields}


TOOL_NAMES = ("schedule_job", "list_jobs", "get_job", "get_job_logs", "run_job_now", "pause_job", "resume_job",
              "cancel_job", "update_job")


def tool_definitions(style: str = "anthropic") -> list[dict[str, Any]]:
    """The tools' definitions for function calling: each input schema made from the HTTP API's request
    models (:mod:`runner.toolschema`), each description the first paragraph of the function's docstring.

    ``style``: "anthropic" ({name, description, input_schema}) or "openai" ({type: function, function:
    {name, description, parameters}})."""
    tools = []
    specs = toolschema.inputs()
    for name in TOOL_NAMES:
        description = (inspect.getdoc(getattr(AgentTools, name)) or "").split("\n\n")[0]
        schema = toolschema.input_schema(specs[name])
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
    takes = toolschema.argument_names(toolschema.inputs()[name])
    unknown = [k for k in args if k not in takes]
    if unknown:
        return {"ok": False, "error": f"{name} takes no argument {unknown[0]!r}: it takes {', '.join(takes)}"}
    try:
        return getattr(tools, name)(**args)  # type: ignore[no-any-return]
    except TypeError as exc:
        return {"ok": False, "error": f"bad arguments for {name}: {exc}"}
