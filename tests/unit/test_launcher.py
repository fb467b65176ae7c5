"""The in-container launcher: a script runs as `python3 jobs/x.py` would, and never before its due time.

Run here with the host's Python (the job image runs the same code with its own)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from runner.sandbox import LAUNCHER


def launch(tmp_path: Path, source: str, due: float = 0.0) -> subprocess.CompletedProcess[str]:
    jobs = tmp_path / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "x.py").write_text(source)
    (jobs / "helper.py").write_text("VALUE = 42\n")
    return subprocess.run([sys.executable, "-u", "-c", LAUNCHER, f"{due:.6f}", "jobs/x.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30, check=False)


def test_the_script_never_starts_before_its_due_time(tmp_path: Path) -> None:
    due = time.time() + 0.4
    r = launch(tmp_path, "import time\nprint(repr(time.time()))\n", due)
    assert r.returncode == 0, r.stderr
    began = float(r.stdout)
    assert due <= began < due + 0.1, began - due


def test_it_behaves_like_running_the_file(tmp_path: Path) -> None:
    source = ("import os, sys, helper\n"
              "print(__name__, __file__, sys.argv, os.path.basename(sys.path[0]), helper.VALUE)\n")
    r = launch(tmp_path, source)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["__main__", "jobs/x.py", "['jobs/x.py']", "jobs", "42"]


def test_exit_codes_and_tracebacks_are_the_scripts_own(tmp_path: Path) -> None:
    assert launch(tmp_path, "import sys\nsys.exit(3)\n").returncode == 3
    r = launch(tmp_path, "def f():\n    return 1 / 0\n\nf()\n")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert 'File "jobs/x.py", line 4, in <module>' in r.stderr and "runpy" not in r.stderr
    assert "<string>" not in r.stderr  # the launcher's own frames are not shown
