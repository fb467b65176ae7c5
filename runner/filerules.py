"""The rules of a thread's files, whichever store holds them (``RUNNER_FILES=local|postgres``): which
names a file may have, and the caps on one file, on their count and on their total. Pure: no I/O.

A name is a relative path under ``jobs/``: ``prices.json`` or ``check_attachments/note.bin``, each
component 1-128 of letters, digits, ``.``, ``_`` and ``-``, not starting with ``.``, ``_`` or ``-``
(so no ``..``, no hidden file, no option-looking name), at most :data:`MAX_DEPTH` components and
:data:`MAX_NAME_BYTES` bytes in all. The database's ``thread_files`` table checks the same shape
(migrations/012_thread_files.sql)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .settings import Settings

MODES = ("local", "postgres")
COMPONENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_DEPTH = 64  # components, as deep as a local jobs/ tree may go (runner.jobtree.MAX_DEPTH)
MAX_NAME_BYTES = 4096
MiB = 1024 * 1024


def parse_mode(raw: str) -> str:
    """``RUNNER_FILES``: where a thread's files live, ``local`` (the data directory, bind-mounted into the
    job's container; the default) or ``postgres`` (rows of the database, copied in and out)."""
    mode = (raw or "").strip().lower() or "local"
    if mode not in MODES:
        raise ConfigError(f"RUNNER_FILES={raw!r} is not a file store: use local (the data directory, the "
                          "default) or postgres (the database, for runners on several hosts)")
    return mode


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a file name of the store (a short phrase), or None if it is one."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    parts = name.split("/")
    if len(parts) > MAX_DEPTH:
        return f"it is deeper than {MAX_DEPTH} levels"
    for part in parts:
        if not COMPONENT_RE.fullmatch(part):
            return ("each part of it must be 1 to 128 letters, digits, '.', '_' or '-', starting with a "
                    "letter or digit")
    return None


def ancestors(name: str) -> list[str]:
    """The directories a name lies in, outermost first: ``a/b/c`` -> ``["a", "a/b"]``. A file of one of
    those names cannot exist beside it (a directory tree has one kind of entry per name)."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def top_level(name: str) -> str:
    """The entry of ``jobs/`` itself a name is, or lies under: ``a/b/c`` -> ``a``."""
    return name.split("/", 1)[0]


@dataclass(frozen=True)
class FileCaps:
    """A thread's limits: bytes in one file, bytes in all, and how many files."""

    file_bytes: int
    total_bytes: int
    count: int

    @classmethod
    def of(cls, settings: Settings) -> FileCaps:
        """RUNNER_MAX_FILE_MB, RUNNER_DISK_MB and RUNNER_MAX_FILES, as a job in a container has them."""
        return cls(settings.max_file_mb * MiB, settings.disk_mb * MiB, settings.max_files)


def size_problem(name: str, size: int, caps: FileCaps) -> str | None:
    """Why one file of ``size`` bytes cannot be kept, or None."""
    if size > caps.file_bytes:
        return f"jobs/{name} is {size} bytes, more than the {caps.file_bytes // MiB} MiB a file may hold"
    return None


def room_problem(files: int, total: int, caps: FileCaps) -> str | None:
    """Why a thread holding ``files`` files of ``total`` bytes in all is past its limits, or None: the
    sentence a writer is refused with (nothing is written then)."""
    if files > caps.count:
        return f"the thread's files would be {files}, more than its limit of {caps.count}: delete files first"
    if total > caps.total_bytes:
        return (f"the thread's files would hold {total // 1024} KiB, more than its {caps.total_bytes // MiB} MiB "
                "limit: delete files first")
    return None
