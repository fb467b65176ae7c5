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

Each thread also has a host uid of its own (its gid is the same number), from ``RUNNER_UID_RANGE``,
recorded in the database and on the Docker engine (:class:`UidRegistry`, so that runners of several
databases sharing one engine never give one uid twice): per-user kernel limits are counted per host uid
across every container of the engine, so threads must not share one, and a job must never run as a
uid with rights on the host (root, the runner's own). The data directory and the thread directories
are the runner's, mode 0700, so no other host user can reach what a job leaves in ``jobs/``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import jobsquota, sandbox
from .errors import ConfigError, RunnerError, ValidationError
from .store import QUERIES

log = logging.getLogger(__name__)

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


def thread_uid(db: Any, thread_id: str, uid_range: tuple[int, int], registry: UidRegistry | None = None) -> int:
    """The host uid (and gid) the jobs of ``thread_id`` run as: allocated once from ``uid_range``
    (RUNNER_UID_RANGE; its last uid is doctor's sample) and kept in the ``threads`` table.

    Allocation is serialised by a transaction-scoped advisory lock, and the column is UNIQUE, so two
    runners of one database never hand one uid to two threads. With ``registry`` (the engine's record,
    which every runner uses before a run) the uid is also never another database's: a uid the engine
    gives to another database's thread is skipped, and a thread whose recorded uid turns out to be
    another database's (a row from before the registry) is given a new one, its files following it."""
    validate_thread_id(thread_id)
    row = db.one("thread_uid", {"thread_id": thread_id})
    uid = row["uid"] if row else None
    if uid is not None and (registry is None or registry.holds(thread_id, uid)):
        return checked_job_uid(uid)
    return checked_job_uid(_allocate(db, thread_id, uid_range, registry))


def _allocate(db: Any, thread_id: str, uid_range: tuple[int, int], registry: UidRegistry | None) -> int:
    first, last = uid_range
    with db.transaction() as conn:
        conn.execute(QUERIES["lock_thread_uids"])
        row = conn.execute(QUERIES["thread_uid"], {"thread_id": thread_id}).fetchone()
        old = row["uid"] if row else None
        if old is not None and (registry is None or registry.holds(thread_id, old)):
            return int(old)  # another runner of this database allocated it meanwhile
        used = {r["uid"] for r in conn.execute(QUERIES["thread_uids_in_range"], {"first": first, "last": last})}
        if registry is None:
            uid = next((u for u in range(first, last) if u not in used), None)
        else:
            uid = registry.claim_free(thread_id, used, first, last)
        if uid is None:
            raise ConfigError(f"RUNNER_UID_RANGE {first}-{last} is used up: every uid in it belongs to a thread "
                              "(of this or another database on the engine); widen the range (keep the uids already given)")
        given = conn.execute(QUERIES["give_thread_uid"], {"thread_id": thread_id, "uid": uid, "old": old}).fetchone()
    if given is None:
        raise RunnerError(f"thread {thread_id}: its uid changed while one was being given to it; schedule again")
    if old is not None:
        log.warning("thread %s: uid %d is another database's on this Docker engine; its jobs now run as %d "
                    "(its files follow at its next run)", thread_id, old, uid)
    return int(given["uid"])


class UidRegistry:
    """The engine's record of which database's thread holds which job uid (see sandbox.claim_uid), with
    a check per thread that is cached for ``ttl`` seconds, so a run costs no engine call. The cache
    expiring also heals an entry someone removed (``docker volume prune``): it is made again, or, if
    another database took the uid meanwhile, the thread moves to a new one."""

    SAMPLE = ("*", "doctor:0")  # the range's last uid, doctor's sample: reserved, never a thread's

    def __init__(self, client: Callable[[], Any], store: str, ttl: float = 300.0) -> None:
        self.client, self.store, self.ttl = client, store, ttl
        self._held: dict[tuple[str, int], float] = {}
        self._samples: set[int] = set()
        self._lock = threading.Lock()

    def holds(self, thread_id: str, uid: int) -> bool:
        """True if ``uid`` is this database's ``thread_id``'s on the engine, registering it if it is no one's."""
        key = (thread_id, int(uid))
        with self._lock:
            if self._held.get(key, 0.0) > time.monotonic():
                return True
        if sandbox.claim_uid(self.client(), uid, self.store, thread_id) != (self.store, thread_id):
            return False
        with self._lock:
            self._held[key] = time.monotonic() + self.ttl
        return True

    def claim_free(self, thread_id: str, used: set[int], first: int, last: int) -> int | None:
        """Register and return a uid in [first, last) that neither this database (``used``) nor any
        other on the engine has; None if there is none. Racing runners of other databases are settled
        by the engine: a uid whose entry turns out to be someone else's is skipped."""
        self.reserve_sample(last)
        taken = sandbox.registered_uids(self.client())
        for uid in range(first, last):
            if uid in used or taken.get(uid, (self.store, thread_id)) != (self.store, thread_id):
                continue  # ours already (an allocation that did not reach the database) is taken again
            if self.holds(thread_id, uid):
                return uid
        return None

    def reserve_sample(self, uid: int) -> None:
        """Register doctor's sample uid (once per process) so that no runner of the engine gives it to a thread."""
        if uid in self._samples:
            return
        holder = sandbox.claim_uid(self.client(), uid, *self.SAMPLE)
        if holder != self.SAMPLE:
            log.warning("doctor's sample uid %d (the last of RUNNER_UID_RANGE) is a thread's of another database "
                        "on this Docker engine: give every runner of the engine the same RUNNER_UID_RANGE", uid)
        self._samples.add(uid)


def checked_job_uid(uid: int) -> int:
    """``uid`` if a job may run as it: never root and never the runner's own uid (which may hold the
    Docker socket, or own the data directory)."""
    if uid <= 0 or uid == os.geteuid():
        raise ConfigError(f"a job would run as uid {uid}, which is root or the runner's own uid: "
                          "set RUNNER_UID_RANGE to uids no host user has (such as 200000-299999)")
    return uid


def sample_uid(uid_range: tuple[int, int]) -> int:
    """The uid of doctor's sample containers: the range's last, never given to a thread."""
    return checked_job_uid(uid_range[1])


def prepare_jobs_dir(data_dir: Path, thread_id: str, uid: int, quota: jobsquota.Quota | None = None) -> Path:
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
    path = jobs_dir(data_dir, thread_id)
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

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 64  # deeper trees are not migrated further (a job made them; it keeps what it cannot reach)
MAX_ENTRIES = 200_000


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

def _give_to_uid(fd: int, uid: int, thread_id: str, *, migrate: bool) -> None:
    st = os.fstat(fd)
    if migrate and (st.st_uid, st.st_gid) != (uid, uid):
        log.info("thread %s: giving its jobs/ to uid %d (it was %d:%d)", thread_id, uid, st.st_uid, st.st_gid)
        _walk(fd, lambda dfd, name, est: _chown_entry(dfd, name, est, uid))
    os.fchown(fd, uid, uid)
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.fchmod(fd, 0o700)


def _chown_entry(dfd: int, name: str, st: os.stat_result, uid: int) -> None:
    """Entries of an earlier job uid become the thread's (a chown also clears setuid and setgid bits);
    the runner's own, such as the scripts it wrote, stay its own."""
    if st.st_uid != os.geteuid() and (st.st_uid, st.st_gid) != (uid, uid):
        os.chown(name, uid, uid, dir_fd=dfd, follow_symlinks=False)


def _walk(fd: int, visit: Callable[[int, str, os.stat_result], None], depth: int = 0,
          budget: list[int] | None = None) -> None:
    """Call ``visit(dir_fd, name, lstat)`` on every entry under ``fd``: fd-relative, links never followed,
    subdirectories opened with O_NOFOLLOW|O_NONBLOCK|O_DIRECTORY (a FIFO or a swapped-in link fails
    to open instead of blocking or leading elsewhere), bounded in depth and entries."""
    budget = [MAX_ENTRIES] if budget is None else budget
    for name in os.listdir(fd):
        budget[0] -= 1
        if budget[0] < 0:
            return
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                sub = -1
            if sub >= 0:
                try:
                    _walk(sub, visit, depth + 1, budget)
                finally:
                    os.close(sub)
        visit(fd, name, st)


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
