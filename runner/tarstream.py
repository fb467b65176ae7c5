"""A thread's ``jobs/`` files as a tar stream into a job container, and back out of it as hostile input.

With files in the store rather than on the runner's disk, the runner copies them into the job container
with the engine's archive API (:func:`pack`) and reads the ``jobs/`` directory back afterwards from the
engine's archive of it (:func:`unpack`). That stream is built from what the job left, on an engine that
may run on a host of its own, so it is read as hostile input:

* incrementally, one chunk at a time, never the whole stream; a member's data is read only after its
  header passed every cap, and reading stops at the first cap crossed (a 1 GiB file costs one header);
* every header record bounded before it is read (PAX and GNU long names: ``Caps.header_bytes``), every
  number checked, every header's checksum checked, and the end-of-archive marker required (a stream cut
  short would otherwise read as files the job deleted);
* nothing but plain files and directories is kept: links, devices, FIFOs, sparse files, unknown types,
  absolute paths, ``..``, names outside ``jobs/`` and names that break the store's rule are refused, each
  with a reason that shows the name escaped (names are bytes, maybe not UTF-8, maybe terminal escapes).

Our own parser rather than :mod:`tarfile` in stream mode (``r|``): that reads a PAX or GNU long-name
record of whatever size its header claims into memory before the caller sees the member (a 64 MiB PAX
header cost a 129 MiB peak), and CPython 3.11.7 parses PAX records with a backtracking regex that takes
minutes on a few MiB of digits. A tar header is 512 bytes of fixed fields; reading them is short.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .jobtree import MAX_DEPTH, show
from .tarpack import BLOCK, ZERO_BLOCK, name_problem, pack, pack_chunks

if TYPE_CHECKING:
    from .settings import Settings

KiB = 1024
MiB = 1024 * KiB
MAX_EXTENSIONS = 8  # PAX / GNU long-name headers in a row before one member
REFUSALS_KEPT = 100  # reasons kept in Extracted.refused; the rest are only counted

_REGULAR = (b"0", b"\0")
_EXTENSIONS = (b"x", b"g", b"L", b"K")
_NO_DATA = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device",
            b"4": "a block device", b"5": "a directory", b"6": "a FIFO"}


@dataclass(frozen=True)
class Caps:
    """How much of a ``jobs/`` tar stream is read before it is given up."""

    total_bytes: int = 50 * MiB  # file data in all (kept or refused)
    file_bytes: int = 50 * MiB  # one entry's data
    entries: int = 10_000  # members below jobs/, of any type
    path_bytes: int = 4096  # one member's name
    depth: int = MAX_DEPTH  # components below jobs/
    header_bytes: int = 64 * KiB  # one PAX or GNU long-name record, and a sparse entry's map

    @classmethod
    def of(cls, settings: Settings) -> Caps:
        """The caps a thread's jobs/ has under ``settings`` (its disk, file size and file count limits)."""
        return cls(total_bytes=settings.disk_mb * MiB, file_bytes=settings.max_file_mb * MiB,
                   entries=settings.max_files)


@dataclass
class Extracted:
    """What :func:`unpack` kept and refused. ``limit`` or ``error`` set means reading stopped early:
    ``files`` is then not all of jobs/ and must not be taken for it."""

    files: dict[str, tuple[bytes, datetime]] = field(default_factory=dict)  # name below jobs/ -> data, mtime
    refused: list[str] = field(default_factory=list)  # the first REFUSALS_KEPT reasons
    refused_count: int = 0
    limit: str | None = None  # the cap crossed, e.g. "jobs/ holds more than 10,000 entries"
    error: str | None = None  # why the stream is not a well-formed tar stream

    @property
    def complete(self) -> bool:
        """True if the whole stream was read to its end marker."""
        return self.limit is None and self.error is None

    def refuse(self, name: bytes, reason: str) -> None:
        self.refused_count += 1
        if len(self.refused) < REFUSALS_KEPT:
            self.refused.append(f"{show(name)}: {reason}")


__all__ = ["Caps", "Extracted", "name_problem", "pack", "pack_chunks", "unpack"]


class _Limit(Exception):
    """A cap was crossed; the text names it."""


class _Broken(Exception):
    """The stream is not a tar stream, or ends early; the text says where."""


# -- reading ------------------------------------------------------------------------------------------

class _Chunks:
    """The stream's bytes, taken in exact amounts from chunks of any size; never more than one chunk held."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._chunk = memoryview(b"")
        self.offset = 0

    def _fill(self) -> bool:
        while not self._chunk:
            nxt = next(self._it, None)
            if nxt is None:
                return False
            self._chunk = memoryview(nxt)
        return True

    def at_end(self) -> bool:
        return not self._fill()

    def take(self, n: int, keep: bool = True) -> bytes:
        """The next ``n`` bytes (or, unless ``keep``, skip them). _Broken if the stream ends first."""
        parts: list[memoryview] = []
        while n:
            if not self._fill():
                raise _Broken(f"the tar stream ends early, at byte {self.offset:,}")
            part, self._chunk = self._chunk[:n], self._chunk[n:]
            n -= len(part)
            self.offset += len(part)
            if keep:
                parts.append(part)
        return b"".join(parts)

    def skip_data(self, size: int) -> None:
        """Skip a member's ``size`` bytes of data and the padding to the next block."""
        self.take(size + -size % BLOCK, keep=False)

    def skip_padding(self, size: int) -> None:
        """Skip the padding after ``size`` bytes of data just taken."""
        self.take(-size % BLOCK, keep=False)


