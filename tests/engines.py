"""A second Docker engine on this machine, for the tests of runners on several engines (issue 17).

A dockerd of the test's own beside the one already running: its own config file (an empty ``{}``: the
host's /etc/docker/daemon.json sets the data root and storage driver), socket, pidfile, data root and
exec root (so its own containerd too), all under one directory per engine in BASE, and a bridge of its
own that the test makes (``ip link add ... type bridge`` with an unused /24 of 198.19.0.0/16, a
benchmarking range: every address involved is on this machine). Never ``--bridge=none``: a daemon started
that way deletes the host's docker0. ``--iptables=false`` is needed, not just tidy: with iptables on, the
bridge driver starts by removing the DOCKER and DOCKER-ISOLATION chains (libnetwork's removeIPChains),
which are the host engine's too; with ``--ip-forward=false`` it leaves the host's sysctls alone. Its
containers need no way out in these tests.

Measured here (Docker 20.10, ext4): each of overlay2, fuse-overlayfs and vfs starts in about 0.3 s;
loading the job and egress images takes 16-23 s with any of them; a container starts in 0.9 s on overlay2
and 4.6 s on vfs (which copies the image whole), so overlay2 comes first.

Stopped and removed afterwards (its processes, mounts, bridge and directory), also when a test fails; an
engine whose owning test process died (a crashed run) is removed at the next start. Nothing is found by
a broad name: an engine's processes are those whose command line names its own directory, or that are
in the cgroups of its own containers, each killed by its pid.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner import jobtree, sandbox

from .enginehost import EngineError, free_port, free_subnet, ip, make_certificates, ping
from .waiting import wait_for

BASE = Path(os.environ.get("RUNNER_TEST_ENGINE_DIR", "/var/tmp/runner-engines"))
BRIDGE_PREFIX = "rnre"  # + the engine's 8 hex digits: 12 characters, within IFNAMSIZ
# The first that starts is used. overlay2 needs a data root on a file system that is not itself overlay
# (BASE is on the host's disk); vfs works anywhere but copies every layer whole.
DRIVERS = tuple(os.environ.get("RUNNER_TEST_ENGINE_DRIVERS", "overlay2,fuse-overlayfs,vfs").split(","))
IMAGES = (os.environ.get("RUNNER_IMAGE", "runner-sandbox:latest"),
          os.environ.get("RUNNER_EGRESS_IMAGE", "runner-egress:latest"))
START_SECONDS = 60.0
STOP_SECONDS = 60.0
SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 1.6's shims' sockets, named by a hash of their address


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/pid/stat), None if there is none or it is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _owner_alive(root: Path) -> bool:
    """Whether the process that made the engine in ``root`` lives (one with no owner file yet is being
    made by another session, unless it is a minute old)."""
    try:
        pid, start = (root / "owner").read_text().split()
    except (OSError, ValueError):
        with contextlib.suppress(OSError):
            return time.time() - root.stat().st_mtime < 60
        return False
    return _process_start(int(pid)) == start


class SecondEngine:
    """One dockerd of the test's own. ``host`` and ``env`` name it for a client or a ``runner`` process."""

    def __init__(self, root: Path, tls_port: int | None = None) -> None:
        self.root = root
        self.tls_port = tls_port  # also listening on 127.0.0.1:tls_port, TLS with client certificates
        self.id = root.name
        self.bridge = BRIDGE_PREFIX + self.id
        self.driver: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.load_seconds: float | None = None
        self.subnet: ipaddress.IPv4Network | None = None

    @classmethod
    def create(cls, owner: int | None = None, *, tls: bool = False) -> SecondEngine:
        """Remove the engines of dead test processes, then make this one's directory and bridge (not started).
        ``owner`` (this process if None) is the pid whose death marks the engine as left over. With
        ``tls`` it also listens on a port of 127.0.0.1 with TLS (``tls_env``), as a remote engine would."""
        sweep_leftovers()
        BASE.mkdir(mode=0o700, parents=True, exist_ok=True)
        root = BASE / uuid.uuid4().hex[:8]
        root.mkdir(mode=0o700)
        pid = owner if owner is not None else os.getpid()
        (root / "owner").write_text(f"{pid} {_process_start(pid)}\n")
        engine = cls(root, free_port() if tls else None)
        engine._make_bridge()
        if tls:
            make_certificates(root / "tls")
        return engine

    # --- naming it ------------------------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    @property
    def tls_env(self) -> dict[str, str]:
        """The environment of a client of the engine over TCP with TLS (``create(tls=True)``)."""
        assert self.tls_port is not None, "made without tls"
        return {"DOCKER_HOST": f"tcp://127.0.0.1:{self.tls_port}", "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": str(self.root / "tls" / "client")}

    def client(self) -> sandbox.EngineClient:
        """A client of this engine (made as the runner makes its own: from a DOCKER_HOST)."""
        return sandbox.client(self.env)

    # --- its bridge -----------------------------------------------------------------------------------

    def _make_bridge(self) -> None:
        subnet = free_subnet()
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{next(subnet.hosts())}/{subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        self.subnet = subnet

    # --- starting and stopping ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the daemon (the storage driver that worked before, or the first of DRIVERS that works)
        and wait until it answers /_ping."""
        problems = []
        for driver in (self.driver,) if self.driver else DRIVERS:
            try:
                self._start_with(driver)
                self.driver = driver
                return
            except EngineError as exc:
                problems.append(f"{driver}: {exc}")
                self._remove_data()  # a failed driver's half-made data root is not the next one's
        raise EngineError("the second Docker engine did not start: " + "; ".join(problems))

    def _start_with(self, driver: str) -> None:
        (self.root / "daemon.json").write_text("{}\n")
        argv = ["dockerd", "--config-file", str(self.root / "daemon.json"), "--host", self.host,
                "--pidfile", str(self.root / "docker.pid"), "--data-root", str(self.root / "data"),
                "--exec-root", str(self.root / "exec"), "--bridge", self.bridge, "--storage-driver", driver,
                "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--shutdown-timeout", "2"]
        if self.tls_port is not None:
            tls = self.root / "tls"
            argv += ["--host", f"tcp://127.0.0.1:{self.tls_port}", "--tlsverify", f"--tlscacert={tls / 'ca.pem'}",
                     f"--tlscert={tls / 'server-cert.pem'}", f"--tlskey={tls / 'server-key.pem'}"]
        with open(self.root / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        proc = self.proc
        deadline = time.monotonic() + START_SECONDS
        while not ping(self.socket):
            if proc.poll() is not None:
                self.proc = None
                raise EngineError(f"dockerd exited with {proc.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise EngineError(f"dockerd did not answer /_ping within {START_SECONDS:g} s: {self._log_tail()}")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the daemon: SIGTERM and wait for it (it stops its containers and containerd), or with
        ``kill`` SIGKILL it, as a crash would: its containerd dies with it (dockerd starts it with a parent
        death signal), its shims and containers go on. Either way :meth:`start` may follow."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        containerd = self._containerd_pid()
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_SECONDS)
            raise EngineError(f"dockerd did not stop within {STOP_SECONDS:g} s of SIGTERM: killed") from None
        if containerd is not None:  # a dead one's zombie (until init reaps it) would pass for alive at the next start
            wait_for(lambda: not Path(f"/proc/{containerd}").exists(), STOP_SECONDS, "the engine's containerd to end")

    def _containerd_pid(self) -> int | None:
        try:
            pid = int((self.root / "exec" / "containerd" / "containerd.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if pid in engine_processes(self.root) else None

    def load_images(self, *tags: str) -> float:
        """``docker save TAGS | docker -H HOST load`` from the host's engine; returns the seconds it took."""
        t0 = time.monotonic()
        save = subprocess.Popen(["docker", "-H", sandbox.DEFAULT_HOST, "save", *tags], stdout=subprocess.PIPE)
        assert save.stdout is not None
        load = subprocess.run(["docker", "-H", self.host, "load", "-q"], stdin=save.stdout, capture_output=True,
                              text=True, timeout=600, check=False)
        save.stdout.close()
        if save.wait(timeout=60) != 0 or load.returncode != 0:
            raise EngineError(f"could not load {', '.join(tags)} into the second engine: {load.stderr.strip()}")
        return time.monotonic() - t0

    def close(self) -> None:
        """Stop the daemon and remove everything it made: processes, mounts, cgroups, bridge and directory."""
        try:
            self.stop()
        finally:
            remove_engine(self.root)

    def _remove_data(self) -> None:
        remove_engine(self.root, data_only=True)

    def _log_tail(self) -> str:
        try:
            lines = (self.root / "dockerd.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        wanted = [ln for ln in lines if "level=error" in ln or "level=fatal" in ln or "failed" in ln]
        return " | ".join((wanted or lines)[-3:])


# --- what an engine left: found by its directory ---------------------------------------------------------

def engine_processes(root: Path) -> list[int]:
    """The pids of an engine: its containers' processes (in their cgroups), and every process whose command
    line names its directory (dockerd, its containerd and the shims). Zombies are left out."""
    pids = set()
    for cid in container_ids(root):
        for procs in Path("/sys/fs/cgroup").glob(f"*/docker/{cid}/cgroup.procs"):
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in procs.read_text().split()}
    marker = os.fsencode(str(root) + "/")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if any(arg.startswith(marker) or marker in arg for arg in (proc / "cmdline").read_bytes().split(b"\0")):
                    pids.add(int(proc.name))
    pids.discard(os.getpid())
    return sorted(p for p in pids if _process_start(p) is not None)


def container_ids(root: Path) -> list[str]:
    try:
        return [n for n in os.listdir(root / "data" / "containers") if re.fullmatch(r"[0-9a-f]{64}", n)]
    except OSError:
        return []


def engine_mounts(root: Path) -> list[str]:
    """The mount points at or under ``root`` in this mount namespace, deepest first."""
    prefix = str(root)
    found = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            point = _unescape(line.split()[4].decode())
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def remove_engine(root: Path, *, data_only: bool = False) -> None:
    """Remove what the engine of ``root`` left: kill its processes, unmount its mounts, remove its
    containers' cgroups and shim sockets, then its bridge and directory (with ``data_only``, only its data
    and exec roots: the engine is to start again). Raises EngineError if something stays."""
    ids = container_ids(root)
    for pid in engine_processes(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not engine_processes(root), STOP_SECONDS, f"the processes of the engine in {root} to end")
    for _ in range(5):
        for point in engine_mounts(root):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    if engine_mounts(root):
        raise EngineError(f"could not unmount {engine_mounts(root)[:3]}: {root} is left as it is")
    for cid in ids:
        for cgroup in Path("/sys/fs/cgroup").glob(f"*/docker/{cid}"):
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        shim_socket(root, cid).unlink(missing_ok=True)
    if data_only:
        for name in ("data", "exec"):
            _remove_tree(root, name)
        return
    bridge = BRIDGE_PREFIX + root.name
    if Path(f"/sys/class/net/{bridge}").exists():
        ip("link", "delete", bridge)
    _remove_tree(root.parent, root.name)
    with contextlib.suppress(OSError):
        root.parent.rmdir()  # BASE too, once no engine is left in it


def shim_socket(root: Path, cid: str) -> Path:
    """Where containerd 1.6 puts the socket of a container's shim (its address, namespace and id, hashed)."""
    import hashlib

    address = f"{root}/exec/containerd/containerd.sock"
    return SHIM_SOCKETS / hashlib.sha256(f"{address}/moby/{cid}".encode()).hexdigest()


def _remove_tree(parent: Path, name: str) -> None:
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        jobtree.remove_tree(fd, name, jobtree.Budget(5_000_000, 300))  # iterative: a layer's deep tree is fine
    finally:
        os.close(fd)


def sweep_leftovers() -> list[str]:
    """Remove every engine in BASE whose owning process is gone, and every bridge of ours without an
    engine directory; returns what was removed."""
    removed = []
    if BASE.is_dir():
        for root in sorted(BASE.iterdir()):
            if re.fullmatch(r"[0-9a-f]{8}", root.name) and not _owner_alive(root):
                remove_engine(root)
                removed.append(str(root))
    for link in Path("/sys/class/net").glob(f"{BRIDGE_PREFIX}*"):
        suffix = link.name.removeprefix(BRIDGE_PREFIX)
        if re.fullmatch(r"[0-9a-f]{8}", suffix) and not (BASE / suffix).exists():
            ip("link", "delete", link.name)
            removed.append(link.name)
    return removed


# --- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def second_engine() -> Iterator[SecondEngine]:
    """A second Docker engine for the session, with the job and egress images loaded (load_seconds)."""
    engine = SecondEngine.create()
    try:
        engine.start()
        engine.load_seconds = engine.load_images(*IMAGES)
        yield engine
    finally:
        engine.close()


@pytest.fixture
def new_engine() -> Iterator[Callable[..., SecondEngine]]:
    """Make engines of the test's own (started, no images; ``new_engine(tls=True)`` also over TLS on a port
    of 127.0.0.1); every one is closed after the test."""
    made: list[SecondEngine] = []

    def make(*, tls: bool = False) -> SecondEngine:
        engine = SecondEngine.create(tls=tls)
        made.append(engine)
        engine.start()
        return engine

    yield make
    problems = []
    for engine in made:
        try:
            engine.close()
        except EngineError as exc:
            problems.append(str(exc))
    assert not problems, problems
