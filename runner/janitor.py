"""The runner's sweeps: the lease heartbeat, lease recovery, orphaned containers and networks, pruning.

Each is a duty of its own on APScheduler (runner/duties.py: its own trigger and thread), so none waits
behind another's slow call: a stalled Docker engine under the orphan sweep never holds up the heartbeat.

Lease recovery (runner/adoption.py): a run whose lease ran out is adopted (this runner becomes its
owner; the claim's token, which labels its container, stays). Its container tells what happened:
exited, its real result is recorded and its message queued; still running, it is waited for within its
time limit; never started (or never made), the run goes back to pending and runs again. Only a run whose
script may have started and whose container is gone is failed "runner stopped during the run".

A runner judges others dead (their lease ran out; their container is an orphan) only while
:meth:`Janitor.judging`: connected for a full lease, and the database answering at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from . import adoption, sandbox
from .duties import Duties, Duty, Link
from .errors import DatabaseError
from .execute import Executor, Job

log = logging.getLogger(__name__)

PRUNE_SECONDS = 300.0  # the outbox's delivered messages of runs pruned from the history, between runs' own pruning
FRESH_SECONDS = 1.0  # a round trip to the database slower than this, just before judging others, puts it off


class Loop(Protocol):
    """What the janitor asks of the scheduling loop whose runs it looks after."""

    def free_slots(self) -> int: ...

    def active_ids(self) -> list[int]: ...

    def runs_itself(self, job_id: int, token: str) -> bool: ...

    def dispatch(self, job: Job, work: Callable[[Job], None]) -> None: ...


class Janitor:
    """The periodic duties of one runner, from :meth:`start` to :meth:`shutdown`."""

    def __init__(self, executor: Executor, loop: Loop, docker_client: Any) -> None:
        self.ex, self.loop, self.dc = executor, loop, docker_client
        self.settings, self.runs = executor.settings, executor.runs
        every = max(1.0, self.settings.lease_seconds / 3)
        self.link = Link(self.settings.lease_seconds, gap=2 * every)
        self._beat_conn: Any = None  # the heartbeat's own connection, opened at its first beat
        self.duties = Duties([
            Duty("heartbeat", self.heartbeat, every),
            Duty("recovery", self._recovery, every),
            Duty("sweep", self._sweep, every),
            Duty("prune", self._prune, PRUNE_SECONDS),
        ])

    def start(self) -> None:
        """Run the duties, each on its own, until :meth:`shutdown`."""
        self.duties.start()

    def shutdown(self) -> None:
        """Stop the duties (after the runs: their leases are renewed to the end) and the heartbeat's link."""
        self.duties.shutdown()
        self._close_beat()

    def housekeeping(self) -> None:
        """Every duty once, now, in this thread (they run on their own between start and shutdown)."""
        try:
            for name in self.duties.duties:
                self.duties.run_once(name)
        finally:
            if not self.duties.scheduler.running:
                self._close_beat()

    # --- the heartbeat ---------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Renew the leases of our running jobs, on a connection of its own (not the pool's: nothing
        else is ever in its way). With none running it still asks the database: the link's health is
        what it also reports."""
        ids = self.loop.active_ids()
        try:
            if self._beat_conn is None or self._beat_conn.closed:
                self._beat_conn = self.ex.db.connect(timeout=self.link.gap / 2)
            self.runs.renew_leases(self._beat_conn, ids=ids, owner=self.ex.owner, lease=self.settings.lease_seconds)
        except DatabaseError:
            self.link.lost()
            self._close_beat()  # a new one next time
            raise
        self.link.beat()

    def _close_beat(self) -> None:
        if self._beat_conn is not None:
            self._beat_conn.close()
            self._beat_conn = None

    def judging(self) -> bool:
        """Whether this runner may judge other runners dead now: connected for a full lease (so they
        have renewed theirs since any outage), and the database answers at once, so the judgement is
        not a statement held up by an outage that then lands after it."""
        if not self.link.trusted():
            return False
        return self.runs.round_trip() <= FRESH_SECONDS

    # --- the duties --------------------------------------------------------------------------------------

    def _recovery(self) -> None:
        if self.judging():
            self.recover_expired()

    def _sweep(self) -> None:
        if self.judging():  # a container is an orphan when its run's lease ran out: a judgement too
            self.remove_orphans()
        self.remove_orphan_networks()

    def _prune(self) -> None:
        self.runs.prune_messages_of_pruned_runs()  # the delivered messages of runs since pruned from the history

    def recover_expired(self) -> list[int]:
        """Adopt runs whose lease ran out (runner/adoption.py): taken over (this runner becomes the owner),
        each is then settled from its container in a worker (waiting for a running one may take its time
        limit). A run this runner is still running itself (its heartbeat was late) is only renewed."""
        free = max(0, self.loop.free_slots())
        if free == 0 or self.ex.stopping.is_set():  # adopted later (by us when a slot frees, or by another)
            return []
        rows = self.runs.adopt_expired(owner=self.ex.owner, lease=self.settings.lease_seconds, limit=free)
        for row in rows:
            if self.loop.runs_itself(row["id"], str(row["lease_token"])) and row["dead_owner"] == self.ex.owner:
                log.warning("job %s (%s): its lease ran out while this runner ran it; renewed", row["id"], row["name"])
                continue
            log.warning("job %s (%s): its runner %s stopped holding its lease; adopting the run",
                        row["id"], row["name"], row["dead_owner"])
            self.loop.dispatch(row, lambda job: adoption.adopt(self.ex, job))
        return [r["id"] for r in rows]

    def remove_orphans(self) -> int:
        """Remove job containers that no run holds: their run is over, or it is running under another
        claim (a later token). A container of a running run under its own claim is never removed here,
        even if the lease ran out: lease recovery adopts it (its runner may be alive, or just woken)."""
        try:
            containers = sandbox.managed_containers(self.dc, self.ex.store_id)
        except Exception as exc:  # docker down: try again at the next housekeeping
            log.warning("could not list job containers: %s", exc)
            return 0
        by_job: dict[int, list[Any]] = {}
        for c in containers:
            try:
                by_job.setdefault(int(c.labels.get(sandbox.LABEL_JOB, "")), []).append(c)
            except ValueError:
                continue
        if not by_job:
            return 0
        states = self.runs.job_states(list(by_job))
        removed = 0
        for job_id, cs in by_job.items():
            for c in cs:
                # A run that ended since the listing has removed its own container: say nothing then.
                if not adoption.held(states.get(job_id), c) and sandbox.remove_container(c):
                    log.warning("removed orphaned container %s of job %s", c.short_id, job_id)
                    removed += 1
        return removed

    def remove_orphan_networks(self) -> None:
        """Remove per-run networks whose job containers are all gone (their run ended or was recovered)."""
        store = self.ex.store_id
        try:
            live = {c.labels.get(sandbox.LABEL_JOB) for c in sandbox.managed_containers(self.dc, store)}
            for net in sandbox.managed_networks(self.dc, store):
                if net.attrs.get("Labels", {}).get(sandbox.LABEL_JOB) not in live:
                    sandbox.remove_network(net)
            sandbox.remove_orphan_volumes(self.dc, store, live)  # the per-run proxy sockets
        except Exception as exc:
            log.warning("could not sweep job networks: %s", exc)
