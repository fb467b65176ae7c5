"""The command line of a job container: ``python3 -u -c <launcher> DUE SCRIPT SOURCE...``.

The launcher (launcher.py) and the egress relay (relay.py) are real Python files of this package,
linted and tested as code, and read here once at import time: the container is given their source."""

from __future__ import annotations

from importlib.resources import files

from .. import egress

LAUNCHER = files(__package__).joinpath("launcher.py").read_text(encoding="utf-8")
_RELAY_FUNCTIONS = files(__package__).joinpath("relay.py").read_text(encoding="utf-8")

SOURCE_CHUNK = 16 * 1024  # characters: at most 64 KiB of UTF-8, well under 128 KiB per argument


def source_arguments(source: str) -> list[str]:
    """The script's source as launcher arguments (a single argument may not exceed 128 KiB)."""
    return [source[i:i + SOURCE_CHUNK] for i in range(0, len(source), SOURCE_CHUNK)]


def relay_code(path: str = f"{egress.JOB_SOCKET_DIR}/{egress.SOCKET_NAME}", port: int = egress.PROXY_PORT) -> str:
    """Python source that starts the relay (``_egress_port`` is then its port), to run before the script."""
    return (_RELAY_FUNCTIONS + f"_egress_port = _egress_relay({path!r}, {port})\n"
            "del _egress_relay, _EgressRelay, os, selectors, socket\n")


RELAY = relay_code()
