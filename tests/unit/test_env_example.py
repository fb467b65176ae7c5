""".env.example documents every setting the runner reads, with the default it really has."""

from __future__ import annotations

import re
from pathlib import Path

from runner.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _documented() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.fullmatch(r"#? ?([A-Z][A-Z0-9_]+)=(.*)", line.strip())
        if m:
            out[m[1]] = m[2]
    return out


def test_every_setting_is_documented() -> None:
    read = set(re.findall(r'"((?:RUNNER|TELEGRAM|DATABASE)_[A-Z_]+)"', (ROOT / "runner" / "settings.py").read_text()))
    assert read, "no settings found: the pattern above no longer matches settings.py"
    missing = read - set(_documented())
    assert not missing, f"add these to .env.example: {sorted(missing)}"


def test_documented_defaults_are_the_real_defaults() -> None:
    doc = _documented()
    # The commented-out default of each setting, applied alone, changes nothing.
    base = Settings.from_env({"RUNNER_ID": "x"})
    for name, value in doc.items():
        if not value or name in ("DATABASE_URL", "RUNNER_DATA_DIR", "RUNNER_EMBEDDED_PG_DIR") or not (
            name.startswith(("RUNNER_", "TELEGRAM_"))
        ):
            continue
        try:
            changed = Settings.from_env({"RUNNER_ID": "x", name: value})
        except Exception as exc:  # a compose-only variable is not read: from_env ignores it
            raise AssertionError(f"{name}={value} in .env.example is refused: {exc}") from exc
        assert changed == base, f".env.example says {name}={value}, but that is not the default"


def test_compose_passes_the_settings_file_to_the_runner() -> None:
    compose = (ROOT / "compose.yaml").read_text()
    assert "env_file: ${RUNNER_ENV_FILE:-.env}" in compose
