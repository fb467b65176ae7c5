"""What the MCP tools act on, bound to one thread: the service layer of this runner (:class:`Local`, for
`/mcp` on the runner's HTTP server and for `runner mcp --thread`), or a remote runner's HTTP API through
the typed client (:class:`Remote`, for `runner mcp --url … --token …`). Both answer with the HTTP API's
models and refuse with a :class:`~runner.errors.RunnerError` whose text is the sentence to act on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..client import ApiError, Client
from ..errors import NotFound, RunnerError, ValidationError
from ..http import models, views
from ..service import Jobs
from ..service.filestore import FileBackend
from ..settings import Settings
from ..threads import ThreadId
from . import actions

ACTIONS = ("run_job_now", "pause_job", "resume_job", "cancel_job")  # a job's one-step actions
T = TypeVar("T")


class Backend(Protocol):
    """One thread's jobs and files."""

    thread: str

    def schedule_job(self, body: models.JobCreate) -> models.Job: ...
    def list_jobs(self, status: str | None, limit: int) -> list[models.Job]: ...
    def get_job(self, job_id: int) -> models.Job: ...
    def job_runs(self, job_id: int, limit: int) -> list[models.Run]: ...
    def act(self, action: str, job_id: int) -> models.Job: ...
    def update_job(self, job_id: int, body: models.JobUpdate) -> models.Job: ...
    def preview(self, body: models.Preview) -> models.PreviewResult: ...
    def list_files(self) -> tuple[list[models.FileInfo], int]: ...
    def read_file(self, name: str) -> bytes: ...
    def write_file(self, name: str, data: bytes) -> None: ...


class Local:
    """The service layer of this runner, for one thread (what the HTTP routes call, with the same checks)."""

    def __init__(self, settings: Settings, jobs: Jobs, files: FileBackend, thread: ThreadId | str) -> None:
        self.settings, self.jobs, self.files = settings, jobs, files
        self.tid = ThreadId.parse(thread)
        self.thread = str(self.tid)

    def schedule_job(self, body: models.JobCreate) -> models.Job:
        return actions.create_job(self.jobs, self.tid, body)

    def list_jobs(self, status: str | None, limit: int) -> list[models.Job]:
        return [views.job(r) for r in self.jobs.list_jobs(thread_id=self.tid, status=status, limit=limit)]

    def get_job(self, job_id: int) -> models.Job:
        return views.job(self.jobs.get_job(job_id, self.tid))

    def job_runs(self, job_id: int, limit: int) -> list[models.Run]:
        return actions.job_runs(self.jobs, job_id, self.tid, limit)

    def act(self, action: str, job_id: int) -> models.Job:
        if action not in ACTIONS:
            raise ValidationError(f"there is no action {action!r}: use one of {', '.join(ACTIONS)}")
        return views.job(getattr(self.jobs, action)(job_id, self.tid))

    def update_job(self, job_id: int, body: models.JobUpdate) -> models.Job:
        return actions.update_job(self.jobs, job_id, self.tid, body)

    def preview(self, body: models.Preview) -> models.PreviewResult:
        return actions.preview(self.settings, body)

    def list_files(self) -> tuple[list[models.FileInfo], int]:
        listing = self.files.list(self.tid)
        return [models.FileInfo(name=f.name, size=f.size, modified=f.modified) for f in listing.files], listing.other

    def read_file(self, name: str) -> bytes:
        return self.files.read(self.tid, name)

    def write_file(self, name: str, data: bytes) -> None:
        self.files.write(self.tid, name, data)


class Refused(RunnerError):
    """The remote runner refused a request; the text is its problem's detail."""


class Remote:
    """A remote runner's HTTP API through :class:`~runner.client.Client` (its thread is the client's)."""

    def __init__(self, client: Client) -> None:
        self.client, self.thread = client, client.thread

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ApiError as exc:
            raise (NotFound if exc.status == 404 else Refused)(exc.detail) from None

    def schedule_job(self, body: models.JobCreate) -> models.Job:
        fields: dict[str, Any] = body.model_dump(exclude_none=True)
        fields.setdefault("when", None)  # unset: the server's default (now, or the recurrence's next time)
        return self._call(lambda: self.client.schedule_job(**fields))

    def list_jobs(self, status: str | None, limit: int) -> list[models.Job]:
        return self._call(lambda: self.client.list_jobs(status, limit=limit))

    def get_job(self, job_id: int) -> models.Job:
        return self._call(lambda: self.client.get_job(job_id))

    def job_runs(self, job_id: int, limit: int) -> list[models.Run]:
        return self._call(lambda: self.client.runs(job_id, limit))

    def act(self, action: str, job_id: int) -> models.Job:
        methods = {"run_job_now": self.client.run_now, "pause_job": self.client.pause,
                   "resume_job": self.client.resume, "cancel_job": self.client.cancel}
        if action not in methods:
            raise ValidationError(f"there is no action {action!r}: use one of {', '.join(ACTIONS)}")
        return self._call(lambda: methods[action](job_id))

    def update_job(self, job_id: int, body: models.JobUpdate) -> models.Job:
        return self._call(lambda: self.client.update(job_id, **body.model_dump(exclude_unset=True)))

    def preview(self, body: models.Preview) -> models.PreviewResult:
        return self._call(lambda: self.client.preview_schedule(body.when, body.every, body.tz, body.n))

    def list_files(self) -> tuple[list[models.FileInfo], int]:
        return self._call(self.client.file_infos)

    def read_file(self, name: str) -> bytes:
        return self._call(lambda: self.client.read_file(name))

    def write_file(self, name: str, data: bytes) -> None:
        self._call(lambda: self.client.write_file(name, data))


def remote_settings(base: Settings, client: Client) -> Settings:
    """``base`` with the limits the remote runner states (GET /v1/limits), so that the tools' descriptions
    and the prompt tell that runner's limits, not this machine's."""
    got = Remote(client)._call(client.limits)
    names = {"timeout_seconds": "timeout_seconds", "max_timeout_seconds": "max_timeout_seconds",
             "memory_mb": "memory_mb", "max_memory_mb": "max_memory_mb", "cpus": "cpus", "pids_limit": "pids_limit",
             "disk_mb": "disk_mb", "script_bytes": "script_cap", "message_bytes": "message_cap",
             "max_files": "max_files", "max_attachments": "max_attachments", "attachment_bytes": "attachment_cap",
             "attachments_total_bytes": "attachments_total_cap"}
    changes: dict[str, object] = {field: got[key] for key, field in names.items() if key in got}
    if "egress_allow" in got:
        changes["egress_allow"] = tuple(got["egress_allow"])
    return base.with_(**changes)
