"""The process's logging, configured once (by the CLI, for ``runner up`` and every other command).

One event is one line. A log message may carry what a job wrote (its reason, an attachment's name),
so the text formatter shows its control characters and newlines as escapes (:func:`runner.text.visible`):
no job can clear the operator's screen or forge a log line. A traceback of the runner's own is kept
readable, its lines indented, so a continuation line never looks like an event of its own. The JSON
formatter writes one JSON object per line, its strings escaped for a terminal (:func:`runner.text.json_safe`).
The bot token is redacted from every line (:func:`install_redaction`), and from any text that may be
logged or stored (:func:`redact`).
"""

from __future__ import annotations

import json
import logging
import re
import sys

from .text import json_safe, visible

LINE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
QUIET = ("urllib3", "docker", "psycopg.pool", "pgserver", "httpx", "httpcore")  # httpx logs each URL: a webhook
# URL may carry a credential in its path (as hosted chat services hand them out)


def _indented(text: str) -> str:
    return "\n".join("    " + line for line in visible(text).split("\n"))


class TextFormatter(logging.Formatter):
    """``time level logger: message`` on one line, whatever the message holds."""

    def __init__(self) -> None:
        super().__init__(LINE_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = visible(record.message, one_line=True)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:  # noqa: N802
        return _indented(super().formatException(ei))  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return _indented(stack_info)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback as ``error``)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record), "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json_safe(json.dumps(out, ensure_ascii=False))


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to standard error at ``level``, as text lines or (``fmt="json"``) JSON objects."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name("runner")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "runner"]:  # configured again: replace ours only
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level, logging.INFO))
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The pool warns at each failed reconnection; an outage is logged once by runner.outage instead.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


# --- redaction of the bot token ---------------------------------------------------------------------

def redact(text: str, secret: str | None) -> str:
    """Remove the bot token from anything that might be logged or stored."""
    if secret:
        text = text.replace(secret, "<token>")
    return re.sub(r"bot\d+:[A-Za-z0-9_-]{20,}", "bot<token>", text)


class RedactingFilter(logging.Filter):
    """A logging filter that keeps the bot token out of every log line."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if self.secret in msg or "bot" in msg:
            record.msg, record.args = redact(msg, self.secret), None
        return True


def install_redaction(token: str) -> None:
    """Keep the token out of every log line, whoever logs it."""
    flt = RedactingFilter(token)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
