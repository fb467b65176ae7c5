"""Settings: one frozen dataclass built from the environment. Secrets are hidden from ``repr``."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from .egress import parse_pins, unusable_outer_network
from .errors import ConfigError, ScheduleError, ValidationError
from .filerules import parse_mode as parse_files_mode
from .jobsquota import parse_mode as parse_quota_mode
from .schedule import zone
from .webhook import UrlPolicy, format_allowed_address

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small (at least {minimum})")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small (at least {minimum})")
    return value


def _default(name: str) -> object:
    return Settings.__dataclass_fields__[name].default


def _list(env: dict[str, str], name: str, default: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in env.get(name, default).split(",") if p.strip())


def _user_ids(env: dict[str, str]) -> frozenset[int]:
    ids = set()
    for part in _list(env, "TELEGRAM_ALLOWED_USERS", ""):
        try:
            ids.add(int(part))
        except ValueError:
            raise ConfigError(f"TELEGRAM_ALLOWED_USERS: {part!r} is not a Telegram user id (a number)") from None
    return frozenset(ids)


def _check_copied_runs(s: Settings) -> None:
    if s.files == "postgres" and s.thread_concurrency > 1:
        raise ConfigError(f"RUNNER_THREAD_CONCURRENCY={s.thread_concurrency} cannot be used with RUNNER_FILES=postgres: "
                          "each run gets a copy of its thread's files and writes its changes back at its end, so "
                          "two runs of one thread at once would overwrite each other's; set it to 1")


def _check_request_timeout(s: Settings) -> None:
    t = s.telegram_request_timeout
    if t is not None and t >= s.lease_seconds / 2:
        raise ConfigError(f"TELEGRAM_REQUEST_TIMEOUT={t:g} must be shorter than half of RUNNER_LEASE_SECONDS "
                          f"({s.lease_seconds}): a send must end before its message's lease can run out; "
                          f"lower it or raise RUNNER_LEASE_SECONDS")


UID_RANGE_DEFAULT = "200000-299999"


def _uid_range(env: dict[str, str]) -> tuple[int, int]:
    """RUNNER_UID_RANGE "first-last": the host uids (and gids) given to threads, one each."""
    raw = env.get("RUNNER_UID_RANGE", "").strip() or UID_RANGE_DEFAULT
    first, sep, last = raw.partition("-")
    hint = f"RUNNER_UID_RANGE={raw!r}: give two uids first-last that no host user has, such as {UID_RANGE_DEFAULT}"
    if not (sep and first.strip().isdigit() and last.strip().isdigit()):
        raise ConfigError(hint)
    lo, hi = int(first), int(last)
    if lo < 1000 or hi >= 2**31 - 1 or hi < lo + 1:
        raise ConfigError(f"{hint} (at least 1000, below 2147483647, at least two uids: the last is doctor's)")
    return lo, hi


def _blocked_networks(env: dict[str, str]) -> tuple[str, ...]:
    """RUNNER_EGRESS_BLOCK plus the database's address when it is an IP (the proxy must never reach it)."""
    nets = list(_list(env, "RUNNER_EGRESS_BLOCK", ""))
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"RUNNER_EGRESS_BLOCK: {net!r} is not a network such as 203.0.113.0/24") from None
    host = urlsplit(env.get("DATABASE_URL", "")).hostname
    try:
        if host:
            nets.append(str(ipaddress.ip_network(host)))
    except ValueError:
        pass  # a host name: the private ranges cover the usual cases
    return tuple(nets)


def _pins(env: dict[str, str]) -> tuple[str, ...]:
    """RUNNER_EGRESS_HOSTS, normalised to name=address (the older name:IPv4 is still read)."""
    try:
        return tuple(f"{name}={address}" for name, address in parse_pins(_list(env, "RUNNER_EGRESS_HOSTS", "")))
    except ValueError as exc:
        raise ConfigError(f"RUNNER_EGRESS_HOSTS: {exc}") from None


def _trusted_proxies(env: dict[str, str]) -> tuple[str, ...]:
    """RUNNER_HTTP_TRUSTED_PROXIES: the reverse proxies (addresses or networks) whose X-Forwarded-For
    names the client; none by default, so no client can choose the address its failures count against."""
    out = []
    for raw in _list(env, "RUNNER_HTTP_TRUSTED_PROXIES", ""):
        try:
            out.append(str(ipaddress.ip_network(raw, strict=False)))
        except ValueError:
            raise ConfigError(f"RUNNER_HTTP_TRUSTED_PROXIES: {raw!r} is not an IP address or network "
                              "(list your reverse proxy's address, such as 127.0.0.1 or 172.18.0.0/16)") from None
    return tuple(out)


