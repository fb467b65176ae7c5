"""The functions an agent (or the CLI, or the bot) calls to manage jobs.

Every input is validated before anything is saved: the thread id, the job name, the script (a ``.py``
file within the size cap that compiles), the schedule and the limits. A refusal is a
:class:`ValidationError` whose message says what to change; nothing is written when it is raised.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import artifacts, diskspace, jobsquota, pinning
from .egress import validate_hosts
from .errors import NotFound, ValidationError
from .schedule import AFTER_SENTINEL, parse_recurrence, parse_when, zone
from .settings import Settings
from .store import QUERIES, Database, check_schema, embedded_url, migrate
from .threads import prepare_jobs_dir, thread_dir_name, thread_uid, validate_thread_id

NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")
STATUSES = ("pending", "running", "completed", "failed", "cancelled")

# The columns `jobs --json` shows: the seed's names first, then the runner's.
PUBLIC_COLUMNS = (
    "id", "user_id", "thread_id", "name", "status", "due_time", "script_path", "recurrence",
    "created_at", "started_at", "completed_at", "error_message", "timezone", "cron", "attempts",
    "exit_code", "duration_ms", "timeout_seconds", "memory_mb", "cpus", "pids_limit", "allow_hosts", "paused",
    "after_job", "grace_seconds", "overlap", "retries", "retry_delay_seconds", "missed_runs", "skipped_note",
    "series_id", "script_sha256",
)


def validate_name(name: str) -> str:
    """A job name is ``[a-z0-9_-]{1,64}``: it names files in the thread's directory."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(
            f"job name {name!r} is not allowed: use 1 to 64 lower-case letters, digits, '_' or '-', e.g. 'check_price'"
        )
    return name


