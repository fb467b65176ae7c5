"""The testing kit (runner.testing) against real containers: the plugin's fixtures on one shared
RunnerContainer (runner_service), and separate RunnerContainers where a test is about starting and
stopping one. Needs the runner's own image (runner-service:latest) besides the job images."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from runner.client import ApiError, Client
from runner.testing import Outcome, RunnerContainer
from runner.testing.container import LABEL_SESSION, LABEL_STORE, sweep_abandoned
from runner.testing.fixtures import Thread
from tests.waiting import wait_for

RunScript = Callable[..., Outcome]


def leftovers(dc: docker.DockerClient, label: str) -> list[str]:
    """Every container, network and volume of the engine with ``label``, by kind and name."""
    f = {"label": [label]}
    return ([f"container {c.name}" for c in dc.containers.list(all=True, filters=f)]
            + [f"network {n.name}" for n in dc.networks.list(filters=f)]
            + [f"volume {v.name}" for v in dc.volumes.list(filters=f)])


@pytest.fixture
def dc() -> Iterator[docker.DockerClient]:
    """The engine, closed after the test (an unclosed client is a ResourceWarning, an error here)."""
    client = docker.from_env()
    try:
        yield client
    finally:
        client.close()


# --- run_script: every reason the runner gives ------------------------------------------------------------

def test_a_script_that_completes_gives_its_message_files_and_output_json(run_script: RunScript) -> None:
    outcome = run_script(textwrap.dedent("""\
        import json, os
        price = float(open("jobs/price.txt").read())
        print("price", price)
        json.dump({"price": price}, open("jobs/check_output.json", "w"))
        open("jobs/check_message.txt", "w").write(f"cheap: {price}")
        os.makedirs("jobs/check_attachments")
        open("jobs/check_attachments/note.bin", "wb").write(bytes(range(256)))
        """), name="check", files={"price.txt": "42"})
    assert outcome.status == "completed", outcome
    assert (outcome.reason, outcome.exit_code) == (None, 0)
    assert outcome.output == "price 42.0\n"
    assert outcome.message == "cheap: 42.0"
    assert outcome.attachments == {"note.bin": bytes(range(256))}  # the bytes, through the kit's webhook
    assert outcome.output_json == {"price": 42.0}
    assert "price.txt" not in outcome.files  # an input left unchanged is not something it left
    assert outcome.files["check_output.json"] == b'{"price": 42.0}'


def test_time_limit(run_script: RunScript) -> None:
    outcome = run_script("while True:\n    pass\n", name="spin", timeout=2)
    assert (outcome.status, outcome.reason, outcome.message) == ("failed", "timed out after 2 s", None)


def test_memory_limit(run_script: RunScript) -> None:
    outcome = run_script("x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n", name="hog", memory_mb=32)
    assert (outcome.status, outcome.reason) == ("failed", "killed: memory limit 32 MiB exceeded")


def test_process_limit(run_script: RunScript) -> None:
    source = "import os, time\nfor _ in range(200):\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)\n"
    outcome = run_script(source, name="forks", pids_limit=16, timeout=20)
    assert outcome.status == "failed"
    assert outcome.reason == "exit code 1: BlockingIOError: [Errno 11] Resource temporarily unavailable"


def test_disk_limit(run_script: RunScript) -> None:
    source = "f = open('jobs/big', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))\n    f.flush()\n"
    outcome = run_script(source, name="filler")
    assert outcome.status == "failed"
    # whichever comes first: the kernel's file-size limit, or the runner's poll of jobs/ against disk_mb
    assert (outcome.reason == "exit code 1: OSError: [Errno 27] File too large"
            or str(outcome.reason).startswith("disk limit 50 MiB exceeded in jobs/ (largest: big ")), outcome.reason
    assert "big" not in outcome.files  # 50 MiB: more than the API hands out, and no exception for it


def test_a_syntax_error_is_an_outcome_not_an_exception(run_script: RunScript, tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("def (:\n")
    outcome = run_script(script, name="broken")
    assert outcome.status == "failed"
    assert outcome.reason == ("broken.py has a syntax error at line 1, column 5: invalid syntax; "
                              "fix it and schedule again")


def test_network_without_a_grant_fails_with_the_reason(run_script: RunScript) -> None:
    outcome = run_script("import urllib.request\nurllib.request.urlopen('http://example.com', timeout=5)\n",
                         name="fetch")
    assert outcome.status == "failed"
    assert outcome.reason is not None and "name resolution" in outcome.reason


def test_threads_do_not_see_each_other(runner_service: RunnerContainer, thread: Thread,
                                       run_script: RunScript) -> None:
    assert run_script("print(1)", name="mine").status == "completed"
    other = runner_service.get_client("kit:someone-else")
    with other:
        assert other.list_jobs() == []
        with pytest.raises(ApiError) as refused:
            other._request("GET", f"/v1/threads/{thread.id}/jobs")
    assert refused.value.status in (403, 404)


# --- RunnerContainer: start, stop, side by side, nothing left behind ---------------------------------------

class Provoked(Exception):
    """The failure the test below provokes: only it is expected (an AssertionError of the test's own
    checks inside the block must fail the test, not pass as the expected failure)."""


def test_stop_leaves_nothing_behind_also_when_the_test_fails(dc: docker.DockerClient) -> None:
    container = RunnerContainer()
    with pytest.raises(Provoked), container, container.get_client("kit:leaves") as client:
        job = client.schedule_job("sleeper", "import time\ntime.sleep(60)\n")
        store = container.store_id
        # "running" is set when the run is claimed, before its container is made: wait for the container
        wait_for(lambda: leftovers(dc, f"{LABEL_STORE}={store}"), 60, "the running job's container")
        assert client.get_job(job.id).status == "running"
        raise Provoked("the test fails while its job runs")
    assert leftovers(dc, f"{LABEL_SESSION}={container.session}") == []
    assert leftovers(dc, f"{LABEL_STORE}={store}") == []
    assert not container.session_dir.exists()


def test_a_killed_session_is_swept_by_the_next_one(tmp_path: Path, dc: docker.DockerClient) -> None:
    script = tmp_path / "start.py"
    script.write_text("from runner.testing import RunnerContainer\nimport time\n"
                      "c = RunnerContainer().start()\nprint(c.session, flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=str(Path(__file__).parents[2]))
    try:
        assert proc.stdout is not None
        session = proc.stdout.readline().strip()
        assert session, "the child did not start its RunnerContainer"
        assert leftovers(dc, f"{LABEL_SESSION}={session}")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert sweep_abandoned(dc) >= 1
    assert leftovers(dc, f"{LABEL_SESSION}={session}") == []


def test_two_runners_side_by_side_do_not_see_each_other(runner_service: RunnerContainer) -> None:
    with RunnerContainer() as second:
        assert second.get_api_url() != runner_service.get_api_url()
        assert second.store_id != runner_service.store_id
        with runner_service.get_client("kit:shared") as a, second.get_client("kit:shared") as b:
            a.schedule_job("only_in_a", "print('a')")
            assert [j.name for j in a.list_jobs()] == ["only_in_a"]
            assert b.list_jobs() == []
            with pytest.raises(ApiError) as refused:  # a token of one is unknown to the other
                Client(second.get_api_url(), runner_service.create_token("kit:shared")).close()
        assert refused.value.status == 401


def test_a_missing_image_is_one_line_saying_what_to_run() -> None:
    container = RunnerContainer("runner-service:no-such-tag")
    with pytest.raises(RuntimeError) as missing:
        container.start()
    assert str(missing.value).startswith("image runner-service:no-such-tag is missing: run `make service-image`")
    assert "\n" not in str(missing.value)
    assert not container.session_dir.exists()
