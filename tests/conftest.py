"""Shared fixtures. Integration fixtures start their own Postgres (testcontainers, a locally built
image) and use the real Docker engine; nothing here is a fake."""

from __future__ import annotations

import os

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # the reaper image cannot be pulled here
