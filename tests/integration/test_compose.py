"""The self-hosted stack, for real: compose.yaml with compose.offline.yaml on this engine.

One walk through an operator's life: bring the stack up, see it healthy, run ``runner doctor`` inside
it, schedule a job through the CLI inside the runner container, see it run and its message reach a
(fake) Telegram Bot API, bring the stack down and up and find everything still there, then back up,
destroy the volumes, restore, and find the job and its files again with no message sent twice.

Slow (it builds the runner's image when the code changed): about a minute when cached.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from runner import sandbox

from ..fakebotapi import FakeBotAPI
from .helpers import ROOT, wait_for

CHAT = 42

SCRIPT = """\
import json, pathlib
jobs = pathlib.Path("jobs")
runs = json.loads((jobs / "hello_output.json").read_text())["runs"] if (jobs / "hello_output.json").exists() else 0
(jobs / "hello_output.json").write_text(json.dumps({"runs": runs + 1}))
(jobs / "hello_message.txt").write_text(f"hello from compose, run {runs + 1}")
print("wrote the message")
"""


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor the docker compose plugin is installed: install one to test compose.yaml")


def _bridge_gateway(dc: docker.DockerClient) -> str:
    """The default bridge's gateway: what host-gateway (host.docker.internal) means inside containers."""
    cfg = dc.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return cfg.get("Gateway") or str(next(ipaddress.ip_network(cfg["Subnet"]).hosts()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    cmd: list[str]
    env: dict[str, str]
    data: Path
    http_port: int
    dc: docker.DockerClient

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([*self.cmd, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                           timeout=timeout, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def script(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["bash", str(ROOT / "scripts" / name), *args], cwd=ROOT, env=self.env,
                           capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == 0, f"{name} failed:\n{r.stdout}\n{r.stderr}"
        return r

    def container(self, service: str) -> str:
        cid = self.compose("ps", "-q", service).stdout.strip()
        assert cid, f"no {service} container"
        return cid

    def runner(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The runner CLI inside the runner's container (what an operator types)."""
        return subprocess.run(["docker", "exec", "-i", self.container("runner"), "runner", *args], input=stdin,
                              capture_output=True, text=True, timeout=120, check=False)

    def health(self) -> str:
        """The runner container's health as Docker sees it ("?" while there is no container)."""
        cid = self.compose("ps", "-q", "runner").stdout.strip()
        if not cid:
            return "?"
        state = self.dc.api.inspect_container(cid)["State"]
        return str((state.get("Health") or {}).get("Status", state.get("Status")))

    def wait_healthy(self, timeout: float = 180) -> None:
        try:
            wait_for(lambda: self.health() == "healthy", timeout, "the runner to be healthy", interval=1)
        except AssertionError as exc:
            logs = self.compose("logs", "--tail", "40", "runner", check=False).stdout
            raise AssertionError(f"{exc} ({self.health()}):\n{logs}") from None

    def jobs(self) -> list[dict[str, object]]:
        r = self.runner("jobs", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def psql(self, query: str) -> str:
        """One query's result, as psql prints it unaligned, in the stack's database."""
        r = subprocess.run(["docker", "exec", self.container("postgres"), "psql", "-U", "runner", "-d", "runner",
                            "-tAc", query], capture_output=True, text=True, timeout=60, check=True)
        return r.stdout.strip()

    def store_id(self) -> str:
        """The stack's database identity, which labels every container its runner starts."""
        return self.psql("SELECT value FROM runner_meta WHERE key = 'store_id'")

    def outbox_settled(self) -> bool:
        """Every message in the outbox is recorded as sent or failed: delivery has nothing more to send."""
        return self.psql("SELECT count(*) FROM outbox WHERE status NOT IN ('sent', 'failed')") == "0"

    def managed_containers(self, store: str) -> list[str]:
        """This stack's job containers (other tests' runners may have theirs on the same engine)."""
        return [c.name for c in self.dc.containers.list(all=True, filters={"label": f"io.runner.store={store}"})]


def _offline_build_ready() -> None:
    """compose.offline.yaml builds the runner's image from the wheelhouse and the local Debian base."""
    if not list((ROOT / "docker" / "runner" / "wheels").glob("*.whl")):
        pytest.fail("docker/runner/wheels is empty: run make wheels first (make test does)")
    if subprocess.run(["docker", "image", "inspect", "runner-debian:bookworm"], capture_output=True,
                      check=False).returncode != 0:
        pytest.fail("the local base runner-debian:bookworm is missing: run make images first (make test does)")


def test_compose_files_are_valid_alone_and_with_the_override(tmp_path: Path) -> None:
    env = {**os.environ, "RUNNER_ENV_FILE": str(tmp_path / "empty.env")}
    (tmp_path / "empty.env").write_text("")
    for files in (["compose.yaml"], ["compose.yaml", "compose.offline.yaml"]):
        args = [a for f in files for a in ("-f", str(ROOT / f))]
        r = subprocess.run([*_compose_command(), *args, "config"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60, check=False)
        assert r.returncode == 0, (files, r.stderr)
        assert "runner-sandbox:latest" in r.stdout and "service_healthy" in r.stdout
    # The runner never gets the host's network, privilege, or more than the socket and the data path.
    text = (ROOT / "compose.yaml").read_text()
    for forbidden in ("privileged", "network_mode: host", "pid: host"):
        assert forbidden not in text


@pytest.fixture(scope="module")
def api(docker_client: docker.DockerClient) -> Iterator[FakeBotAPI]:
    fake = FakeBotAPI().start(host=_bridge_gateway(docker_client))
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(docker_client: docker.DockerClient, api: FakeBotAPI, tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[Stack]:
    _offline_build_ready()
    tmp = tmp_path_factory.mktemp("compose")
    env_file = tmp / "runner.env"
    env_file.write_text(f"TELEGRAM_BOT_TOKEN={api.token}\nTELEGRAM_ALLOWED_USERS={CHAT}\n"
                        f"TELEGRAM_API_URL=http://host.docker.internal:{api.port}\nRUNNER_SHUTDOWN_GRACE=10\n")
    override = tmp / "compose.test.yaml"
    # The fake Bot API listens on the host's bridge address; a faster health check only saves waiting.
    override.write_text('services:\n  runner:\n    extra_hosts:\n      - "host.docker.internal:host-gateway"\n'
                        '    healthcheck:\n      interval: 2s\n')
    project = f"runnertest{uuid.uuid4().hex[:8]}"
    port = _free_port()
    s = Stack(
        cmd=_compose_command(),
        env={**os.environ, "COMPOSE_PROJECT_NAME": project, "RUNNER_ENV_FILE": str(env_file),
             "COMPOSE_FILE": os.pathsep.join([str(ROOT / "compose.yaml"), str(ROOT / "compose.offline.yaml"),
                                              str(override)]),
             "RUNNER_DATA_PATH": str(tmp / "files"), "RUNNER_HTTP_PORT": str(port)},
        data=tmp / "files", http_port=port, dc=docker_client,
    )
    try:
        s.compose("build", "runner", timeout=900)
        yield s
    finally:
        try:
            store: str | None = s.store_id()  # the stack's database goes with `down -v`: so do its uids
        except Exception:  # the stack never came up
            store = None
        s.compose("down", "-v", "--remove-orphans", "--timeout", "30", check=False)
        if store:
            sandbox.release_uids(docker_client, store)


def test_the_stack_runs_a_job_survives_restarts_and_restores_from_a_backup(stack: Stack, api: FakeBotAPI) -> None:
    # Up, healthy (compose's health check is `runner health` against /healthz).
    stack.compose("up", "-d")
    stack.wait_healthy()
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{stack.http_port}/healthz", timeout=5).read())
    assert health["status"] == "ok" and health["database"] == "ok", health

    # The operator's checklist passes inside the container, bot token and egress proxy included.
    r = stack.runner("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    for line in ("OK    database: reachable (DATABASE_URL)", "OK    Telegram bot: @runner_bot",
                 "OK    egress proxy: runner-egress:latest", "OK    job container: only the thread's jobs/ mounted"):
        assert line in r.stdout, r.stdout

    # Schedule through the CLI inside the runner container; the job runs and its message is delivered.
    r = stack.runner("schedule", "-", "--thread", f"telegram:{CHAT}", "--name", "hello", "--at", "now", stdin=SCRIPT)
    assert r.returncode == 0, r.stderr
    api.wait_for(lambda: "hello from compose, run 1" in api.texts(CHAT), timeout=60)
    wait_for(lambda: stack.jobs()[0]["status"] == "completed", 30, "job hello to complete",
             interval=0.5)
    jobs_dir = stack.data / f"telegram_{CHAT}" / "jobs"
    assert (jobs_dir / "hello.py").is_file() and json.loads((jobs_dir / "hello_output.json").read_text()) == {"runs": 1}
    assert not (jobs_dir / "hello_message.txt").exists()  # delivered, then deleted

    # The logs say what happened, one line per event.
    logs = stack.compose("logs", "--no-color", "runner").stdout
    for event in ("claimed job 1 (hello, thread telegram:42", "job 1 (hello) started", "job 1 (hello) completed in",
                  f"(job hello) sent to chat {CHAT}"):
        assert sum(event in line for line in logs.splitlines()) == 1, (event, logs[-3000:])
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{stack.http_port}/metrics", timeout=5).read().decode()
    assert 'runner_runs_finished_total{status="completed"} 1.0' in metrics

    # A job still running when the stack goes down gets RUNNER_SHUTDOWN_GRACE (10 s here, inside
    # compose's 30 s), is then stopped with the reason recorded, and leaves no container behind.
    r = stack.runner("schedule", "-", "--thread", f"telegram:{CHAT}", "--name", "sleeper", "--at", "now",
                     "--timeout", "300", stdin="import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: any(j["name"] == "sleeper" and j["status"] == "running" for j in stack.jobs()), 30,
             "job sleeper to run", interval=0.5)
    store = stack.store_id()
    assert store
    t0 = time.monotonic()
    stack.compose("down", "--timeout", "30")
    took = time.monotonic() - t0
    assert 9 < took < 29, took  # the grace period, not compose's kill timeout
    assert stack.managed_containers(store) == []

    # Up again: the jobs, their history and files are still there; nothing is resent.
    stack.compose("up", "-d")
    stack.wait_healthy()
    jobs = {j["name"]: j for j in stack.jobs()}
    assert jobs["hello"]["status"] == "completed"
    assert jobs["sleeper"]["status"] == "failed"
    assert "the runner shut down and the job did not finish within the 10 s grace period" in str(
        jobs["sleeper"]["error_message"])
    assert (jobs_dir / "hello_output.json").is_file()
    expected = sorted((j["id"], j["name"], j["status"]) for j in stack.jobs())

    # Back up, lose everything (volumes and files), restore: the same job and files, still one message.
    # A job's sparse file (1 GiB apparent, nothing allocated) stays sparse through the backup and back.
    sparse = jobs_dir / "sparse.bin"
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)
    backup = stack.data.parent / "backup"
    out = stack.script("backup.sh", str(backup)).stdout
    assert (backup / "files.tar.gz").stat().st_size < 256 << 10  # 1 MiB of gzipped zeros without --sparse
    assert "backed up the database" in out
    stack.wait_healthy()  # backup.sh stopped the runner for the copy and started it again
    stack.compose("down", "-v", "--timeout", "30")
    shutil.rmtree(stack.data)
    stack.script("restore.sh", "-y", str(backup))
    stack.wait_healthy()
    assert sorted((j["id"], j["name"], j["status"]) for j in stack.jobs()) == expected
    assert json.loads((jobs_dir / "hello_output.json").read_text()) == {"runs": 1}
    assert 200000 <= jobs_dir.stat().st_uid <= 299999 and oct(jobs_dir.stat().st_mode & 0o777) == "0o700"
    assert sparse.stat().st_size == 1 << 30 and sparse.stat().st_blocks * 512 < 1 << 20, "restored sparse"
    sparse.unlink()  # over the jobs/ disk limit, which counts apparent size

    # The restored store still works: run the job again and its second message arrives, once.
    r = stack.runner("run", "1")
    assert r.returncode == 0, r.stderr
    api.wait_for(lambda: "hello from compose, run 2" in api.texts(CHAT), timeout=60)
    wait_for(stack.outbox_settled, 60, "the runner to record the message sent")  # then nothing more goes out
    assert api.texts(CHAT).count("hello from compose, run 1") == 1
    assert api.texts(CHAT).count("hello from compose, run 2") == 1
