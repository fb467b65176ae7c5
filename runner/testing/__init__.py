"""The runner's testing kit (``pip install 'runner[testing]'``): :class:`RunnerContainer` starts the whole
service for a test, :func:`run_script` runs a script once in the real sandbox and returns its
:class:`Outcome`, and the pytest plugin (:mod:`runner.testing.plugin`) gives the fixtures
``runner_service``, ``thread`` and ``run_script``."""

from .container import RunnerContainer, RunnerImageMissing
from .scripts import Outcome, run_script

__all__ = ["Outcome", "RunnerContainer", "RunnerImageMissing", "run_script"]
