"""The one owner of the runner's tables: every read and write of jobs, runs, outbox, threads, tokens and files.

Modelled on procrastinate's ``JobManager``: the loop, the service layer and the deliverers call
:class:`Store` methods named for what they mean, and none of them sees SQL. The queries are named
blocks in ``sql/*.sql``, one file per part; each part of the class lives in a module of its own
(``jobs``, ``runs``, ``outbox``, ``threads``, ``tokens``, ``messages``, ``stats``, ``overview``,
``files``) so that no module holds several concepts, and the class
is their sum. ``database`` holds the pool and the LISTEN waker, ``migrations`` the schema.
"""

from __future__ import annotations

from .database import JOBS_CHANNEL, OUTBOX_CHANNEL, QUERIES, Database, Waker, load_queries, translate_errors
from .embedded import embedded_url
from .files import FileRead, FilesStore, StoredFile
from .jobs import JobsStore
from .messages import MessagesStore
from .migrations import MIGRATIONS_DIR, check_schema, migrate, migration_files, schema_versions
from .outbox import OutboxStore
from .overview import OverviewStore
from .runs import RunsStore
from .stats import StatsStore
from .threads import ThreadsStore
from .tokens import TokensStore


class Store(JobsStore, RunsStore, OutboxStore, ThreadsStore, TokensStore, MessagesStore, StatsStore, OverviewStore,
            FilesStore):
    """Every read and write of the runner's tables, over one :class:`Database`."""


__all__ = ["JOBS_CHANNEL", "MIGRATIONS_DIR", "OUTBOX_CHANNEL", "QUERIES", "Database", "FileRead", "FilesStore", "Store",
           "StoredFile", "Waker",
           "check_schema", "embedded_url", "load_queries", "migrate", "migration_files", "schema_versions",
           "translate_errors"]
