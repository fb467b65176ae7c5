"""The data directory and the thread directories: the runner's, mode 0700, with ``jobs/`` open to the
thread's uid and to nobody else on the host.

The engine bind-mounts ``jobs/`` into the container, so no other host user may reach what a job leaves
there. A runner that is root hands ``jobs/`` to the thread's uid; one that is not keeps it and grants
the thread's uid access with POSIX ACLs. Walks of a tree a job left use :func:`runner.jobtree.scan`.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import struct
from pathlib import Path

from .. import jobsquota, jobtree
from ..errors import ConfigError, RunnerError
from .ids import ThreadId
from .uids import checked_job_uid

log = logging.getLogger(__name__)


def prepare_jobs_dir(data_dir: Path, thread_id: str | ThreadId, uid: int, quota: jobsquota.Quota | None = None) -> Path:
    """Create ``<data>/<thread>/jobs`` and make it writable by the thread's uid (and gid, the same number)
    and reachable by nobody else on the host.

    The data directory and the thread directory are the runner's, mode 0700: the engine bind-mounts
    ``jobs/`` into the container, so the job needs no way through them, and no other host user has one.
    A runner that is root hands ``jobs/`` and what is in it to the thread's uid (migrating a directory
    an earlier uid, such as the old shared 10001, owned). One that is not keeps ``jobs/`` its own and
    grants the thread's uid (and itself, on what the job creates) access with POSIX ACLs.

    With a ``quota`` (RUNNER_JOBS_QUOTA=loop), ``jobs/`` is first made the mount of the thread's own
    file system of that size (:mod:`runner.jobsquota`), or the call fails: never the bare directory."""
    checked_job_uid(uid)
    secure_data_dir(data_dir)
    path = ThreadId.parse(thread_id).jobs_dir(data_dir)
    own_private_dir(path.parent)
    created = _mkdir(path)
    if quota is not None:
        created = jobsquota.ensure_mounted(path, quota) or created
    fd = _open_dir(path)
    try:
        if os.geteuid() == 0:
            _give_to_uid(fd, uid, thread_id, migrate=not created)
        else:
            _open_to_uid(fd, uid, migrate=not created)
    finally:
        os.close(fd)
    return path


def _mkdir(path: Path) -> bool:
    """mkdir 0700; True if it was made now. Something there that is not a plain directory is refused."""
    try:
        path.mkdir(mode=0o700)
        return True
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise RunnerError(f"{path} is not a plain directory; remove it and schedule again") from None
        return False


# --- the data directory and the thread directories: the runner's, mode 0700 ---------------------------

_DIR_FLAGS = jobtree.DIR_FLAGS
MAX_DEPTH = jobtree.MAX_DEPTH  # deeper trees are not migrated further (a job made them; it keeps what it cannot reach)
MAX_ENTRIES = 200_000
MAX_SECONDS = 300.0  # a migration's walk: bounded in time as well as in entries


def data_dir_problem(data_dir: Path) -> str | None:
    """Why ``data_dir`` is not private to the runner (owner, mode), or None. Used by doctor too."""
    st = os.stat(data_dir)
    if not stat.S_ISDIR(st.st_mode):
        return f"RUNNER_DATA_DIR {data_dir} is not a directory"
    if st.st_uid != os.geteuid():
        return (f"RUNNER_DATA_DIR {data_dir} is owned by uid {st.st_uid}, not by the runner's uid {os.geteuid()}: "
                f"chown {os.geteuid()} {data_dir} (or point RUNNER_DATA_DIR at a directory of the runner's own)")
    if stat.S_IMODE(st.st_mode) & 0o077:
        return f"RUNNER_DATA_DIR {data_dir} is open to other users (mode {oct(stat.S_IMODE(st.st_mode))}): chmod 700 {data_dir}"
    return None


def secure_data_dir(data_dir: Path) -> None:
    """Create the data directory (0700) or check it: a directory someone else owns is refused with what to
    do; the runner's own that is group or world accessible is closed (chmod 700), with a warning."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    problem = data_dir_problem(data_dir)
    if problem is None:
        return
    st = os.stat(data_dir)
    if st.st_uid != os.geteuid() or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(problem)
    log.warning("%s; closing it (mode 0700)", problem.split(":")[0])
    os.chmod(data_dir, 0o700)


def own_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) or repair it to the runner's own, 0700, without following a link."""
    _mkdir(path)
    fd = _open_dir(path)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            os.fchown(fd, os.geteuid(), os.getegid())
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _open_dir(path: Path) -> int:
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RunnerError(f"{path} is not a plain directory; remove it and schedule again") from None
        raise


# --- a runner that is root: jobs/ and its tree belong to the thread's uid -----------------------------

