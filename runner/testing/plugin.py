"""The pytest plugin of the testing kit (entry point ``pytest11``). Its fixtures (:mod:`.fixtures`) are
offered only where the extra ``runner[testing]`` is installed: without testcontainers, nothing."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("testcontainers") is not None:
    from .fixtures import Thread, run_script, runner_service, thread

    __all__ = ["Thread", "run_script", "runner_service", "thread"]
