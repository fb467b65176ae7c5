-- Named queries of jobs as the service layer sees them: schedule, list, change, cancel (runner.store.jobs).
-- Split on "-- name:" headers and loaded once with the other files here (runner/store/database.py).
-- Parameters use psycopg's %(name)s style; nothing here is built by string formatting.

-- name: insert_job
-- Schedule a new job (the first row of its series).
INSERT INTO scheduled_jobs (user_id, thread_id, name, due_time, script_path, recurrence, cron, timezone,
                            timeout_seconds, memory_mb, cpus, pids_limit, allow_hosts,
                            grace_seconds, overlap, retries, retry_delay_seconds, after_job, script_sha256)
VALUES (%(user_id)s, %(thread_id)s, %(name)s, %(due_time)s, %(script_path)s, %(recurrence)s, %(cron)s,
        %(timezone)s, %(timeout_seconds)s, %(memory_mb)s, %(cpus)s, %(pids_limit)s, %(allow_hosts)s,
        %(grace_seconds)s, %(overlap)s, %(retries)s, %(retry_delay_seconds)s, %(after_job)s, %(script_sha256)s)
RETURNING *;

-- name: ensure_thread
INSERT INTO threads (thread_id, user_id) VALUES (%(thread_id)s, %(user_id)s)
ON CONFLICT (thread_id) DO NOTHING;

-- name: thread_timezone
SELECT timezone FROM threads WHERE thread_id = %(thread_id)s;

-- name: set_thread_timezone
INSERT INTO threads (thread_id, timezone) VALUES (%(thread_id)s, %(timezone)s)
ON CONFLICT (thread_id) DO UPDATE SET timezone = EXCLUDED.timezone;

-- name: get_job
SELECT * FROM scheduled_jobs WHERE id = %(id)s;

-- name: list_jobs
-- %(thread_id)s and %(status)s are optional filters (NULL: all).
SELECT * FROM scheduled_jobs
WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: list_thread_jobs
-- One thread's jobs (the API's, the bot's and `runner jobs --thread` listing). The range on thread_id
-- means equality: with `thread_id = x` the planner drops thread_id from the order and may walk the
-- primary key backwards past every newer row of the other threads (33 to 62 ms behind 200,000 of
-- them, for 0.1 ms on scheduled_jobs_thread); a range keeps the (thread_id, id) order that only
-- that index gives.
SELECT * FROM scheduled_jobs
WHERE thread_id >= %(thread_id)s AND thread_id <= %(thread_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY thread_id DESC, id DESC
LIMIT %(limit)s;

-- name: cancel_pending
UPDATE scheduled_jobs SET status = 'cancelled', completed_at = clock_timestamp(),
    error_message = 'cancelled'
WHERE id = %(id)s AND status = 'pending'
RETURNING *;

-- name: stop_recurring
-- Cancelling a running job: it finishes, but its series ends with it.
UPDATE scheduled_jobs SET recurrence = NULL, cron = NULL
WHERE id = %(id)s AND status = 'running'
RETURNING *;

-- name: set_paused
UPDATE scheduled_jobs SET paused = %(paused)s WHERE id = %(id)s AND status = 'pending' RETURNING *;

-- name: run_now
UPDATE scheduled_jobs SET due_time = clock_timestamp(), paused = false
WHERE id = %(id)s AND status = 'pending' RETURNING *;

-- name: pending_of_series
SELECT * FROM scheduled_jobs WHERE series_id = %(series_id)s AND status IN ('pending', 'running') ORDER BY id DESC LIMIT 1;

-- name: runs_of_series
SELECT * FROM scheduled_jobs WHERE series_id = %(series_id)s ORDER BY id DESC LIMIT %(limit)s;

-- name: copy_as_one_off
-- Run a finished job again now: a new one-off run of the same script and limits.
INSERT INTO scheduled_jobs (user_id, thread_id, name, due_time, script_path, timezone,
                            timeout_seconds, memory_mb, cpus, pids_limit, allow_hosts, retries, retry_delay_seconds,
                            script_sha256)
SELECT user_id, thread_id, name, clock_timestamp(), script_path, timezone,
       timeout_seconds, memory_mb, cpus, pids_limit, allow_hosts, retries, retry_delay_seconds, script_sha256
FROM scheduled_jobs WHERE id = %(id)s
RETURNING *;

-- name: messages_for_job
SELECT * FROM outbox WHERE job_id = %(job_id)s ORDER BY id;

-- name: job_named
SELECT id FROM scheduled_jobs WHERE thread_id = %(thread_id)s AND name = %(name)s LIMIT 1;

-- name: update_pending
UPDATE scheduled_jobs
SET due_time = %(due_time)s, recurrence = %(recurrence)s, cron = %(cron)s, timezone = %(timezone)s,
    timeout_seconds = %(timeout_seconds)s, memory_mb = %(memory_mb)s, cpus = %(cpus)s, pids_limit = %(pids_limit)s,
    allow_hosts = %(allow_hosts)s, grace_seconds = %(grace_seconds)s, overlap = %(overlap)s,
    retries = %(retries)s, retry_delay_seconds = %(retry_delay_seconds)s
WHERE id = %(id)s AND status = 'pending'
RETURNING *;

-- name: lock_series
-- Approving a script: the series' rows, locked so that none is claimed meanwhile (claims skip them).
SELECT id, status FROM scheduled_jobs WHERE series_id = %(series_id)s ORDER BY id FOR UPDATE;

-- name: approve_series
-- The approved script of every row of the series (the pending run and the rows later runs copy).
UPDATE scheduled_jobs SET script_sha256 = %(script_sha256)s
WHERE series_id = %(series_id)s AND status <> 'running';
