"""Walking, repairing and removing a job's directory tree from the host, as hostile input.

A job can change its ``jobs/`` directory while the host walks it: swap a directory for a FIFO or a
symbolic link between two system calls, build a tree thousands of levels deep, make millions of
entries, choose names that are not UTF-8, set setuid or world-writable modes. So every operation here:

* is relative to an open directory descriptor and names exactly one component (never a path);
* opens directories with ``O_DIRECTORY|O_NOFOLLOW|O_NONBLOCK``: a link or a FIFO swapped in fails with
  ELOOP/ENOTDIR at once instead of being followed or blocking;
* changes modes and removes ACLs through an ``O_PATH|O_NOFOLLOW`` descriptor, checked with ``fstat``
  first, so a link is never followed and a FIFO or device is never really opened;
* is iterative and bounded: a :class:`Budget` of entries and seconds, and a depth limit (removal moves
  deeper subtrees up instead of descending), so no walk can block, recurse or run without end.

Names come from ``scandir`` as ``str`` with surrogate escapes: the exact bytes the job chose, passed
back to the kernel unchanged. They reach text only through :func:`show`.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 64  # levels below jobs/ a job's tree may have
REMOVE_DEPTH = 32  # directory descriptors a removal holds at once; deeper subtrees are moved up
BAD_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH  # modes a job sets that must not survive on the host
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # removed, or swapped for a non-directory or a link


class Incomplete(Exception):
    """A walk or a removal ran out of its budget, or met an entry it cannot open; the text says which."""


class Budget:
    """How many entries a walk may visit and for how long."""

    def __init__(self, entries: int, seconds: float) -> None:
        self.entries, self.seconds = entries, seconds
        self.spent = 0
        self.deadline = time.monotonic() + seconds

    def spend(self) -> None:
        """Count one entry; raise :class:`Incomplete` past the entries or the time."""
        self.spent += 1
        if self.spent > self.entries:
            raise Incomplete(f"more than {self.entries:,} entries")
        if time.monotonic() > self.deadline:
            raise Incomplete(f"not done within {self.seconds:g} s")


def show(name: str | bytes) -> str:
    """A name a job chose, as printable text: invalid UTF-8 and control characters as escapes."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return out if len(out) <= 120 else out[:117] + "..."


def text_name(name: str | bytes) -> str | None:
    """The name as text if it is valid UTF-8 without control characters (fit for a text column), else None."""
    try:
        text = os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _at_inode(dir_fd: int, name: str, act: Callable[[str, int], bool], *, absent: bool) -> bool:
    """``act(path, mode)`` on the inode ``name`` is now, through an ``O_PATH|O_NOFOLLOW`` descriptor
    (``path`` is its /proc/self/fd entry, not a path the job can swap; a FIFO or device is never
    opened). ``absent`` is the answer for a link or a name that is gone; any other failure is False."""
    try:
        pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return absent
    except OSError:
        return False
    try:
        st = os.fstat(pfd)
        if stat.S_ISLNK(st.st_mode):
            return absent
        return act(f"/proc/self/fd/{pfd}", stat.S_IMODE(st.st_mode))
    except OSError:
        return False
    finally:
        os.close(pfd)


def chmod_at(dir_fd: int, name: str, clear: int, add: int = 0) -> bool:
    """Clear (and add) mode bits of ``name`` without following a link or opening a FIFO or device.

    False if it is a link or gone, or the mode could not be changed."""
    def change(path: str, mode: int) -> bool:
        if (mode & ~clear) | add != mode:
            os.chmod(path, (mode & ~clear) | add)
        return True

    return _at_inode(dir_fd, name, change, absent=False)


ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")  # a job can grant any host uid access


def repair_at(dir_fd: int, name: str) -> bool:
    """Make ``name`` safe to leave on the host: no setuid, setgid or world-write bit and no POSIX ACL
    (the owner may set one granting any host user access). True if it is safe now (or is a link, or
    is gone)."""
    return _at_inode(dir_fd, name, _make_safe, absent=True)


def _make_safe(target: str | int, mode: int) -> bool:
    """Clear BAD_BITS and the ACLs of ``target`` (a /proc/self/fd path or an open descriptor).

    A runner that is not root lets the thread's uid in through ACLs of its own (runner.threads): those
    stay, and what the job's uid owns it cannot change (False then; the caller removes the entry)."""
    try:
        if mode & BAD_BITS:
            os.chmod(target, mode & ~BAD_BITS)
        if os.geteuid() != 0:
            return True
        for attr in set(os.listxattr(target)) & set(ACL_XATTRS):
            os.removexattr(target, attr)
    except OSError as exc:
        return exc.errno in (errno.ENOTSUP, errno.ENODATA)  # no ACLs on this file system, or already gone
    return True


