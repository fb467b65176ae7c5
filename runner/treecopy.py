"""A thread's local ``jobs/`` tree read into memory, and written back from it, as hostile input: the
two halves of ``runner files migrate`` (:mod:`runner.service.filemigrate`).

Reading walks the tree itself (not ``os.fwalk``): each directory is opened relative to its parent with
``O_DIRECTORY|O_NOFOLLOW|O_NONBLOCK`` (:func:`runner.jobtree.open_subdir`), each entry looked at
(``lstat``) before anything opens it, each file read by :func:`runner.artifacts.read_capped` (a
plain, singly linked file, at most the per-file cap). The walk is bounded by a budget of entries and
seconds, by the store's depth, and it stops taking files at the thread's count and total: what does not
fit, a name the store cannot take, a link, a FIFO, a device, a hard link, is reported, never copied.

Writing makes the directories a name runs through (replacing what is there that is not one, never
following a link) and each file whole (:func:`runner.service.scripts.replace_file`), leaving a file
whose content is already the same as it is."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import artifacts, jobtree
from .filerules import COMPONENT_RE, MAX_DEPTH, FileCaps, name_problem
from .jobtree import show

MiB = 1024 * 1024
WALK_SECONDS = 60.0


@dataclass
class Tree:
    """What a walk of ``jobs/`` read: plain files by name (a path below jobs/), their modification
    times, what it did not copy (one phrase each), and, if it could not finish, why."""

    files: dict[str, bytes] = field(default_factory=dict)
    modified: dict[str, datetime] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    problem: str | None = None
    total: int = 0


@dataclass
class _Walk:
    tree: Tree
    caps: FileCaps
    budget: jobtree.Budget
    stack: list[tuple[int, str]]  # open directories still to read, with their path below jobs/


def read_tree(jobs_fd: int, caps: FileCaps, *, seconds: float = WALK_SECONDS) -> Tree:
    """Read the plain files under ``jobs_fd`` within ``caps`` (see the module); never raises for what a
    job left (a walk that cannot finish says why in ``problem``)."""
    walk = _Walk(Tree(), caps, jobtree.Budget(2 * caps.count + 1000, seconds), [(os.dup(jobs_fd), "")])
    try:
        while walk.stack:
            fd, rel = walk.stack.pop()
            try:
                _read_dir(walk, fd, rel)
            finally:
                os.close(fd)
    except jobtree.Incomplete as exc:
        walk.tree.problem = f"jobs/ could not be read whole ({exc}); nothing was copied"
    except OSError as exc:
        walk.tree.problem = f"jobs/ could not be read whole ({exc.strerror or exc}); nothing was copied"
    finally:
        for fd, _ in walk.stack:
            os.close(fd)
    return walk.tree


def _read_dir(walk: _Walk, fd: int, rel: str) -> None:
    names = jobtree.list_names(fd, walk.budget.entries + 1)
    for name in sorted(names, key=os.fsencode):
        walk.budget.spend()
        path = f"{rel}/{name}" if rel else name
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        why = _unfit(path, name, st)
        if why is not None:
            walk.tree.skipped.append(f"jobs/{show(path)}: {why}")
        elif stat.S_ISDIR(st.st_mode):
            _enter(walk, fd, name, path)
        else:
            _read_file(walk, fd, name, path, st)


def _unfit(path: str, name: str, st: os.stat_result) -> str | None:
    """Why an entry is not copied before it is opened, or None."""
    is_dir = stat.S_ISDIR(st.st_mode)
    if not COMPONENT_RE.fullmatch(name) or name_problem(path) is not None:
        return "its name is not one the store takes" + (" (nor anything in it)" if is_dir else "")
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link, not followed"
    if is_dir and path.count("/") + 1 >= MAX_DEPTH:
        return f"a directory at the store's depth of {MAX_DEPTH}; what is in it was not copied"
    if not is_dir and not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, a socket or a device)"
    return None


def _enter(walk: _Walk, fd: int, name: str, path: str) -> None:
    try:
        walk.stack.append((jobtree.open_subdir(fd, name), path))
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        walk.tree.skipped.append(f"jobs/{show(path)}: it changed while it was read")


def _read_file(walk: _Walk, fd: int, name: str, path: str, st: os.stat_result) -> None:
    tree, caps = walk.tree, walk.caps
    if len(tree.files) >= caps.count:
        tree.skipped.append(f"jobs/{show(path)}: past the thread's limit of {caps.count} files")
        return
    try:
        got = artifacts.read_capped(fd, name, caps.file_bytes)
    except artifacts.UnsafeFile as exc:
        tree.skipped.append(f"jobs/{show(path)}: {exc}")
        return
    if got is None:
        return
    if got.truncated:
        tree.skipped.append(f"jobs/{show(path)}: larger than the {caps.file_bytes // MiB} MiB a file may hold")
    elif tree.total + len(got.data) > caps.total_bytes:
        tree.skipped.append(f"jobs/{show(path)}: past the thread's {caps.total_bytes // MiB} MiB in all")
    else:
        tree.files[path] = got.data
        tree.modified[path] = datetime.fromtimestamp(st.st_mtime, UTC)
        tree.total += len(got.data)


# --- writing -------------------------------------------------------------------------------------------

@dataclass
class Written:
    """What :func:`write_tree` did: files written, files already the same."""

    written: int = 0
    unchanged: int = 0


def write_tree(jobs_fd: int, files: Mapping[str, tuple[bytes, datetime]], uid: int) -> Written:
    """Write ``files`` (name -> (content, modified)) under ``jobs_fd``; directories it makes are the
    thread's ``uid``'s when the runner is root (else ``jobs/``'s default ACL lets that uid in).
    Raises OSError (or artifacts.UnsafeFile) on what it cannot write."""
    from .service.scripts import replace_file  # (the service's atomic write; imported here, beside its use)

    done = Written()
    for name in sorted(files):
        content, modified = files[name]
        *dirs, leaf = name.split("/")
        fd = _open_dirs(jobs_fd, dirs, uid)
        try:
            if _same(fd, leaf, content):
                done.unchanged += 1
                continue
            replace_file(fd, leaf, content)
            stamp = int(modified.timestamp() * 1e9)
            os.utime(leaf, ns=(stamp, stamp), dir_fd=fd, follow_symlinks=False)
            done.written += 1
        finally:
            os.close(fd)
    return done


def _same(fd: int, leaf: str, content: bytes) -> bool:
    try:
        got = artifacts.read_capped(fd, leaf, len(content))
    except (artifacts.UnsafeFile, OSError):
        return False  # a link, a FIFO or a directory there: replaced
    return got is not None and not got.truncated and got.data == content


def _open_dirs(jobs_fd: int, dirs: list[str], uid: int) -> int:
    """A descriptor of ``jobs/<dirs...>``, each made if missing (what is there that is not a plain
    directory, a link among them, is removed first)."""
    fd = os.dup(jobs_fd)
    try:
        for part in dirs:
            nfd = _subdir(fd, part, uid)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _subdir(fd: int, part: str, uid: int) -> int:
    try:
        return jobtree.open_subdir(fd, part)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        artifacts.remove(fd, part)  # a file, a link or a FIFO at a directory's name
    os.mkdir(part, 0o770, dir_fd=fd)  # the group bits are the default ACL's mask: the thread's uid gets rwx
    nfd = jobtree.open_subdir(fd, part)
    if os.geteuid() == 0:
        os.fchown(nfd, uid, uid)
        os.fchmod(nfd, 0o700)
    return nfd
