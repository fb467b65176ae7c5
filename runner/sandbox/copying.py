"""A run's jobs/ copied into its container and read back, through the engine's archive API (any engine:
local, ``ssh://`` or ``tcp://``), for runs whose jobs/ is a volume of their own (RUNNER_FILES=postgres).

The stream read back was produced by the job: :func:`read_jobs` only hands it, chunk by chunk, to the
caller's parser (runner/tarstream.py), which caps it while reading; when the parser stops early, the
response is closed at once, so a job that left a 1 GiB file costs the runner no more than the cap."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import docker.errors
import requests
import requests.exceptions

from ..errors import SandboxError
from .engine import retry_docker
from .spec import JOBS_MOUNT, WORKDIR, NeverStarted

T = TypeVar("T")
CHUNK = 64 * 1024


def put_jobs(container: Any, archive: bytes) -> None:
    """Fill the created (not yet started) container's /work volume with ``archive``: a tar whose first
    entry is the directory ``jobs/``, owned by the job's user. NeverStarted if the container is gone;
    SandboxError if the engine refused."""
    try:
        ok = retry_docker(container.put_archive)(WORKDIR, archive)
    except docker.errors.NotFound as exc:
        raise NeverStarted(f"the job container was gone before its files were copied in ({exc.explanation or exc})") from exc
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        raise SandboxError(f"could not copy the thread's files into the job container: "
                           f"{getattr(exc, 'explanation', None) or exc}") from exc
    if not ok:
        raise SandboxError("could not copy the thread's files into the job container: the engine refused the archive")


def read_jobs(container: Any, consume: Callable[[Iterator[bytes]], T]) -> T:
    """``consume`` the tar stream of the finished container's jobs/ (its top entry is ``jobs/``).

    The response is closed when ``consume`` returns, whether or not it read to the end. SandboxError
    when the engine cannot give the archive (the container or its volume is gone, the engine is away)."""
    api = container.client.api
    url = f"{api.base_url}/v{api.api_version}/containers/{container.id}/archive"
    try:
        # Not compressed: a gzip stream of the job's making could expand far past what was read of it.
        response = api.get(url, params={"path": JOBS_MOUNT}, stream=True, timeout=(10, 60),
                           headers={"Accept-Encoding": "identity"})
    except requests.exceptions.RequestException as exc:
        raise SandboxError(f"could not read the run's files back from its container: {exc}") from exc
    try:
        if response.status_code != 200:
            raise SandboxError(f"could not read the run's files back from its container "
                               f"(the engine answered {response.status_code}: {_said(response)})")
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise SandboxError("could not read the run's files back from its container: the engine sent them "
                               f"encoded ({response.headers['Content-Encoding'][:40]}), not as a plain tar stream")
        return consume(_chunks(response))
    finally:
        response.close()


def _chunks(response: requests.Response) -> Iterator[bytes]:
    try:
        yield from response.raw.stream(CHUNK, decode_content=False)
    except requests.exceptions.RequestException as exc:
        raise SandboxError(f"the run's files could not be read to the end: {exc}") from exc
    except Exception as exc:  # urllib3's own errors (a reset, a timeout) while the stream is read
        if type(exc).__module__.startswith("urllib3"):
            raise SandboxError(f"the run's files could not be read to the end: {exc}") from exc
        raise


def _said(response: requests.Response) -> str:
    """The first line of the engine's error answer, bounded (it may quote a path the job chose)."""
    try:
        text = next(response.iter_content(512, decode_unicode=False), b"")
    except requests.exceptions.RequestException:
        return "no detail"
    line = bytes(text).decode("utf-8", "replace").strip().splitlines()
    return line[0][:200] if line else "no detail"
