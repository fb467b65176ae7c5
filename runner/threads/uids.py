"""The host uid (and gid, the same number) each thread's jobs run as.

Each thread has a uid of its own from ``RUNNER_UID_RANGE``, recorded in the database (the store's
:class:`~runner.store.threads.ThreadsStore`) and on the Docker engine (:class:`UidRegistry`, so that
runners of several databases sharing one engine never give one uid twice): per-user kernel limits are
counted per host uid across every container of the engine, so threads must not share one, and a job
must never run as a uid with rights on the host (root, the runner's own).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import sandbox
from ..errors import ConfigError, RunnerError
from ..store import Database
from ..store.threads import ThreadsStore, UidAllocation
from .ids import ThreadId

log = logging.getLogger(__name__)


def _threads_store(db: Database | ThreadsStore) -> ThreadsStore:
    return db if isinstance(db, ThreadsStore) else ThreadsStore(db)


def thread_uid(db: Database | ThreadsStore, thread_id: str | ThreadId, uid_range: tuple[int, int],
               registry: UidRegistry | None = None) -> int:
    """The host uid (and gid) the jobs of ``thread_id`` run as: allocated once from ``uid_range``
    (RUNNER_UID_RANGE; its last uid is doctor's sample) and kept in the ``threads`` table.

    ``db`` is the store (or the bare database, whose store part for threads is used). Allocation is
    serialised by a transaction-scoped advisory lock, and the column is UNIQUE, so two runners of one
    database never hand one uid to two threads. With ``registry`` (the engine's record, which every
    runner uses before a run) the uid is also never another database's: a uid the engine gives to
    another database's thread is skipped, and a thread whose recorded uid turns out to be another
    database's (a row from before the registry) is given a new one, its files following it."""
    store, thread = _threads_store(db), str(ThreadId.parse(thread_id))
    uid = store.thread_uid(thread)
    if uid is not None and (registry is None or registry.holds(thread, uid)):
        return checked_job_uid(uid)
    return checked_job_uid(_allocate(store, thread, uid_range, registry))


def _allocate(store: ThreadsStore, thread_id: str, uid_range: tuple[int, int], registry: UidRegistry | None) -> int:
    with store.uid_allocation() as alloc:
        old = alloc.current(thread_id)
        if old is not None and (registry is None or registry.holds(thread_id, old)):
            return old  # another runner of this database allocated it meanwhile
        given = alloc.give(thread_id, _choose(alloc, thread_id, uid_range, registry), old)
    if given is None:
        raise RunnerError(f"thread {thread_id}: its uid changed while one was being given to it; schedule again")
    if old is not None:
        log.warning("thread %s: uid %d is another database's on this Docker engine; its jobs now run as %d "
                    "(its files follow at its next run)", thread_id, old, given)
    return given


def _choose(alloc: UidAllocation, thread_id: str, uid_range: tuple[int, int], registry: UidRegistry | None) -> int:
    first, last = uid_range
    used = alloc.used_in(first, last)
    if registry is None:
        uid = next((u for u in range(first, last) if u not in used), None)
    else:
        uid = registry.claim_free(thread_id, used, first, last)
    if uid is None:
        raise ConfigError(f"RUNNER_UID_RANGE {first}-{last} is used up: every uid in it belongs to a thread "
                          "(of this or another database on the engine); widen the range (keep the uids already given)")
    return uid


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
