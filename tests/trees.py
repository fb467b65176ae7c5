"""Directory trees that tests build."""

from __future__ import annotations

import os
from pathlib import Path


def deep_tree(top: Path, depth: int) -> None:
    """Nest ``depth`` directories named ``d`` in ``top``, made by descriptor: the path of the deepest may
    be far past PATH_MAX."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)