def _remove_entry(dir_fd: int, name: str) -> bool:
    """Remove a non-directory entry whose mode could not be made safe. True if it is gone."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def open_subdir(dir_fd: int, name: str) -> int:
    """Open the directory ``name`` in ``dir_fd``; one that denies its owner access (mode 000) is given
    ``u+rwx`` and opened again. Raises OSError (ELOOP/ENOTDIR: not a directory, or a link)."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        chmod_at(dir_fd, name, 0, stat.S_IRWXU)
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def list_names(fd: int, limit: int) -> list[str]:
    """Up to ``limit`` names in the directory ``fd``, in the order the file system gives them."""
    out: list[str] = []
    with os.scandir(fd) as it:
        for entry in it:
            out.append(entry.name)
            if len(out) >= limit:
                break
    return out


# --- measuring -------------------------------------------------------------------------------------------

@dataclass
class Scan:
    """What a walk of ``jobs/`` found. ``bytes`` counts each entry at the larger of its allocated
    blocks and its apparent size, so a sparse file counts for what a copy of it would take."""

    bytes: int = 0
    entries: int = 0
    problem: str | None = None  # why the walk could not finish
    deep: str | None = None  # a path at the depth limit that goes deeper
    removed: list[str] = field(default_factory=list)  # trees deeper than the limit, removed (repair)
    unfixed: list[str] = field(default_factory=list)  # entries whose mode could not be made safe
    tops: dict[str, list[int]] = field(default_factory=dict)  # per name in jobs/: [bytes, entries]

    def largest(self, index: int, n: int = 3) -> list[tuple[str, int]]:
        """The ``n`` names in jobs/ holding the most bytes (index 0) or entries (index 1), leaving out
        those that hold less than a twentieth of the total (they did not break the limit)."""
        total = self.bytes if index == 0 else self.entries
        ranked = sorted(self.tops.items(), key=lambda kv: kv[1][index], reverse=True)[:n]
        return [(name, v[index]) for name, v in ranked if v[index] and v[index] * 20 >= total]


@dataclass
class _Level:
    fd: int
    rel: str  # path below jobs/, "" for jobs/ itself
    depth: int  # entries in this directory are at depth + 1
    subdirs: list[str] = field(default_factory=list)


Visit = Callable[[int, str, os.stat_result], None]  # (directory fd, name in it, its lstat)


def scan(dir_fd: int, *, max_entries: int, seconds: float, max_depth: int = MAX_DEPTH,
         repair: bool = False, visit: Visit | None = None) -> Scan:
    """Measure the tree under ``dir_fd`` (never following a link, never blocking), within a budget.

    With ``repair``, also clear setuid, setgid and world-write bits and POSIX ACLs (``dir_fd`` itself
    included) and remove what lies deeper than ``max_depth``. ``visit`` is called on every entry the walk
    counts, before a directory is entered. Never raises for what the job left: a walk that cannot finish
    says why in ``problem`` (an OSError of ``visit`` ends the walk the same way)."""
    res = Scan()
    if repair:
        _clear_fd(dir_fd, res)
    root = _Level(os.dup(dir_fd), "", 0)
    stack = [root]
    try:
        budget = Budget(max_entries, seconds)
        root.subdirs = _list(root, res, budget, repair, visit)
        dev = os.fstat(dir_fd).st_dev
        while stack:
            top = stack[-1]
            if not top.subdirs:
                os.close(stack.pop().fd)
                continue
            level = _enter(top, top.subdirs.pop(), dev, res, max_depth, repair)
            if level is not None:
                stack.append(level)
                level.subdirs = _list(level, res, budget, repair, visit)
    except Incomplete as exc:
        res.problem = str(exc)
    except OSError as exc:
        res.problem = f"{exc.strerror or exc}"
    finally:
        for level in stack:
            os.close(level.fd)
    return res


def _clear_fd(fd: int, res: Scan) -> None:
    if not _make_safe(fd, stat.S_IMODE(os.fstat(fd).st_mode)):
        res.unfixed.append(".")


def _list(level: _Level, res: Scan, budget: Budget, repair: bool, visit: Visit | None = None) -> list[str]:
    """Count the entries of one directory (and repair their modes); return its subdirectories."""
    subdirs: list[str] = []
    with os.scandir(level.fd) as it:
        for entry in it:
            budget.spend()
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            res.entries += 1
            rel = f"{level.rel}/{entry.name}" if level.rel else entry.name
            size = st.st_blocks * 512 if stat.S_ISDIR(st.st_mode) else max(st.st_blocks * 512, st.st_size)
            res.bytes += size
            key = rel.split("/", 1)[0] + "/" if "/" in rel or stat.S_ISDIR(st.st_mode) else rel
            top = res.tops.setdefault(key, [0, 0])
            top[0] += size
            top[1] += 1
            if repair and not stat.S_ISLNK(st.st_mode) and not repair_at(level.fd, entry.name) \
                    and (stat.S_ISDIR(st.st_mode) or not _remove_entry(level.fd, entry.name)):
                res.unfixed.append(show(rel))
            if visit is not None:
                visit(level.fd, entry.name, st)
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(entry.name)
    return subdirs


