"""`runner up` puts back the signal handlers it found when it returns."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from runner.app import stop_on_signals


def test_the_handlers_stop_while_inside_and_are_put_back_after(caller_handlers: dict[int, Any]) -> None:
    stops: list[str] = []
    with stop_on_signals(lambda: stops.append("stop")):
        assert signal.getsignal(signal.SIGTERM) is not caller_handlers[signal.SIGTERM]
        signal.raise_signal(signal.SIGTERM)
        assert stops == ["stop"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # a second Ctrl-C forces
    for sig, handler in caller_handlers.items():
        assert signal.getsignal(sig) is handler


def test_the_handlers_are_put_back_when_the_body_raises(caller_handlers: dict[int, Any]) -> None:
    with pytest.raises(RuntimeError), stop_on_signals(lambda: None):
        raise RuntimeError("the scheduler died")
    for sig, handler in caller_handlers.items():
        assert signal.getsignal(sig) is handler