def _allowed_addresses(env: dict[str, str]) -> tuple[str, ...]:
    """RUNNER_EGRESS_ALLOW_ADDRESSES: single addresses the proxy may reach although they are blocked."""
    out = []
    for raw in _list(env, "RUNNER_EGRESS_ALLOW_ADDRESSES", ""):
        try:
            out.append(str(ipaddress.ip_address(raw)))
        except ValueError:
            raise ConfigError(f"RUNNER_EGRESS_ALLOW_ADDRESSES: {raw!r} is not one IP address "
                              "(list each address, such as 198.51.100.7; networks are not allowed back)") from None
    return tuple(out)


def _webhook_addresses(env: dict[str, str]) -> tuple[str, ...]:
    """RUNNER_WEBHOOK_ALLOW_ADDRESSES: addresses or networks a webhook may reach although they are special."""
    out = []
    for raw in _list(env, "RUNNER_WEBHOOK_ALLOW_ADDRESSES", ""):
        try:
            out.append(format_allowed_address(raw))
        except ValueError:
            raise ConfigError(f"RUNNER_WEBHOOK_ALLOW_ADDRESSES: {raw!r} is not an IP address or network with "
                              "an optional port (such as 127.0.0.1:9000, [::1]:9000, 10.0.0.0/8 for ports 80 "
                              "and 443, or 10.0.0.0/8:* for every port)") from None
    return tuple(out)


def _webhook_channels(env: dict[str, str]) -> tuple[str, ...]:
    """RUNNER_WEBHOOK_CHANNELS: channel=url pairs (``api=https://hooks.example.com/runner``)."""
    out = []
    for raw in _list(env, "RUNNER_WEBHOOK_CHANNELS", ""):
        channel, sep, url = raw.partition("=")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", channel.strip()) or not url.strip():
            raise ConfigError(f"RUNNER_WEBHOOK_CHANNELS: {raw!r} is not channel=url (such as "
                              "api=https://hooks.example.com/runner)")
        out.append(f"{channel.strip()}={url.strip()}")
    return tuple(out)


def _check_webhooks(s: Settings) -> None:
    _webhook_addresses({"RUNNER_WEBHOOK_ALLOW_ADDRESSES": ",".join(s.webhook_allow_addresses)})
    _webhook_channels({"RUNNER_WEBHOOK_CHANNELS": ",".join(s.webhook_channels)})
    policy = s.webhook_policy
    for pair in s.webhook_channels:
        channel, _, url = pair.partition("=")
        try:
            policy.check(url)
        except ValidationError as exc:
            raise ConfigError(f"RUNNER_WEBHOOK_CHANNELS ({channel}): {exc}") from None
    if s.webhook_channels and not s.webhook_secret:
        raise ConfigError("RUNNER_WEBHOOK_CHANNELS is set but RUNNER_WEBHOOK_SECRET is not: set a secret of at "
                          "least 16 characters for the channel webhooks' signatures")
    if s.webhook_secret is not None and len(s.webhook_secret) < 16:
        raise ConfigError("RUNNER_WEBHOOK_SECRET is too short: use at least 16 characters")
    if s.webhook_timeout is not None and s.webhook_timeout >= s.lease_seconds / 2:
        raise ConfigError(f"RUNNER_WEBHOOK_TIMEOUT={s.webhook_timeout:g} must be shorter than half of "
                          f"RUNNER_LEASE_SECONDS ({s.lease_seconds}): lower it or raise RUNNER_LEASE_SECONDS")


