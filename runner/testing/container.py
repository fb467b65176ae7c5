"""``RunnerContainer``: the whole runner (Postgres and the runner's own image) for a test, shaped like
testcontainers' own modules (``PostgresContainer``, ``KafkaContainer``).

    with RunnerContainer() as runner:
        client = runner.get_client("api:alice")
        client.schedule_job("hello", "print('hi')")

It starts a Postgres and the runner on a private network, mounts the engine's socket (the runner starts
each job in a container of its own on that engine) and a data directory under the same absolute path
inside and outside (the same-path rule of docs/self-hosting.md: the engine mounts a thread's ``jobs/`` by
its path on the host). Everything it makes carries the label ``io.runner.kit.session``; ``stop()``
removes it all, with the job and egress containers, networks and volumes the runner made for it (they
carry the runner's ``io.runner.store`` label). A session whose process died without ``stop()`` (killed,
interrupted) is swept by the next ``RunnerContainer`` started on the same engine."""

from __future__ import annotations

import http.client
import json
import os
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

import docker
import docker.errors
from testcontainers.community.postgres import PostgresContainer
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget

from .. import jobtree
from ..client import Client
from .hooks import HookReceiver

SERVICE_IMAGE = os.environ.get("RUNNER_SERVICE_IMAGE", "runner-service:latest")
PG_IMAGE = os.environ.get("RUNNER_TEST_PG_IMAGE", "runner-postgres:15")
JOB_IMAGE = os.environ.get("RUNNER_IMAGE", "runner-sandbox:latest")
EGRESS_IMAGE = os.environ.get("RUNNER_EGRESS_IMAGE", "runner-egress:latest")
PORT = 8080

LABEL_SESSION = "io.runner.kit.session"  # on every container, network and directory record of a session
LABEL_PID = "io.runner.kit.pid"  # the process that started it: gone means the session is abandoned
LABEL_HOST = "io.runner.kit.host"
LABEL_DIR = "io.runner.kit.dir"  # the session's directory on the host (data/ and the store id)
LABEL_STORE = "io.runner.store"  # the runner's label on what it starts for a database (runner/sandbox/spec.py)

_SERVICE_HINT = ("run `make service-image` in the runner's checkout (make compose-prep, then docker build -t "
                 "runner-service:latest --build-arg BASE=runner-debian:bookworm .)")
_IMAGES_HINT = "run `make images` in the runner's checkout (it builds the job, egress and Postgres images offline)"


class RunnerImageMissing(RuntimeError):
    """An image the kit needs is not on the engine; the message says what to run."""


def missing_image_hint(dc: docker.DockerClient, images: tuple[str, ...]) -> str | None:
    """One line naming the first missing image and what to run, or None when all are there. The first of
    ``images`` is the runner's own image; the others are those ``make images`` builds."""
    for i, image in enumerate(images):
        try:
            dc.images.get(image)
        except docker.errors.ImageNotFound:
            return f"image {image} is missing: {_IMAGES_HINT if i else _SERVICE_HINT}"
    return None


class HealthzWait(WaitStrategy):
    """Ready when the runner's ``/healthz`` answers 200. Each probe is one connection, closed in a
    ``finally`` whatever happened to it (testcontainers' HttpWaitStrategy leaves the response of each
    refusal open: a ResourceWarning later, in whatever test runs then)."""

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        host, port = container.get_container_host_ip(), int(container.get_exposed_port(PORT))

        def healthy() -> bool:
            conn = http.client.HTTPConnection(host, port, timeout=1.0)
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                response.close()
                return response.status == 200
            except (OSError, http.client.HTTPException):
                return False
            finally:
                conn.close()

        if not self._poll(healthy):
            raise TimeoutError(f"the runner did not answer http://{host}:{port}/healthz with 200 within "
                               f"{self._startup_timeout:.0f} s; its log (get_logs()) says why")


