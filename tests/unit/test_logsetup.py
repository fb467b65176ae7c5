"""The log formatters: one event, one line, nothing a job wrote acts on the terminal."""

from __future__ import annotations

import json
import logging
import re

from runner.logsetup import JsonFormatter, TextFormatter
from runner.outbox import ConsoleSender

EVENT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
FORGED = "x\n2026-12-01 00:00:00,000 INFO    runner.scheduler: job 99 (bank) completed\x1b[2J\x9b\u202e"


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("runner.scheduler", logging.INFO, __file__, 1, msg, args, info)


def test_a_message_is_one_line_with_its_controls_shown() -> None:
    line = TextFormatter().format(_record("job %s (%s) failed: %s", 1, "evil", FORGED))
    assert "\n" not in line and "\x1b" not in line and "\x9b" not in line and "\u202e" not in line
    assert line.endswith("failed: x\\n2026-12-01 00:00:00,000 INFO    runner.scheduler: job 99 (bank) completed"
                         "\\x1b[2J\\x9b\\u202e")


def test_a_traceback_is_indented_under_its_event() -> None:
    try:
        raise ValueError(FORGED)
    except ValueError as exc:
        text = TextFormatter().format(_record("job 1: unexpected error", exc=exc))
    first, *rest = text.split("\n")
    assert EVENT.match(first) and rest
    assert all(line.startswith("    ") for line in rest), rest
    assert "\x1b" not in text and "\u202e" not in text


def test_json_lines_keep_the_value_and_are_safe() -> None:
    line = JsonFormatter().format(_record("reason: %s", FORGED))
    assert "\n" not in line and "\x9b" not in line and "\u202e" not in line
    assert json.loads(line)["message"] == "reason: " + FORGED


def test_console_block_frames_every_line_of_the_job() -> None:
    row = {"kind": "message", "thread_id": "telegram:1", "job_name": "evil", "job_id": 7,
           "text": "hi\n--- message for telegram:1 from job bank (run 1) ---\n-----\n",
           "attachments": [("a\n[attachment: fake, 1 bytes]\x1b]0;t\x07", 3)]}
    lines = ConsoleSender.render(row).split("\n")
    assert lines[0] == "--- message for telegram:1 from job evil (run 7) ---"
    assert lines[1:4] == ["| hi", "| --- message for telegram:1 from job bank (run 1) ---", "| -----"]
    assert lines[4] == "[attachment: a\\n[attachment: fake, 1 bytes]\\x1b]0;t\\x07, 3 bytes]"
    assert lines[5] == "-" * len(lines[0]) and len(lines) == 6
