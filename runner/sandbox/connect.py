"""Which Docker engine the runner talks to: clients made from the ``DOCKER_*`` environment (a local
socket, ``ssh://``, or ``tcp://`` with TLS, as docker-py supports), the engine's address as a person
would type it after ``docker -H``, and whether that engine is on this host.

Every client the runner makes comes from :func:`client`, so one ``DOCKER_HOST`` moves all of them (the
job containers, the egress proxies and their volumes, the sweeps, the uid registry, ``runner doctor``).
A client made here remembers its environment, so a worker thread can make its own client to the same
engine (:func:`clients_like`): docker-py clients must not be shared between threads."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
import docker.tls
import docker.utils

from ..errors import SandboxError

DEFAULT_HOST = "unix:///var/run/docker.sock"  # docker-py's and the docker CLI's default on Linux
ENGINE_ENV = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")  # what docker-py's from_env reads
TIMEOUT = 60


class EngineClient(docker.DockerClient):
    """A Docker client that knows the ``DOCKER_*`` environment it was made from."""

    environment: dict[str, str]

    def another(self) -> EngineClient:
        """A new client of the same engine (for another thread)."""
        return client(self.environment)


def engine_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``DOCKER_*`` variables of ``env`` (this process's environment if None) that choose the engine."""
    source = os.environ if env is None else env
    return {k: source[k] for k in ENGINE_ENV if k in source}


def client(env: Mapping[str, str] | None = None) -> EngineClient:
    """A client of the engine ``env`` names (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``;
    this process's environment if None; the local socket if ``DOCKER_HOST`` is unset)."""
    environment = engine_environment(env)
    try:
        # docker-py reads os.environ when given an empty mapping: name the default host explicitly instead
        kwargs = docker.utils.kwargs_from_env({"DOCKER_HOST": DEFAULT_HOST, **environment})
        tls = kwargs.get("tls")
        if isinstance(tls, docker.tls.TLSConfig):
            kwargs["tls"] = _OwnCertificates(client_cert=tls.cert, ca_cert=tls.ca_cert, verify=tls.verify)
        dc = EngineClient(timeout=TIMEOUT, **kwargs)
    except docker.errors.DockerException as exc:
        raise SandboxError(_unreachable(environment, exc)) from exc
    dc.environment = environment
    return dc


class _OwnCertificates(docker.tls.TLSConfig):
    """DOCKER_CERT_PATH's CA verifies the engine, as with the docker CLI. requests would let
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (set on many hosts, for other services) replace it, so the client
    stops reading its settings from the environment once TLS is configured."""

    def configure_client(self, client: Any) -> None:
        super().configure_client(client)
        client.trust_env = False


def _unreachable(environment: Mapping[str, str], exc: Exception) -> str:
    host = environment.get("DOCKER_HOST") or DEFAULT_HOST
    if "paramiko" in str(exc):
        return (f"DOCKER_HOST={host} needs the paramiko package for ssh://: install it beside the runner "
                "(pip install 'runner[ssh]')")
    return f"cannot use the Docker engine at {host} ({exc}): is Docker running there and is DOCKER_HOST right?"


def clients_like(dc: Any) -> Callable[[], docker.DockerClient]:
    """Make new clients of ``dc``'s engine: one per worker thread, all on the engine the caller chose.

    A client made by :func:`client` is remade from its environment; any other (a test's own
    ``docker.from_env()``) must be of the engine this process's environment names, or a local socket."""
    if isinstance(dc, EngineClient):
        return dc.another
    address = engine_address(dc)
    if address == engine_address(os.environ):
        return client
    if address.startswith("unix://"):
        return lambda: client({"DOCKER_HOST": address})
    raise SandboxError(f"cannot make more clients of the Docker engine at {address}: "
                       "make the first one with runner.sandbox.client(environment)")


