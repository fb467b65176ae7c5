"""The second Docker engine the tests start themselves (tests/engines.py): it answers beside the host's,
keeps its containers to itself, comes back after a stop or a crash with none of its containers running,
and leaves nothing behind, whether it is closed or its test process died with it running; the host's
engine and its docker0 keep working throughout."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import pytest

from ..engines import (
    BASE,
    IMAGES,
    SecondEngine,
    container_ids,
    engine_mounts,
    engine_processes,
    remove_engine,
    shim_socket,
    sweep_leftovers,
)

JOB_IMAGE = IMAGES[0]
LABEL = "io.runner-test.engine"  # the containers these tests start themselves (not a runner's)


def _host_network() -> dict[str, str]:
    """What a second engine must not disturb: docker0, the forwarding sysctl, and the host's iptables rules
    as far as they could name a second engine's bridge."""
    return {
        # its addresses (its state is UP while any container of the host's is attached, DOWN otherwise)
        "docker0": " ".join(subprocess.run(["ip", "-br", "addr", "show", "docker0"], capture_output=True, text=True,
                                           check=True).stdout.split()[2:]),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }


def _rules_naming(bridge: str, subnet: str) -> list[str]:
    rules = []
    for tool in ("iptables-save", "ip6tables-save"):
        out = subprocess.run([tool], capture_output=True, text=True, check=False).stdout
        rules += [line for line in out.splitlines() if bridge in line or subnet.rsplit(".", 2)[0] + "." in line]
    return rules


def _sleeper(dc: docker.DockerClient, engine: SecondEngine) -> docker.models.containers.Container:
    return dc.containers.run(JOB_IMAGE, ["sleep", "300"], detach=True, user="65534", labels={LABEL: engine.id})


def _host_engine_runs_a_container() -> None:
    done = subprocess.run(["docker", "-H", "unix:///var/run/docker.sock", "run", "--rm", JOB_IMAGE, "true"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def _nothing_left(engine: SecondEngine, cids: list[str]) -> None:
    assert not engine.root.exists()
    assert not Path(f"/sys/class/net/{engine.bridge}").exists()
    assert engine_processes(engine.root) == [] and engine_mounts(engine.root) == []
    for cid in cids:
        assert not list(Path("/sys/fs/cgroup").glob(f"*/docker/{cid}")), "a container's cgroup is left"
        assert not shim_socket(engine.root, cid).exists(), "a shim's socket is left"


def test_both_engines_answer_and_keep_their_containers_apart(second_engine: SecondEngine,
                                                             docker_client: docker.DockerClient) -> None:
    two = second_engine.client()
    try:
        one_info, two_info = docker_client.info(), two.info()
        # (not their "ID": both derive it from the host's /etc/docker/key.json)
        assert one_info["DockerRootDir"] != two_info["DockerRootDir"] == str(second_engine.root / "data")
        assert two_info["Driver"] == second_engine.driver
        assert {i.tags[0] for i in two.images.list() if i.tags} >= set(IMAGES)
        assert second_engine.load_seconds is not None and second_engine.load_seconds > 0
        c = _sleeper(two, second_engine)
        try:
            c.reload()
            assert ipaddress.ip_address(c.attrs["NetworkSettings"]["IPAddress"]) in second_engine.subnet  # its bridge
            assert c.id in {x.id for x in two.containers.list(filters={"label": f"{LABEL}={second_engine.id}"})}
            with pytest.raises(docker.errors.NotFound):
                docker_client.containers.get(c.id)
            assert docker_client.containers.list(all=True, filters={"label": f"{LABEL}={second_engine.id}"}) == []
        finally:
            c.remove(force=True)
        assert _rules_naming(second_engine.bridge, str(second_engine.subnet)) == []  # --iptables=false
    finally:
        two.close()


def test_a_closed_engine_leaves_nothing_and_the_host_engine_works(new_engine: Callable[[], SecondEngine]) -> None:
    before = _host_network()
    engine = new_engine()
    engine.load_images(JOB_IMAGE)
    dc = engine.client()
    try:
        _sleeper(dc, engine)  # left running: close() stops it with the daemon
    finally:
        dc.close()
    cids = container_ids(engine.root)
    assert len(engine_processes(engine.root)) >= 3  # dockerd, containerd, the shim and the container's process
    engine.close()
    _nothing_left(engine, cids)
    assert _host_network() == before
    _host_engine_runs_a_container()


def test_an_engine_whose_test_process_died_is_removed_at_the_next_start(
        docker_client: docker.DockerClient) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    before = _host_network()
    engine = SecondEngine.create(owner=gone.pid)  # as if the process that made it had crashed
    try:
        engine.start()
        engine.load_images(JOB_IMAGE)
        dc = engine.client()
        try:
            _sleeper(dc, engine)
        finally:
            dc.close()
        engine.stop(kill=True)  # dockerd dies; its container, shim, mounts and bridge stay, as after a crash
        cids = container_ids(engine.root)
        assert engine_processes(engine.root) and engine_mounts(engine.root) and cids
        assert shim_socket(engine.root, cids[0]).exists()
        assert str(engine.root) in sweep_leftovers()  # what the next SecondEngine.create() does first
        _nothing_left(engine, cids)
    finally:
        if engine.root.exists():
            remove_engine(engine.root)
    assert _host_network() == before
    _host_engine_runs_a_container()


def test_a_live_engine_is_not_swept(second_engine: SecondEngine) -> None:
    assert BASE in second_engine.root.parents
    assert str(second_engine.root) not in sweep_leftovers()  # its owner, this process, lives
    dc = second_engine.client()
    try:
        assert second_engine.root.exists() and dc.ping()
    finally:
        dc.close()


def test_an_engine_stopped_or_killed_comes_back_with_its_images_and_none_of_its_containers_running(
        new_engine: Callable[..., SecondEngine]) -> None:
    engine = new_engine()
    engine.load_images(JOB_IMAGE)
    for kill in (False, True):
        dc = engine.client()
        try:
            c = dc.containers.run(JOB_IMAGE, ["sleep", "300"], detach=True, user="65534", stop_signal="SIGKILL",
                                  labels={LABEL: engine.id})
        finally:
            dc.close()
        engine.stop(kill=kill)  # killed: dockerd and its containerd die, the container's shim and process live on
        assert len(engine_processes(engine.root)) == (2 if kill else 0), kill
        engine.start()
        dc = engine.client()
        try:
            assert dc.containers.get(c.id).status == "exited", kill  # the engine stopped it as it came back
            assert dc.images.get(JOB_IMAGE)
            dc.containers.get(c.id).remove()
        finally:
            dc.close()
        names = {Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0] for p in engine_processes(engine.root)}
        assert {os.path.basename(n) for n in names} == {b"dockerd", b"containerd"}, kill
