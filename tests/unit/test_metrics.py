"""The metrics' table gauges are counted by what the application passes in, never by a module-level
query, and /healthz asks the database through the ping it is given."""

from __future__ import annotations

from runner import metrics
from runner.metrics import Health, TableCollector
from runner.statuses import OUTBOX_STATUSES
from runner.statuses import STATUSES as JOB_STATUSES
from runner.store.stats import StatusCounts


def _samples(collector: TableCollector) -> dict[tuple[str, str], float]:
    return {(family.name, sample.labels["status"]): sample.value
            for family in collector.collect() for sample in family.samples}


def test_every_status_is_reported_and_a_missing_one_is_zero() -> None:
    tables = TableCollector(lambda: StatusCounts(jobs={"completed": 3, "pending": 1}, outbox={"sent": 2}))
    got = _samples(tables)
    assert got == {**{("runner_jobs", s): 0.0 for s in JOB_STATUSES},
                   ("runner_jobs", "completed"): 3.0, ("runner_jobs", "pending"): 1.0,
                   **{("runner_outbox_messages", s): 0.0 for s in OUTBOX_STATUSES},
                   ("runner_outbox_messages", "sent"): 2.0}


def test_a_failing_count_leaves_the_gauges_out_and_the_scrape_whole() -> None:
    def unreachable() -> StatusCounts:
        raise RuntimeError("the database blinked")

    assert _samples(TableCollector(unreachable)) == {}


def test_there_is_no_module_level_table_wiring() -> None:
    assert not hasattr(metrics, "TABLES")


def test_metrics_page_shows_the_process_metrics_then_the_tables() -> None:
    tables = TableCollector(lambda: StatusCounts(jobs={"failed": 5}, outbox={}))
    http = Health(loop_age=lambda: 0.0, max_loop_age=60, ping=lambda: None, tables=tables)
    page = http.exposition().decode()
    assert 'runner_jobs{status="failed"} 5.0' in page
    assert 'runner_outbox_messages{status="pending"} 0.0' in page
    assert page.index("runner_runs_started_total") < page.index("runner_jobs{")
    plain = Health(loop_age=lambda: 0.0, max_loop_age=60, ping=lambda: None)
    assert "runner_jobs{" not in plain.exposition().decode(), "one application's tables are not another's"


def test_healthz_names_a_database_that_does_not_answer() -> None:
    def ping() -> None:
        raise RuntimeError("connection refused\nmore detail")

    http = Health(loop_age=lambda: 1.0, max_loop_age=60, ping=ping,
                        parts=lambda: {"notifier": "ok"})
    ok, body = http.health()
    assert not ok
    assert body["database"] == "unreachable: connection refused"
    assert body["scheduler"] == "ok" and body["notifier"] == "ok" and body["status"] == "unhealthy"


def test_healthz_is_ok_when_the_loop_runs_the_database_answers_and_every_part_runs() -> None:
    http = Health(loop_age=lambda: 1.0, max_loop_age=60, ping=lambda: None,
                        parts=lambda: {"notifier": "ok", "telegram": "dead: x; restarting in 1.0 s"})
    ok, body = http.health()
    assert not ok and body["down"] == ["telegram"]
    http.parts = lambda: {"notifier": "ok"}
    ok, body = http.health()
    assert ok and body["status"] == "ok" and body["database"] == "ok"
