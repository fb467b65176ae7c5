"""The HTTP API's request and response models: the single source of the OpenAPI document, of the agent
tools' JSON Schema and of the typed client (issue 14). Field descriptions are written for an agent that
reads only the schema. Bounds here are structural (lengths, ranges, patterns); the limits the operator
sets (time, memory, script size) are checked by the service layer, which names them in its refusal."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z0-9_-]{1,64}$"
MAX_SCRIPT_CHARS = 1_048_576  # structural only: the operator's RUNNER_SCRIPT_CAP is the real limit
MAX_EXPR_CHARS = 200

JobName = Annotated[str, Field(pattern=NAME_PATTERN)]
NAME = ("1-64 of a-z, 0-9, '_' or '-'; it names the script jobs/<name>.py and its files "
        "(<name>_message.txt, <name>_output.json, <name>_attachments/)")
WHEN = 'first run: "now", "in 10 minutes", "tomorrow 9am", "next monday 8:30", an ISO 8601 time'
EVERY = ('repeat rule: "hourly", "daily 9am", "weekdays 8:30", "every 15 minutes", or a 5-field cron line '
         'such as "0 9 * * 1-5"')
ZONE = "IANA time zone such as \"Europe/Berlin\"; omitted: the thread's zone"
HOSTS = 'host names the job may reach over HTTP(S), e.g. "api.example.com" or "*.example.com"; empty: no network'
Expr = Annotated[str, Field(max_length=MAX_EXPR_CHARS)]
Host = Annotated[str, Field(max_length=253)]
T = TypeVar("T")
Status = Literal["pending", "running", "completed", "failed", "cancelled"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Strict):
    """Per-job limits; omitted: the operator's default (GET /v1/limits states them)."""

    timeout_seconds: int | None = Field(None, ge=1, description="wall-time limit of one run, in seconds")
    memory_mb: int | None = Field(None, ge=16, description="memory limit, in MiB")
    cpus: float | None = Field(None, gt=0, description="CPU share, e.g. 0.5")
    pids_limit: int | None = Field(None, ge=8, description="most processes at once")


class Policies(_Strict):
    """Per-job policies; omitted: the documented default."""

    grace_seconds: int | None = Field(None, ge=0, description="a run missed while the runner was down still "
                                      "runs if it is less late than this (default 3600)")
    overlap: Literal["skip", "queue"] | None = Field(None, description='"skip" (default): slots that fall due '
                                                     'while the previous run runs are skipped; "queue": the '
                                                     "first of them runs right after it")
    retries: int | None = Field(None, ge=0, le=10, description="how often a failed run is retried (default 0)")
    retry_delay_seconds: int | None = Field(None, ge=1, description="wait before the first retry, doubled "
                                            "each time (default 60)")


class JobCreate(Limits, Policies):
    """Save a script as jobs/<name>.py and schedule it."""

    name: JobName = Field(description=NAME)
    script: str = Field(max_length=MAX_SCRIPT_CHARS, description="the job's Python source (standard library only)")
    when: Expr | None = Field(None, description=WHEN + ' (default "now"; with every and no when, the '
                              "recurrence's next time); not with after")
    every: Expr | None = Field(None, description=EVERY)
    tz: Expr | None = Field(None, description=ZONE)
    allow_hosts: list[Host] = Field(default_factory=list, max_length=20, description=HOSTS)
    after: JobName | None = Field(None, description="another job of this thread: this one runs each time "
                                  "that one completes; not with when or every")


class JobQuery(BaseModel):
    """Which of a thread's jobs to list (one entry per run), newest first, a page at a time."""

    status: Status | None = Field(None, description="only jobs with this status; omitted: all")
    limit: int = Field(100, ge=1, le=200, description="at most this many")
    before: int | None = Field(None, ge=1, description="the cursor: only ids below this one (the next page "
                               "starts below the last id of a page; the HTTP API's Link header gives it)")


