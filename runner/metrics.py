"""Prometheus metrics, and what /healthz and /metrics answer (the HTTP server is runner.http's)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .statuses import OUTBOX_STATUSES, STATUSES

if TYPE_CHECKING:
    from .store.stats import StatusCounts

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
RUNS_STARTED = Counter("runner_runs_started", "Job runs started (claimed)", registry=REGISTRY)
RUNS_FINISHED = Counter("runner_runs_finished", "Job runs finished, by status", ["status"], registry=REGISTRY)
LATENESS = Histogram("runner_lateness_seconds", "Due time to container start",
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=REGISTRY)
DURATION = Histogram("runner_run_duration_seconds", "Container run time",
                     buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600), registry=REGISTRY)
CONTAINERS = Gauge("runner_containers_running", "Job containers running now", registry=REGISTRY)
MESSAGES = Counter("runner_messages", "Messages queued, sent and failed", ["event"], registry=REGISTRY)
TELEGRAM_RETRIES = Counter("runner_telegram_retries", "Telegram deliveries put off for a retry", registry=REGISTRY)
TELEGRAM_UNKNOWN = Counter("runner_telegram_unknown_outcomes",
                           "Bot API sends with no answer within their timeout after they left: each is sent again "
                           "and may have been delivered twice (the documented window)", registry=REGISTRY)
TELEGRAM_LEASE_LOST = Counter("runner_telegram_leases_lost",
                              "Messages whose sender lost its lease to another runner and stopped", registry=REGISTRY)
WEBHOOK_RETRIES = Counter("runner_webhook_retries", "Webhook deliveries put off for a retry", registry=REGISTRY)
WEBHOOK_FAILED = Counter("runner_webhook_failed", "Webhook deliveries failed for good (a 4xx, a refused URL)",
                         registry=REGISTRY)
WEBHOOK_LEASE_LOST = Counter("runner_webhook_leases_lost",
                             "Webhook messages whose sender lost its lease to another runner and stopped",
                             registry=REGISTRY)
WEBHOOK_SECONDS = Histogram("runner_webhook_request_seconds", "Webhook POSTs, sent to answered",
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)

# The runner's periodic duties (runner/duties.py): heartbeat, orphan sweep, lease recovery, pruning.
DUTY_FAILURES = Counter("runner_duty_failures", "Periodic duty runs that failed, by duty", ["duty"], registry=REGISTRY)
DUTY_SKIPPED = Counter("runner_duty_skipped", "Periodic duty runs skipped: the last one was still going",
                       ["duty"], registry=REGISTRY)
DUTY_LAST_SUCCESS = Gauge("runner_duty_last_success_timestamp_seconds", "When each periodic duty last succeeded",
                          ["duty"], registry=REGISTRY)
# outages and side parts (issue 12, items 1 and 7)
DB_OUTAGES = Counter("runner_database_outages", "Database outages waited out (counted as each begins)",
                     registry=REGISTRY)
PART_DEATHS = Counter("runner_part_deaths", "Side parts (notifier, telegram) that died and were restarted",
                      ["part"], registry=REGISTRY)
# Fencing and adoption (issue 12, items 3-4)
LEASES_LOST = Counter("runner_leases_lost", "Runs this runner stopped touching: its lease was gone", registry=REGISTRY)
RUNS_ADOPTED = Counter("runner_runs_adopted", "Runs of a dead or frozen runner adopted, by outcome", ["outcome"],
                       registry=REGISTRY)


# The statuses each gauge reports, a status with no rows as 0.


class TableCollector(Collector):
    """Jobs by status and outbox messages by status, counted by ``counts`` (the store's
    :meth:`~runner.store.stats.StatsStore.status_counts`) at scrape time."""

    def __init__(self, counts: Callable[[], StatusCounts]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = self.counts()
        except Exception as exc:  # a scrape must not fail because the database blinked
            log.debug("metrics: %s", exc)
            return
        g = GaugeMetricFamily("runner_jobs", "Job runs by status", labels=["status"])
        for status in STATUSES:
            g.add_metric([status], counts.jobs.get(status, 0))
        yield g
        o = GaugeMetricFamily("runner_outbox_messages", "Outbox messages by status", labels=["status"])
        for status in OUTBOX_STATUSES:
            o.add_metric([status], counts.outbox.get(status, 0))
        yield o


def on_webhook_event(event: str) -> None:
    """Count a webhook delivery event: "sent" and "failed" (with every channel's), "retry" or "lease_lost"."""
    if event == "retry":
        WEBHOOK_RETRIES.inc()
    elif event == "lease_lost":
        WEBHOOK_LEASE_LOST.inc()
    else:
        if event == "failed":
            WEBHOOK_FAILED.inc()
        MESSAGES.labels(event).inc()


def on_message_event(event: str) -> None:
    """Count a delivery event: "sent", "failed", "retry", "unknown" (an unanswered send) or "lease_lost"."""
    if event == "retry":
        TELEGRAM_RETRIES.inc()
    elif event == "unknown":
        TELEGRAM_UNKNOWN.inc()
    elif event == "lease_lost":
        TELEGRAM_LEASE_LOST.inc()
    else:
        MESSAGES.labels(event).inc()


class Health:
    """What /healthz and /metrics answer (served by the runner's HTTP server, runner.http): the scheduler
    loop ran recently, the database answers and every side part runs; the process's metrics, then the
    table gauges.

    ``ping`` raises when the database does not answer; ``tables``, if given, adds its gauges to the
    /metrics page (a registry of this object's own, so two applications in one process never mix them)."""

    def __init__(self, *, loop_age: Callable[[], float], max_loop_age: float, ping: Callable[[], object],
                 parts: Callable[[], dict[str, str]] = dict, tables: Collector | None = None) -> None:
        self.loop_age, self.max_loop_age, self.ping = loop_age, max_loop_age, ping
        self.parts = parts  # the side parts' states by name ("ok", or why not): any other makes it 503
        self.tables = CollectorRegistry()
        if tables is not None:
            self.tables.register(tables)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): the loop ran recently, the database answers and every side part runs."""
        age = self.loop_age()
        checks: dict[str, Any] = {"scheduler_loop_age_seconds": round(age, 3),
                                  "scheduler": "ok" if age <= self.max_loop_age else "stalled"}
        try:
            t0 = time.monotonic()
            self.ping()
            checks["database"] = "ok"
            checks["database_seconds"] = round(time.monotonic() - t0, 4)
        except Exception as exc:
            checks["database"] = f"unreachable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        parts = self.parts()
        checks.update(parts)
        down = sorted(name for name, state in parts.items() if state != "ok")
        if down:
            checks["down"] = down
        ok = checks["scheduler"] == "ok" and checks["database"] == "ok" and not down
        return ok, {"status": "ok" if ok else "unhealthy", **checks}

    def exposition(self) -> bytes:
        """The /metrics page: the process's metrics, then the table gauges."""
        return generate_latest(REGISTRY) + generate_latest(self.tables)