# Every number the runner reads: (field, variable, kind, minimum). from_env parses them with these
# minima and Settings checks them again on every construction (with_ too), so no copy is ever invalid.
_NUMBERS: tuple[tuple[str, str, type, float], ...] = (
    ("concurrency", "RUNNER_CONCURRENCY", int, 1),
    ("thread_concurrency", "RUNNER_THREAD_CONCURRENCY", int, 1),
    ("poll_interval", "RUNNER_POLL_INTERVAL", float, 0.05),
    ("lease_seconds", "RUNNER_LEASE_SECONDS", int, 5),
    ("timeout_seconds", "RUNNER_TIMEOUT", int, 1),
    ("max_timeout_seconds", "RUNNER_MAX_TIMEOUT", int, 1),
    ("memory_mb", "RUNNER_MEMORY_MB", int, 16),
    ("max_memory_mb", "RUNNER_MAX_MEMORY_MB", int, 16),
    ("cpus", "RUNNER_CPUS", float, 0.01),
    ("pids_limit", "RUNNER_PIDS_LIMIT", int, 8),
    ("tmpfs_mb", "RUNNER_TMPFS_MB", int, 1),
    ("nofile", "RUNNER_NOFILE", int, 16),
    ("max_file_mb", "RUNNER_MAX_FILE_MB", int, 1),
    ("disk_mb", "RUNNER_DISK_MB", int, 1),
    ("max_files", "RUNNER_MAX_FILES", int, 10),
    ("tmpfs_inodes", "RUNNER_TMPFS_INODES", int, 16),
    ("message_cap", "RUNNER_MESSAGE_CAP", int, 16),
    ("output_cap", "RUNNER_OUTPUT_CAP", int, 256),
    ("script_cap", "RUNNER_SCRIPT_CAP", int, 64),
    ("attachment_cap", "RUNNER_ATTACHMENT_CAP", int, 1024),
    ("attachments_total_cap", "RUNNER_ATTACHMENTS_TOTAL_CAP", int, 1024),
    ("max_attachments", "RUNNER_MAX_ATTACHMENTS", int, 0),
    ("telegram_per_chat_interval", "TELEGRAM_PER_CHAT_INTERVAL", float, 0.0),
    ("telegram_per_second", "TELEGRAM_PER_SECOND", float, 0.1),
    ("telegram_backoff_max", "TELEGRAM_BACKOFF_MAX", float, 0.1),
    ("history_keep", "RUNNER_HISTORY", int, 1),
    ("shutdown_grace", "RUNNER_SHUTDOWN_GRACE", float, 0.0),
    ("prepare_seconds", "RUNNER_PREPARE_SECONDS", float, 0.0),
    ("grace_seconds", "RUNNER_GRACE_SECONDS", int, 0),
)

_id_lock = threading.Lock()
_process_ids: dict[int, str] = {}


def process_runner_id() -> str:
    """This process's runner id when RUNNER_ID is unset: made once per process (keyed by pid, so a forked
    child gets its own), the same for every Settings built in it. A runner's leases and containers carry
    it, so two Settings of one process must never disagree about who the runner is."""
    pid = os.getpid()
    with _id_lock:
        if pid not in _process_ids:
            _process_ids[pid] = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        return _process_ids[pid]


def _check_number(name: str, variable: str, kind: type, minimum: float, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)):
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{variable} ({name}) = {value!r} is not {what}")
    if value < minimum:
        raise ConfigError(f"{variable}={value} is too small (at least {minimum:g})")


# A job's policy defaults (no environment variable sets them); its limits' defaults are Settings' fields.
DEFAULT_OVERLAP = "skip"
DEFAULT_RETRIES = 0
DEFAULT_RETRY_DELAY = 60  # seconds before the first retry, doubled each time


