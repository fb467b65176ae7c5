"""A run's jobs/ when the thread's files are in the store (RUNNER_FILES=postgres): copied into the run's
own volume before the start, read back after the exit, and turned into what the run's finish records.

What went in is known exactly (:class:`CopyIn`); what came out is the job's (hostile, parsed with caps by
runner/tarstream.py). The run's changes are the files that differ from what went in and the names that
are gone, applied by the finish transaction together with the run's result and message (so a crash never
keeps one without the other). The message file and the attachments directory are the message, not files:
they are never stored, as the local mode deletes them once the message is queued. A run that crossed a
limit, or whose stream could not be read to its end, keeps none of its writes: part of a tree is not a
tree, and a job must not turn its limits into a way to delete files."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import artifacts, sandbox, tarstream
from .jobtree import show, text_name
from .settings import Settings

MiB = 1024 * 1024


@dataclass(frozen=True)
class CopyIn:
    """What a run's jobs/ holds at its start: the thread's files but this job's own message and
    attachments (left by a lost run: queued already, or never to be), and the archive of them."""

    files: dict[str, tuple[bytes, datetime]]
    archive: bytes
    stale: frozenset[str]  # this job's message and attachment files in the store: removed at the finish


@dataclass
class Collected:
    """What a finished run left, as its finish records it."""

    changed: dict[str, bytes] = field(default_factory=dict)
    modified: dict[str, datetime] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    message: artifacts.Message | None = None
    attachments: list[tuple[str, bytes]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # refused entries and attachments: notes of the run
    error: str | None = None  # a limit crossed, or a stream that could not be read: the run failed


def _own(job_name: str, name: str) -> bool:
    """The job's message file or a file of its attachments directory."""
    return name == f"{job_name}_message.txt" or name.startswith(f"{artifacts.attachments_dir_name(job_name)}/")


def copy_in(files: dict[str, tuple[bytes, datetime]], job_name: str, uid: int) -> CopyIn:
    """The run's jobs/ from the thread's stored ``files``, for a job running as ``uid`` (gid the same)."""
    stale = frozenset(n for n in files if _own(job_name, n))
    kept = {n: v for n, v in files.items() if n not in stale}
    return CopyIn(kept, tarstream.pack(kept, uid, uid), stale)


def baseline(files: dict[str, tuple[bytes, datetime]], job_name: str) -> CopyIn:
    """What a run of another runner was given, as far as the store tells (an adopted run: runs of a
    thread are one at a time, so only writes through the API during the run differ), without an archive."""
    stale = frozenset(n for n in files if _own(job_name, n))
    return CopyIn({n: v for n, v in files.items() if n not in stale}, b"", stale)


def collect(container: Any, settings: Settings, job_name: str, went_in: CopyIn) -> Collected:
    """Read the finished container's jobs/ back and work out the run's changes, message and attachments."""
    caps = tarstream.Caps.of(settings)
    out = sandbox.read_jobs(container, lambda chunks: tarstream.unpack(chunks, caps))
    got = Collected(problems=[f"not kept: {r}" for r in out.refused])
    if out.refused_count > len(out.refused):
        got.problems.append(f"{out.refused_count - len(out.refused)} more entries of jobs/ not kept")
    if not out.complete:
        got.error = (f"{out.limit}; none of the run's changes to jobs/ were kept" if out.limit
                     else f"the run's jobs/ could not be read back ({out.error}); none of its changes were kept")
        return got
    files = out.files
    got.message = _message(files.get(f"{job_name}_message.txt"), settings.message_cap)
    got.attachments, problems = _attachments(files, job_name, settings)
    got.problems += problems
    for name, (data, mtime) in files.items():
        if _own(job_name, name):
            continue
        before = went_in.files.get(name)
        if before is None or before[0] != data:
            got.changed[name], got.modified[name] = data, mtime
    got.removed = {n for n in went_in.files if n not in files} | set(went_in.stale)
    return got


def _message(found: tuple[bytes, datetime] | None, cap: int) -> artifacts.Message | None:
    if found is None:
        return None
    data = found[0]
    return artifacts.Message(text=data[:cap].decode("utf-8", errors="replace"), truncated=len(data) > cap)


def _attachments(files: dict[str, tuple[bytes, datetime]], job_name: str,
                 settings: Settings) -> tuple[list[tuple[str, bytes]], list[str]]:
    """``<job>_attachments/*`` as the local mode sends them: plain files directly in it with printable
    UTF-8 names, the first ``max_attachments`` by name, each and all within their caps."""
    prefix = f"{artifacts.attachments_dir_name(job_name)}/"
    names = sorted((n for n in files if n.startswith(prefix)), key=lambda n: n.encode("utf-8", "surrogateescape"))
    problems: list[str] = []
    nested = [n for n in names if "/" in n[len(prefix):]]
    if nested:
        problems.append(f"{len(nested)} entries below a subdirectory of {prefix} were not sent")
    names = [n for n in names if n not in nested]
    if len(names) > settings.max_attachments:
        problems.append(f"{len(names)} entries in {prefix[:-1]}, more than {settings.max_attachments}: "
                        "the rest were not sent")
        names = names[:settings.max_attachments]
    sent: list[tuple[str, bytes]] = []
    total = 0
    for name in names:
        short, data = name[len(prefix):], files[name][0]
        text = text_name(short)
        if text is None:
            problems.append(f"attachment refused: its name {show(short)} is not printable UTF-8 text")
        elif len(data) > settings.attachment_cap:
            problems.append(f"attachment {text} is larger than {settings.attachment_cap / MiB:g} MiB; not sent")
        elif total + len(data) > settings.attachments_total_cap:
            problems.append(f"attachments over {settings.attachments_total_cap / MiB:g} MiB in all; {text} not sent")
        else:
            sent.append((text[:200], data))
            total += len(data)
    return sent, problems
