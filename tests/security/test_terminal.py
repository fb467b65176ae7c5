"""Terminal escape injection: what a job writes reaches a person's terminal only with its control
characters made visible, and it cannot forge the console delivery's framing or a log line.

Real runs: the job is scheduled and run by the CLI as a subprocess (``runner schedule``, ``runner up
--burst``), and every human-facing view of it (``runner logs``, ``runner jobs``, ``runner get``, the
console delivery, the text log) is read from what those subprocesses printed.
"""

from __future__ import annotations

import json
import re
import subprocess
import unicodedata

from runner.settings import Settings

from ..integration.helpers import ROOT, RUNNER_CLI, cli_env

THREAD = "telegram:1"

# Each of these, raw on a terminal: set the window title (OSC 0, BEL), clear the screen (CSI 2J), a
# hidden link (OSC 8), one-byte CSI (C1), a right-to-left override and an isolate (bidi).
ESCAPES = r"\x1b]0;PWNED\x07\x1b[2J\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\\x9b31m\u202egnp.exe\u2066"
NAME_ESCAPES = r"\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202e"  # no '/' in a file name
FORGED_HEADER = "--- message for telegram:1 from job bank (run 1) ---"
FORGED_LOG = "2026-12-01 00:00:00,000 INFO    runner.scheduler: job 99 (bank) completed"

EVIL = f"""\
import os, sys
E = "{ESCAPES}"
N = "{NAME_ESCAPES}"
print("stdout " + E)
print("stderr " + E, file=sys.stderr)
with open("jobs/evil_message.txt", "w") as f:
    f.write("hello " + E + "\\n{FORGED_HEADER}\\nSend 1000 EUR to the account below\\n" + "-" * 54 + "\\n")
os.makedirs("jobs/evil_attachments", exist_ok=True)
open("jobs/evil_attachments/a" + N + ".txt", "w").write("x")
os.symlink("/etc/passwd", "jobs/evil_attachments/l\\n{FORGED_LOG}")
"""

FAILING = f"""\
import sys
print("Traceback: " + "{ESCAPES}", file=sys.stderr)
sys.exit(1)
"""


def _env(settings: Settings) -> dict[str, str]:
    return cli_env(settings, RUNNER_ID=settings.runner_id, RUNNER_TIMEZONE="UTC", RUNNER_LOG_FORMAT="text",
                   PYTHONIOENCODING="utf-8")


def cli(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*RUNNER_CLI, *args], env=_env(settings), cwd=ROOT, input=stdin,
                       capture_output=True, text=True, encoding="utf-8", errors="surrogateescape",
                       timeout=120, check=False)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def raw_controls(text: str) -> list[str]:
    """Every character in ``text`` that a terminal could act on or that disguises text (an oracle of
    its own, from the Unicode database: not the runner's list)."""
    bad = {c for c in text if c not in "\n\t\u200c\u200d"
           and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")}
    return sorted(f"U+{ord(c):04X}" for c in bad)


def _schedule(settings: Settings, name: str, script: str) -> int:
    r = cli(settings, "schedule", "-", "--thread", THREAD, "--name", name, "--json", stdin=script)
    return int(json.loads(r.stdout)["id"])


def _burst(settings: Settings) -> tuple[dict[str, int], subprocess.CompletedProcess[str]]:
    ids = {"evil": _schedule(settings, "evil", EVIL), "failing": _schedule(settings, "failing", FAILING)}
    return ids, cli(settings, "up", "--burst", "--no-build")


def test_console_delivery_and_text_log_show_escapes_and_cannot_be_forged(settings: Settings) -> None:
    ids, up = _burst(settings)
    out, err = up.stdout, up.stderr
    assert "stdout" not in out  # the job's output is not delivered, only its message
    assert "hello " in out and "Send 1000 EUR" in out, out
    assert raw_controls(out) == [], out
    assert raw_controls(err) == [], err
    assert "\\x1b]0;PWNED\\x07" in out, "the escapes are shown, not dropped"
    lines = out.split("\n")
    headers = [ln for ln in lines if ln.startswith("--- ")]
    assert all(not h.startswith("--- message for telegram:1 from job bank") for h in headers), headers
    assert f"--- message for {THREAD} from job evil (run {ids['evil']}) ---" in headers, out
    assert any(h.startswith(f"--- failure notice for {THREAD} from job failing") for h in headers), out
    # Each block's footer is a line of dashes alone: the job's own line of dashes is framed as its text.
    assert sum(1 for ln in lines if ln and set(ln) == {"-"}) == len(headers), out
    # An attachment whose name holds control characters is refused, not sent under a name that lies
    # (the run's record says so with the name's escapes visible: test_logs_jobs_and_get_show_escapes).
    assert "[attachment: " not in out, out
    # One event, one line: every log line starts with its time; a newline in a name forges nothing.
    for line in err.split("\n"):
        assert not line or re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} |\s", line), line
    assert "job 99 (bank) completed" not in "\n".join(ln[:80] for ln in err.split("\n")), err
    assert "\\x1b]0;PWNED\\x07" in err, "the failing job's reason is logged with its escapes shown"


def test_logs_jobs_and_get_show_escapes(settings: Settings) -> None:
    ids, _ = _burst(settings)
    views = {
        "logs evil": cli(settings, "logs", str(ids["evil"])).stdout,
        "logs failing": cli(settings, "logs", str(ids["failing"])).stdout,
        "jobs": cli(settings, "jobs").stdout,
        "get evil": cli(settings, "get", str(ids["evil"])).stdout,
        "get failing": cli(settings, "get", str(ids["failing"])).stdout,
    }
    for what, text in views.items():
        assert raw_controls(text) == [], (what, text)
    assert "stdout \\x1b]0;PWNED\\x07\\x1b[2J" in views["logs evil"]
    assert "stderr \\x1b]0;PWNED" in views["logs evil"]
    assert "hello \\x1b]0;PWNED" in views["logs evil"], "the message is shown, escapes visible"
    assert "attachment refused: its name a\\x1b]0;PWNED" in views["logs evil"], views["logs evil"]
    assert "reason: exit code 1: Traceback: \\x1b]0;PWNED\\x07" in views["logs failing"], views["logs failing"]
    assert "exit code 1: Traceback: \\x1b]0;PWNED\\x07" in views["jobs"], views["jobs"]
    # A table row stays one row: nothing a job wrote breaks the listing into more lines.
    assert len(views["jobs"].strip().split("\n")) == 1 + 2, views["jobs"]


def test_json_keeps_the_values_and_is_safe_on_a_terminal(settings: Settings) -> None:
    ids, _ = _burst(settings)
    for args in (("logs", str(ids["evil"]), "--json"), ("jobs", "--json"), ("get", str(ids["failing"]), "--json")):
        text = cli(settings, *args).stdout
        assert raw_controls(text.replace("\n", "")) == [], (args, text)
        json.loads(text)
    info = json.loads(cli(settings, "logs", str(ids["evil"]), "--json").stdout)
    assert "\x1b]0;PWNED\x07" in info["output_tail"] and "\u202egnp.exe\u2066" in info["output_tail"]
    assert "\x9b31m" in info["messages"][0]["text"], "JSON carries the exact text, escaped only as JSON"
