"""Prometheus metrics and the /healthz and /metrics HTTP endpoints of ``runner up --http ADDR``."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .statuses import STATUSES

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


class _TableCollector(Collector):
    """Jobs by status and outbox messages by status, read from the database at scrape time."""

    def __init__(self) -> None:
        self.query: Callable[[str], list[dict[str, Any]]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.query is None:
            return
        try:
            jobs = self.query("SELECT status, count(*) AS n FROM scheduled_jobs GROUP BY status")
            outbox = self.query("SELECT status, count(*) AS n FROM outbox GROUP BY status")
        except Exception as exc:  # a scrape must not fail because the database blinked
            log.debug("metrics: %s", exc)
            return
        g = GaugeMetricFamily("runner_jobs", "Job runs by status", labels=["status"])
        for status in STATUSES:
            g.add_metric([status], next((r["n"] for r in jobs if r["status"] == status), 0))
        yield g
        o = GaugeMetricFamily("runner_outbox_messages", "Outbox messages by status", labels=["status"])
        for status in ("pending", "sending", "sent", "failed"):
            o.add_metric([status], next((r["n"] for r in outbox if r["status"] == status), 0))
        yield o


TABLES = _TableCollector()
REGISTRY.register(TABLES)


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


class HealthServer:
    """Serves /healthz (scheduler loop alive, database reachable, side parts running) and /metrics on ``addr``."""

    def __init__(self, addr: str, *, loop_age: Callable[[], float], max_loop_age: float,
                 db_query: Callable[[str], list[dict[str, Any]]],
                 parts: Callable[[], dict[str, str]] = dict) -> None:
        host, _, port = addr.rpartition(":")
        self.loop_age, self.max_loop_age, self.db_query = loop_age, max_loop_age, db_query
        self.parts = parts  # the side parts' states by name ("ok", or why not): any other makes it 503
        TABLES.query = db_query
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path == "/healthz":
                    ok, body = server.health()
                    self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
                elif self.path == "/metrics":
                    self._send(200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(REGISTRY))
                else:
                    self._send(404, "text/plain", b"not found: try /healthz or /metrics\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # scrapes are not events worth a log line
                pass

        self.httpd = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): the loop ran recently, the database answers and every side part runs."""
        age = self.loop_age()
        checks: dict[str, Any] = {"scheduler_loop_age_seconds": round(age, 3),
                                  "scheduler": "ok" if age <= self.max_loop_age else "stalled"}
        try:
            t0 = time.monotonic()
            self.db_query("SELECT 1 AS ok")
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

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
