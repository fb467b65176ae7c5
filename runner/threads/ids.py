"""Thread ids: parsed and validated once into a :class:`ThreadId`.

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

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ValidationError

_CHANNEL_RE = re.compile(r"[a-z][a-z0-9]{0,31}")
_IDENT_RE = re.compile(r"[a-z0-9-]{1,128}")
_THREAD_RE = re.compile(r"(?P<channel>[a-z][a-z0-9]{0,31}):(?P<id>[a-z0-9-]{1,128})")
_DIR_RE = re.compile(r"(?P<channel>[a-z][a-z0-9]{0,31})_(?P<id>[a-z0-9-]{1,128})")

EXAMPLE = "telegram:42"
TELEGRAM = "telegram"


def _refuse(text: object) -> ValidationError:
    return ValidationError(
        f"thread id {text!r} is not allowed: use <channel>:<id> with a lower-case channel "
        f"(letters and digits) and an id of lower-case letters, digits and '-', e.g. {EXAMPLE!r}"
    )


@dataclass(frozen=True, order=True)
class ThreadId:
    """A well-formed thread id; ``str()`` gives its canonical text (``telegram:42``).

    Build it with :meth:`parse` (from text), :meth:`from_dir` (from a directory name) or
    :meth:`telegram` (from a chat id); the constructor validates too, so no ThreadId is ever malformed."""

    channel: str
    ident: str

    def __post_init__(self) -> None:
        if not (isinstance(self.channel, str) and isinstance(self.ident, str)
                and _CHANNEL_RE.fullmatch(self.channel) and _IDENT_RE.fullmatch(self.ident)):
            raise _refuse(f"{self.channel}:{self.ident}")

    @classmethod
    def parse(cls, text: str | ThreadId) -> ThreadId:
        """The thread id ``text`` names; :class:`ValidationError` saying what is allowed if it is malformed."""
        if isinstance(text, ThreadId):
            return text
        m = _THREAD_RE.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            raise _refuse(text)
        return cls(m["channel"], m["id"])

    @classmethod
    def from_dir(cls, name: str) -> ThreadId:
        """The thread whose directory is ``name`` (the inverse of :attr:`dir_name`)."""
        m = _DIR_RE.fullmatch(name)
        if not m:
            raise ValidationError(f"{name!r} is not a thread directory name")
        return cls(m["channel"], m["id"])

    @classmethod
    def telegram(cls, chat_id: int | str) -> ThreadId:
        """The thread of a Telegram chat."""
        return cls.parse(f"{TELEGRAM}:{chat_id}")

    def __str__(self) -> str:
        return f"{self.channel}:{self.ident}"

    @property
    def dir_name(self) -> str:
        """The directory name (not a path) of the thread: ``telegram:42`` -> ``telegram_42``."""
        return f"{self.channel}_{self.ident}"

    @property
    def chat_id(self) -> str | None:
        """The Telegram chat id of a ``telegram:<chat>`` thread, else None."""
        return self.ident if self.channel == TELEGRAM else None

    def jobs_dir(self, data_dir: Path) -> Path:
        """``<data_dir>/<thread dir>/jobs``: the only directory a job of this thread ever sees."""
        return Path(data_dir) / self.dir_name / "jobs"


# The functions below take either form, for callers that hold the text (rows read from the database).

def validate_thread_id(thread_id: str | ThreadId) -> str:
    """The canonical text of ``thread_id`` if it is well formed, else :class:`ValidationError`."""
    return str(ThreadId.parse(thread_id))


def thread_dir_name(thread_id: str | ThreadId) -> str:
    """The directory name (not a path) of a thread: ``telegram:42`` -> ``telegram_42``."""
    return ThreadId.parse(thread_id).dir_name


def thread_id_from_dir(name: str) -> str:
    """The inverse of :func:`thread_dir_name`."""
    return str(ThreadId.from_dir(name))


def jobs_dir(data_dir: Path, thread_id: str | ThreadId) -> Path:
    """``<data_dir>/<thread dir>/jobs``: the only directory a job of this thread ever sees."""
    return ThreadId.parse(thread_id).jobs_dir(data_dir)


def chat_id(thread_id: str | ThreadId) -> str | None:
    """The Telegram chat id of a ``telegram:<chat>`` thread, else None."""
    return ThreadId.parse(thread_id).chat_id
