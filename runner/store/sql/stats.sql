-- Named queries of the runner's own figures: how many jobs and messages are in each status (runner.store.stats).
-- Split on "-- name:" headers and loaded once with the other files here (runner/store/database.py).

-- name: jobs_by_status
-- Job runs by status, for the runner_jobs gauge of /metrics.
SELECT status, count(*) AS n FROM scheduled_jobs GROUP BY status;

-- name: outbox_by_status
-- Outbox messages by status, for the runner_outbox_messages gauge of /metrics.
SELECT status, count(*) AS n FROM outbox GROUP BY status;