class RunnerContainer(DockerContainer):
    """The runner's own image, with its Postgres, on a private network; waits until ``/healthz`` answers."""

    def __init__(self, image: str = SERVICE_IMAGE, *, postgres_image: str = PG_IMAGE,
                 job_image: str = JOB_IMAGE, egress_image: str = EGRESS_IMAGE, **kwargs: Any) -> None:
        self.session = uuid.uuid4().hex[:12]
        self.session_labels = {LABEL_SESSION: self.session, LABEL_PID: str(os.getpid()),
                               LABEL_HOST: socket.gethostname()}
        # The session's directory: a fixed, real path (symlinks resolved), so it is the same inside and out.
        self.session_dir = Path(tempfile.mkdtemp(prefix=f"runner-kit-{self.session}-")).resolve()
        self.data_dir = self.session_dir / "data"
        self.data_dir.mkdir()
        self.session_labels[LABEL_DIR] = str(self.session_dir)
        super().__init__(image, labels=dict(self.session_labels), **kwargs)
        self._images = (image, postgres_image, job_image, egress_image)
        self.network = Network(docker_network_kw={"labels": dict(self.session_labels)})
        self.postgres = PostgresContainer(postgres_image, username="runner", password="runner", dbname="runner",
                                          driver=None, labels=dict(self.session_labels))
        self.postgres.with_network(self.network).with_network_aliases("postgres")
        self.with_network(self.network)
        self.with_exposed_ports(PORT)
        self.with_envs(DATABASE_URL="postgresql://runner:runner@postgres:5432/runner",
                       RUNNER_DATA_DIR=str(self.data_dir), RUNNER_IMAGE=job_image, RUNNER_EGRESS_IMAGE=egress_image,
                       RUNNER_HTTP=f"0.0.0.0:{PORT}")
        self.with_volume_mapping("/var/run/docker.sock", "/var/run/docker.sock", "rw")
        self.with_volume_mapping(str(self.data_dir), str(self.data_dir), "rw")
        self.waiting_for(HealthzWait().with_startup_timeout(120).with_poll_interval(0.2))
        self.hooks = HookReceiver(image, self.network, dict(self.session_labels))
        self.store_id: str | None = None

    # --- testcontainers' life cycle ------------------------------------------------------------------

    def start(self) -> RunnerContainer:
        try:
            self._preflight()
            self.network.create()
            self.postgres.start()
            self.hooks.start()
            self.with_envs(**self.hooks.runner_env())
            super().start()
            self.store_id = self._read_store_id()
            (self.session_dir / "store").write_text(self.store_id)
        except BaseException:
            self.stop()
            raise
        return self

    def _preflight(self) -> None:
        dc = docker.from_env()
        try:
            hint = missing_image_hint(dc, self._images)
            if hint:
                raise RunnerImageMissing(hint)
            _no_reaper_unless_present(dc)
            sweep_abandoned(dc)
        finally:
            dc.close()

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        """Remove the runner, what it started (jobs, egress proxies, their networks and volumes), its
        Postgres, the network and the data directory. Safe to call twice and after a failed start."""
        dc = docker.from_env()
        try:
            if self.store_id is None and self._container is not None:
                try:
                    self.store_id = self._read_store_id()
                except Exception:  # noqa: BLE001 - a runner that never came up made nothing of its own
                    self.store_id = None
            if self.store_id:
                remove_store(dc, self.store_id)  # the jobs first, while the runner can still empty data/
            self._empty_data_dir()
            remove_session(dc, self.session, str(self.session_dir), self.store_id)
        finally:
            dc.close()
            self._container = None
            self.postgres._container = None
            self.hooks._container = None
            self._close_clients()

    def _close_clients(self) -> None:
        """Close the engine connections of every part (the runner, its Postgres, the hook receiver, the
        network): each testcontainers object holds a docker-py client whose pooled sockets would otherwise
        be left for the garbage collector (a ResourceWarning in a test run that turns warnings to errors)."""
        parts = (self.get_docker_client().client, self.postgres.get_docker_client().client,
                 self.hooks.get_docker_client().client, self.network._docker.client)
        for client in parts:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing is best effort, like the rest of stop()
                pass

    # --- accessors -----------------------------------------------------------------------------------

    def get_api_url(self) -> str:
        """The base URL of the runner's HTTP API (the routes are under ``/v1``), from this machine."""
        return f"http://{self.get_container_host_ip()}:{self.get_exposed_port(PORT)}"

    def create_token(self, thread: str, read_only: bool = False) -> str:
        """A new bearer token for ``thread`` (``runner token create`` inside the container)."""
        cmd = ["runner", "token", "create", "--thread", thread, "--json"] + (["--read-only"] if read_only else [])
        result = self.exec(cmd)
        if result.exit_code != 0:
            raise RuntimeError(f"runner token create --thread {thread} failed: "
                               f"{result.output.decode(errors='replace').strip()}")
        return str(json.loads(result.output.decode())["token"])

    def get_client(self, thread: str, read_only: bool = False) -> Client:
        """The typed client (runner.client.Client) for ``thread``, with a token of its own."""
        return Client(self.get_api_url(), self.create_token(thread, read_only=read_only), thread)

    def get_logs(self) -> tuple[bytes, bytes]:
        """The runner's own log (standard output, standard error)."""
        return super().get_logs()

    def get_attachments(self, message_id: int) -> dict[str, bytes]:
        """The attachments (name -> bytes) of message ``message_id`` of a ``kit:`` thread, as its webhook
        delivered them (runner.testing.hooks); empty for another channel's message or one without any."""
        return self.hooks.attachments(message_id)

    def _empty_data_dir(self) -> None:
        """Delete what jobs left in data/ from inside the runner (the files belong to the jobs' uids)."""
        if self._container is None:
            return
        try:
            self.exec(["sh", "-c", f"rm -rf {self.data_dir}/* {self.data_dir}/.[!.]*"])
        except docker.errors.APIError:
            pass  # not running: remove_dir below removes what this user may

    def _read_store_id(self) -> str:
        """The database's store id, the runner's io.runner.store label on every job container it starts,
        read through the runner's own store inside its container (no SQL of the kit's own)."""
        result = self.exec(["/opt/venv/bin/python", "-c", _STORE_ID_PY])
        value = result.output.decode(errors="replace").strip()
        if result.exit_code != 0 or not value or "\n" in value:
            raise RuntimeError(f"could not read the runner's store id from its database: {value or 'none yet'}")
        return value


