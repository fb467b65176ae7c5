"""The in-container launcher: a script runs as `python3 jobs/x.py` would, and never before its due time.

Run here with the host's Python (the job image runs the same code with its own)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from runner.sandbox import LAUNCHER, SOURCE_CHUNK, source_arguments


def launch(tmp_path: Path, source: str, due: float = 0.0, on_disk: str | None = None) -> subprocess.CompletedProcess[str]:
    """The launcher is given the checked source on its command line; ``on_disk`` is what jobs/x.py
    holds meanwhile (another job may have rewritten it)."""
    jobs = tmp_path / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "x.py").write_text(source if on_disk is None else on_disk)
    (jobs / "helper.py").write_text("VALUE = 42\n")
    return subprocess.run([sys.executable, "-u", "-c", LAUNCHER, f"{due:.6f}", "jobs/x.py", *source_arguments(source)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False)


def test_the_script_never_starts_before_its_due_time(tmp_path: Path) -> None:
    due = time.time() + 0.4
    r = launch(tmp_path, "import time\nprint(repr(time.time()))\n", due)
    assert r.returncode == 0, r.stderr
    began = float(r.stdout)
    assert due <= began < due + 0.1, began - due


def test_it_behaves_like_running_the_file(tmp_path: Path) -> None:
    source = "import sys\nprint(__name__, __file__, sys.argv)\n"
    r = launch(tmp_path, source)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["__main__", "jobs/x.py", "['jobs/x.py']"]


def test_it_runs_the_source_it_is_given_not_the_file(tmp_path: Path) -> None:
    r = launch(tmp_path, "print('approved')\n", on_disk="print('rewritten')\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "approved\n"


def test_files_in_jobs_and_the_working_directory_are_not_importable(tmp_path: Path) -> None:
    """Any job of the thread writes jobs/: a jobs/json.py must not shadow the standard library."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "json.py").write_text("raise SystemExit('shadowed')\n")
    (tmp_path / "json.py").write_text("raise SystemExit('shadowed')\n")
    r = launch(tmp_path, "import json, os, sys\nprint(json.dumps(1), [p for p in sys.path if p in ('', os.getcwd())])\n"
                         "import helper\n")
    assert r.stdout == "1 []\n", r.stderr
    assert r.returncode == 1 and "No module named 'helper'" in r.stderr


def test_a_long_script_is_passed_in_chunks(tmp_path: Path) -> None:
    source = "".join(f"x{i} = '{'é' * 50}'\n" for i in range(2000)) + "print(len(x1999))\n"
    assert len(source) > 4 * SOURCE_CHUNK and all(len(a.encode()) < 128 * 1024 for a in source_arguments(source))
    r = launch(tmp_path, source)
    assert r.returncode == 0 and r.stdout == "50\n", r.stderr[-300:]


def test_exit_codes_and_tracebacks_are_the_scripts_own(tmp_path: Path) -> None:
    assert launch(tmp_path, "import sys\nsys.exit(3)\n").returncode == 3
    r = launch(tmp_path, "def f():\n    return 1 / 0\n\nf()\n")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert 'File "jobs/x.py", line 4, in <module>' in r.stderr and "runpy" not in r.stderr
    assert "<string>" not in r.stderr  # the launcher's own frames are not shown


def test_the_launcher_is_a_file_of_the_package_and_importing_it_runs_nothing() -> None:
    """The container runs the file's own source; importing it (a linter, a test) starts no script."""
    import importlib

    module = importlib.import_module("runner.sandbox.launcher")
    assert LAUNCHER == Path(module.__file__).read_text(encoding="utf-8")
    assert callable(module.launch)
