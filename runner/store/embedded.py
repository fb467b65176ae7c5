"""The embedded Postgres (pgserver) that ``make run`` and a bare ``runner up`` use when DATABASE_URL is unset."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

from ..errors import DatabaseError
from .database import describe

_embedded_lock = threading.Lock()
_embedded: dict[Path, Any] = {}


def embedded_url(directory: Path) -> str:
    """Start (or join) the private Postgres kept in ``directory`` and return its URL.

    Used when DATABASE_URL is unset. It listens on a Unix socket in ``directory`` only, and stops
    when the last process using it exits.
    """
    directory = directory.absolute()
    with _embedded_lock:
        if directory not in _embedded:
            directory.mkdir(parents=True, exist_ok=True)
            try:
                with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
                    warnings.simplefilter("ignore")
                    import pgserver  # a PostgreSQL build shipped as a wheel

                    _embedded[directory] = pgserver.get_server(directory, cleanup_mode="stop")  # type: ignore[attr-defined]
            except Exception as exc:
                raise DatabaseError(
                    f"could not start the embedded Postgres in {directory}: {describe(exc)}; "
                    "set DATABASE_URL to use your own server"
                ) from exc
        return str(_embedded[directory].get_uri())
