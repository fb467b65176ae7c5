"""Jobs under gVisor (RUNNER_CONTAINER_RUNTIME=runsc), where the engine has the runtime registered
(`make gvisor` does it on Debian; .ci/run runs it). Elsewhere these tests are reported as skipped.

The whole attack suite runs under runsc too (tests/security/conftest.py); these check that the job
really is under gVisor's kernel."""

from __future__ import annotations

import docker
import pytest

from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database

from ..integration.helpers import run_burst

pytestmark = pytest.mark.runtimes("runsc", why="they check gVisor itself")


def test_job_runs_under_gvisor(jobs: Jobs, settings: Settings, db: Database,
                               docker_client: docker.DockerClient) -> None:
    script = ("import os\nprint('kernel', os.uname().release)\n"
              "open('jobs/g_message.txt', 'w').write('hello from gVisor')\n"
              "try:\n    open('/etc/x', 'w')\nexcept OSError as e:\n    print('ro', e.errno)\n")
    job = jobs.schedule_job(thread_id="telegram:9", name="g", script_text=script, at="now")
    printed = run_burst(settings, db, docker_client)
    row = jobs.get_job(job["id"])
    assert row["status"] == "completed", (row["error_message"], row["output_tail"])
    host_release = docker_client.info()["KernelVersion"]
    assert "kernel " in row["output_tail"] and f"kernel {host_release}" not in row["output_tail"], \
        "the job must see gVisor's kernel, not the host's"
    assert "ro 30" in row["output_tail"] or "ro 13" in row["output_tail"]  # read-only, or not ours to write
    assert "hello from gVisor" in printed


def test_timeout_under_gvisor(jobs: Jobs, settings: Settings, db: Database,
                              docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id="telegram:9", name="spin", script_text="while True:\n    pass\n", at="now",
                            limits=Limits(timeout_seconds=3))
    run_burst(settings, db, docker_client)
    row = jobs.get_job(job["id"])
    assert row["status"] == "failed" and row["error_message"] == "timed out after 3 s"
