"""The statuses a job run and an outbox message go through: the one list of each that the service layer,
the metrics and the HTTP API's models use.

They are the values the ``scheduled_jobs.status`` and ``outbox.status`` columns allow (migrations/001_initial.sql).
"""

from __future__ import annotations

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")
