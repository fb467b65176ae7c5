"""The statuses a job run goes through: the one list the service layer and the metrics use.

They are the values the ``scheduled_jobs.status`` column allows (migrations/001_initial.sql).
"""

from __future__ import annotations

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
