"""The application object: what ``runner up`` is, so that the CLI, the HTTP API, MCP and the tests all
start the same thing.

:class:`Application` owns the job image check, the database (the embedded Postgres when DATABASE_URL
is unset; migrated), the engine host's addresses, the scheduler, the deliverers (the console notifier,
or the Telegram part and a notifier that only fails the threads Telegram cannot reach; and always the
webhook deliverer, which takes the threads that have a webhook from both), the HTTP server
(/healthz, /metrics) and the supervision of the side parts (:mod:`runner.supervise`). ``run()`` blocks
until :meth:`Application.stop` (or, in burst mode, until nothing is due) and closes everything on the
way out. Signal handling is the caller's: the CLI wraps ``run()`` in :func:`stop_on_signals`, which
puts the previous handlers back when it returns.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from . import images, sandbox
from .errors import ConfigError, RunnerError
from .logsetup import install_redaction
from .metrics import Health, TableCollector
from .outbox import ConsoleSender, NoChannelSender, OutboxLoop, Sender
from .outbox import webhook as outbox_webhook
from .outbox.webhook import WebhookSender
from .runspec import run_spec, sample_job
from .scheduler import Scheduler
from .service import Jobs
from .settings import Settings
from .store import Database, Store, embedded_url, migrate
from .supervise import Part

if TYPE_CHECKING:
    from .http.serve import HttpServer
    from .telegram_part import TelegramService

log = logging.getLogger(__name__)

HEALTH_DB_TIMEOUT = 3.0  # seconds /healthz and /metrics wait for a database connection: an outage is a quick 503
NOTIFIER_STOP_TIMEOUT = 10.0  # seconds the notifier has to finish the message it is sending
LOOP_AGE_SLACK = 30.0  # seconds past the poll interval before /healthz calls the scheduler loop stalled


class Application:
    """``runner up``: :meth:`open` (image, database, deliverers), :meth:`start` (scheduler, HTTP server,
    side parts), :meth:`run` (the scheduler loop on the calling thread) and :meth:`stop`.

    ``burst``: run what is due, deliver its messages, and return. ``build_image``: build a missing job
    image (else refuse to start). ``console``: where the console sender prints (standard output by
    default). Each step starts the ones before it if they have not run, so
    ``Application(settings).run()`` is all a caller needs; a context manager closes what was opened."""

    def __init__(self, settings: Settings, *, burst: bool = False, build_image: bool = True,
                 docker_client: Any = None, console: TextIO | None = None) -> None:
        self.settings, self.burst, self.build_image = settings, burst, build_image
        self.console = console
        self.dc: Any = docker_client
        self.jobs: Jobs | None = None
        self.store: Store | None = None
        self.telegram: TelegramService | None = None
        self.scheduler: Scheduler | None = None
        self.notifier: OutboxLoop | None = None
        self.webhooks: OutboxLoop | None = None
        self._webhook_sender: WebhookSender | None = None
        self.http: HttpServer | None = None
        self.parts: list[Part] = []  # the side parts, restarted if they die; /healthz reports each
        self._stopping = threading.Event()
        self._started = self._closed = False

    def __enter__(self) -> Application:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the steps -----------------------------------------------------------------------------------

    def open(self) -> None:
        """Refuse local files on an engine of another host, make sure of the job image, open (and migrate)
        the database, find the engine host's addresses and set up the Telegram part if there is a bot
        token. Does nothing the second time."""
        if self._closed:
            raise RuntimeError("this application was closed: make a new one to start again")
        if self.jobs is not None:
            return
        try:
            self._refuse_local_files_elsewhere()
            self.dc = self.dc or sandbox.client()
            self._ensure_image()
            self.jobs = self._open_jobs()
            self.store = Store(self.jobs.db)
            discover_host_addresses(self.settings, self.dc)
            self.telegram = self._telegram(self.jobs)
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        """:meth:`open`, then build the scheduler and the notifier and start the HTTP server, the
        Telegram part and (unless in burst mode) the notifier part. Does nothing the second time."""
        if self._started:
            return
        self.open()
        assert self.jobs is not None
        try:
            self._build(self.jobs.db)
            self._start_http()
            if self.telegram is not None:
                self.telegram.start()
            if not self.burst:
                assert self.notifier is not None and self.webhooks is not None and self._webhook_sender is not None
                hooks, sender = self.webhooks, self._webhook_sender
                for part in (Part("notifier", self.notifier.run_blocking, self.notifier.stop),
                             Part("webhooks", lambda: outbox_webhook.run_blocking(hooks, sender), hooks.stop)):
                    self.parts.append(part)
                    part.start()
        except BaseException:
            self.close()
            raise
        self._started = True

    def run(self) -> None:
        """:meth:`start`, then run the scheduler here until :meth:`stop` (in burst mode, until nothing
        is due or running, then deliver what was queued); close everything on the way out. A death of
        the scheduler is fatal and raised; a side part that dies is restarted by its supervisor."""
        try:
            self.start()
            assert self.scheduler is not None and self.notifier is not None
            self.scheduler.run(burst=self.burst)  # the notifier delivers until the scheduler has drained
            if self.burst:
                self.notifier.deliver_due()
                if self.webhooks is not None and self._webhook_sender is not None:
                    outbox_webhook.deliver_due(self.webhooks, self._webhook_sender)
                if self.telegram is not None:
                    self.telegram.drain()
        finally:
            self.close()

    def stop(self) -> None:
        """Make :meth:`run` return: the scheduler stops claiming and running jobs finish first. Quick and
        safe from a signal handler or another thread, before or during :meth:`run`."""
        self._stopping.set()
        if self.scheduler is not None:
            self.scheduler.stop()

    def close(self) -> None:
        """Stop the side parts and the HTTP server, and close the database. Safe to call again."""
        self._closed = True
        for part in self.parts:
            if part.name in ("notifier", "webhooks"):
                part.stop(timeout=NOTIFIER_STOP_TIMEOUT)
        if self.telegram is not None:
            self.telegram.stop()
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.jobs is not None:
            self.jobs.close()
            self.jobs = self.store = None

    # --- the parts -----------------------------------------------------------------------------------

    def _refuse_local_files_elsewhere(self) -> None:
        """RUNNER_FILES=local bind-mounts this host's directories: an engine on another host is refused at
        once (before connecting to it, when the environment names it), not at the first run."""
        if self.settings.files == "local":
            problem = sandbox.local_files_problem(self.dc)  # None: the engine the environment names
            if problem:
                raise ConfigError(problem)

    def _ensure_image(self) -> None:
        image = self.settings.image
        if sandbox.image_present(image, self.dc):
            return
        if not self.build_image:
            raise RunnerError(f"image {image} not found: run make image (or runner image build)")
        log.info("job image %s is missing: building it", image)
        images.build_sandbox(image)

    def _open_jobs(self) -> Jobs:
        """The database (DATABASE_URL, else the embedded Postgres), migrated: ``runner up`` is one of the
        two commands that change the schema."""
        s = self.settings
        url = s.database_url or embedded_url(s.embedded_pg_dir)
        migrate(url)
        return Jobs(s, Database(url, max_size=s.concurrency + 4))

    def _telegram(self, jobs: Jobs) -> TelegramService | None:
        s = self.settings
        if not s.telegram_bot_token:
            return None
        from .telegram_part import TelegramService  # aiogram is imported only when there is a bot

        install_redaction(s.telegram_bot_token)
        if not s.telegram_allowed_users:
            log.warning("TELEGRAM_ALLOWED_USERS is empty: the bot will answer nobody (messages are still sent)")
        telegram = TelegramService(s, jobs, polling=not self.burst)
        self.parts.append(telegram.part)
        return telegram

    def _build(self, db: Database) -> None:
        s = self.settings
        self.scheduler = Scheduler(s, db, self.dc)
        if self._stopping.is_set():  # stopped while starting: run() drains at once
            self.scheduler.stop()
        # With Telegram, the console notifier only fails the threads that have no channel. Neither takes
        # the messages of a thread with a webhook: the webhook deliverer does, with or without Telegram.
        sender: Sender = NoChannelSender() if self.telegram is not None else ConsoleSender(self.console)
        self.notifier = OutboxLoop(delivery_store(db, s), sender, s.runner_id, lease_seconds=s.lease_seconds,
                                   poll_interval=s.poll_interval, without_chat=self.telegram is not None)
        self._webhook_sender = hooks = outbox_webhook.WebhookSender(
            s.webhook_policy, s.webhook_channel_urls(), s.webhook_secret,
            outbox_webhook.WebhookConfig(request_timeout=s.webhook_request_timeout, lease_seconds=s.lease_seconds))
        self.webhooks = outbox_webhook.webhook_delivery(delivery_store(db, s), hooks, s.runner_id, s.poll_interval)

    def _start_http(self) -> None:
        s, scheduler, store = self.settings, self.scheduler, self.store
        if not s.http_addr:
            return
        assert scheduler is not None and store is not None
        from .http.app import create_app  # the ASGI stack is imported only when there is a server
        from .http.serve import HttpServer

        health = Health(loop_age=lambda: time.monotonic() - scheduler.last_loop,
                        max_loop_age=s.poll_interval + LOOP_AGE_SLACK,
                        ping=lambda: store.db.ping(timeout=HEALTH_DB_TIMEOUT),
                        parts=lambda: {p.name: p.status() for p in self.parts},
                        tables=TableCollector(lambda: store.status_counts(timeout=HEALTH_DB_TIMEOUT)))
        self.http = HttpServer(create_app(s, self.jobs, store, health), s.http_addr, s.http_trusted_proxies)
        self.http.start()
        log.info("the API on %s/v1 (tokens: runner token create), health and metrics on /healthz and /metrics",
                 self.http.url)


def delivery_store(db: Database, settings: Settings) -> Store:
    """A store for a deliverer, routing the threads of RUNNER_WEBHOOK_CHANNELS' channels to the webhook."""
    store = Store(db)
    store.route_channels(tuple(settings.webhook_channel_urls()))
    return store


def discover_host_addresses(settings: Settings, dc: Any) -> None:
    """Find the engine host's addresses once at start-up (each proxy start looks again), so that a
    runner whose granted jobs could not be kept off the host says so now, not at the first grant."""
    if not settings.egress_allow or not sandbox.image_present(settings.egress_image, dc):
        return
    spec = run_spec(settings, sample_job(settings), owner=settings.runner_id, jobs_dir=settings.data_dir,
                    user="65534:65534")
    try:
        found = sandbox.host_networks(dc, spec)
    except RunnerError as exc:
        log.warning("%s; granted jobs will fail until it can", exc)
        return
    log.info("the egress proxy refuses the engine host's %d addresses and networks (found again at each proxy "
             "start)", len(found))


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``stop`` (a second SIGINT raises KeyboardInterrupt, to force); on the way
    out the handlers that were there before are put back, so ``runner up`` run in-process (tests, an
    embedding program) leaves its caller's signal handling as it found it."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping (running jobs finish first; again to force)", signum)
        stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in previous:
        signal.signal(sig, _stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
