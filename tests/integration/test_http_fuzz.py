"""Property-based fuzzing of the HTTP API with schemathesis against its own OpenAPI document (issue 14),
with a thread token: every operation, a bounded number of generated requests each (so CI stays fast).
Whatever comes in, the server never answers 5xx, and every answer fits the schema it publishes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from runner import tokens
from runner.http.app import create_app
from runner.http.serve import HttpServer
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database, Store

THREAD = "telegram:42"


@pytest.fixture
def api(settings: Settings, jobs: Jobs, db: Database) -> Iterator[dict[str, Any]]:
    store = Store(db)
    made = tokens.new_token()
    store.create_token(made, name="fuzz", scope=tokens.Scope(thread=THREAD, admin=False, read_only=False))
    jobs.schedule_job(thread_id=THREAD, name="seed", script_text="pass", at="in 1 hour")
    server = HttpServer(create_app(settings, jobs, store), "127.0.0.1:0")
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        spec = httpx.get(f"{url}/v1/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(spec)
        schema.config.update(base_url=url)
        yield {"schema": schema, "headers": {"Authorization": f"Bearer {made.text}"}}
    finally:
        server.stop()


def test_no_operation_answers_5xx_or_off_schema(api: dict[str, Any]) -> None:
    """Each operation of the document, 10 generated requests each (derandomized: the same ones every run)."""
    operations = [result.ok() for result in api["schema"].get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case: Any) -> None:
            if "thread" in (case.path_parameters or {}):
                case.path_parameters["thread"] = THREAD  # inside the token's thread: other threads are the matrix's
            # A request the schema allows may still be refused by what the schema cannot say (a script with
            # a syntax error, a zone that does not exist): a 422 with its reason is right, not a failure.
            case.call_and_validate(headers=api["headers"], excluded_checks=[positive_data_acceptance], timeout=45)

        check()
