"""What every part of the store shares: the database it reads and writes."""

from __future__ import annotations

from .database import Database


class StoreBase:
    """The database handle the store's parts use. Only ``runner.store`` runs queries."""

    def __init__(self, db: Database) -> None:
        self.db = db
