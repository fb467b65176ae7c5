"""A thread's files copied into a real, locked-down job container with the engine's archive API
(runner.tarstream.pack -> put_archive) and the jobs/ directory the job left read back from get_archive
as hostile input (unpack): the job's changes kept, its links, FIFO and odd names refused, its 1 GiB
sparse file stopped at the cap without the stream being read.

Two ways to give the container a jobs/ directory the engine can copy into, both pinned here because
the run path has to pick one:
* a plain volume at /work (the image's /work is copied up into it; jobs/ comes from the tar, owned by
  the job's uid, mode 0700): put before the start, read after the exit; no size limit of its own;
* a tmpfs volume at /work/jobs (size, inodes and owner set by its mount options): it exists only while
  the container runs, so files go in after the start and come out before the exit; read after the exit,
  the archive is an empty jobs/ that reads as complete."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import docker
import pytest

from runner import tarstream
from runner.tarstream import MiB

from ..conftest import JOB_IMAGE
from ..waiting import wait_for

UID = 10001
LABELS = {"io.runner.test": "tarstream"}
FILES = {
    "a.txt": (b"hello", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    "keep.txt": (b"untouched", datetime(2023, 6, 7, 8, 9, 10, tzinfo=UTC)),
    "x_attachments/n.bin": (bytes(range(256)) * 40, datetime(2022, 1, 1, tzinfo=UTC)),
}
CHANGE = ("cd /work/jobs && echo changed > a.txt && echo new > b.txt && rm x_attachments/n.bin"
          " && ln -s /etc/shadow shadow && ln b.txt hard && mkfifo pipe && touch \"$(printf 'bad\\377\\033[2J')\""
          " && mkdir -p sub/deeper && echo deep > sub/deeper/c.txt")


def _locked_down(**extra: Any) -> dict[str, Any]:
    """The job container's protections (runner.sandbox.policy) that matter to copying files in and out."""
    return {"user": f"{UID}:{UID}", "read_only": True, "network_mode": "none", "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"], "pids_limit": 64, "labels": LABELS, "detach": True,
            "tmpfs": {"/tmp": "rw,nosuid,nodev,noexec,size=1m"}, **extra}


@pytest.fixture
def volume(docker_client: docker.DockerClient, request: pytest.FixtureRequest) -> Iterator[Any]:
    opts = getattr(request, "param", {})
    vol = docker_client.volumes.create(f"tarstream-{uuid.uuid4().hex[:12]}", driver="local", driver_opts=opts,
                                       labels=LABELS)
    yield vol
    vol.remove(force=True)


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for c in made:
        c.remove(force=True)


class Counted:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks, self.pulled = chunks, 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.pulled += len(chunk)
            yield chunk


def _expect_changes(out: tarstream.Extracted) -> None:
    assert out.complete, out
    assert {name: data for name, (data, _) in out.files.items()} == {
        "a.txt": b"changed\n", "b.txt": b"new\n", "keep.txt": b"untouched", "sub/deeper/c.txt": b"deep\n"}
    assert out.files["keep.txt"][1] == FILES["keep.txt"][1], "an untouched file keeps its modified time"
    assert sorted(out.refused) == [
        "jobs/bad\\xff\\x1b[2J: a name not allowed (each part 1 to 128 letters, digits, '.', '_' or '-', "
        "not starting with '.', '_' or '-')",
        "jobs/hard: a hard link (to jobs/b.txt); links are not kept",
        "jobs/pipe: a FIFO; only plain files are kept",
        "jobs/shadow: a symbolic link (to /etc/shadow); links are not kept",
    ]


def test_files_in_before_the_start_and_out_after_the_exit_through_a_volume(
        docker_client: docker.DockerClient, volume: Any, containers: list[Any]) -> None:
    c = docker_client.containers.create(JOB_IMAGE, ["sh", "-c", CHANGE], **_locked_down(
        mounts=[docker.types.Mount("/work", volume.name, type="volume")]))
    containers.append(c)
    assert c.put_archive("/work", tarstream.pack(FILES, UID, UID))
    c.start()
    assert c.wait(timeout=60)["StatusCode"] == 0, c.logs()
    chunks, _ = c.get_archive("/work/jobs")
    _expect_changes(tarstream.unpack(chunks))


TMPFS = {"type": "tmpfs", "device": "tmpfs", "o": f"size=16m,nr_inodes=1000,uid={UID},gid={UID},mode=0700,nosuid,nodev"}


@pytest.mark.parametrize("volume", [TMPFS], indirect=True)
def test_a_tmpfs_volume_takes_files_only_while_the_container_runs(
        docker_client: docker.DockerClient, volume: Any, containers: list[Any]) -> None:
    script = f"while [ ! -e /work/jobs/a.txt ]; do sleep 0.05; done; {CHANGE}; touch /tmp/done; sleep 60"
    c = docker_client.containers.create(JOB_IMAGE, ["sh", "-c", script], **_locked_down(
        mounts=[docker.types.Mount("/work/jobs", volume.name, type="volume")]))
    containers.append(c)
    c.start()
    assert c.put_archive("/work/jobs", tarstream.pack(FILES, UID, UID, root="."))
    wait_for(lambda: c.exec_run(["test", "-e", "/tmp/done"]).exit_code == 0, 30, "the job's changes")
    chunks, _ = c.get_archive("/work/jobs")
    _expect_changes(tarstream.unpack(chunks))
    c.kill()
    c.wait(timeout=30)
    chunks, _ = c.get_archive("/work/jobs")
    after = tarstream.unpack(chunks)
    assert after.complete and after.files == {}, "read after the exit, a tmpfs volume's archive is empty"


def test_a_1gib_sparse_file_is_stopped_at_its_header_and_the_engine_still_answers(
        docker_client: docker.DockerClient, volume: Any, containers: list[Any]) -> None:
    script = "cd /work/jobs && echo small > a.txt && truncate -s 1G sparse.bin && echo after > z.txt"
    c = docker_client.containers.create(JOB_IMAGE, ["sh", "-c", script], **_locked_down(
        mounts=[docker.types.Mount("/work", volume.name, type="volume")]))
    containers.append(c)
    assert c.put_archive("/work", tarstream.pack({}, UID, UID))
    c.start()
    assert c.wait(timeout=60)["StatusCode"] == 0, c.logs()
    chunks, _ = c.get_archive("/work/jobs")
    src = Counted(chunks)
    try:
        out = tarstream.unpack(src)
    finally:
        chunks.close()  # type: ignore[attr-defined]
    assert out.limit == "jobs/ holds a file larger than 50 MiB (jobs/sparse.bin)"
    assert src.pulled < 8 * MiB, f"read {src.pulled:,} bytes of a stream that had to be stopped"
    c.reload()
    assert c.status == "exited", "the same client still talks to the engine"
