"""The migrations: migrations/ at the top of the checkout, shipped in a wheel as the package data
runner/migrations (pyproject's package-dir), and found either way by runner.store."""

from __future__ import annotations

from pathlib import Path

from runner.store import MIGRATIONS_DIR, migration_files

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_migrates_from_its_top_level_migrations() -> None:
    assert Path(str(MIGRATIONS_DIR)) == ROOT / "migrations"
    names = [p.name for _, p in migration_files()]
    assert names[:8] == ["001_initial.sql", "002_network_grants.sql", "003_telegram_delivery.sql", "004_policies.sql",
                         "005_store_identity.sql", "006_thread_uids.sql", "007_script_pinning.sql",
                         "008_lease_fencing.sql"]


def test_every_migration_is_where_the_wheel_takes_it_from() -> None:
    """pyproject ships migrations/ as runner.migrations; a .sql file elsewhere would be left out."""
    stray = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "runner").rglob("*.sql") if p.parent.name != "sql")
    assert stray == [], f"move {stray} into migrations/"
    assert '"runner.migrations" = "migrations"' in (ROOT / "pyproject.toml").read_text()
