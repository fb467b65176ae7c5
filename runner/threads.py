"""Thread ids and the directories they own.

A thread id is ``<channel>:<id>``, for example ``telegram:42`` or ``telegram:-1001234``.

The directory rule, one-to-one by construction:

* ``channel`` matches ``[a-z][a-z0-9]{0,31}`` (no underscore, no colon);
* ``id`` matches ``[a-z0-9-]{1,128}`` (lower case only, so case-insensitive file systems cannot fold
  two ids together);
* the directory name is ``<channel>_<id>``.

Because the channel contains no ``_`` and the id contains no ``_``, the first ``_`` of a directory name
splits it back into exactly one thread id, so two different thread ids never share a directory. Every
other id (upper case, dots, slashes, spaces, empty parts) is refused rather than rewritten, since a
rewrite is where collisions come from.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import RunnerError, ValidationError

SANDBOX_UID = 10001  # the job image's unprivileged "job" user, used when the runner itself is root

_THREAD_RE = re.compile(r"(?P<channel>[a-z][a-z0-9]{0,31}):(?P<id>[a-z0-9-]{1,128})")
_DIR_RE = re.compile(r"(?P<channel>[a-z][a-z0-9]{0,31})_(?P<id>[a-z0-9-]{1,128})")

EXAMPLE = "telegram:42"


def validate_thread_id(thread_id: str) -> str:
    """Return ``thread_id`` if it is well formed, else raise :class:`ValidationError`."""
    if not isinstance(thread_id, str) or not _THREAD_RE.fullmatch(thread_id):
        raise ValidationError(
            f"thread id {thread_id!r} is not allowed: use <channel>:<id> with a lower-case channel "
            f"(letters and digits) and an id of lower-case letters, digits and '-', e.g. {EXAMPLE!r}"
        )
    return thread_id


def thread_dir_name(thread_id: str) -> str:
    """The directory name (not a path) of a thread: ``telegram:42`` -> ``telegram_42``."""
    m = _THREAD_RE.fullmatch(validate_thread_id(thread_id))
    assert m is not None
    return f"{m['channel']}_{m['id']}"


def thread_id_from_dir(name: str) -> str:
    """The inverse of :func:`thread_dir_name`."""
    m = _DIR_RE.fullmatch(name)
    if not m:
        raise ValidationError(f"{name!r} is not a thread directory name")
    return f"{m['channel']}:{m['id']}"


def jobs_dir(data_dir: Path, thread_id: str) -> Path:
    """``<data_dir>/<thread dir>/jobs``: the only directory a job of this thread ever sees."""
    return Path(data_dir) / thread_dir_name(thread_id) / "jobs"


def chat_id(thread_id: str) -> str | None:
    """The Telegram chat id of a ``telegram:<chat>`` thread, else None."""
    channel, _, ident = validate_thread_id(thread_id).partition(":")
    return ident if channel == "telegram" else None


def sandbox_user() -> tuple[int, int]:
    """The uid:gid job containers run as: the runner's own, or the image's "job" user when root."""
    uid, gid = os.geteuid(), os.getegid()
    return (SANDBOX_UID, SANDBOX_UID) if uid == 0 else (uid, gid)


def prepare_jobs_dir(data_dir: Path, thread_id: str) -> Path:
    """Create ``<data>/<thread>/jobs`` (refusing links on the way) and make it the job user's."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = jobs_dir(data_dir, thread_id)
    for p in (path.parent, path):
        try:
            p.mkdir(mode=0o700 if p == path else 0o755)
        except FileExistsError:
            pass
        st = os.lstat(p)
        if not stat.S_ISDIR(st.st_mode):
            raise RunnerError(f"{p} is not a plain directory; remove it and schedule again")
    uid, gid = sandbox_user()
    st = os.lstat(path)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
    return path