@dataclass
class _Member:
    name: bytes
    kind: bytes
    size: int
    mtime: int
    link: bytes = b""
    sparse: bool = False

    @property
    def data_size(self) -> int:
        """Bytes of data after the header: none for links, devices, directories and FIFOs."""
        return 0 if self.kind in _NO_DATA else self.size


def _number(raw: bytes, what: str) -> int:
    if raw[:1] == b"\x80":
        return int.from_bytes(raw[1:], "big")
    if raw[:1] == b"\xff":
        return int.from_bytes(raw, "big", signed=True)
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if not re.fullmatch(rb"[0-7]*", text):
        raise _Broken(f"a tar header's {what} is not a number")
    return int(text, 8) if text else 0


def _parse_header(block: bytes, offset: int) -> _Member:
    stored = _number(block[148:156], "checksum")
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    signed = unsigned - 2 * sum(b for b in block[:148] + block[156:] if b > 127)
    if stored not in (unsigned, signed):
        raise _Broken(f"not a tar stream: bad header checksum at byte {offset:,}")
    name = block[0:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0]
    if block[257:265] == b"ustar\x0000" and prefix:
        name = prefix + b"/" + name
    member = _Member(name=name, kind=block[156:157], size=_number(block[124:136], "size"),
                     mtime=_number(block[136:148], "modified time"), link=block[157:257].split(b"\0", 1)[0])
    if member.size < 0:
        raise _Broken("a tar header's size is negative")
    return member


def _pax(data: bytes, into: dict[bytes, bytes]) -> None:
    """Parse PAX records ("<length> <key>=<value>\\n") into ``into``; _Broken if one is malformed."""
    pos, end = 0, len(data.rstrip(b"\0"))
    while pos < end:
        space = data.find(b" ", pos, pos + 21)
        length = int(data[pos:space]) if space > pos and data[pos:space].isdigit() else 0
        record = data[space + 1:pos + length]
        if length <= space - pos or pos + length > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise _Broken("a PAX header record is malformed")
        key, value = record[:-1].split(b"=", 1)
        into[key] = value
        pos += length


def _extension(src: _Chunks, header: _Member, ext: dict[bytes, bytes], caps: Caps) -> None:
    if header.size > caps.header_bytes:
        raise _Limit(f"a tar header record is larger than {caps.header_bytes // KiB} KiB")
    data = src.take(header.size)
    src.skip_padding(header.size)
    if header.kind == b"x":
        _pax(data, ext)
    elif header.kind == b"g":
        _pax(data, {})  # checked, not applied: a global header would rename every later member
    else:
        ext[b"path" if header.kind == b"L" else b"linkpath"] = data.split(b"\0", 1)[0]


def _apply(member: _Member, ext: dict[bytes, bytes]) -> _Member:
    member.name = ext.get(b"path", member.name)
    member.link = ext.get(b"linkpath", member.link)
    if b"size" in ext:
        member.size = _pax_int(ext[b"size"], rb"\d{1,20}", "size")
    if b"mtime" in ext:
        member.mtime = _pax_int(ext[b"mtime"], rb"-?\d{1,20}(\.\d{0,20})?", "mtime")
    member.sparse = any(key.startswith(b"GNU.sparse.") for key in ext)
    return member


def _pax_int(value: bytes, shape: bytes, what: str) -> int:
    if not re.fullmatch(shape, value):
        raise _Broken(f"a PAX header's {what} is not a number")
    whole, _, frac = value.partition(b".")
    return int(whole) - (1 if whole.startswith(b"-") and frac.strip(b"0") else 0)


def _sparse_map(src: _Chunks, block: bytes, caps: Caps) -> None:
    """Skip an old GNU sparse entry's extension blocks (they come before its data), within the header cap."""
    extended, read = block[482], 0
    while extended:
        read += BLOCK
        if read > caps.header_bytes:
            raise _Limit(f"a tar header record is larger than {caps.header_bytes // KiB} KiB")
        extended = src.take(BLOCK)[504]


def _next_member(src: _Chunks, caps: Caps) -> _Member | None:
    """The next member, its extension headers applied; None at the end-of-archive marker."""
    ext: dict[bytes, bytes] = {}
    for _ in range(MAX_EXTENSIONS + 1):
        if src.at_end():
            raise _Broken(f"the tar stream ends without its end-of-archive marker, at byte {src.offset:,}")
        offset = src.offset
        block = src.take(BLOCK)
        if block == ZERO_BLOCK:
            return None
        header = _parse_header(block, offset)
        if header.kind not in _EXTENSIONS:
            if header.kind == b"S":
                _sparse_map(src, block, caps)
            return _apply(header, ext)
        _extension(src, header, ext, caps)
    raise _Broken(f"more than {MAX_EXTENSIONS} extended headers in a row")


