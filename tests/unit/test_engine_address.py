"""Which engine the runner talks to (runner/sandbox/connect.py): DOCKER_HOST read as docker-py reads it,
the address written as ``docker -H`` takes it, local only for a Unix socket that exists here, and every
client of the runner made in that one place. No engine is contacted (clients are given an API version)."""

from __future__ import annotations

import ast
import gc
import importlib.util
import socket
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from runner import sandbox
from runner.errors import SandboxError
from runner.sandbox import connect

ROOT = Path(__file__).resolve().parents[2]
# docker-py leaves the socket of a refused connection to the garbage collector; the tests that try one
# collect it themselves, so that its warning is theirs (and known) and not a later test's.
LEAKS_A_REFUSED_SOCKET = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def live_socket(tmp_path: Path) -> Iterator[Path]:
    """A real Unix socket on this host (nothing answers on it: only its existence matters here)."""
    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        yield path


@pytest.mark.parametrize(("host", "address"), [
    ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
    ("unix://", "unix:///var/run/docker.sock"),
    ("  ", "unix:///var/run/docker.sock"),
    ("unix://run/x.sock", "unix:///run/x.sock"),  # docker-py's legacy form: a path all the same
    ("unix:///run//a/../x.sock", "unix:///run/x.sock"),
    ("tcp://10.1.2.3:2376", "tcp://10.1.2.3:2376"),
    ("http://h.example:2375", "tcp://h.example:2375"),
    ("https://h.example:2376", "tcp://h.example:2376"),
    ("tcp://[::1]:2376", "tcp://[::1]:2376"),
    ("ssh://me@box.example", "ssh://me@box.example:22"),
    ("ssh://box.example:2222", "ssh://box.example:2222"),
])
def test_the_address_is_written_as_docker_h_takes_it(host: str, address: str) -> None:
    assert sandbox.engine_address({"DOCKER_HOST": host}) == address


def test_no_docker_host_is_the_default_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert sandbox.engine_address() == sandbox.engine_address({}) == sandbox.DEFAULT_HOST
    assert sandbox.is_default_engine({}) and sandbox.is_default_engine({"DOCKER_HOST": "unix:///run/docker.sock"})
    assert not sandbox.is_default_engine({"DOCKER_HOST": "unix:///run/other/docker.sock"})
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.9.8.7:2376")
    assert sandbox.engine_address() == "tcp://10.9.8.7:2376"  # this process's environment when given none


@pytest.mark.parametrize("host", ["tcp://", "tcp://h", "/var/run/docker.sock", "fd://", "ssh://box/path"])
def test_an_address_docker_py_refuses_is_one_sentence(host: str) -> None:
    with pytest.raises(SandboxError, match=r"DOCKER_HOST=.* is not an engine address .*: use unix:///path"):
        sandbox.engine_address({"DOCKER_HOST": host})


def test_local_is_a_unix_socket_that_exists_here(live_socket: Path, tmp_path: Path) -> None:
    assert sandbox.engine_is_local({"DOCKER_HOST": f"unix://{live_socket}"})
    plain = tmp_path / "not-a-socket"
    plain.write_text("")
    for host in (f"unix://{tmp_path / 'missing.sock'}", f"unix://{plain}", f"unix://{tmp_path}",
                 "tcp://127.0.0.1:2375", "tcp://localhost:2376", "ssh://root@127.0.0.1"):
        assert not sandbox.engine_is_local({"DOCKER_HOST": host}), host


def test_a_clients_address_and_locality(live_socket: Path) -> None:
    here = docker.DockerClient(base_url=f"unix://{live_socket}", version="1.41")
    assert sandbox.engine_address(here) == f"unix://{live_socket}"
    assert sandbox.engine_is_local(here) and sandbox.engine_is_local(here.api)
    tls = docker.DockerClient(base_url="tcp://127.0.0.1:2376", tls=True, version="1.41")
    assert sandbox.engine_address(tls) == "tcp://127.0.0.1:2376" and not sandbox.engine_is_local(tls)
    plain = docker.DockerClient(base_url="tcp://10.0.0.9:2375", version="1.41")
    assert sandbox.engine_address(plain) == "tcp://10.0.0.9:2375" and not sandbox.engine_is_local(plain)


