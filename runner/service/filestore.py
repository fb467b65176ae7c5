"""Where a thread's files live, chosen in one place from ``RUNNER_FILES``: the data directory (``local``,
the default: :class:`~runner.service.files.Files`) or the database (``postgres``:
:class:`~runner.service.storedfiles.StoredFiles`). :func:`file_backend` gives the service layer both
halves of the choice, the job scripts' (:class:`~runner.service.scripts.Scripts`) and the files'."""

from __future__ import annotations

from typing import Protocol

from ..settings import Settings
from ..store import Store
from ..threads import ThreadId
from .files import Files, Listing
from .scripts import Scripts
from .storedfiles import StoredFiles


class FileBackend(Protocol):
    """A thread's ``jobs/`` files as the HTTP API, MCP and the CLI reach them: list, read, write, delete.
    Names are plain (:func:`~runner.service.files.check_name`); every refusal is a ValidationError or a
    NotFound with the sentence a person sees."""

    def list(self, thread: ThreadId) -> Listing: ...
    def read(self, thread: ThreadId, name: str) -> bytes: ...
    def write(self, thread: ThreadId, name: str, data: bytes) -> None: ...
    def delete(self, thread: ThreadId, name: str) -> None: ...


def file_backend(settings: Settings, store: Store) -> tuple[Scripts, FileBackend]:
    """The scripts and the files of ``settings.files``' store (the one place the choice is made)."""
    in_database = settings.files == "postgres"
    scripts = Scripts(settings, store, in_database=in_database)
    files: FileBackend = StoredFiles(settings, store) if in_database else Files(settings, scripts)
    return scripts, files
