"""A plain wheel (``pip install .``, not ``-e``) carries its migrations and migrates a real Postgres
from its own copy: built from this checkout, installed into a fresh venv outside it, run from elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import psycopg

from runner.store import MIGRATIONS_DIR, migration_files

ROOT = Path(__file__).resolve().parents[2]




def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
                          check=False)
    assert proc.returncode == 0, f"{cmd[:4]} failed: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def _wheel(dest: Path) -> Path:
    """The runner's wheel, built offline with this environment's setuptools (no index is asked), from a
    copy of what the image copies too: a checkout's build/ left by an earlier build cannot leak in."""
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("runner", "migrations"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-q",
         "-w", dest, src, cwd=dest)
    (wheel,) = dest.glob("runner-*.whl")
    return wheel


def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A new venv with only the wheel installed in it; its dependencies are borrowed from the test's own
    environment by a path entry (a .pth line adds the directory, not the .pth files in it, so the
    editable install of this checkout stays out)."""
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=where).strip())
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel,
         cwd=where)
    return python


def test_the_wheel_ships_the_migrations_and_migrates_a_real_postgres(bare_url: str, tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    shipped = sorted(n.rsplit("/", 1)[1] for n in zipfile.ZipFile(wheel).namelist()
                     if n.startswith("runner/migrations/") and n.endswith(".sql"))
    known = [p.name for _, p in migration_files(MIGRATIONS_DIR)]
    assert shipped == known and known, (shipped, known)

    python = _fresh_venv(tmp_path / "venv", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")}
    where = _run(python, "-c", "import runner.store.migrations as d; print(d.__file__); print(d.MIGRATIONS_DIR)", cwd=elsewhere, env=env)
    assert all(line.startswith(str(tmp_path / "venv")) for line in where.split()), where  # not this checkout
    out = _run(python, "-m", "runner.cli", "migrate", cwd=elsewhere, env={**env, "DATABASE_URL": bare_url})
    assert f"applied {len(known)} migration(s)" in out, out
    with psycopg.connect(bare_url) as conn:
        applied = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
    assert applied == known


def test_the_wheel_ships_the_subpackages_and_the_launcher_files(tmp_path: Path) -> None:
    """runner.sandbox reads its launcher.py and relay.py as package files at import time: a wheel that
    left a subpackage out would fail at the first import, far from a checkout."""
    wheel = _wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("runner/sandbox/launcher.py", "runner/sandbox/relay.py", "runner/doctor/probes.py",
                 "runner/cli/__main__.py", "runner/store/sql/stats.sql", "runner/store/sql/overview.sql",
                 "runner/dashboard/templates/job.html", "runner/dashboard/static/dashboard.css"):
        assert name in names, sorted(n for n in names if n.startswith("runner/"))
    python = _fresh_venv(tmp_path / "venv", wheel)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = _run(python, "-c", "import runner.doctor, runner.sandbox as s; print(s.__file__); "
               "print(s.LAUNCHER.count('def launch'), s.RELAY.count('def _egress_relay'))", cwd=tmp_path, env=env)
    where, counts = out.splitlines()
    assert where.startswith(str(tmp_path / "venv")), where  # not this checkout
    assert counts == "1 1", out
    # the dashboard reads its stylesheet at import and its templates through the package loader
    page = _run(python, "-c", "import runner.dashboard as d; from runner.dashboard.render import environment; "
                "print(d.__file__); print(len(d.CSS) > 0, environment().get_template('signin.html').render("
                "csrf='c', why='', error='', session=None, notice='').count('type=\"password\"'))", cwd=tmp_path, env=env)
    where, loaded = page.splitlines()
    assert where.startswith(str(tmp_path / "venv")) and loaded == "True 1", page
