"""A thread's ``jobs/`` files in the database (``RUNNER_FILES=postgres``), for the HTTP API, MCP and the
CLI: the same operations, names, caps and sentences as the local :class:`~runner.service.files.Files`,
on rows of the store instead of a directory. A file in a directory below ``jobs/`` (a run's
``<job>_attachments/x``) is not listed; its directory is counted in ``other``, as a local one is."""

from __future__ import annotations

from ..errors import NotFound, ValidationError
from ..filerules import FileCaps
from ..settings import Settings
from ..store.files import FilesStore
from ..threads import ThreadId
from .files import FILE_CAP, LIST_LIMIT, FileEntry, Listing, check_name


class StoredFiles:
    """A thread's ``jobs/`` files as rows of the database."""

    def __init__(self, settings: Settings, store: FilesStore) -> None:
        self.settings, self.store = settings, store

    def list(self, thread: ThreadId) -> Listing:
        rows, dirs = self.store.list_thread_files(str(thread), LIST_LIMIT)
        return Listing([FileEntry(r.name, r.size, r.modified) for r in rows], dirs)

    def read(self, thread: ThreadId, name: str) -> bytes:
        check_name(name)
        got = self.store.read_thread_file(str(thread), name, FILE_CAP)
        if got is None:
            raise NotFound(f"there is no file jobs/{name} in this thread (list them: GET …/files)")
        if got.content is None:
            raise ValidationError(f"jobs/{name} is {got.size} bytes; at most {FILE_CAP} bytes are read through the API")
        return got.content

    def write(self, thread: ThreadId, name: str, data: bytes) -> None:
        check_name(name)
        if len(data) > FILE_CAP:
            raise ValidationError(f"{name} is {len(data)} bytes; at most {FILE_CAP} bytes are written through the API")
        refused = self.store.put_thread_files(str(thread), {name: bytes(data)}, FileCaps.of(self.settings))
        if refused is not None:
            raise ValidationError(refused)

    def delete(self, thread: ThreadId, name: str) -> None:
        check_name(name)
        if not self.store.delete_thread_file(str(thread), name):
            raise NotFound(f"there is no file jobs/{name} in this thread (list them: GET …/files)")