class _Keeper:
    """The caps and the name rules applied to each member in turn, into an :class:`Extracted`."""

    def __init__(self, caps: Caps, root: bytes, out: Extracted) -> None:
        self.caps, self.root, self.out = caps, root, out
        self.entries = self.total = 0
        self.dirs: set[str] = set()

    def take(self, member: _Member, src: _Chunks) -> None:
        rel = self._relative(member)
        if rel == b"":  # jobs/ itself
            src.skip_data(member.data_size)
            return
        self._count(member)
        reason = self._refusal(member, rel)
        if reason is not None or rel is None:
            self.out.refuse(member.name, reason or "not inside jobs/")
            src.skip_data(member.data_size)
            return
        name = rel.decode("ascii")
        if member.kind == b"5":
            self.dirs.add(name)
            return
        data = src.take(member.size)
        src.skip_padding(member.size)
        self.out.files[name] = (data, _when(member.mtime))

    def _relative(self, member: _Member) -> bytes | None:
        """The name below root/ ("" for root/ itself), or None if it is not below root/."""
        name = member.name[:-1] if member.kind == b"5" and member.name.endswith(b"/") else member.name
        if name == self.root:
            return b"" if member.kind == b"5" else None
        return name[len(self.root) + 1:] if name.startswith(self.root + b"/") else None

    def _count(self, member: _Member) -> None:
        """Raise _Limit if this member crosses a cap, before any of its data is read."""
        caps, size = self.caps, member.data_size
        self.entries += 1
        self.total += size
        if self.entries > caps.entries:
            raise _Limit(f"jobs/ holds more than {caps.entries:,} entries")
        if len(member.name) > caps.path_bytes:
            raise _Limit(f"jobs/ holds a path longer than {caps.path_bytes:,} bytes ({show(member.name)})")
        if member.name.rstrip(b"/").count(b"/") > caps.depth:
            raise _Limit(f"jobs/ holds a path deeper than {caps.depth} levels ({show(member.name)})")
        if size > caps.file_bytes:
            raise _Limit(f"jobs/ holds a file larger than {caps.file_bytes / MiB:g} MiB ({show(member.name)})")
        if self.total > caps.total_bytes:
            raise _Limit(f"jobs/ holds more than {caps.total_bytes / MiB:g} MiB")

    def _refusal(self, member: _Member, rel: bytes | None) -> str | None:
        """Why this member is not kept, or None for a plain file or directory of a stored name."""
        kind = _kind_refusal(member)
        if kind is not None:
            return kind
        if rel is None:
            return "an absolute path" if member.name.startswith(b"/") else \
                "a path with a '..' component" if b".." in member.name.split(b"/") else "not inside jobs/"
        problem = name_problem(rel, self.caps.depth)
        return problem if problem is not None else self._place(rel.decode("ascii"), member.kind == b"5")

    def _place(self, name: str, is_dir: bool) -> str | None:
        """Why ``name`` clashes with a name kept before, or None (its parents are then known directories)."""
        parts = name.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if any(parent in self.out.files for parent in parents):
            return "inside a name that is a file"
        if name in self.out.files:
            return "a second entry of the same name"
        if not is_dir and name in self.dirs:
            return "a file of the same name as a directory"
        self.dirs.update(parents)
        return None


def _kind_refusal(member: _Member) -> str | None:
    if member.sparse or member.kind == b"S":
        return "a sparse file; only plain files are kept"
    if member.kind in _REGULAR or member.kind == b"5":
        return None
    if member.kind in (b"1", b"2"):
        return f"{_NO_DATA[member.kind]} (to {show(member.link)}); links are not kept"
    what = _NO_DATA.get(member.kind, f"an entry of unknown type {show(member.kind)}")
    return f"{what}; only plain files are kept"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_SECONDS = int((datetime(1, 1, 2, tzinfo=UTC) - _EPOCH).total_seconds())
_MAX_SECONDS = int((datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).total_seconds())


def _when(seconds: int) -> datetime:
    """A member's modified time (seconds since the epoch), within the years datetime holds."""
    return _EPOCH + timedelta(seconds=min(max(seconds, _MIN_SECONDS), _MAX_SECONDS))


def unpack(chunks: Iterable[bytes], caps: Caps = Caps(), root: str = "jobs") -> Extracted:
    """Read the tar stream of ``root/`` in ``chunks`` (the engine's archive of a container's jobs/ directory)
    as hostile input: the plain files below ``root/`` of stored names are kept, everything else is refused
    with a reason, and reading stops at once at the first cap crossed (``limit``) or at a malformed stream
    (``error``); the caller then closes the stream. Empty directories are not kept."""
    out = Extracted()
    keeper, src = _Keeper(caps, root.encode("ascii"), out), _Chunks(chunks)
    try:
        while (member := _next_member(src, caps)) is not None:
            keeper.take(member, src)
    except _Limit as exc:
        out.limit = str(exc)
    except _Broken as exc:
        out.error = str(exc)
    return out
