"""The periodic duties on APScheduler: one that hangs holds up no other, a failure is logged once per
streak and counted each time, and the link's rule for judging other runners."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from runner import metrics
from runner.duties import Duties, Duty, Link
from runner.errors import DatabaseError

from ..waiting import wait_for


def _sample(metric: str, duty: str) -> float:
    return metrics.REGISTRY.get_sample_value(metric, {"duty": duty}) or 0.0


def test_a_hung_duty_holds_up_no_other_and_its_skipped_runs_are_counted() -> None:
    slow, beat = f"slow-{uuid.uuid4().hex[:6]}", f"beat-{uuid.uuid4().hex[:6]}"
    release, entered = threading.Event(), threading.Event()
    beats: list[float] = []

    def hang() -> None:
        entered.set()
        release.wait(30)

    duties = Duties([Duty(slow, hang, 0.1), Duty(beat, lambda: beats.append(time.monotonic()), 0.1)])
    duties.start()
    try:
        assert entered.wait(10), "the slow duty should have started"
        wait_for(lambda: len(beats) >= 5, 10, "the other duty to keep running while one hangs", interval=0.02)
        wait_for(lambda: _sample("runner_duty_skipped_total", slow) >= 2, 10, "the hung duty's skipped runs", interval=0.02)
        assert _sample("runner_duty_skipped_total", beat) == 0
    finally:
        release.set()
        duties.shutdown()


def test_a_failing_duty_keeps_its_schedule_and_is_logged_once_per_streak(caplog: pytest.LogCaptureFixture) -> None:
    name = f"flaky-{uuid.uuid4().hex[:6]}"
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) <= 3:
            raise DatabaseError("database: the database is unreachable (test); check DATABASE_URL")

    duties = Duties([Duty(name, flaky, 0.1)])
    with caplog.at_level(logging.INFO, logger="runner.duties"):
        duties.start()
        try:
            wait_for(lambda: len(calls) >= 5, 10, "the duty to run again after its failures", interval=0.02)
        finally:
            duties.shutdown()
    assert _sample("runner_duty_failures_total", name) == 3
    assert _sample("runner_duty_last_success_timestamp_seconds", name) > 0
    lines = [r for r in caplog.records if name in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO], [r.getMessage() for r in lines]
    assert "unreachable" in lines[0].getMessage() and "works again after 3 failure(s)" in lines[1].getMessage()
    assert not any(r.exc_info for r in lines), "a known failure is one line, not a traceback"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_link_is_trusted_only_after_a_full_lease_of_beats() -> None:
    clock = Clock()
    link = Link(lease=6, gap=4, clock=clock)
    assert not link.trusted(), "never connected"
    for _ in range(3):
        link.beat()
        clock.now += 2
    assert link.trusted(), "beats every 2 s for 6 s"
    clock.now += 5
    assert not link.trusted(), "nothing heard for longer than the gap"
    link.beat()
    assert not link.trusted(), "a beat after a gap starts the lease over"
    for _ in range(3):
        clock.now += 2
        link.beat()
    assert link.trusted()
    link.lost()
    link.beat()
    assert not link.trusted(), "a failed beat starts the lease over"


def test_each_duty_is_an_interval_job_of_its_own_that_never_overlaps_itself() -> None:
    from apscheduler.triggers.interval import IntervalTrigger

    duties = Duties([Duty("a", lambda: None, 2.0), Duty("b", lambda: None, 300.0, at_start=False)])
    duties.scheduler.start(paused=True)  # the jobs as the running scheduler holds them, none run
    try:
        jobs = {j.id: j for j in duties.scheduler.get_jobs()}
        assert set(jobs) == {"a", "b"}
        for job, seconds in ((jobs["a"], 2.0), (jobs["b"], 300.0)):
            assert isinstance(job.trigger, IntervalTrigger) and job.trigger.interval.total_seconds() == seconds
            assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, None)
        assert jobs["a"].next_run_time < jobs["b"].next_run_time, "a runs at once, b after its interval"
        assert duties.scheduler._executors["default"]._pool._max_workers == 2, "a thread for every duty"
    finally:
        duties.shutdown()
