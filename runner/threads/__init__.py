"""Threads: a thread id parsed once into a value, the host uid its jobs run as, and the directories it owns.

* :mod:`.ids` — :class:`ThreadId`, parsed and validated once from text such as ``telegram:42``; it
  carries its directory name (``telegram_42``), its ``jobs/`` path and its Telegram chat id.
* :mod:`.uids` — the host uid of each thread (from ``RUNNER_UID_RANGE``, recorded in the database and on
  the Docker engine), never root and never the runner's own.
* :mod:`.dirs` — the data directory and the thread directories, the runner's and mode 0700, with
  ``jobs/`` open to the thread's uid and to nobody else on the host.
"""

from __future__ import annotations

from .dirs import MAX_DEPTH, data_dir_problem, own_private_dir, prepare_jobs_dir, secure_data_dir
from .ids import EXAMPLE, ThreadId, chat_id, jobs_dir, thread_dir_name, thread_id_from_dir, validate_thread_id
from .uids import UidRegistry, checked_job_uid, sample_uid, thread_uid

__all__ = ["EXAMPLE", "MAX_DEPTH", "ThreadId", "UidRegistry", "chat_id", "checked_job_uid", "data_dir_problem",
           "jobs_dir", "own_private_dir", "prepare_jobs_dir", "sample_uid", "secure_data_dir", "thread_dir_name",
           "thread_id_from_dir", "thread_uid", "validate_thread_id"]
