"""A thread's files as a tar stream of ``jobs/``, for the engine's archive API (``put_archive``), and the
name rule both directions share.

The files come from the store, so they are ours: what is checked here is only what would make the
stream wrong (a name that is not a stored name, a name that is both a file and a directory). The headers
are written here rather than by :mod:`tarfile` so that the stream can be produced in chunks without a
second copy of every file, and so that what is written is exactly what :mod:`runner.tarstream` reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime

from .jobtree import MAX_DEPTH, show

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
NAME_RE = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # each component of a stored name


def name_problem(name: bytes, depth: int = MAX_DEPTH) -> str | None:
    """Why ``name`` (a path below jobs/, ``/``-separated) cannot be a stored file name, or None."""
    if name.startswith(b"/"):
        return "an absolute path"
    parts = name.split(b"/")
    if b".." in parts:
        return "a path with a '..' component"
    if len(parts) > depth:
        return f"a path deeper than {depth} levels"
    if not all(NAME_RE.fullmatch(part) for part in parts):
        return "a name not allowed (each part 1 to 128 letters, digits, '.', '_' or '-', not starting with '.', '_' or '-')"
    return None


def pack_chunks(files: Mapping[str, tuple[bytes, datetime]], uid: int, gid: int, root: str = "jobs") -> Iterator[bytes]:
    """A tar stream of ``root/`` holding ``files`` (name below it -> data, modified time), in chunks.

    Owned by ``uid``:``gid``, directories 0700 (made for every name's parents), files 0600. Modified times
    are kept to the second (the engine's archive of a container's files truncates them so too). Raises
    ValueError for a name that is not a stored name, or that is also another name's directory.

    ``root`` names the top directory in the stream: ``"jobs"`` for ``put_archive("/work", ...)`` into a
    volume mounted at /work (jobs/ is then made from the stream, owned by the job); ``"."`` for
    ``put_archive("/work/jobs", ...)`` into a volume mounted there (the engine skips the ``./`` entry, so the
    mount point keeps its own owner and mode). The engine refuses both into a read-only root file system
    unless the path is a volume."""
    dirs = _directories(files)
    newest = max((int(mtime.timestamp()) for _, mtime in files.values()), default=0)
    for path in sorted(dirs):
        yield _header(f"{root}/{path}/" if path else f"{root}/", b"5", 0, 0o700, newest, uid, gid)
    for name in sorted(files):
        data, mtime = files[name]
        yield _header(f"{root}/{name}", b"0", len(data), 0o600, int(mtime.timestamp()), uid, gid)
        yield data
        yield bytes(-len(data) % BLOCK)
    yield ZERO_BLOCK * 2


def pack(files: Mapping[str, tuple[bytes, datetime]], uid: int, gid: int, root: str = "jobs") -> bytes:
    """:func:`pack_chunks` as one ``bytes`` (for the engine's archive API, ``put_archive``)."""
    return b"".join(pack_chunks(files, uid, gid, root))


def _directories(files: Mapping[str, tuple[bytes, datetime]]) -> set[str]:
    dirs = {""}
    for name in files:
        problem = name_problem(name.encode("utf-8", "surrogateescape"))
        if problem:
            raise ValueError(f"cannot pack {show(name)}: {problem}")
        parts = name.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    clash = dirs.intersection(files)
    if clash:
        raise ValueError(f"cannot pack {show(min(clash))}: it is both a file and a directory")
    return dirs


def _header(name: str, kind: bytes, size: int, mode: int, mtime: int, uid: int, gid: int) -> bytes:
    """One header (ustar, with a PAX record before it for a name longer than ustar holds)."""
    raw = name.encode("ascii")
    prefix, base = b"", raw
    if len(raw) > 100:
        cut = raw.rfind(b"/", 0, 156)
        if cut <= 0 or len(raw) - cut - 1 > 100:
            record = _pax_record(b"path", raw)
            return _ustar(b"././@PaxHeader", b"x", len(record), 0o600, mtime, uid, gid, b"") + _padded(record) \
                + _ustar(raw[:100], kind, size, mode, mtime, uid, gid, b"")
        prefix, base = raw[:cut], raw[cut + 1:]
    return _ustar(base, kind, size, mode, mtime, uid, gid, prefix)


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def _ustar(name: bytes, kind: bytes, size: int, mode: int, mtime: int, uid: int, gid: int, prefix: bytes) -> bytes:
    def octal(value: int, width: int) -> bytes:
        if 0 <= value < 8 ** (width - 1):
            return b"%0*o\0" % (width - 1, value)
        return (value % 256 ** width).to_bytes(width, "big", signed=False) if value < 0 \
            else b"\x80" + value.to_bytes(width - 1, "big")  # base-256, as GNU tar and Go write it

    block = bytearray(BLOCK)
    block[0:len(name)] = name
    block[100:108], block[108:116], block[116:124] = octal(mode, 8), octal(uid, 8), octal(gid, 8)
    block[124:136], block[136:148] = octal(size, 12), octal(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157], block[257:265] = kind, b"ustar\x0000"
    block[345:345 + len(prefix)] = prefix
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)
