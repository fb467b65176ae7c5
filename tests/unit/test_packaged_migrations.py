"""The migrations are package data of runner (runner/migrations), found through importlib.resources."""

from __future__ import annotations

from pathlib import Path

import runner
from runner.db import MIGRATIONS_DIR, migration_files

ROOT = Path(__file__).resolve().parents[2]


def test_the_migrations_live_in_the_package() -> None:
    assert Path(str(MIGRATIONS_DIR)) == Path(runner.__file__).parent / "migrations"
    names = [p.name for _, p in migration_files()]
    assert names[:7] == ["001_initial.sql", "002_network_grants.sql", "003_telegram_delivery.sql", "004_policies.sql",
                         "005_store_identity.sql", "006_thread_uids.sql", "007_script_pinning.sql"]


def test_no_migration_is_left_at_the_old_top_level_place() -> None:
    """A branch written before the move that adds migrations/0NN_x.sql would merge it where nothing reads
    it: the schema would silently lack it. Move such a file into runner/migrations/."""
    stray = sorted(p.name for p in (ROOT / "migrations").glob("*.sql")) if (ROOT / "migrations").exists() else []
    assert stray == [], f"move {stray} into runner/migrations/"
