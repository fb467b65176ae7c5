"""Script pinning: a job runs the script approved for it, and nothing else.

A thread's jobs share one ``jobs/`` directory, so any of them can replace another's ``jobs/<name>.py``
(and so borrow that job's network grant). The sha256 of a script is therefore recorded when its job
is scheduled, or when the script is approved again (``runner update ID --approve`` / ``--script``,
the agent's ``update_job``, the bot's ``/approve``). Before each run the runner reads the script
itself, without following links, compares its hash with the pinned one and, when they agree, hands
*those bytes* to the container on the launcher's command line: the container never reads the file,
so a rewrite after the check cannot reach it.

A row from before pinning (no hash) is pinned on its first run to the script it finds then.
"""

from __future__ import annotations

import hashlib
from typing import Any

from . import artifacts
from .errors import RunnerError

SHORT = 12  # hex digits of a hash shown to people (and accepted back from them)


def digest(source: bytes) -> str:
    """The sha256 of a script, in hex."""
    return hashlib.sha256(source).hexdigest()


def read_script(dir_fd: int, filename: str, cap: int, job: dict[str, Any]) -> bytes:
    """The job's script ``filename`` in its thread's jobs/ directory, read without following links or
    blocking, at most ``cap`` bytes; a RunnerError that says what to do otherwise."""
    again = f"give the script again: runner update {job['id']} --script FILE"
    try:
        got = artifacts.read_capped(dir_fd, filename, cap)
    except artifacts.UnsafeFile as exc:
        raise RunnerError(f"script refused: {exc}; {again}") from None
    if got is None:
        raise RunnerError(f"script jobs/{filename} not found in thread {job['thread_id']}: write it there and schedule "
                          f"again, or {again}")
    if got.truncated:
        raise RunnerError(f"jobs/{filename} is larger than {cap} bytes now; it was not run")
    return got.data


def stored_script(files: dict[str, tuple[bytes, Any]], filename: str, cap: int, job: dict[str, Any]) -> bytes:
    """:func:`read_script` for a thread whose files are in the store (``files``: name -> (bytes, mtime))."""
    got = files.get(filename)
    if got is None:
        raise RunnerError(f"script jobs/{filename} not found in thread {job['thread_id']}: write it there and schedule "
                          f"again, or give the script again: runner update {job['id']} --script FILE")
    if len(got[0]) > cap:
        raise RunnerError(f"jobs/{filename} is larger than {cap} bytes now; it was not run")
    return got[0]


def as_text(source: bytes, filename: str) -> str:
    """The script as text for the launcher's command line (UTF-8, no NUL bytes)."""
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        raise RunnerError(f"jobs/{filename} is not UTF-8 text; it was not run") from None
    if "\x00" in text:
        raise RunnerError(f"jobs/{filename} contains a NUL byte; it was not run")
    return text


def changed_reason(job: dict[str, Any], found: str) -> str:
    """Why a run was refused, and how each interface approves the new version."""
    path, jid, short = job["script_path"], job["id"], found[:SHORT]
    return (f"{path} changed since it was scheduled or last approved (approved sha256 "
            f"{job['script_sha256'][:SHORT]}, found {short}); it was not run. If the new version is wanted, "
            f"approve it: runner update {jid} --approve {short} (agent: update_job({jid}, approve_script="
            f"\"{short}\"); Telegram: /approve {jid}), or give the script again: runner update {jid} --script FILE")


def check(job: dict[str, Any], source: bytes) -> str | None:
    """None if ``source`` is the script pinned for ``job`` (or the job has no pin yet), else the reason."""
    pinned = job.get("script_sha256")
    found = digest(source)
    if pinned is None or pinned == found:
        return None
    return changed_reason(job, found)


def matches(found: str, wanted: str | None) -> bool:
    """Whether the hash ``found`` is the one a person gave back (all of it, or its first digits)."""
    if not wanted:
        return True
    wanted = wanted.strip().lower()
    return len(wanted) >= 8 and found.startswith(wanted)
