"""The service layer: what every interface calls (the CLI, the bot, the agent's tools, the HTTP API).

* :mod:`.jobs` — :class:`Jobs`, the operations on jobs, bound to a thread by the caller;
* :mod:`.validate` — names, scripts, limits and policies, checked before anything is saved;
* :mod:`.views` — the JSON views of jobs and runs;
* :mod:`.scripts` — a job's script written into, and read back from, its thread's ``jobs/``;
* :mod:`.files`, :mod:`.storedfiles` — a thread's ``jobs/`` files for the API, MCP and the CLI, in the
  data directory or in the database; :mod:`.filestore` chooses one from ``RUNNER_FILES``
  (:func:`file_backend`, called once, by :class:`Jobs`: ``jobs.scripts`` and ``jobs.files``);
* :mod:`.filemigrate` — ``runner files migrate``, from one store to the other.
"""

from __future__ import annotations

from ..statuses import STATUSES
from .filestore import FileBackend, file_backend
from .jobs import Jobs, connect
from .validate import Limits, Policy, check_script, validate_name
from .views import PUBLIC_COLUMNS, public_row

__all__ = ["PUBLIC_COLUMNS", "STATUSES", "FileBackend", "Jobs", "Limits", "Policy", "check_script", "connect", "file_backend",
           "public_row", "validate_name"]
