"""``runner mcp``: the MCP server over stdio for one thread (runner.mcp.stdio, imported only when run)."""

from __future__ import annotations

import argparse
from typing import Any

from ..settings import Settings


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    from ..mcp.stdio import cmd_mcp as serve

    return serve(args, settings)


def add_parser(sub: Any) -> None:
    """``runner mcp`` under the subcommands ``sub``."""
    mc = sub.add_parser("mcp", help="serve MCP over stdio for one thread (Claude Desktop, IDEs); over HTTP it is "
                                    "at /mcp of runner up")
    mc.add_argument("--thread", help="the thread its tools act on, e.g. telegram:42 (with --url: needed for an "
                                     "admin token; a thread token's own thread by default)")
    mc.add_argument("--url", help="a remote runner's HTTP address, e.g. https://runner.example.com (default: this "
                                  "machine's database, as the other commands use it)")
    mc.add_argument("--token", help="with --url: the bearer token (default: the RUNNER_TOKEN variable)")
    mc.add_argument("--read-only", action="store_true", help="list and call only the tools that change nothing")
    mc.set_defaults(func=cmd_mcp)
