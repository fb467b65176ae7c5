"""The janitor's decisions (runner/janitor.py) with a fake loop, store and engine: no Docker, no database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from runner import sandbox
from runner.janitor import Janitor
from runner.settings import Settings


class FakeRuns:
    """The store calls the janitor makes, answered from fixed rows."""

    def __init__(self, expired: list[dict[str, Any]] | None = None, states: dict[int, dict[str, Any]] | None = None,
                 round_trip: float = 0.01) -> None:
        self.expired, self.states, self.seconds = expired or [], states or {}, round_trip
        self.adopt_limits: list[int] = []

    def adopt_expired(self, *, owner: str, lease: float, limit: int) -> list[dict[str, Any]]:
        self.adopt_limits.append(limit)
        return self.expired[:limit]

    def job_states(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        return {i: self.states[i] for i in ids if i in self.states}

    def round_trip(self) -> float:
        return self.seconds


class FakeLoop:
    def __init__(self, free: int, own: dict[int, str] | None = None) -> None:
        self.free, self.own = free, own or {}
        self.dispatched: list[int] = []

    def free_slots(self) -> int:
        return self.free

    def active_ids(self) -> list[int]:
        return list(self.own)

    def runs_itself(self, job_id: int, token: str) -> bool:
        return self.own.get(job_id) == token

    def dispatch(self, job: dict[str, Any], work: Callable[[dict[str, Any]], None]) -> None:
        self.dispatched.append(job["id"])


class FakeContainer:
    def __init__(self, job: int | str, token: str | None, status: str = "running") -> None:
        self.labels = {sandbox.LABEL_JOB: str(job), sandbox.LABEL_ROLE: "job"}
        if token is not None:
            self.labels[sandbox.LABEL_LEASE] = token
        self.status, self.short_id, self.name, self.removed = status, f"c{job}", f"c{job}", False

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.removed = True


def _janitor(runs: FakeRuns, loop: FakeLoop, containers: list[FakeContainer] | None = None,
             stopping: bool = False) -> Janitor:
    settings = Settings.from_env({"RUNNER_ID": "me", "RUNNER_LEASE_SECONDS": "6"})
    stop = threading.Event()
    if stopping:
        stop.set()
    executor = SimpleNamespace(settings=settings, runs=runs, owner="me", stopping=stop, store_id="s1", db=None)
    dc = SimpleNamespace(containers=SimpleNamespace(list=lambda **_: list(containers or [])))
    return Janitor(executor, loop, dc)  # type: ignore[arg-type]


def _expired(job_id: int, dead_owner: str, token: str) -> dict[str, Any]:
    return {"id": job_id, "name": f"j{job_id}", "lease_token": token, "dead_owner": dead_owner}


def test_recovery_adopts_others_runs_and_only_renews_its_own() -> None:
    runs = FakeRuns([_expired(1, "dead", "t1"), _expired(2, "me", "t2"), _expired(3, "me", "old")])
    loop = FakeLoop(free=4, own={2: "t2", 3: "t3"})
    assert _janitor(runs, loop).recover_expired() == [1, 2, 3]
    assert runs.adopt_limits == [4], "no more adopted than there are free slots"
    # 2 is still ours under its own claim (a late heartbeat): only renewed. 3 is an older claim of ours.
    assert loop.dispatched == [1, 3]


def test_recovery_waits_without_a_free_slot_or_while_stopping() -> None:
    runs = FakeRuns([_expired(1, "dead", "t1")])
    assert _janitor(runs, FakeLoop(free=0)).recover_expired() == []
    assert _janitor(runs, FakeLoop(free=-1)).recover_expired() == []
    assert _janitor(runs, FakeLoop(free=2), stopping=True).recover_expired() == []
    assert runs.adopt_limits == [], "nothing is taken over then"


def test_the_orphan_sweep_keeps_what_a_running_claim_holds() -> None:
    running = {"status": "running", "lease_token": "t1"}
    containers = [
        FakeContainer(1, "t1"),  # its run holds it: kept (even with its lease expired: adoption's)
        FakeContainer(1, "t0"),  # an earlier claim of the same run: removed
        FakeContainer(2, "t2"),  # its run is over: removed
        FakeContainer(3, None),  # no lease label (an older runner) and its run running: kept
        FakeContainer(4, "t4"),  # no such run any more: removed
        FakeContainer("x", "t9"),  # not a job id: left alone
    ]
    runs = FakeRuns(states={1: running, 2: {"status": "completed", "lease_token": None},
                            3: {"status": "running", "lease_token": "t3"}})
    assert _janitor(runs, FakeLoop(free=1), containers).remove_orphans() == 3
    assert [c.removed for c in containers] == [False, True, True, False, True, False]


def test_others_are_judged_only_over_a_trusted_and_quick_link() -> None:
    quick, slow = _janitor(FakeRuns(), FakeLoop(1)), _janitor(FakeRuns(round_trip=1.5), FakeLoop(1))
    assert not quick.judging(), "not connected for a full lease yet"
    for j in (quick, slow):  # a beat every 3 s (within the link's gap) for a full lease of 6 s
        for at in (0.0, 3.0, 6.0):
            j.link.clock = lambda at=at: at
            j.link.beat()
    assert quick.judging()
    assert not slow.judging(), "a round trip slower than FRESH_SECONDS puts the judgement off"
