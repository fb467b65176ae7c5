"""The service layer: what every interface (the CLI, the bot, the agent's tools, the HTTP API) calls to
manage jobs.

Every input is validated before anything is saved: the thread id (parsed once into a
:class:`~runner.threads.ThreadId`), the job name, the script (a ``.py`` file within the size cap that
compiles), the schedule and the limits. A refusal is a :class:`ValidationError` whose message says what
to change; nothing is written when it is raised. Reads and writes go through the :class:`Store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .. import pinning
from ..egress import validate_hosts
from ..errors import NotFound, ValidationError
from ..schedule import AFTER_SENTINEL, Recurrence, parse_recurrence, parse_when, zone
from ..settings import Settings
from ..statuses import STATUSES
from ..store import Database, Store, check_schema, embedded_url, migrate
from ..threads import ThreadId
from .filestore import file_backend
from .scripts import ScriptPath
from .validate import Limits, Policy, check_script, overlay, resolve_limits, resolve_policy, validate_name
from .views import logs_view

Row = dict[str, Any]
Thread = ThreadId | str

LIST_LIMIT = 200  # runs a listing shows unless told otherwise
RUNS_LIMIT = 5  # runs of a series a job's detail shows


def _thread(thread_id: Thread | None) -> ThreadId | None:
    return None if thread_id is None else ThreadId.parse(thread_id)


class Jobs:
    """Job management against one store. Build with :func:`connect`."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self.store = Store(db)
        self.scripts, self.files = file_backend(settings, self.store)  # RUNNER_FILES: the directory or the database

    def close(self) -> None:
        """Close the database pool."""
        self.db.close()

    def __enter__(self) -> Jobs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- time zones ----------------------------------------------------------------------------------

    def thread_timezone(self, thread_id: Thread) -> str:
        """The thread's zone (set by /tz or :meth:`set_thread_timezone`), else the operator's default."""
        return self.store.thread_timezone(str(ThreadId.parse(thread_id))) or self.settings.default_timezone

    def set_thread_timezone(self, thread_id: Thread, tz: str) -> str:
        """Set the zone used by a thread's schedules that name none."""
        zone(tz)
        self.store.set_thread_timezone(str(ThreadId.parse(thread_id)), tz)
        return tz

    # --- scheduling ----------------------------------------------------------------------------------

    def schedule_job(
        self, *, thread_id: Thread, name: str, script: ScriptPath | None = None,
        script_text: str | None = None, at: str | None = None, every: str | None = None,
        tz: str | None = None, limits: Limits | None = None, user_id: str = "",
        allow_hosts: Sequence[str] = (), after: str | None = None, policy: Policy | None = None,
        now: datetime | None = None,
    ) -> Row:
        """Validate and save a job, copying its script into ``<thread>/jobs/<name>.py``.

        ``script`` is a path to read, ``script_text`` the source itself (give one). ``at`` is a
        one-off time ("now", "in 5 minutes", "tomorrow 9am", ISO 8601); ``every`` a recurrence
        ("daily 9am", "hourly", a cron line). With ``every`` and no ``at`` the first run is the
        recurrence's next time; with neither it is now. ``allow_hosts`` grants HTTP(S) to those host
        names through an egress proxy (wildcards like ``*.example.com``); without it the job has no network.
        """
        thread = ThreadId.parse(thread_id)
        validate_name(name)
        tz_name = tz or self.thread_timezone(thread)
        tzinfo = zone(tz_name)
        rec = parse_recurrence(every) if every else None
        if after is not None:
            self._check_after(thread, name, after, at, every)
        due = AFTER_SENTINEL if after is not None else self._first_due(at, rec, now or datetime.now(UTC), tzinfo)
        lim = resolve_limits(self.settings, limits or Limits())
        pol = resolve_policy(self.settings, policy or Policy())
        hosts = validate_hosts(allow_hosts, self.settings.egress_allow)
        source = self.scripts.read_given(script, script_text)
        filename = f"{name}.py"
        check_script(source, filename, self.settings.script_cap)
        self.scripts.write(thread, filename, source)
        return self.store.schedule_job({
            "user_id": user_id, "thread_id": str(thread), "name": name, "due_time": due,
            "script_path": f"jobs/{filename}", "recurrence": rec.text if rec else None,
            "cron": rec.cron if rec else None, "timezone": tz_name, "allow_hosts": hosts, "after_job": after,
            "script_sha256": pinning.digest(source), **lim, **pol,
        })

    @staticmethod
    def _first_due(at: str | None, rec: Recurrence | None, now: datetime, tzinfo: ZoneInfo) -> datetime:
        if at:
            return parse_when(at, now, tzinfo)
        if rec:
            return rec.next_after(now, tzinfo)
        return now

    def _check_after(self, thread: ThreadId, name: str, after: str, at: str | None, every: str | None) -> None:
        validate_name(after)
        if at or every:
            raise ValidationError("--after starts a job when another completes: give it no --at or --every")
        if after == name:
            raise ValidationError("a job cannot run after itself")
        if not self.store.has_job_named(str(thread), after):
            raise ValidationError(f"there is no job named {after!r} in thread {thread} to run after: "
                                  "schedule it first (runner jobs lists them)")

    def update_job(self, job_id: int, thread_id: Thread | None = None, *, at: str | None = None,
                   every: str | None = None, tz: str | None = None, limits: Limits | None = None,
                   allow_hosts: Sequence[str] | None = None, policy: Policy | None = None,
                   now: datetime | None = None) -> Row:
        """Change the schedule, zone, limits, grant or policies of a job's pending run, keeping its
        history (the series stays the same). Only what is given changes; ``every=""`` makes it one-off."""
        row = self._pending_of(job_id, thread_id)
        now = now or datetime.now(UTC)
        tz_name = tz or row["timezone"]
        tzinfo = zone(tz_name)
        recurrence, cron = row["recurrence"], row["cron"]
        if every is not None:
            rec = parse_recurrence(every) if every else None
            recurrence, cron = (rec.text, rec.cron) if rec else (None, None)
        due = row["due_time"]
        if at:
            due = parse_when(at, now, tzinfo)
        elif (every or tz) and cron:
            due = Recurrence(text=recurrence or "", cron=cron).next_after(now, tzinfo)
        p = policy or Policy()
        given = Policy(p.grace_seconds, p.overlap or None, p.retries, p.retry_delay_seconds)
        lim = resolve_limits(self.settings, overlay(limits or Limits(), Limits.of(row)))
        pol = resolve_policy(self.settings, overlay(given, Policy.of(row)))
        hosts = row["allow_hosts"] if allow_hosts is None else validate_hosts(allow_hosts, self.settings.egress_allow)
        done = self.store.update_pending(row["id"], {"due_time": due, "recurrence": recurrence, "cron": cron,
                                                     "timezone": tz_name, "allow_hosts": hosts, **lim, **pol})
        if done is None:
            raise ValidationError(f"job {job_id} started meanwhile; try again when it has finished")
        return done

    # --- the script a job runs -----------------------------------------------------------------------

    def approve_script(self, job_id: int, thread_id: Thread | None = None, *,
                       script: ScriptPath | None = None, script_text: str | None = None,
                       sha256: str | None = None) -> dict[str, Any]:
        """Approve the script a job runs (it runs no other: see :mod:`runner.pinning`).

        With ``script`` (a path) or ``script_text``, that new version is checked, saved as
        ``jobs/<name>.py`` and approved. With neither, the file now in ``jobs/<name>.py`` is approved
        (read without following links); ``sha256`` (all of it or its first 8+ digits, as a refusal
        shows it) then makes sure it is the version you looked at. The same checks as scheduling apply.
        Returns ``{"job": row, "sha256": hex, "script_path": ...}``."""
        row = self.get_job(job_id, thread_id)
        thread, filename = ThreadId.parse(row["thread_id"]), Path(row["script_path"]).name
        given = script is not None or script_text is not None
        source = self.scripts.read_given(script, script_text) if given else self.scripts.read_current(thread, filename)
        check_script(source, filename, self.settings.script_cap)
        found = pinning.digest(source)
        if not given and not pinning.matches(found, sha256):
            raise ValidationError(f"{row['script_path']} is not the version given: its sha256 is "
                                  f"{found[:pinning.SHORT]}, not {sha256}; look at it again before approving it")
        write = (lambda conn: self.scripts.write(thread, filename, source, conn)) if given else None
        if not self.store.approve_series(row["series_id"], found, before_commit=write):
            raise ValidationError(f"job {job_id} is running right now; approve its script when it has finished")
        return {"job": self.get_job(row["id"]), "sha256": found, "script_path": row["script_path"]}

    def read_job_script(self, job_id: int, thread_id: Thread | None = None) -> tuple[str, str]:
        """The text now in a job's ``jobs/<name>.py`` (read without following links; invalid UTF-8
        replaced) and its sha256, so a person can look at it before approving it."""
        row = self.get_job(job_id, thread_id)
        source = self.scripts.read_current(ThreadId.parse(row["thread_id"]), Path(row["script_path"]).name)
        return source.decode("utf-8", errors="replace"), pinning.digest(source)

    # --- reading -------------------------------------------------------------------------------------

    def list_jobs(self, thread_id: Thread | None = None, status: str | None = None,
                  limit: int = LIST_LIMIT) -> list[Row]:
        """Jobs (one row per run), newest first, optionally of one thread and one status."""
        thread = _thread(thread_id)
        if status and status not in STATUSES:
            raise ValidationError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        return self.store.list_jobs(None if thread is None else str(thread), status or None, limit)

    def jobs_page(self, thread_id: Thread, status: str | None = None, limit: int = LIST_LIMIT,
                  before: int | None = None) -> tuple[list[Row], int | None]:
        """A page of a thread's jobs (one row per run), newest first, with ids below the cursor ``before``
        (None: the newest), and the cursor of the next page (None: this is the last)."""
        thread = ThreadId.parse(thread_id)
        if status and status not in STATUSES:
            raise ValidationError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        rows = self.store.thread_jobs_page(str(thread), status or None, limit + 1, before)
        return rows[:limit], (rows[limit - 1]["id"] if len(rows) > limit else None)

    def get_job(self, job_id: int, thread_id: Thread | None = None) -> Row:
        """One job; NotFound if it does not exist (or belongs to another thread than ``thread_id``)."""
        row = self.store.get_job(int(job_id))
        if row is None or (thread_id is not None and row["thread_id"] != str(thread_id)):
            raise NotFound(f"no such job: {job_id} (list them with: runner jobs)")
        return row

    def get_job_logs(self, job_id: int, thread_id: Thread | None = None) -> dict[str, Any]:
        """A run's status, exit code, reason, output tail and messages."""
        row = self.get_job(job_id, thread_id)
        return logs_view(row, self.store.job_messages(row["id"]))

    def job_runs(self, job_id: int, thread_id: Thread | None = None, limit: int = RUNS_LIMIT,
                 before: int | None = None) -> list[Row]:
        """The latest runs of a job's series (with ids below ``before``, if given), newest first."""
        row = self.get_job(job_id, thread_id)
        return self.store.runs_of_series(row["series_id"], limit, before)

    # --- changing ------------------------------------------------------------------------------------

    def cancel_job(self, job_id: int, thread_id: Thread | None = None) -> Row:
        """Cancel a pending job (and so its series). A running job finishes but does not recur."""
        row = self.get_job(job_id, thread_id)
        if row["status"] == "pending":
            done = self.store.cancel_pending(row["id"])
            if done:
                return done
            row = self.get_job(job_id, thread_id)  # it started meanwhile
        if row["status"] == "running":
            stopped = self.store.stop_recurring(row["id"])
            return stopped or self.get_job(job_id, thread_id)
        raise ValidationError(f"job {job_id} is already {row['status']}; only a pending or running job can be cancelled")

    def pause_job(self, job_id: int, thread_id: Thread | None = None) -> Row:
        """Pause a pending job: it keeps its place but is not run until resumed."""
        return self._set_paused(job_id, thread_id, True)

    def resume_job(self, job_id: int, thread_id: Thread | None = None) -> Row:
        """Resume a paused job (if its time has passed meanwhile, it runs now)."""
        return self._set_paused(job_id, thread_id, False)

    def _set_paused(self, job_id: int, thread_id: Thread | None, paused: bool) -> Row:
        row = self._pending_of(job_id, thread_id)
        done = self.store.set_paused(row["id"], paused)
        if done is None:
            raise ValidationError(f"job {job_id} is not pending any more; nothing to {'pause' if paused else 'resume'}")
        return done

    def run_job_now(self, job_id: int, thread_id: Thread | None = None) -> Row:
        """Run a job now. A pending run is moved to now (a recurring job then continues on its
        schedule); a finished one-off job runs again as a new run."""
        row = self.get_job(job_id, thread_id)
        if row["status"] == "running":
            raise ValidationError(f"job {job_id} is running right now")
        if row["status"] != "pending" and row["cron"]:
            live = self.store.live_run_of_series(row["series_id"])
            if live is not None and live["status"] == "pending":
                row = live
            elif live is not None:
                raise ValidationError(f"job {job_id} is running right now")
        if row["status"] == "pending":
            done = self.store.run_pending_now(row["id"])
            if done is not None:
                return done
        return self.store.copy_as_one_off(row["id"])

    def _pending_of(self, job_id: int, thread_id: Thread | None) -> Row:
        row = self.get_job(job_id, thread_id)
        if row["status"] == "pending":
            return row
        if row["cron"]:
            live = self.store.live_run_of_series(row["series_id"])
            if live is not None and live["status"] == "pending":
                return live
        raise ValidationError(f"job {job_id} is {row['status']}; only a pending job can be paused or resumed")


def connect(settings: Settings | None = None, *, apply_migrations: bool = False) -> Jobs:
    """Open the job store: DATABASE_URL, or the embedded Postgres when it is unset.

    Only ``runner up`` passes ``apply_migrations=True`` (and ``runner migrate`` migrates by itself);
    everyone else gets a ConfigError saying to run ``runner migrate`` when the schema is not this runner's."""
    settings = settings or Settings.from_env()
    url = settings.database_url or embedded_url(settings.embedded_pg_dir)
    if apply_migrations:
        migrate(url)
    else:
        check_schema(url)
    return Jobs(settings, Database(url, max_size=settings.concurrency + 4))