@dataclass(frozen=True)
class Settings:
    """Everything the runner reads from its environment. Build with :meth:`from_env`."""

    database_url: str | None = field(default=None, repr=False)  # may hold a password
    data_dir: Path = Path("data/files")
    embedded_pg_dir: Path = Path("data/postgres")
    image: str = "runner-sandbox:latest"
    default_timezone: str = "UTC"
    concurrency: int = 4
    # Runs of one thread at once: its jobs share jobs/, so by default one at a time (a sibling running
    # beside a job could write that job's message file, and a chain's reads would depend on timing).
    thread_concurrency: int = 1
    poll_interval: float = 30.0  # fallback only: the loop sleeps until the next due time or a NOTIFY
    lease_seconds: int = 60
    runner_id: str = ""
    # Per-run limits (defaults; per-job values may lower or raise them up to the maxima).
    timeout_seconds: int = 30
    max_timeout_seconds: int = 600
    memory_mb: int = 256
    max_memory_mb: int = 2048
    cpus: float = 1.0
    pids_limit: int = 64
    tmpfs_mb: int = 16
    nofile: int = 256
    max_file_mb: int = 50
    disk_mb: int = 50  # total a thread's jobs/ directory may hold while a job runs
    max_files: int = 10000  # entries in a thread's jobs/ directory
    tmpfs_inodes: int = 4096
    message_cap: int = 64 * 1024
    output_cap: int = 64 * 1024
    script_cap: int = 256 * 1024
    attachment_cap: int = 10 * 1024 * 1024  # per file (Telegram's photo limit is 10 MB)
    attachments_total_cap: int = 20 * 1024 * 1024
    max_attachments: int = 10
    container_runtime: str | None = None
    egress_allow: tuple[str, ...] = ("*",)  # the operator's maximum for --allow-host grants
    egress_image: str = "runner-egress:latest"
    egress_network: str = "bridge"
    egress_block: tuple[str, ...] = ()  # networks the proxy refuses besides the private ranges
    egress_hosts: tuple[str, ...] = ()  # "name=address" pinned for the proxy
    egress_allow_addresses: tuple[str, ...] = ()  # single addresses the proxy may reach despite its block list
    telegram_bot_token: str | None = field(default=None, repr=False)
    telegram_api_url: str | None = None
    telegram_allowed_users: frozenset[int] = frozenset()
    telegram_per_chat_interval: float = 1.0
    telegram_per_second: float = 30.0
    telegram_backoff_max: float = 300.0
    telegram_request_timeout: float | None = None  # unset: a third of the lease
    log_level: str = "INFO"
    history_keep: int = 50  # runs kept per job
    shutdown_grace: float = 20.0  # seconds running jobs get to finish on SIGTERM
    prepare_seconds: float = 1.0  # claim and create a job's container this long before it is due
    http_addr: str | None = None  # host:port of /healthz and /metrics
    http_trusted_proxies: tuple[str, ...] = ()  # reverse proxies whose X-Forwarded-For is believed
    log_format: str = "text"
    grace_seconds: int = 3600  # missed-run grace period (default per job)
    uid_range: tuple[int, int] = (200000, 299999)  # host uids for threads, one each (the last is doctor's)
    jobs_quota: str = "off"  # "loop": each thread's jobs/ is a file system of its own, RUNNER_DISK_MB in size
    files: str = "local"  # RUNNER_FILES: a thread's files in the data directory, or "postgres": in the database
    webhook_allow: tuple[str, ...] = ("*",)  # host-name patterns a webhook URL may name
    webhook_allow_addresses: tuple[str, ...] = ()  # special addresses/networks a webhook may reach anyway
    webhook_channels: tuple[str, ...] = ()  # "channel=url": every thread of that channel delivers there
    webhook_secret: str | None = field(default=None, repr=False)  # signs the channel webhooks' deliveries
    webhook_timeout: float | None = None  # each delivery's timeout; unset: 10 s or a third of the lease

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read ``RUNNER_*``, ``DATABASE_URL`` and ``TELEGRAM_*`` variables; raise ConfigError on bad values."""
        e = dict(os.environ if env is None else env)
        tz = e.get("RUNNER_TIMEZONE", "UTC").strip() or "UTC"
        numbers = {name: (_int if kind is int else _float)(e, variable, _default(name), minimum)  # type: ignore[arg-type]
                   for name, variable, kind, minimum in _NUMBERS}
        return cls(
            **numbers,  # type: ignore[arg-type]
            database_url=e.get("DATABASE_URL", "").strip() or None,
            data_dir=Path(e.get("RUNNER_DATA_DIR", "data/files")).absolute(),
            embedded_pg_dir=Path(e.get("RUNNER_EMBEDDED_PG_DIR", "data/postgres")).absolute(),
            image=e.get("RUNNER_IMAGE", "runner-sandbox:latest").strip(),
            default_timezone=tz,
            runner_id=e.get("RUNNER_ID", "").strip() or process_runner_id(),
            container_runtime=e.get("RUNNER_CONTAINER_RUNTIME", "").strip() or None,
            egress_allow=_list(e, "RUNNER_EGRESS_ALLOW", "*"),
            egress_image=e.get("RUNNER_EGRESS_IMAGE", "runner-egress:latest").strip(),
            egress_network=e.get("RUNNER_EGRESS_NETWORK", "bridge").strip() or "bridge",
            egress_block=_blocked_networks(e),
            egress_hosts=_pins(e),
            egress_allow_addresses=_allowed_addresses(e),
            telegram_bot_token=e.get("TELEGRAM_BOT_TOKEN", "").strip() or None,
            telegram_api_url=e.get("TELEGRAM_API_URL", "").strip() or None,
            telegram_allowed_users=_user_ids(e),
            telegram_request_timeout=_float(e, "TELEGRAM_REQUEST_TIMEOUT", 0.0, 0.5) or None,
            log_level=e.get("RUNNER_LOG_LEVEL", "INFO").strip().upper() or "INFO",
            http_addr=e.get("RUNNER_HTTP", "").strip() or None,
            http_trusted_proxies=_trusted_proxies(e),
            log_format=(e.get("RUNNER_LOG_FORMAT", "text").strip().lower() or "text"),
            uid_range=_uid_range(e),
            jobs_quota=parse_quota_mode(e.get("RUNNER_JOBS_QUOTA", "off")),
            files=parse_files_mode(e.get("RUNNER_FILES", "local")),
            webhook_allow=_list(e, "RUNNER_WEBHOOK_ALLOW", "*"),
            webhook_allow_addresses=_webhook_addresses(e),
            webhook_channels=_webhook_channels(e),
            webhook_secret=e.get("RUNNER_WEBHOOK_SECRET", "").strip() or None,
            webhook_timeout=_float(e, "RUNNER_WEBHOOK_TIMEOUT", 0.0, 0.5) or None,
        )

    def __post_init__(self) -> None:
        """Refuse what from_env refuses, however the settings were built (from_env, with_, directly)."""
        if not self.runner_id:
            object.__setattr__(self, "runner_id", process_runner_id())
        for name, variable, kind, minimum in _NUMBERS:
            _check_number(name, variable, kind, minimum, getattr(self, name))
        try:
            zone(self.default_timezone)  # refuse an unknown zone at start-up, not at the first job
        except ScheduleError as exc:
            raise ConfigError(f"RUNNER_TIMEZONE: {exc}") from None
        problem = unusable_outer_network(self.egress_network)
        if problem:
            raise ConfigError(f"RUNNER_EGRESS_NETWORK: {problem}: use a bridge network such as 'bridge'")
        if self.timeout_seconds > self.max_timeout_seconds:
            raise ConfigError("RUNNER_TIMEOUT is larger than RUNNER_MAX_TIMEOUT")
        if self.memory_mb > self.max_memory_mb:
            raise ConfigError("RUNNER_MEMORY_MB is larger than RUNNER_MAX_MEMORY_MB")
        object.__setattr__(self, "jobs_quota", parse_quota_mode(self.jobs_quota))
        object.__setattr__(self, "files", parse_files_mode(self.files))
        _uid_range({"RUNNER_UID_RANGE": f"{self.uid_range[0]}-{self.uid_range[1]}"})
        _blocked_networks({"RUNNER_EGRESS_BLOCK": ",".join(self.egress_block)})
        _pins({"RUNNER_EGRESS_HOSTS": ",".join(self.egress_hosts)})
        _allowed_addresses({"RUNNER_EGRESS_ALLOW_ADDRESSES": ",".join(self.egress_allow_addresses)})
        _check_request_timeout(self)
        _check_copied_runs(self)
        _check_webhooks(self)

    @property
    def request_timeout(self) -> float:
        """Each Bot API request's timeout: ``TELEGRAM_REQUEST_TIMEOUT``, or a third of the lease. Always
        shorter than half the lease, so a send ends, answered or not, before its message's lease can run out."""
        return self.telegram_request_timeout or self.lease_seconds / 3

    @property
    def webhook_request_timeout(self) -> float:
        """Each webhook delivery's timeout: ``RUNNER_WEBHOOK_TIMEOUT``, else 10 s or a third of the lease if
        shorter; always shorter than half the lease."""
        return self.webhook_timeout or min(10.0, self.lease_seconds / 3)

    @property
    def webhook_policy(self) -> UrlPolicy:
        """Which webhook URLs and addresses are allowed (RUNNER_WEBHOOK_ALLOW, RUNNER_WEBHOOK_ALLOW_ADDRESSES)."""
        return UrlPolicy(allow=self.webhook_allow, allow_addresses=self.webhook_allow_addresses)

    def webhook_channel_urls(self) -> dict[str, str]:
        """RUNNER_WEBHOOK_CHANNELS as {channel: url}."""
        return dict(pair.partition("=")[::2] for pair in self.webhook_channels)

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and the CLI use it), checked like :meth:`from_env`."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"no such setting: {', '.join(unknown)}")
        return replace(self, **changes)  # type: ignore[arg-type]

    def public(self) -> dict[str, object]:
        """The settings without secrets, for logs and ``doctor``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