@LEAKS_A_REFUSED_SOCKET
def test_an_engine_client_remembers_its_environment_and_makes_more_of_the_same(live_socket: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{live_socket}", "DOCKER_TLS_VERIFY": "", "PATH": "/bin"}
    dc = sandbox.EngineClient(base_url=env["DOCKER_HOST"], version="1.41")
    dc.environment = sandbox.engine_environment(env)
    assert dc.environment == {"DOCKER_HOST": f"unix://{live_socket}", "DOCKER_TLS_VERIFY": ""}  # DOCKER_* only
    assert sandbox.engine_address(dc) == f"unix://{live_socket}" and sandbox.engine_is_local(dc)
    assert sandbox.clients_like(dc) == dc.another
    with pytest.raises(SandboxError, match=f"cannot use the Docker engine at unix://{live_socket} "):
        dc.another()  # a new client of that same engine (which does not answer: nothing listens)
    gc.collect()


@LEAKS_A_REFUSED_SOCKET
def test_worker_clients_of_a_plain_client_go_to_its_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    default = docker.DockerClient(base_url=sandbox.DEFAULT_HOST, version="1.41")
    assert sandbox.clients_like(default) is sandbox.client  # the process's engine: made from the environment
    other = tmp_path / "other.sock"
    make = sandbox.clients_like(docker.DockerClient(base_url=f"unix://{other}", version="1.41"))
    with pytest.raises(SandboxError, match=f"at unix://{other} "):
        make()
    with pytest.raises(SandboxError, match="cannot make more clients of the Docker engine at tcp://10.0.0.9:2375"):
        sandbox.clients_like(docker.DockerClient(base_url="tcp://10.0.0.9:2375", version="1.41"))
    gc.collect()


@LEAKS_A_REFUSED_SOCKET
def test_a_client_of_an_engine_that_is_not_there_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as err:
        sandbox.client({"DOCKER_HOST": f"unix://{tmp_path / 'gone.sock'}"})
    assert str(err.value).startswith(f"cannot use the Docker engine at unix://{tmp_path / 'gone.sock'} (")
    assert str(err.value).endswith("is Docker running there and is DOCKER_HOST right?")
    del err
    gc.collect()


@pytest.mark.skipif(importlib.util.find_spec("paramiko") is not None, reason="paramiko is installed here")
def test_ssh_without_paramiko_says_what_to_install() -> None:
    with pytest.raises(SandboxError, match=r"DOCKER_HOST=ssh://me@box.example needs the paramiko package.*runner\[ssh\]"):
        sandbox.client({"DOCKER_HOST": "ssh://me@box.example"})


def _client_constructions(path: Path) -> list[str]:
    """The calls in ``path`` that make a Docker client themselves (docker.from_env, DockerClient, APIClient)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        via_docker = isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "docker"
        if name in ("DockerClient", "APIClient", "EngineClient") or (via_docker and name == "from_env"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_client_the_runner_makes_comes_from_sandbox_client() -> None:
    """So one DOCKER_HOST (with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH) moves every part of the runner. The
    testing kit (runner/testing) drives the test host's engine with docker.from_env(), which reads them too."""
    sources = [p for p in (ROOT / "runner").rglob("*.py") if "testing" not in p.relative_to(ROOT).parts]
    made = [line for p in sources if p != Path(connect.__file__) for line in _client_constructions(p)]
    assert made == []
    assert _client_constructions(Path(connect.__file__))  # the scan sees the one place that does make them


def test_tls_without_its_certificates_is_one_sentence(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}
    with pytest.raises(SandboxError, match=r"^cannot use the Docker engine at tcp://127.0.0.1:2376 \(.*\): is Docker"):
        sandbox.client(env)


def test_the_engines_ca_is_not_replaced_by_a_ca_bundle_of_the_environment(tmp_path: Path) -> None:
    """requests lets REQUESTS_CA_BUNDLE replace a session's CA; a TLS client of the runner reads no such setting."""
    import requests

    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("")
    session = requests.Session()
    connect._OwnCertificates(client_cert=(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")),
                             ca_cert=str(tmp_path / "ca.pem"), verify=True).configure_client(session)
    assert session.verify == str(tmp_path / "ca.pem") and session.trust_env is False
