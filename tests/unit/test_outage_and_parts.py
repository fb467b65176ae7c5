"""The outage tracker, the patient retry and the supervised part, on their own (no database, no Docker:
the faults are raised by the test; the integration tests stop a real Postgres)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from runner.errors import DatabaseError, DatabaseUnavailable
from runner.outage import Outage, apatiently, patiently
from runner.supervise import Part

from ..waiting import wait_for


def test_an_outage_is_logged_once_at_each_edge(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage()
    caplog.set_level(logging.WARNING, logger="runner.outage")
    threads = [threading.Thread(target=outage.began, args=("connection refused",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outage.down
    assert [outage.ended() for _ in range(3)] == [True, False, False]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("the database is unreachable (connection refused)")
    assert lines[1].startswith("the database is reachable again after")


def test_patiently_retries_until_the_database_answers() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise DatabaseUnavailable("down")
        return "ok"

    assert patiently(flaky, threading.Event()) == "ok"
    assert len(calls) == 3


def test_patiently_gives_up_only_when_stopping_and_never_on_other_errors() -> None:
    stopping = threading.Event()

    def down() -> None:
        stopping.set()
        raise DatabaseUnavailable("down")

    with pytest.raises(DatabaseUnavailable):
        patiently(down, stopping)

    def refused() -> None:
        raise DatabaseError("syntax error")

    with pytest.raises(DatabaseError):
        patiently(refused, threading.Event())  # not an outage: not retried


def test_apatiently_retries_in_the_event_loop() -> None:
    calls: list[int] = []

    async def flaky() -> int:
        calls.append(1)
        if len(calls) < 2:
            raise DatabaseUnavailable("down")
        return 7

    async def main() -> int:
        return await apatiently(flaky, asyncio.Event())

    assert asyncio.run(main()) == 7
    assert len(calls) == 2


def test_a_part_that_dies_is_reported_and_restarted_and_a_stopped_one_is_not() -> None:
    lives: list[int] = []
    stop_life = threading.Event()

    def target() -> None:
        lives.append(1)
        if len(lives) <= 2:
            raise RuntimeError(f"fault {len(lives)}")
        stop_life.wait()

    part = Part("worker", target, stop_life.set, backoff_min=0.05, backoff_max=0.2)
    states: list[str] = []
    part.start()
    wait_for(lambda: (states.append(part.status()) or True) and len(lives) >= 3 and part.status() == "ok", 10,
             "the part to be restarted twice and be ok", interval=0.01)
    assert part.deaths == 2
    assert any(s.startswith("dead: RuntimeError: fault 1; restarting in") for s in states), states
    part.stop(timeout=5)
    assert not part.thread.is_alive() and part.status() == "stopped"
    assert len(lives) == 3


def test_a_part_that_returns_unasked_is_dead_too() -> None:
    part = Part("quiet", lambda: None, lambda: None, backoff_min=5.0, backoff_max=5.0)
    part.start()
    wait_for(lambda: part.status().startswith("dead: PartEnded"), 10, "the part to be dead", interval=0.01)
    t0 = time.monotonic()
    part.stop(timeout=5)  # during the backoff: not started again, and stopping does not wait it out
    assert time.monotonic() - t0 < 2
    assert part.status() == "stopped"
