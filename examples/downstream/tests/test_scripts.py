"""What an assistant's developer checks about the scripts their agent writes, with the runner's testing
kit: the fixtures run_script and thread come from the runner[testing] plugin (no conftest needed)."""

import json
from pathlib import Path

SEED = Path(__file__).resolve().parents[2]  # the runner's examples/: the seed's scripts


def test_the_price_check_sends_a_message_under_100(run_script):
    outcome = run_script(SEED / "check_price.py", name="check_price", files={"price.json": json.dumps({"price": 42.5})})
    assert outcome.status == "completed", outcome.reason
    assert outcome.message is not None and "$42.50" in outcome.message
    assert outcome.output_json == {"price": 42.5, "below_threshold": True}


def test_the_price_check_sends_nothing_above_100(run_script):
    outcome = run_script(SEED / "check_price.py", name="check_price", files={"price.json": '{"price": 180}'})
    assert outcome.status == "completed", outcome.reason
    assert outcome.message is None
    assert outcome.output_json == {"price": 180.0, "below_threshold": False}


def test_a_chain_passes_its_data_through_output_json(run_script):
    first = run_script(SEED / "chain_fetch.py", name="chain_fetch")
    assert first.status == "completed", first.reason
    assert len(first.output_json["orders"]) == 5
    second = run_script(SEED / "chain_report.py", name="chain_report")  # same thread: it reads the first's output
    assert second.status == "completed", second.reason
    total = sum(o["amount"] for o in first.output_json["orders"])
    assert second.output_json == {"orders": 5, "total": total}
    assert second.message == f"Daily report: 5 orders, total ${total:.2f}"


def test_a_script_that_loops_forever_is_reported_as_timed_out(run_script):
    outcome = run_script("while True:\n    pass\n", name="forever", timeout=3)
    assert outcome.status == "failed"
    assert outcome.reason == "timed out after 3 s"
    assert outcome.message is None


def test_the_network_without_a_grant_fails_with_the_reason(run_script):
    source = "import urllib.request\nprint(urllib.request.urlopen('http://api.example.test/item/123', timeout=5).read())\n"
    outcome = run_script(source, name="fetch")
    assert outcome.status == "failed"
    assert outcome.reason.startswith("exit code 1: urllib.error.URLError")
    assert "name resolution" in outcome.reason


def test_each_test_gets_a_thread_of_its_own(thread):
    assert thread.client.list_jobs() == []  # the jobs of the tests above are in their own threads
