"""What the runner depends on: the Docker engine (and whether it can take the thread files where they are),
its images, the database and the Telegram bot."""

from __future__ import annotations

import re

import docker
import docker.errors

from .. import egress, sandbox
from ..errors import ConfigError, RunnerError
from ..settings import Settings
from ..store import Database, check_schema, embedded_url, migration_files
from .check import Check

MIN_ENGINE = (20, 10)  # the oldest Docker Engine the test suite runs on
LOCAL_SAVE = f"docker -H {sandbox.DEFAULT_HOST}"  # this host's default engine, where make images builds


def engine_too_old(version: str) -> bool:
    """True if a Docker Engine version string ("20.10.24+dfsg1", "27.3.1") is below MIN_ENGINE."""
    m = re.match(r"(\d+)\.(\d+)", version)
    return m is not None and (int(m[1]), int(m[2])) < MIN_ENGINE


def engine(found: list[docker.DockerClient]) -> Check:
    """The engine DOCKER_HOST names answers, and is recent enough; its client is appended to ``found`` for
    the later checks, which all run on that engine."""
    dc = sandbox.client()
    version = dc.version()
    found.append(dc)
    where = f"at {sandbox.engine_address(dc)}, {'on this host' if sandbox.engine_is_local(dc) else 'remote'}"
    text = f"{version.get('Version')} (API {version.get('ApiVersion')}) {where}"
    if engine_too_old(str(version.get("Version", ""))):
        return Check("Docker engine", False, f"{text} is older than {'.'.join(map(str, MIN_ENGINE))}, the oldest "
                                             "the runner is tested on: upgrade Docker Engine")
    return Check("Docker engine", True, text)


def file_store(settings: Settings, dc: docker.DockerClient | None) -> Check:
    """Where the thread files live (RUNNER_FILES), and that the engine can take them: local files are
    bind-mounted, so the engine must be on this host (``dc``'s, or the environment's if none answered)."""
    if settings.files == "postgres":
        return Check("file store", True, "postgres: the thread files are in the database, copied into each run")
    problem = sandbox.local_files_problem(dc)
    if problem:
        return Check("file store", False, problem)
    return Check("file store", True, f"local: the thread files are in {settings.data_dir}, bind-mounted into each run")


def image(dc: docker.DockerClient | None, tag: str, label: str, hint: str) -> Check:
    """The engine has the image ``tag``. ``hint`` says how to make it on the default local engine; on any
    other the line says how to load it there (:func:`load_hint`)."""
    if dc is None:
        return Check(label, False, "no Docker engine")
    present = sandbox.image_present(tag, dc)
    return Check(label, present, tag if present else f"{tag} is missing{_where(dc)}: {_how(dc, tag, hint)}")


def egress_image(dc: docker.DockerClient | None, tag: str) -> Check:
    """The engine has the egress proxy image, of the version this runner needs."""
    label, hint = "egress proxy image", "run make images (needed only by jobs granted --allow-host)"
    found = image(dc, tag, label, hint)
    if not found.ok or dc is None:
        return found
    version = (dc.images.get(tag).labels or {}).get("io.runner.egress-version")
    if version == egress.IMAGE_VERSION:
        return found
    return Check(label, False, (f"{tag}{_where(dc)} is older than this runner (version {version or 'unknown'}, "
                                f"needs {egress.IMAGE_VERSION}): rebuild it with make images"
                                + ("" if sandbox.is_default_engine(dc) else f", then {load_hint(dc, tag)}")))


def _where(dc: docker.DockerClient) -> str:
    return "" if sandbox.is_default_engine(dc) else f" on the engine at {sandbox.engine_address(dc)}"


def _how(dc: docker.DockerClient, tag: str, hint: str) -> str:
    return hint if sandbox.is_default_engine(dc) else f"load it there: {load_hint(dc, tag)}"


def load_hint(dc: docker.DockerClient, tag: str) -> str:
    """The command that copies ``tag`` to ``dc``'s engine: from this host's default engine when that one has
    it (exactly, with both engines named), else from wherever it was built (make images)."""
    target = f"docker -H {sandbox.engine_address(dc)}{' --tlsverify' if _tls(dc) else ''} load"
    if _on_default_engine(tag):
        return f"{LOCAL_SAVE} save {tag} | {target}"
    return f"on a machine that has it (make images builds it), docker save {tag} | {target}"


def _tls(dc: docker.DockerClient) -> bool:
    env = dc.environment if isinstance(dc, sandbox.EngineClient) else {}
    return env.get("DOCKER_TLS_VERIFY", "") != "" and sandbox.engine_address(dc).startswith("tcp://")


def _on_default_engine(tag: str) -> bool:
    """True if this host's default engine answers and has ``tag`` (so the copy can start here)."""
    if not sandbox.engine_is_local({}):
        return False
    try:
        local = sandbox.client({})
    except RunnerError:
        return False
    try:
        return sandbox.image_present(tag, local)
    except docker.errors.DockerException:
        return False
    finally:
        local.close()


def database(settings: Settings) -> Check:
    """The database answers and its schema is the one this runner was built for (store's own checks)."""
    url = settings.database_url or embedded_url(settings.embedded_pg_dir)
    where = "embedded" if not settings.database_url else "DATABASE_URL"
    db = Database(url, max_size=1)
    try:
        db.ping(timeout=30.0)  # the pool's own wait for a connection
    finally:
        db.close()
    try:
        check_schema(url)
    except ConfigError as exc:
        return Check("database", False, f"reachable ({where}) but {exc}")
    return Check("database", True, f"reachable ({where}), {len(migration_files())} migrations applied")


def bot(settings: Settings) -> Check:
    """getMe with the configured token (and TELEGRAM_API_URL): is the token valid, is the API reachable."""
    if not settings.telegram_bot_token:
        return Check("Telegram bot", True, "TELEGRAM_BOT_TOKEN is not set: messages print to the console")
    import asyncio

    from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramUnauthorizedError

    from ..logsetup import redact
    from ..outbox.telegram import make_bot

    token = settings.telegram_bot_token
    where = settings.telegram_api_url or "api.telegram.org"

    async def get_me() -> Check:
        bot = make_bot(token, settings.telegram_api_url, timeout=10)
        try:
            me = await bot.get_me()
        except TelegramUnauthorizedError:
            return Check("Telegram bot", False, f"{where} refused TELEGRAM_BOT_TOKEN (Unauthorized): "
                                                "copy the token again from @BotFather")
        except TelegramNetworkError as exc:
            return Check("Telegram bot", False, f"could not reach {where}: {redact(str(exc), token)}")
        except TelegramAPIError as exc:
            return Check("Telegram bot", False, f"getMe failed at {where}: {redact(str(exc), token)}")
        finally:
            await bot.session.close()
        users = len(settings.telegram_allowed_users)
        if not users:
            return Check("Telegram bot", False, f"token works (@{me.username}) but TELEGRAM_ALLOWED_USERS is "
                                                "empty: the bot answers nobody; add your Telegram user id")
        return Check("Telegram bot", True, f"@{me.username} (id {me.id}) via {where}, {users} allowed user(s)")

    return asyncio.run(get_me())
