"""The input models of the MCP tools that the HTTP API takes in its path or query rather than in a body:
built from the API's own models and field texts (runner.http.models), so that a tool's JSON Schema and
the route's validation say the same. schedule_job, update_job and preview_schedule take the API's bodies
themselves (JobCreate, JobUpdate with the job's id, Preview)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..http import models
from ..service.files import FILE_CAP

JOB_ID = "the job's id, as schedule_job and list_jobs give it"
FILE_NAME = ("a file of the thread's jobs/ directory, e.g. prices.json or check_price_output.json: 1-128 of letters, "
             "digits, '.', '_' or '-', not starting with '.', no directory")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArguments(_Strict):
    """A tool that takes nothing."""


class JobRef(_Strict):
    job_id: int = Field(ge=1, le=2**63 - 1, description=JOB_ID)


class ListJobs(_Strict):
    status: models.Status | None = Field(None, description="only jobs with this status")
    limit: int = Field(100, ge=1, le=200, description="at most this many, newest first")


class JobRuns(JobRef):
    limit: int = Field(20, ge=1, le=100, description="at most this many runs, newest first")


class UpdateJob(models.JobUpdate):
    job_id: int = Field(ge=1, le=2**63 - 1, description=JOB_ID)


class FileRef(_Strict):
    # no pattern here: the service's check of the name refuses with the sentence the HTTP API gives
    name: str = Field(max_length=256, description=FILE_NAME)


class WriteFile(FileRef):
    content: str = Field(max_length=2 * FILE_CAP, description="the file's whole new content")
    encoding: Literal["utf-8", "base64"] = Field("utf-8", description='"utf-8": content is the text itself; '
                                                 '"base64": content is the bytes in base64')
