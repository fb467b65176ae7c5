"""The runner on the engine DOCKER_HOST names (issue 17): its job containers, egress proxies and probes
are made there and nowhere else, whether the engine is chosen by the environment (``runner up``) or by
the client the application is given; and ``runner doctor`` checks another engine, local or over TLS, the
way it checks the default one, saying how to load the images there while they are missing."""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Callable

import docker
import pytest

from runner import sandbox
from runner.app import Application
from runner.runspec import SAMPLE_THREAD
from runner.service import Jobs
from runner.settings import Settings
from runner.threads import jobs_dir

from ..engines import SecondEngine
from .helpers import ROOT, RUNNER_CLI, cli_env

THREAD = "telegram:17"
GRANTED = "import os\nprint('proxy at', os.environ.get('HTTPS_PROXY'))\n"


def _created(dc: docker.DockerClient, since: float, store: str) -> list[str]:
    """The roles of the containers made for the database ``store`` on ``dc``'s engine since ``since`` (a
    Unix time: docker-py would cut a datetime to whole seconds, and miss the last second's events)."""
    events = dc.events(since=since, until=time.time(), decode=True,
                       filters={"type": "container", "event": "create", "label": f"{sandbox.LABEL_STORE}={store}"})
    return sorted(e["Actor"]["Attributes"].get(sandbox.LABEL_ROLE, "?") for e in events)


def _clean(dc: docker.DockerClient, store: str) -> None:
    """Nothing of this test's database is left on the second engine (the autouse check sees the host's)."""
    left = sandbox.managed_containers(dc, store)
    for c in left:
        c.remove(force=True)
    sandbox.release_uids(dc, store)
    assert not left, f"left on the second engine: {[c.name for c in left]}"


def _completed(jobs: Jobs, name: str) -> dict:
    row = next(r for r in jobs.list_jobs(thread_id=THREAD) if r["name"] == name)
    assert row["status"] == "completed", row
    return dict(jobs.get_job(row["id"]))


def test_runner_up_runs_jobs_and_their_proxies_on_the_engine_docker_host_names(
        second_engine: SecondEngine, settings: Settings, jobs: Jobs, store_id: str,
        docker_client: docker.DockerClient) -> None:
    jobs.schedule_job(thread_id=THREAD, name="granted", at="now", script_text=GRANTED, allow_hosts=["api.example.test"])
    since = time.time()
    two = second_engine.client()
    try:
        done = subprocess.run([*RUNNER_CLI, "up", "--burst"], cwd=ROOT, capture_output=True, text=True, timeout=240,
                              check=False, env=cli_env(settings, **second_engine.env))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "proxy at http://127.0.0.1:3128" in _completed(jobs, "granted")["output_tail"]
        roles = _created(two, since, store_id)
        assert {"job", "egress"} <= set(roles), roles
        assert _created(docker_client, since, store_id) == []
        _clean(two, store_id)
    finally:
        two.close()


def test_an_application_given_another_engines_client_runs_everything_there(
        second_engine: SecondEngine, settings: Settings, jobs: Jobs, store_id: str,
        docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker threads make clients of their own: of the given client's engine, not the environment's."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)  # the environment names the host's engine
    for name in ("one", "two"):
        jobs.schedule_job(thread_id=THREAD, name=name, at="now", script_text=f"print('{name} ran')\n")
    jobs.schedule_job(thread_id=THREAD, name="granted", at="now", script_text=GRANTED, allow_hosts=["api.example.test"])
    since = time.time()
    two = second_engine.client()
    try:
        Application(settings, burst=True, build_image=False, docker_client=two, console=io.StringIO()).run()
        for name in ("one", "two", "granted"):
            _completed(jobs, name)
        roles = _created(two, since, store_id)
        assert roles.count("job") == 3 and "egress" in roles, roles
        assert _created(docker_client, since, store_id) == []
        _clean(two, store_id)
    finally:
        two.close()


def _doctor(settings: Settings, env: dict[str, str], *args: str) -> list[str]:
    done = subprocess.run([*RUNNER_CLI, "doctor", *args], cwd=ROOT, capture_output=True, text=True, timeout=240,
                          check=False, env=cli_env(settings, **env))
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout.splitlines()


def _line(lines: list[str], name: str) -> str:
    return next(line for line in lines if line.split(None, 1)[1].startswith(f"{name}: "))


def test_doctor_checks_another_engine_and_says_how_to_load_the_images_there(
        new_engine: Callable[..., SecondEngine], settings: Settings) -> None:
    engine = new_engine(tls=True)  # reached by its socket (on this host) and over TLS (remote, to the runner)
    # A CA bundle of the environment must not replace DOCKER_CERT_PATH's CA (requests would let it).
    tls = {**engine.tls_env, "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    images = {"job image": settings.image, "egress proxy image": settings.egress_image}
    for env, where, flags in ((engine.env, "on this host", ""), (tls, "remote", " --tlsverify")):
        lines = _doctor(settings, env, "--quick")
        host = env["DOCKER_HOST"]
        assert _line(lines, "Docker engine").startswith("OK    Docker engine: 20.")
        assert _line(lines, "Docker engine").endswith(f" at {host}, {where}")
        for label, image in images.items():
            assert _line(lines, label) == (
                f"FAIL  {label}: {image} is missing on the engine at {host}: load it there: "
                f"docker -H {sandbox.DEFAULT_HOST} save {image} | docker -H {host}{flags} load")
    hint = _line(lines, "job image").split("load it there: ", 1)[1]
    both = hint.replace(f" save {settings.image} ", f" save {settings.image} {settings.egress_image} ")
    loaded = subprocess.run(["bash", "-o", "pipefail", "-c", both], capture_output=True, text=True, timeout=600,
                            check=False, env=cli_env(settings, **tls))
    assert loaded.returncode == 0, loaded.stderr  # the command as doctor gave it, over TLS
    # every check, the sample containers and the egress proxy on that engine (over TLS it is remote to the
    # runner, which then keeps the thread files in the database, and the samples get a volume of their own
    # with jobs/ copied in, as runs do: local files it refuses, test_two_engines.py)
    for env, jobs in (({**tls, "RUNNER_FILES": "postgres"}, "a volume of its own at /work"),
                      (engine.env, f"{jobs_dir(settings.data_dir, SAMPLE_THREAD)}->/work/jobs")):
        lines = _doctor(settings, env)
        assert [line for line in lines if not line.startswith("OK ")] == [], lines
        assert _line(lines, "job image") == f"OK    job image: {settings.image}"
        assert _line(lines, "job container: only the thread's jobs/ mounted").endswith(f": {jobs}")
        assert any(line.startswith("OK    granted job isolation: no host address reachable") for line in lines)


def test_doctor_refuses_a_tls_engine_without_its_certificates(new_engine: Callable[..., SecondEngine],
                                                              settings: Settings) -> None:
    engine = new_engine(tls=True)
    host = engine.tls_env["DOCKER_HOST"]
    lines = _doctor(settings, {"DOCKER_HOST": host}, "--quick")  # no DOCKER_TLS_VERIFY: plain HTTP to a TLS port
    assert _line(lines, "Docker engine").startswith(f"FAIL  Docker engine: cannot use the Docker engine at {host} (")
    assert _line(lines, "job image") == "FAIL  job image: no Docker engine"
