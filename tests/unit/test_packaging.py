"""Every package of runner/ is shipped in the wheel: pyproject lists its packages by name (the schema's
migrations are mapped in from the top level), so a new subpackage left off the list would install a
runner that cannot import itself (it happened: runner.threads, runner.service, runner.outbox)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_and_data_folder_of_runner_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(d.relative_to(ROOT).parts) for d in (ROOT / "runner").rglob("*")
             if d.is_dir() and d.name != "__pycache__" and (any(d.glob("*.py")) or any(d.glob("*.sql")))}
    assert found | {"runner"} <= listed, f"not shipped: {sorted(found - listed)}"
    for package, patterns in config.get("package-data", {}).items():
        assert package in listed and patterns
