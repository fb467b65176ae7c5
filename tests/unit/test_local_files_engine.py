"""RUNNER_FILES=local with an engine that cannot bind-mount this host's directories (runner/sandbox/connect.py's
local_files_problem): refused with the sentence that says to set RUNNER_FILES=postgres; an engine on a
socket of this host, or a socket that is not there (the connection's own error says so), is not. No engine
is contacted."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import sandbox


@pytest.fixture
def live_socket(tmp_path: Path) -> Iterator[Path]:
    """A Unix socket on this host, as a second engine's would be (nothing answers: only its existence counts)."""
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        yield path


@pytest.mark.parametrize("host", ["tcp://10.1.2.3:2376", "tcp://127.0.0.1:2376", "https://engine.example:2376",
                                  "ssh://runner@engine1.example"])
def test_an_engine_reached_over_the_network_is_refused_with_what_to_set(host: str) -> None:
    said = sandbox.local_files_problem({"DOCKER_HOST": host})
    assert said is not None
    address = sandbox.engine_address({"DOCKER_HOST": host})
    assert f"the Docker engine at {address} cannot do" in said, said
    assert said.startswith("RUNNER_FILES=local bind-mounts this host's data directory")
    assert "set RUNNER_FILES=postgres" in said and "\n" not in said and said.count(". ") == 0  # one sentence


def test_a_socket_of_this_host_is_fine_even_if_it_is_not_the_default_engine(live_socket: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{live_socket}"}
    assert not sandbox.is_default_engine(env)
    assert sandbox.local_files_problem(env) is None


def test_a_path_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "docker.sock"
    plain.write_text("")
    said = sandbox.local_files_problem({"DOCKER_HOST": f"unix://{plain}"})
    assert said is not None and f"unix://{plain}" in said


def test_a_socket_that_is_not_there_is_left_to_the_connection(tmp_path: Path) -> None:
    assert sandbox.local_files_problem({"DOCKER_HOST": f"unix://{tmp_path / 'missing.sock'}"}) is None


def test_this_process_environment_when_given_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.9.8.7:2376")
    said = sandbox.local_files_problem()
    assert said is not None and "tcp://10.9.8.7:2376" in said


def test_runner_up_refuses_before_it_connects_or_opens_anything(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    from runner.app import Application
    from runner.errors import ConfigError
    from runner.settings import Settings

    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.1:2376")  # TEST-NET-1: nothing is asked, nothing answers
    settings = Settings.from_env({"RUNNER_DATA_DIR": str(tmp_path / "files"), "DATABASE_URL": "postgresql://x@192.0.2.1/x"})
    with pytest.raises(ConfigError, match=r"the Docker engine at tcp://192\.0\.2\.1:2376 cannot do .*set RUNNER_FILES=postgres"):
        Application(settings, build_image=False).open()
    assert not (tmp_path / "files").exists()


def test_doctor_says_it_in_its_file_store_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               live_socket: Path) -> None:
    from runner.doctor import services
    from runner.settings import Settings

    monkeypatch.setenv("DOCKER_HOST", "ssh://runner@engine1.example")
    local = Settings.from_env({"RUNNER_DATA_DIR": str(tmp_path)})
    line = services.file_store(local, None).line()  # no engine answered: the environment's is judged
    assert line.startswith("FAIL  file store: RUNNER_FILES=local bind-mounts") and "set RUNNER_FILES=postgres" in line
    assert services.file_store(local.with_(files="postgres"), None).line() == (
        "OK    file store: postgres: the thread files are in the database, copied into each run")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{live_socket}")
    assert services.file_store(local, None).line() == (
        f"OK    file store: local: the thread files are in {tmp_path}, bind-mounted into each run")
