"""The service layer: what every interface calls (the CLI, the bot, the agent's tools, the HTTP API).

* :mod:`.jobs` — :class:`Jobs`, the operations on jobs, bound to a thread by the caller;
* :mod:`.validate` — names, scripts, limits and policies, checked before anything is saved;
* :mod:`.views` — the JSON views of jobs and runs;
* :mod:`.scripts` — a job's script written into, and read back from, its thread's ``jobs/``.
"""

from __future__ import annotations

from ..statuses import STATUSES
from .jobs import Jobs, connect
from .validate import Limits, Policy, check_script, validate_name
from .views import PUBLIC_COLUMNS, public_row

__all__ = ["PUBLIC_COLUMNS", "STATUSES", "Jobs", "Limits", "Policy", "check_script", "connect", "public_row",
           "validate_name"]
