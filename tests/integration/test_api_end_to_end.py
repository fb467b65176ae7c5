"""An assistant on another host drives `runner up` through the typed client alone (issue 14): it writes
a script's input, schedules the script for in 2 seconds, waits for the run, reads its _output.json,
pulls its message, and chains a second job that reads the first one's output. Real `runner up` in a
subprocess, a real Postgres, real job containers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from runner.client import ApiError, Client
from runner.settings import Settings
from runner.store import Database

from .helpers import make_token, serving, wait_for

THREAD = "web:assistant-1"

PRICE = '''
import json
limit = json.load(open("jobs/input.json"))["limit"]
price = 87
json.dump({"price": price}, open("jobs/check_price_output.json", "w"))
if price < limit:
    open("jobs/check_price_message.txt", "w").write(f"price {price} is under {limit}")
'''

REPORT = '''
import json
price = json.load(open("jobs/check_price_output.json"))["price"]
open("jobs/report_message.txt", "w").write(f"report: the price was {price}")
'''


@pytest.fixture
def runner_up(settings: Settings) -> Iterator[str]:
    with serving(settings, "api") as served:
        yield served.url


def _token(db: Database, thread: str | None = THREAD, read_only: bool = False) -> str:
    return make_token(db, thread, read_only)


def test_an_assistants_whole_loop_through_the_client(runner_up: str, db: Database) -> None:
    with Client(runner_up, _token(db)) as runner:
        assert runner.thread == THREAD
        runner.write_file("input.json", json.dumps({"limit": 100}))
        job = runner.schedule_job("check_price", PRICE, when="in 2 seconds")
        chained = runner.schedule_job("report", REPORT, after="check_price")
        assert job.status == "pending" and chained.due_time is None

        runs = wait_for(lambda: [r for r in runner.runs(job.id) if r.status in ("completed", "failed")], 90,
                        "the first run to finish")
        assert runs[0].status == "completed", runs[0]
        assert runs[0].exit_code == 0 and runs[0].message_queued
        assert json.loads(runner.read_file("check_price_output.json")) == {"price": 87}
        assert "check_price_output.json" in runner.list_files()

        got = wait_for(lambda: [m for m in runner.messages(wait=5) if m.job_name == "report"], 90,
                       "the chained job's message")
        texts = [m.text for m in runner.messages()]
        assert "price 87 is under 100" in texts and got[0].text == "report: the price was 87"
        last = runner.messages()[-1].id
        assert runner.messages(after=last) == []


def test_the_client_raises_api_errors_with_the_sentence_to_act_on(runner_up: str, db: Database) -> None:
    with Client(runner_up, _token(db)) as runner:
        with pytest.raises(ApiError) as bad:
            runner.schedule_job("x", "pass", every="daily 9")
        assert bad.value.status == 422 and "'daily 9': the time is ambiguous" in bad.value.detail
        with pytest.raises(ApiError) as missing:
            runner.get_job(999_999)
        assert missing.value.status == 404
        times = runner.preview("weekdays 8:30", tz="Asia/Tokyo", n=3)
        assert len(times) == 3 and all(t.hour == 8 and t.minute == 30 for t in times)
    with Client(runner_up, _token(db, read_only=True)) as reader, pytest.raises(ApiError) as refused:
        reader.write_file("x.txt", b"x")
    assert refused.value.status == 403
    with pytest.raises(ApiError) as nobody:
        Client(runner_up, "rnr_0000000000000000_" + "A" * 43)
    assert nobody.value.status == 401
    with Client(runner_up, _token(db, thread=None), thread="web:other") as admin:
        assert admin.list_jobs() == []
