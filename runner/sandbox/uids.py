"""The engine's uid registry: which database's thread has which job uid.

Per-user kernel limits are counted per host uid across every container of the engine, so a uid must
never go to threads of two databases. Each uid given is an empty volume ``runner-uid-<n>`` labelled
with its database (store) and thread. Creating a volume whose name exists is a no-op that keeps the
first creator's labels, and the engine serialises creation by name: whoever reads its own labels back
holds the uid. The entries carry no io.runner.managed label, so no orphan sweep ever lists them."""

from __future__ import annotations

import docker
import docker.errors
import requests.exceptions

from ..errors import SandboxError
from .engine import remove_volume
from .spec import LABEL_STORE, LABEL_THREAD, LABEL_UID


def uid_volume_name(uid: int) -> str:
    return f"runner-uid-{int(uid)}"


def claim_uid(dc: docker.DockerClient, uid: int, store: str, thread_id: str) -> tuple[str, str]:
    """Register ``uid`` for (``store``, ``thread_id``) unless someone holds it already; return who holds it
    now, as (store, thread id). The caller holds the uid only if that is its own pair."""
    name = uid_volume_name(uid)
    labels = {LABEL_UID: str(int(uid)), LABEL_STORE: store, LABEL_THREAD: thread_id}
    for _ in range(3):  # an entry removed between the create and the read-back: create it again
        try:
            dc.volumes.create(name, driver="local", labels=labels)
            got = dc.volumes.get(name).attrs.get("Labels") or {}
        except docker.errors.NotFound:
            continue
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"could not record job uid {uid} on the Docker engine: "
                               f"{getattr(exc, 'explanation', None) or exc}") from exc
        return got.get(LABEL_STORE, ""), got.get(LABEL_THREAD, "")
    raise SandboxError(f"could not record job uid {uid} on the Docker engine: its entry {name} keeps disappearing")


def registered_uids(dc: docker.DockerClient) -> dict[int, tuple[str, str]]:
    """Every uid registered on the engine, by any database: uid -> (store, thread id)."""
    try:
        volumes = dc.volumes.list(filters={"label": [LABEL_UID]})
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        raise SandboxError(f"could not read the job uids registered on the Docker engine: {exc}") from exc
    found: dict[int, tuple[str, str]] = {}
    for volume in volumes:
        labels = (volume.attrs or {}).get("Labels") or {}
        value = str(labels.get(LABEL_UID, ""))
        if value.isdigit() and volume.name == uid_volume_name(int(value)):
            found[int(value)] = (labels.get(LABEL_STORE, ""), labels.get(LABEL_THREAD, ""))
    return found


def release_uids(dc: docker.DockerClient, store: str) -> int:
    """Remove the registry entries of the database ``store`` (only when that database is gone for good)."""
    removed = 0
    for volume in dc.volumes.list(filters={"label": [LABEL_UID, f"{LABEL_STORE}={store}"]}):
        remove_volume(volume)
        removed += 1
    return removed
