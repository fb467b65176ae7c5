"""The Docker engine as the runner uses it: a client, retries of its transient faults, and finding and
removing what runs left behind (containers, per-run networks and proxy volumes), by label."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from .connect import client
from .spec import LABEL_JOB, LABEL_MANAGED, LABEL_STORE, LABEL_UID

log = logging.getLogger("runner.sandbox")


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    if isinstance(exc, docker.errors.APIError) and not isinstance(exc, docker.errors.NotFound):
        return exc.is_server_error()
    return False


retry_docker = retry(
    retry=retry_if_exception(_transient), stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.2, max=2), reraise=True,
)


def _filters(store: str | None) -> dict[str, Any]:
    labels = [f"{LABEL_MANAGED}=true"] + ([f"{LABEL_STORE}={store}"] if store else [])
    return {"label": labels}


def managed_containers(dc: docker.DockerClient | None = None, store: str | None = None) -> list[Any]:
    """Every container (running or not) that some runner started (for the database ``store``, if given)."""
    dc = dc or client()
    # ignore_removed: a container removed while the list is being read is simply not in it
    return dc.containers.list(all=True, filters=_filters(store), ignore_removed=True)


def managed_networks(dc: docker.DockerClient | None = None, store: str | None = None) -> list[Any]:
    """Every per-run network that some runner made (for the database ``store``, if given)."""
    dc = dc or client()
    return dc.networks.list(filters=_filters(store))


def managed_volumes(dc: docker.DockerClient | None = None, store: str | None = None) -> list[Any]:
    """Every per-run proxy volume that some runner made (for the database ``store``, if given)."""
    dc = dc or client()
    return dc.volumes.list(filters=_filters(store))


def remove_volume(volume: Any) -> None:
    """Remove a proxy volume (its containers are removed first); one already gone is fine."""
    try:
        volume.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        log.warning("could not remove volume %s: %s", volume.name, exc)


def remove_orphan_volumes(dc: docker.DockerClient, store: str | None, live_jobs: set[str | None],
                          min_age: float = 60.0) -> None:
    """Remove proxy volumes whose run's containers are all gone, once they are ``min_age`` seconds old
    (a run creates its volume just before its proxy container)."""
    now = datetime.now(UTC)
    for volume in managed_volumes(dc, store):
        attrs = volume.attrs or {}
        labels = attrs.get("Labels") or {}
        if LABEL_UID in labels or labels.get(LABEL_JOB) in live_jobs:
            continue  # a uid registry entry is never a run's: it lives as long as its thread
        try:
            created = datetime.fromisoformat(str(attrs.get("CreatedAt", "")).replace("Z", "+00:00"))
        except ValueError:
            created = now
        if created.tzinfo is None or (now - created).total_seconds() >= min_age:
            remove_volume(volume)


def remove_network(network: Any) -> None:
    """Remove a network (disconnecting nothing: its containers are removed first)."""
    try:
        network.remove()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        log.warning("could not remove network %s: %s", network.name, exc)


def kill_container(container: Any) -> None:
    """SIGKILL a container; one that has already stopped is fine."""
    try:
        container.kill()
    except (docker.errors.APIError, requests.exceptions.ConnectionError):
        pass  # it ended on its own just now


def remove_container(container: Any) -> bool:
    """Kill and remove a container. True if this call removed it; a container already gone is fine
    (False), a failure is logged (False)."""
    try:
        container.remove(force=True, v=True)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409 and "already in progress" in str(exc.explanation or ""):
            return False  # another caller (the sweep, or the run itself) is removing it: gone all the same
        log.warning("could not remove container %s: %s", container.name, exc)
        return False
    except requests.exceptions.ConnectionError as exc:
        log.warning("could not remove container %s: %s", container.name, exc)
        return False


def image_present(image: str, dc: docker.DockerClient | None = None) -> bool:
    """True if the engine has ``image``."""
    dc = dc or client()
    try:
        dc.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False