def check_script(source: bytes, filename: str, cap: int) -> str:
    """Return the script as text if it is within ``cap`` bytes, UTF-8, and compiles; else ValidationError."""
    if len(source) > cap:
        raise ValidationError(f"{filename} is {len(source)} bytes; the limit is {cap} bytes: make it smaller")
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{filename} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    try:
        compile(text, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        raise ValidationError(f"{filename} has a syntax error at {where}: {exc.msg}; fix it and schedule again") from None
    except ValueError as exc:  # e.g. a NUL byte in the source
        raise ValidationError(f"{filename} cannot be compiled: {exc}") from None
    return text


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A job row as JSON-ready data (ISO 8601 times with their offset)."""
    out: dict[str, Any] = {}
    for col in PUBLIC_COLUMNS:
        v = row.get(col)
        if col == "due_time" and row.get("after_job") and v is not None and v >= AFTER_SENTINEL:
            v = None  # waits for another job, not for a time
        elif isinstance(v, datetime):
            v = v.isoformat()
        elif col == "series_id" and v is not None:
            v = str(v)
        out[col] = v
    return out


@dataclass
class Policy:
    """Per-job policies; None means the documented default.

    ``grace_seconds``: a run missed while the runner was down still runs if less late than this (3600).
    ``overlap``: "skip" (default) skips slots that fall due while the previous run is running; "queue"
    runs the first of them right after it. ``retries``: failed runs are retried this often (0), waiting
    ``retry_delay_seconds`` (60), doubled each time; a timeout is a failure."""

    grace_seconds: int | None = None
    overlap: str | None = None
    retries: int | None = None
    retry_delay_seconds: int | None = None


@dataclass
class Limits:
    """Per-job limits; None means the operator's default."""

    timeout_seconds: int | None = None
    memory_mb: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None


class Jobs:
    """Job management against one database. Build with :func:`connect`."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db

    def close(self) -> None:
        """Close the database pool."""
        self.db.close()

    def __enter__(self) -> Jobs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- time zones ----------------------------------------------------------------------------------

    def thread_timezone(self, thread_id: str) -> str:
        """The thread's zone (set by /tz or :meth:`set_thread_timezone`), else the operator's default."""
        row = self.db.one("thread_timezone", {"thread_id": validate_thread_id(thread_id)})
        return (row and row["timezone"]) or self.settings.default_timezone

    def set_thread_timezone(self, thread_id: str, tz: str) -> str:
        """Set the zone used by a thread's schedules that name none."""
        zone(tz)
        self.db.all("set_thread_timezone", {"thread_id": validate_thread_id(thread_id), "timezone": tz})
        return tz

    # --- scheduling ----------------------------------------------------------------------------------

    def _limits(self, limits: Limits) -> dict[str, Any]:
        s = self.settings
        timeout = limits.timeout_seconds or s.timeout_seconds
        memory = limits.memory_mb or s.memory_mb
        cpus = limits.cpus or s.cpus
        pids = limits.pids_limit or s.pids_limit
        if not 1 <= timeout <= s.max_timeout_seconds:
            raise ValidationError(f"timeout {timeout} s is outside 1..{s.max_timeout_seconds} s (the operator's maximum)")
        if not 16 <= memory <= s.max_memory_mb:
            raise ValidationError(f"memory {memory} MiB is outside 16..{s.max_memory_mb} MiB (the operator's maximum)")
        if not 0.01 <= cpus <= max(s.cpus, 1.0) * 4:
            raise ValidationError(f"cpus {cpus} is outside 0.01..{max(s.cpus, 1.0) * 4}")
        if not 8 <= pids <= max(s.pids_limit, 64) * 4:
            raise ValidationError(f"process limit {pids} is outside 8..{max(s.pids_limit, 64) * 4}")
        return {"timeout_seconds": timeout, "memory_mb": memory, "cpus": cpus, "pids_limit": pids}

    def _policy(self, policy: Policy) -> dict[str, Any]:
        grace = self.settings.grace_seconds if policy.grace_seconds is None else policy.grace_seconds
        overlap = policy.overlap or "skip"
        retries = 0 if policy.retries is None else policy.retries
        delay = 60 if policy.retry_delay_seconds is None else policy.retry_delay_seconds
        if overlap not in ("skip", "queue"):
            raise ValidationError(f"overlap {overlap!r} is not 'skip' or 'queue'")
        if not 0 <= grace <= 7 * 86400:
            raise ValidationError(f"grace period {grace} s is outside 0..604800 s (a week)")
        if not 0 <= retries <= 10:
            raise ValidationError(f"retries {retries} is outside 0..10")
        if not 0 <= delay <= 86400:
            raise ValidationError(f"retry delay {delay} s is outside 0..86400 s")
        return {"grace_seconds": grace, "overlap": overlap, "retries": retries, "retry_delay_seconds": delay}

    def update_job(self, job_id: int, thread_id: str | None = None, *, at: str | None = None,
                   every: str | None = None, tz: str | None = None, limits: Limits | None = None,
                   allow_hosts: Sequence[str] | None = None, policy: Policy | None = None,
                   now: datetime | None = None) -> dict[str, Any]:
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
            from .schedule import Recurrence

            due = Recurrence(text=recurrence or "", cron=cron).next_after(now, tzinfo)
        old = Limits(row["timeout_seconds"], row["memory_mb"], row["cpus"], row["pids_limit"])
        new = limits or Limits()
        lim = self._limits(Limits(*(n if n is not None else o for n, o in zip(
            (new.timeout_seconds, new.memory_mb, new.cpus, new.pids_limit),
            (old.timeout_seconds, old.memory_mb, old.cpus, old.pids_limit), strict=True))))
        p = policy or Policy()
        pol = self._policy(Policy(
            grace_seconds=row["grace_seconds"] if p.grace_seconds is None else p.grace_seconds,
            overlap=p.overlap or row["overlap"], retries=row["retries"] if p.retries is None else p.retries,
            retry_delay_seconds=row["retry_delay_seconds"] if p.retry_delay_seconds is None else p.retry_delay_seconds))
        hosts = row["allow_hosts"] if allow_hosts is None else validate_hosts(allow_hosts, self.settings.egress_allow)
        done = self.db.one("update_pending", {"id": row["id"], "due_time": due, "recurrence": recurrence, "cron": cron,
                                              "timezone": tz_name, "allow_hosts": hosts, **lim, **pol})
        if done is None:
            raise ValidationError(f"job {job_id} started meanwhile; try again when it has finished")
        return done

    def schedule_job(
        self, *, thread_id: str, name: str, script: str | os.PathLike[str] | None = None,
        script_text: str | None = None, at: str | None = None, every: str | None = None,
        tz: str | None = None, limits: Limits | None = None, user_id: str = "",
        allow_hosts: Sequence[str] = (), after: str | None = None, policy: Policy | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Validate and save a job, copying its script into ``<thread>/jobs/<name>.py``.

        ``script`` is a path to read, ``script_text`` the source itself (give one). ``at`` is a
        one-off time ("now", "in 5 minutes", "tomorrow 9am", ISO 8601); ``every`` a recurrence
        ("daily 9am", "hourly", a cron line). With ``every`` and no ``at`` the first run is the
        recurrence's next time; with neither it is now. ``allow_hosts`` grants HTTP(S) to those host
        names through an egress proxy (wildcards like ``*.example.com``); without it the job has no network.
        """
        validate_thread_id(thread_id)
        validate_name(name)
        now = now or datetime.now(UTC)
        tz_name = tz or self.thread_timezone(thread_id)
        tzinfo = zone(tz_name)
        rec = parse_recurrence(every) if every else None
        if after is not None:
            validate_name(after)
            if at or every:
                raise ValidationError("--after starts a job when another completes: give it no --at or --every")
            if after == name:
                raise ValidationError("a job cannot run after itself")
            if self.db.one("job_named", {"thread_id": thread_id, "name": after}) is None:
                raise ValidationError(f"there is no job named {after!r} in thread {thread_id} to run after: "
                                      "schedule it first (runner jobs lists them)")
            due = AFTER_SENTINEL
        elif at:
            due = parse_when(at, now, tzinfo)
        elif rec:
            due = rec.next_after(now, tzinfo)
        else:
            due = now
        lim = self._limits(limits or Limits())
        pol = self._policy(policy or Policy())
        hosts = validate_hosts(allow_hosts, self.settings.egress_allow)
        source = self._read_source(script, script_text)
        filename = f"{name}.py"
        check_script(source, filename, self.settings.script_cap)
        self._write_script(thread_id, filename, source)
        with self.db.transaction() as conn:
            conn.execute(QUERIES["ensure_thread"], {"thread_id": thread_id, "user_id": user_id})
            row = conn.execute(QUERIES["insert_job"], {
                "user_id": user_id, "thread_id": thread_id, "name": name, "due_time": due,
                "script_path": f"jobs/{filename}", "recurrence": rec.text if rec else None,
                "cron": rec.cron if rec else None, "timezone": tz_name, "allow_hosts": hosts, "after_job": after,
                "script_sha256": pinning.digest(source), **lim, **pol,
            }).fetchone()
        assert row is not None
        return row

    def approve_script(self, job_id: int, thread_id: str | None = None, *,
                       script: str | os.PathLike[str] | None = None, script_text: str | None = None,
                       sha256: str | None = None) -> dict[str, Any]:
        """Approve the script a job runs (it runs no other: see :mod:`runner.pinning`).

        With ``script`` (a path) or ``script_text``, that new version is checked, saved as
        ``jobs/<name>.py`` and approved. With neither, the file now in ``jobs/<name>.py`` is approved
        (read without following links); ``sha256`` (all of it or its first 8+ digits, as a refusal
        shows it) then makes sure it is the version you looked at. The same checks as scheduling apply.
        Returns ``{"job": row, "sha256": hex, "script_path": ...}``."""
        row = self.get_job(job_id, thread_id)
        filename = Path(row["script_path"]).name
        given = script is not None or script_text is not None
        source = self._read_source(script, script_text) if given else self._read_current(row["thread_id"], filename)
        check_script(source, filename, self.settings.script_cap)
        found = pinning.digest(source)
        if not given and not pinning.matches(found, sha256):
            raise ValidationError(f"{row['script_path']} is not the version given: its sha256 is "
                                  f"{found[:pinning.SHORT]}, not {sha256}; look at it again before approving it")
        with self.db.transaction() as conn:
            rows = conn.execute(QUERIES["lock_series"], {"series_id": row["series_id"]}).fetchall()
            if any(r["status"] == "running" for r in rows):
                raise ValidationError(f"job {job_id} is running right now; approve its script when it has finished")
            conn.execute(QUERIES["approve_series"], {"series_id": row["series_id"], "script_sha256": found})
            if given:
                self._write_script(row["thread_id"], filename, source)
        return {"job": self.get_job(row["id"]), "sha256": found, "script_path": row["script_path"]}

    def read_job_script(self, job_id: int, thread_id: str | None = None) -> tuple[str, str]:
        """The text now in a job's ``jobs/<name>.py`` (read without following links; invalid UTF-8
        replaced) and its sha256, so a person can look at it before approving it."""
        row = self.get_job(job_id, thread_id)
        source = self._read_current(row["thread_id"], Path(row["script_path"]).name)
        return source.decode("utf-8", errors="replace"), pinning.digest(source)

    def _read_current(self, thread_id: str, filename: str) -> bytes:
        """A job's script as it is now in the thread's jobs/ (written by anyone: read as hostile)."""
        try:
            with artifacts.open_dir(self.settings.data_dir, thread_dir_name(thread_id), "jobs") as dfd:
                got = artifacts.read_capped(dfd, filename, self.settings.script_cap)
        except (artifacts.UnsafeFile, FileNotFoundError) as exc:
            raise ValidationError(f"jobs/{filename} cannot be read safely ({exc}); give the script: --script FILE") from None
        if got is None:
            raise ValidationError(f"jobs/{filename} does not exist; give the script: --script FILE")
        if got.truncated:
            raise ValidationError(f"jobs/{filename} is {got.size} bytes; the limit is {self.settings.script_cap} bytes")
        return got.data

    def _read_source(self, script: str | os.PathLike[str] | None, script_text: str | None) -> bytes:
        if (script is None) == (script_text is None):
            raise ValidationError("give the script either as a path or as text (exactly one)")
        if script_text is not None:
            return script_text.encode("utf-8")
        path = Path(script)  # type: ignore[arg-type]
        if path.suffix != ".py":
            raise ValidationError(f"{path} is not a .py file: a job is a Python script")
        try:
            with open(path, "rb") as f:  # the caller's own file, not one a job wrote
                data = f.read(self.settings.script_cap + 1)
        except FileNotFoundError:
            raise ValidationError(f"script {path} does not exist: check the path") from None
        except IsADirectoryError:
            raise ValidationError(f"{path} is a directory, not a script") from None
        except OSError as exc:
            raise ValidationError(f"cannot read {path}: {exc.strerror}") from None
        return data

    def _write_script(self, thread_id: str, filename: str, source: bytes) -> None:
        """Write ``jobs/<name>.py`` atomically: a temporary file of an unguessable name, then a rename
        that replaces whatever a job left at that name (a file, a link, a FIFO, a directory tree).

        A file system that refuses the write (full: ENOSPC) is a one-line RunnerError saying so and what
        to do, and the temporary file is gone: the old script, if any, is left as it was."""
        data_dir = self.settings.data_dir
        try:
            prepare_jobs_dir(data_dir, thread_id, thread_uid(self.db, thread_id, self.settings.uid_range),
                             jobsquota.from_settings(self.settings))
            with artifacts.open_dir(data_dir, thread_dir_name(thread_id), "jobs") as dfd:
                self._write_and_rename(dfd, filename, source)
        except OSError as exc:
            raise diskspace.refuse_write(data_dir, f"jobs/{filename}", exc,
                                         data_dir / thread_dir_name(thread_id) / "jobs") from None
        except artifacts.UnsafeFile as exc:
            raise ValidationError(f"cannot save jobs/{filename}: {exc}; nothing was saved") from None

    def _write_and_rename(self, dfd: int, filename: str, source: bytes) -> None:
        tmp = f".{filename}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
        try:
            try:
                view = memoryview(source)
                while view:  # a write on a nearly full file system may be short: never save half a script
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._clear_script_name(dfd, filename)
            os.rename(tmp, filename, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a link, never follows it
        except BaseException:
            artifacts.remove(dfd, tmp)
            raise

    @staticmethod
    def _clear_script_name(dfd: int, filename: str) -> None:
        """Remove a directory a job made at the script's name (a rename cannot replace it)."""
        try:
            st = os.stat(filename, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            try:
                artifacts.remove(dfd, filename)
            except (artifacts.UnsafeFile, OSError) as exc:
                raise ValidationError(f"jobs/{filename} is a directory a job left and it could not be removed "
                                      f"({exc}): remove it, or give the job another name") from None

    # --- reading and changing ------------------------------------------------------------------------

    def list_jobs(self, thread_id: str | None = None, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Jobs (one row per run), newest first, optionally of one thread and one status."""
        if thread_id is not None:
            validate_thread_id(thread_id)
        if status and status not in STATUSES:
            raise ValidationError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        return self.db.all("list_jobs", {"thread_id": thread_id, "status": status or None, "limit": limit})

    def get_job(self, job_id: int, thread_id: str | None = None) -> dict[str, Any]:
        """One job; NotFound if it does not exist (or belongs to another thread than ``thread_id``)."""
        row = self.db.one("get_job", {"id": int(job_id)})
        if row is None or (thread_id is not None and row["thread_id"] != thread_id):
            raise NotFound(f"no such job: {job_id} (list them with: runner jobs)")
        return row

    def get_job_logs(self, job_id: int, thread_id: str | None = None) -> dict[str, Any]:
        """A run's status, exit code, reason, output tail and messages."""
        row = self.get_job(job_id, thread_id)
        messages = self.db.all("messages_for_job", {"job_id": row["id"]})
        return {
            "id": row["id"], "name": row["name"], "status": row["status"], "exit_code": row["exit_code"],
            "error_message": row["error_message"], "duration_ms": row["duration_ms"],
            "output_tail": row["output_tail"], "output_truncated": row["output_truncated"],
            "messages": [{"id": m["id"], "kind": m["kind"], "status": m["status"], "text": m["text"],
                          "error": m["last_error"]} for m in messages],
        }

    def cancel_job(self, job_id: int, thread_id: str | None = None) -> dict[str, Any]:
        """Cancel a pending job (and so its series). A running job finishes but does not recur."""
        row = self.get_job(job_id, thread_id)
        if row["status"] == "pending":
            done = self.db.one("cancel_pending", {"id": row["id"]})
            if done:
                return done
            row = self.get_job(job_id, thread_id)  # it started meanwhile
        if row["status"] == "running":
            stopped = self.db.one("stop_recurring", {"id": row["id"]})
            return stopped or self.get_job(job_id, thread_id)
        raise ValidationError(f"job {job_id} is already {row['status']}; only a pending or running job can be cancelled")


    def pause_job(self, job_id: int, thread_id: str | None = None) -> dict[str, Any]:
        """Pause a pending job: it keeps its place but is not run until resumed."""
        return self._set_paused(job_id, thread_id, True)

    def resume_job(self, job_id: int, thread_id: str | None = None) -> dict[str, Any]:
        """Resume a paused job (if its time has passed meanwhile, it runs now)."""
        return self._set_paused(job_id, thread_id, False)

    def _set_paused(self, job_id: int, thread_id: str | None, paused: bool) -> dict[str, Any]:
        row = self._pending_of(job_id, thread_id)
        done = self.db.one("set_paused", {"id": row["id"], "paused": paused})
        if done is None:
            raise ValidationError(f"job {job_id} is not pending any more; nothing to {'pause' if paused else 'resume'}")
        return done

    def run_job_now(self, job_id: int, thread_id: str | None = None) -> dict[str, Any]:
        """Run a job now. A pending run is moved to now (a recurring job then continues on its
        schedule); a finished one-off job runs again as a new run."""
        row = self.get_job(job_id, thread_id)
        if row["status"] == "running":
            raise ValidationError(f"job {job_id} is running right now")
        if row["status"] != "pending" and row["cron"]:
            live = self.db.one("pending_of_series", {"series_id": row["series_id"]})
            if live is not None and live["status"] == "pending":
                row = live
            elif live is not None:
                raise ValidationError(f"job {job_id} is running right now")
        if row["status"] == "pending":
            done = self.db.one("run_now", {"id": row["id"]})
            if done is not None:
                return done
        copy = self.db.one("copy_as_one_off", {"id": row["id"]})
        assert copy is not None
        return copy

    def job_runs(self, job_id: int, thread_id: str | None = None, limit: int = 5) -> list[dict[str, Any]]:
        """The latest runs of a job's series, newest first."""
        row = self.get_job(job_id, thread_id)
        return self.db.all("runs_of_series", {"series_id": row["series_id"], "limit": limit})

    def _pending_of(self, job_id: int, thread_id: str | None) -> dict[str, Any]:
        row = self.get_job(job_id, thread_id)
        if row["status"] == "pending":
            return row
        if row["cron"]:
            live = self.db.one("pending_of_series", {"series_id": row["series_id"]})
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