def _enter(parent: _Level, name: str, dev: int, res: Scan, max_depth: int, repair: bool) -> _Level | None:
    """Open a subdirectory to walk it; None if it is gone, swapped, on another device or too deep."""
    rel = f"{parent.rel}/{name}" if parent.rel else name
    try:
        fd = open_subdir(parent.fd, name)
    except OSError as exc:
        if exc.errno in _GONE:
            return None
        raise Incomplete(f"cannot open {show(rel)}/: {exc.strerror}") from None
    st = os.fstat(fd)
    depth = parent.depth + 1
    if not stat.S_ISDIR(st.st_mode) or st.st_dev != dev or (depth >= max_depth and not list_names(fd, 1)):
        os.close(fd)
        return None
    if depth < max_depth:
        return _Level(fd, rel, depth)
    os.close(fd)  # a non-empty directory at the limit: its entries would be deeper than allowed
    res.deep = res.deep or show(rel)
    if repair:
        remove_tree(parent.fd, name, Budget(100_000, 10))
        res.removed.append(show(rel))
    return None


# --- removing -------------------------------------------------------------------------------------------

def remove_tree(dir_fd: int, name: str, budget: Budget) -> bool:
    """Remove ``name`` in ``dir_fd``, whatever it is (file, link, FIFO, socket, a tree of any depth),
    never following a link. False if there was nothing to remove; :class:`Incomplete` past the budget."""
    pending = [name]
    found = False
    while pending:
        n = pending.pop()
        budget.spend()
        kind = _unlink_nondir(dir_fd, n)
        found = found or kind != "absent"
        if kind == "dir":
            _remove_dir(dir_fd, n, budget, pending)
    return found


def _unlink_nondir(dir_fd: int, name: str) -> str:
    """Unlink ``name`` unless it is a directory: "removed", "absent" or "dir"."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return "removed"
    except FileNotFoundError:
        return "absent"
    except IsADirectoryError:
        return "dir"
    except PermissionError:  # EPERM is what some file systems say for a directory
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            return "dir"
        raise


def _remove_dir(top_fd: int, name: str, budget: Budget, pending: list[str]) -> None:
    """Empty and remove one directory tree, holding at most REMOVE_DEPTH descriptors: a directory met
    deeper than that is renamed into ``top_fd`` and removed later from there."""
    stack: list[tuple[int, str, int]] = []  # (parent fd, name, fd)
    _push(stack, top_fd, top_fd, name, pending)
    try:
        while stack:
            parent, n, fd = stack[-1]
            names = list_names(fd, 256)
            if not names:
                stack.pop()
                os.close(fd)
                _rmdir(parent, n, pending if parent == top_fd else None)
                continue
            child = _first_subdir(top_fd, fd, names, budget, pending, deep=len(stack) >= REMOVE_DEPTH)
            if child is not None:
                _push(stack, top_fd, fd, child, pending)
    finally:
        for _, _, fd in stack:
            os.close(fd)


def _push(stack: list[tuple[int, str, int]], top_fd: int, parent: int, name: str, pending: list[str]) -> None:
    """Open the directory ``name`` in ``parent`` (made writable, so that its entries can go) onto ``stack``."""
    try:
        fd = open_subdir(parent, name)
    except OSError as exc:
        if exc.errno in _GONE:
            if parent == top_fd:
                pending.append(name)  # swapped for a non-directory: unlinked on its next turn
            return
        raise Incomplete(f"cannot open {show(name)}/ to remove it: {exc.strerror}") from None
    try:
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | stat.S_IRWXU)  # so its entries can go
    except OSError:
        pass
    stack.append((parent, name, fd))


def _first_subdir(top_fd: int, fd: int, names: list[str], budget: Budget, pending: list[str], *, deep: bool
                  ) -> str | None:
    """Unlink the entries ``names`` of ``fd`` up to its first directory, which is returned to be descended
    into; ``deep`` (at REMOVE_DEPTH), each directory is renamed into ``top_fd`` for later instead."""
    for child in names:
        budget.spend()
        if _unlink_nondir(fd, child) != "dir":
            continue
        if not deep:
            return child
        moved = f".runner-rm-{secrets.token_hex(8)}"
        os.rename(child, moved, src_dir_fd=fd, dst_dir_fd=top_fd)
        pending.append(moved)
    return None


def _rmdir(parent: int, name: str, pending: list[str] | None) -> None:
    try:
        os.rmdir(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:  # something was added meanwhile: go round again
            raise
        if pending is not None:
            pending.append(name)