def _give_to_uid(fd: int, uid: int, thread_id: str | ThreadId, *, migrate: bool) -> None:
    st = os.fstat(fd)
    if migrate and (st.st_uid, st.st_gid) != (uid, uid):
        log.info("thread %s: giving its jobs/ to uid %d (it was %d:%d)", thread_id, uid, st.st_uid, st.st_gid)
        _walk(fd, lambda dfd, name, est: _chown_entry(dfd, name, est, uid))
    os.fchown(fd, uid, uid)
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.fchmod(fd, 0o700)


def _walk(fd: int, visit: jobtree.Visit) -> None:
    """Call ``visit(dir_fd, name, lstat)`` on every entry under ``fd`` with jobtree's bounded walk
    (fd-relative, links never followed, never blocking on a FIFO, bounded in depth, entries and time).
    An OSError of ``visit`` ends the walk and is raised here."""
    failed: list[OSError] = []

    def visit_or_stop(dfd: int, name: str, st: os.stat_result) -> None:
        try:
            visit(dfd, name, st)
        except OSError as exc:
            failed.append(exc)
            raise

    jobtree.scan(fd, max_entries=MAX_ENTRIES, seconds=MAX_SECONDS, max_depth=MAX_DEPTH, visit=visit_or_stop)
    if failed:
        raise failed[0]


def _chown_entry(dfd: int, name: str, st: os.stat_result, uid: int) -> None:
    """Entries of an earlier job uid become the thread's (a chown also clears setuid and setgid bits);
    the runner's own, such as the scripts it wrote, stay its own."""
    if st.st_uid != os.geteuid() and (st.st_uid, st.st_gid) != (uid, uid):
        os.chown(name, uid, uid, dir_fd=dfd, follow_symlinks=False)


# --- a runner that is not root: jobs/ stays the runner's, POSIX ACLs let the thread's uid in ---------

_ACL_ACCESS, _ACL_DEFAULT = "system.posix_acl_access", "system.posix_acl_default"
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_NO_ID = 0xFFFFFFFF


def _acl(owner: int, named: dict[int, int], group: int = 0, other: int = 0) -> bytes:
    """The kernel's xattr form of an ACL: owner, named users (sorted), owning group, mask, others."""
    entries = [(_USER_OBJ, owner, _NO_ID), *((_USER, perm, u) for u, perm in sorted(named.items())),
               (_GROUP_OBJ, group, _NO_ID), (_MASK, 7, _NO_ID), (_OTHER, other, _NO_ID)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in entries)


def _open_to_uid(fd: int, uid: int, *, migrate: bool) -> None:
    """``jobs/`` is the runner's, mode 0700 for everyone else; the thread's uid gets rwx on it, and
    everything created in it inherits entries for both the thread's uid and the runner (a job that
    chmods its own file away from the runner only hides that file from its own deliveries)."""
    me = os.geteuid()
    access = _acl(7, {uid: 7})
    default = _acl(7, {uid: 7, me: 7})
    if _get_acl(fd, _ACL_ACCESS) == access and _get_acl(fd, _ACL_DEFAULT) == default:
        return
    try:
        if migrate:
            _walk(fd, lambda dfd, name, st: _open_entry(dfd, name, st, uid))
        os.setxattr(fd, _ACL_ACCESS, access)
        os.setxattr(fd, _ACL_DEFAULT, default)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise ConfigError("the data directory's file system has no POSIX ACLs, which a runner that is not "
                              "root needs to share a thread's jobs/ with its uid: run the runner as root (as "
                              "compose.yaml does) or use a file system with ACLs (ext4, xfs, btrfs)") from None
        raise


def _get_acl(fd: int, name: str) -> bytes:
    try:
        return os.getxattr(fd, name)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return b""
        raise


def _open_entry(dfd: int, name: str, st: os.stat_result, uid: int) -> None:
    """Files of the runner's own from before (jobs used to run as the runner's uid): the thread's uid
    gets the owner's permissions on them. Links are skipped (their ACLs are never used)."""
    if st.st_uid != os.geteuid() or stat.S_ISLNK(st.st_mode):
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return
    perm = (st.st_mode >> 6) & 7
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=dfd)
    except OSError:
        return  # unreadable to its owner, or replaced: left as it is
    try:
        os.setxattr(fd, _ACL_ACCESS, _acl(perm, {uid: perm}, (st.st_mode >> 3) & 7, st.st_mode & 7))
        if stat.S_ISDIR(st.st_mode):
            os.setxattr(fd, _ACL_DEFAULT, _acl(7, {uid: 7, os.geteuid(): 7}))
    finally:
        os.close(fd)
