"""What the runner depends on: the Docker engine, its images, the database and the Telegram bot."""

from __future__ import annotations

import re

import docker

from .. import sandbox
from ..errors import ConfigError
from ..settings import Settings
from ..store import Database, check_schema, embedded_url, migration_files
from .check import Check

MIN_ENGINE = (20, 10)  # the oldest Docker Engine the test suite runs on


def engine_too_old(version: str) -> bool:
    """True if a Docker Engine version string ("20.10.24+dfsg1", "27.3.1") is below MIN_ENGINE."""
    m = re.match(r"(\d+)\.(\d+)", version)
    return m is not None and (int(m[1]), int(m[2])) < MIN_ENGINE


def engine(found: list[docker.DockerClient]) -> Check:
    """The engine answers, and is recent enough; its client is appended to ``found`` for the later checks."""
    dc = sandbox.client()
    version = dc.version()
    found.append(dc)
    text = f"{version.get('Version')} (API {version.get('ApiVersion')})"
    if engine_too_old(str(version.get("Version", ""))):
        return Check("Docker engine", False, f"{text} is older than {'.'.join(map(str, MIN_ENGINE))}, the oldest "
                                             "the runner is tested on: upgrade Docker Engine")
    return Check("Docker engine", True, text)


def image(dc: docker.DockerClient | None, tag: str, label: str, hint: str) -> Check:
    """The engine has the image ``tag``; ``hint`` says how to make it."""
    if dc is None:
        return Check(label, False, "no Docker engine")
    present = sandbox.image_present(tag, dc)
    return Check(label, present, tag if present else f"{tag} is missing: {hint}")


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