class JobUpdate(Limits, Policies):
    """Change a job's pending run; only the fields given change. every="" makes it a one-off."""

    when: Expr | None = Field(None, description=WHEN)
    every: Expr | None = Field(None, description=EVERY + '; "" makes the job a one-off')
    tz: Expr | None = Field(None, description=ZONE)
    allow_hosts: list[Host] | None = Field(None, max_length=20, description=HOSTS + "; omitted: unchanged")
    script: str | None = Field(None, max_length=MAX_SCRIPT_CHARS, description="a new source for jobs/<name>.py")


class Job(BaseModel):
    """One job (its current run, or its latest for a finished one-off)."""

    id: int
    name: str
    thread_id: str
    status: Status
    due_time: datetime | None = Field(None, description="null while it waits for its after job")
    recurrence: str | None = None
    cron: str | None = None
    timezone: str
    paused: bool = False
    after_job: str | None = None
    error_message: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    exit_code: int | None = None
    duration_ms: int | None = None
    attempts: int = 0
    missed_runs: int | None = None
    skipped_note: str | None = None
    timeout_seconds: int | None = None
    memory_mb: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    allow_hosts: list[str] = Field(default_factory=list)
    next_runs: list[datetime] = Field(default_factory=list, description="the next five run times, in the "
                                      "job's zone (recurring jobs)")


class Run(BaseModel):
    """One run of a job."""

    id: int
    status: Status
    reason: str | None = Field(None, description="why it failed, from the kernel or the engine where a limit "
                               "was hit; null when it completed")
    exit_code: int | None = None
    output: str | None = Field(None, description="the tail of what the script printed")
    output_truncated: bool = False
    due_time: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    lateness_ms: int | None = Field(None, description="from the due time to the script's start")
    message_queued: bool = False
    delivery: Literal["pending", "sending", "sent", "failed"] | None = None


class Message(BaseModel):
    """A message or failure notice of a thread's jobs, as queued for delivery."""

    id: int
    job_id: int | None
    job_name: str | None = None
    kind: Literal["message", "failure"]
    text: str
    created_at: datetime
    status: Literal["pending", "sending", "sent", "failed"]
    attachments: list[str] = Field(default_factory=list, description="attachment file names")


class Page(BaseModel, Generic[T]):
    """A page of items; ask for the next with ?after=<next_after>."""

    items: list[T]
    next_after: int | None = Field(None, description="null on the last page")


class FileInfo(BaseModel):
    """A file of the thread's jobs/ directory."""

    name: str
    size: int
    modified: datetime


class Preview(_Strict):
    """The next run times of a schedule, without creating anything."""

    when: Expr | None = Field(None, description=WHEN)
    every: Expr | None = Field(None, description=EVERY)
    tz: Expr | None = Field(None, description=ZONE)
    n: int = Field(5, ge=1, le=50, description="how many times to show")


class PreviewResult(BaseModel):
    times: list[datetime]
    timezone: str


class ThreadSettings(_Strict):
    """A change of the thread's settings: only the fields given change."""

    timezone: Expr | None = Field(None, description="the thread's IANA time zone, used by schedules that give none")
    webhook_url: str | None = Field(None, max_length=2048, description="messages are POSTed here, signed "
                                    "(Runner-Signature), instead of Telegram; null: remove the webhook")


class ThreadSettingsView(BaseModel):
    """The thread's settings. The webhook secret is shown only in the answer that made it."""

    timezone: str = Field(description="the zone of schedules that give none (the operator's default if unset)")
    webhook_url: str | None = Field(description="the thread's own webhook; null: none")
    webhook: Literal["thread", "channel"] | None = Field(
        description="where its messages go by webhook: its own URL, its channel's (the operator's), or none")
    webhook_secret: str | None = Field(None, description="the signing secret, only when just made: keep it")


class WebhookSecret(BaseModel):
    """A new webhook signing secret, shown once: the old one stops signing at once."""

    webhook_secret: str


class Problem(BaseModel):
    """An error (RFC 9457 problem details). detail is the sentence that says what to change."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