_STORE_ID_PY = ("from runner.service import connect\nfrom runner.settings import Settings\n"
                "with connect(Settings.from_env()) as jobs:\n    print(jobs.store.store_id())\n")


def _remove_all(items: list[Any], **kw: Any) -> None:
    for item in items:
        try:
            item.remove(**kw)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            pass  # in use a moment longer (a container being removed); the next sweep takes it


def remove_store(dc: docker.DockerClient, store_id: str) -> None:
    """Remove the containers, networks and volumes the runner made for the database ``store_id``."""
    store: dict[str, Any] = {"label": [f"{LABEL_STORE}={store_id}"]}
    _remove_all(dc.containers.list(all=True, filters=store), force=True, v=True)
    _remove_all(dc.networks.list(filters=store))
    _remove_all(dc.volumes.list(filters=store), force=True)


def remove_session(dc: docker.DockerClient, session: str, session_dir: str, store_id: str | None) -> None:
    """Remove everything of one kit session: the runner's own job containers, networks and volumes (by its
    store label), then the kit's containers and network (by the session label), then its directory."""
    if store_id:
        remove_store(dc, store_id)
    mine: dict[str, Any] = {"label": [f"{LABEL_SESSION}={session}"]}
    _remove_all(dc.containers.list(all=True, filters=mine), force=True, v=True)
    _remove_all(dc.networks.list(filters=mine))
    remove_dir(session_dir)


def remove_dir(path: str) -> None:
    """Remove ``path`` and everything under it, at any depth, never following a link and never opening a
    FIFO (runner.jobtree's iterative removal; shutil.rmtree recurses, and a job's deep tree would raise
    RecursionError). Best effort, like the rest of stop(): what this user may not remove stays."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        jobtree.remove_tree(fd, name, jobtree.Budget(1_000_000, 60))
    except (OSError, jobtree.Incomplete):
        pass
    finally:
        os.close(fd)


def _no_reaper_unless_present(dc: docker.DockerClient) -> None:
    """Use testcontainers' reaper (Ryuk) only when its image is here: with no registry it cannot be pulled,
    and the kit cleans up after itself (stop(), and the sweep of abandoned sessions) without it."""
    if testcontainers_config.ryuk_disabled:
        return
    try:
        dc.images.get(testcontainers_config.ryuk_image)
    except docker.errors.ImageNotFound:
        testcontainers_config.ryuk_disabled = True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _labels(*labels: str) -> dict[str, Any]:
    return {"label": list(labels)}


def sweep_abandoned(dc: docker.DockerClient) -> int:
    """Remove the sessions of this machine whose process is gone (killed before its ``stop()``)."""
    host = socket.gethostname()
    sessions: dict[str, str] = {}
    for c in dc.containers.list(all=True, filters=_labels(LABEL_SESSION, f"{LABEL_HOST}={host}")):
        labels = c.labels or {}
        pid = labels.get(LABEL_PID, "")
        if pid.isdigit() and not _alive(int(pid)):
            sessions[labels[LABEL_SESSION]] = labels.get(LABEL_DIR, "")
    for session, directory in sessions.items():
        store_file = Path(directory) / "store" if directory else None
        store = store_file.read_text().strip() if store_file and store_file.is_file() else None
        remove_session(dc, session, directory, store)
    return len(sessions)
