"""``runner mcp``: the MCP server over stdio, for a local client (Claude Desktop, an IDE) that starts it.

``runner mcp --thread telegram:42`` acts on this runner's database and files (DATABASE_URL and
RUNNER_DATA_DIR as the other commands have them); ``runner mcp --url https://runner.example --token …``
acts through a remote runner's HTTP API with that token's reach. Standard output carries the protocol
alone: logs go to standard error."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from io import TextIOWrapper
from typing import Any

import anyio
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from ..client import ApiError, Client
from ..errors import ConfigError, ValidationError
from ..settings import Settings
from ..threads import validate_thread_id
from .backend import Local, Remote, remote_settings
from .server import build_server
from .tools import Binding


@contextlib.contextmanager
def _protocol_stdout() -> Iterator[TextIOWrapper]:
    """The real standard output, for the protocol alone: file descriptor 1 is pointed at standard error
    meanwhile, so that nothing else (a library's print, the embedded Postgres's start-up, a child process)
    can write into the protocol's stream."""
    sys.stdout.flush()
    protocol, original = os.dup(1), os.dup(1)
    os.dup2(2, 1)
    try:
        with TextIOWrapper(os.fdopen(protocol, "wb"), encoding="utf-8") as text:
            yield text
    finally:
        os.dup2(original, 1)
        os.close(original)


async def _serve(server: Server[Any, Any], out: TextIOWrapper) -> None:
    async with stdio_server(stdout=anyio.wrap_file(out)) as (read, write):
        await server.run(read, write, server.create_initialization_options())


@contextlib.contextmanager
def _local(args: argparse.Namespace, settings: Settings) -> Iterator[tuple[Settings, Binding]]:
    from ..service import connect

    thread = validate_thread_id(args.thread)
    with connect(settings) as jobs:
        yield settings, Binding(Local(settings, jobs, jobs.files, thread), args.read_only)


@contextlib.contextmanager
def _remote(args: argparse.Namespace, settings: Settings) -> Iterator[tuple[Settings, Binding]]:
    token = args.token or getattr(args, "remote_token", None) or os.environ.get("RUNNER_TOKEN", "")
    if not token:
        raise ConfigError("--url needs a token: give --token or set RUNNER_TOKEN (make one on the runner with "
                          "`runner token create --thread <thread>`)")
    try:
        client = Client(args.url, token, args.thread)
    except ApiError as exc:
        if exc.status == 0:
            raise ConfigError(exc.detail) from None  # not reached: the sentence says where it looked
        if exc.status == 400:
            raise ConfigError("this token reaches every thread (an admin token): name one with --thread THREAD, "
                              "e.g. --thread telegram:42") from None
        raise ConfigError(f"the runner at {args.url} refused the token: {exc.detail}") from None
    with client:
        yield remote_settings(settings, client), Binding(Remote(client), args.read_only)


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    """Serve MCP on stdin/stdout until the client closes it."""
    args.url = args.url or getattr(args, "remote_url", None)  # also `runner --url … mcp`
    if args.url is None and args.thread is None:
        raise ValidationError("give --thread THREAD (this runner's database) or --url URL --token TOKEN "
                              "(a remote runner), e.g. runner mcp --thread telegram:42")
    with _protocol_stdout() as out:
        opened = _remote(args, settings) if args.url else _local(args, settings)
        with opened as (said, binding):
            anyio.run(_serve, build_server(said, lambda _request: binding), out)
    return 0