def engine_address(client_or_env: Any = None) -> str:
    """The engine's address as ``docker -H`` takes it: ``unix:///path``, ``ssh://user@host:port`` or
    ``tcp://host:port``, for a client or a ``DOCKER_*`` environment (this process's if None)."""
    if client_or_env is None or isinstance(client_or_env, Mapping):
        host = (engine_environment(client_or_env).get("DOCKER_HOST") or "").strip() or DEFAULT_HOST
        return _normal(host)
    if isinstance(client_or_env, EngineClient):
        return engine_address(client_or_env.environment)
    return _address_of_client(client_or_env)


def _normal(host: str) -> str:
    """``host`` as docker-py understands it, written as the docker CLI takes it."""
    try:
        parsed = str(docker.utils.parse_host(host))
    except docker.errors.DockerException as exc:
        raise SandboxError(f"DOCKER_HOST={host} is not an engine address ({exc}): use unix:///path, "
                           "ssh://user@host or tcp://host:port") from exc
    if parsed.startswith("http+unix://"):  # docker-py reads unix://x/y as the path /x/y
        return "unix://" + os.path.normpath("/" + parsed.removeprefix("http+unix://").lstrip("/"))
    if parsed.startswith(("http://", "https://")):
        return "tcp://" + urlsplit(parsed).netloc
    return parsed  # ssh://user@host:port (docker-py adds the port), npipe://...


def _address_of_client(dc: Any) -> str:
    api = dc.api if isinstance(dc, docker.DockerClient) else dc
    base = str(api.base_url)
    if base.startswith("http+docker://"):  # a socket, a named pipe or ssh: the adapter holds the address
        adapter = api.get_adapter(base)
        for attr, scheme in (("socket_path", "unix://"), ("ssh_host", "ssh://"), ("npipe_path", "npipe://")):
            if getattr(adapter, attr, None):
                return scheme + str(getattr(adapter, attr))
    if base.startswith(("http://", "https://")):
        return "tcp://" + urlsplit(base).netloc
    raise SandboxError(f"cannot tell where the Docker engine of this client is ({base})")


def engine_is_local(client_or_env: Any = None) -> bool:
    """True if the engine is reached through a Unix socket that exists on this host (so it shares this
    host's file system, and a bind mount of a path here is this path); False for ``ssh://``, ``tcp://``
    (even to 127.0.0.1: nothing says the daemon behind a port is this host's) and a socket that is not
    there. For a client or a ``DOCKER_*`` environment (this process's if None).

    A socket forwarded from another host (``ssh -L``) looks local: the operator who forwards one says so."""
    address = engine_address(client_or_env)
    if not address.startswith("unix://"):
        return False
    try:
        return stat.S_ISSOCK(os.stat(address.removeprefix("unix://")).st_mode)
    except OSError:
        return False


def local_files_problem(client_or_env: Any = None) -> str | None:
    """Why a thread's files in this host's data directory (``RUNNER_FILES=local``, bind-mounted into each
    job container) cannot be used with this engine, as the sentence to show; None if they can.

    Refused: an engine that is not :func:`engine_is_local` (``tcp://``, ``ssh://``), whose bind mounts name
    paths on its own host, not this one. A Unix socket that is not there is left to the connection, whose
    error says that nothing answers there (a typo, or Docker not running), not that the files must move.
    Contacts no engine: ``runner up`` says it before connecting."""
    if engine_is_local(client_or_env):
        return None
    address = engine_address(client_or_env)
    if address.startswith("unix://") and not os.path.lexists(address.removeprefix("unix://")):
        return None
    return (f"RUNNER_FILES=local bind-mounts this host's data directory into each job container, which the "
            f"Docker engine at {address} cannot do (it is not reached through a socket on this host): set "
            "RUNNER_FILES=postgres to keep the thread files in the database and copy them into each run")


def is_default_engine(client_or_env: Any = None) -> bool:
    """True if the engine is the local default one (``DOCKER_HOST`` unset, or naming the default socket)."""
    address = engine_address(client_or_env)
    return address in (DEFAULT_HOST, "unix:///run/docker.sock")
