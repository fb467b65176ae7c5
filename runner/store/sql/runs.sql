-- Named queries of runs: claim, lease, fence, finish, recur and recover (runner.store.runs).
-- Split on "-- name:" headers and loaded once with the other files here (runner/store/database.py).
-- Parameters use psycopg's %(name)s style; nothing here is built by string formatting.

-- name: seconds_until_next_due
-- By the database's clock, so the runner's and the database's clocks cannot disagree. A job whose
-- thread already runs %(per_thread)s jobs waits for one of them (its end wakes the loop): not counted.
SELECT EXTRACT(EPOCH FROM (min(due_time) - clock_timestamp()))::float8 AS seconds
FROM scheduled_jobs j
WHERE status = 'pending' AND NOT paused
  AND (SELECT count(*) FROM scheduled_jobs r WHERE r.thread_id = j.thread_id AND r.status = 'running')
      < %(per_thread)s;

-- name: lock_due_threads
-- The earliest %(scan)s due jobs of threads that are not already running %(per_thread)s jobs, limited to
-- the threads whose claim this transaction may make: a transaction-scoped advisory lock per thread, so
-- two runners never claim in one thread at once (claim_due then counts the thread's running jobs with
-- a fresh view: a claim before it held the lock until it committed). Only the earliest due rows are
-- read (the due-time index), however long a thread's backlog.
WITH busy AS (
    SELECT thread_id FROM scheduled_jobs WHERE status = 'running'
    GROUP BY thread_id HAVING count(*) >= %(per_thread)s
), candidates AS (
    SELECT id, thread_id FROM scheduled_jobs
    WHERE status = 'pending' AND NOT paused
      AND due_time <= clock_timestamp() + make_interval(secs => %(lead)s)
      AND thread_id NOT IN (SELECT thread_id FROM busy)
    ORDER BY due_time
    LIMIT %(scan)s
), locked AS (
    SELECT thread_id FROM (SELECT DISTINCT thread_id FROM candidates) t
    WHERE pg_try_advisory_xact_lock(hashtextextended('runner-thread:' || thread_id, 0))
)
SELECT c.id FROM candidates c JOIN locked l ON l.thread_id = c.thread_id;

-- name: claim_due
-- Atomically take up to %(limit)s of the candidate jobs %(ids)s (due within the lead time: their
-- containers are created ahead and started at the due time), at most %(per_thread)s running per thread
-- counting those already running: a thread's jobs share its jobs/ directory, so by default they run one
-- at a time. A second runner skips the rows this one has locked.
WITH running AS (
    SELECT thread_id, count(*) AS n FROM scheduled_jobs
    WHERE status = 'running'
      -- the candidates' threads as an array: a subquery here was planned as a semi join that probed
      -- the candidates once per running row (91 ms a claim with 3,200 running; 2.9 ms as an array)
      AND thread_id = ANY(ARRAY(SELECT DISTINCT thread_id FROM scheduled_jobs WHERE id = ANY(%(ids)s)))
    GROUP BY thread_id
), ranked AS (
    SELECT j.id, COALESCE(r.n, 0) + row_number() OVER (PARTITION BY j.thread_id ORDER BY j.due_time, j.id) AS slot
    FROM scheduled_jobs j LEFT JOIN running r ON r.thread_id = j.thread_id
    WHERE j.id = ANY(%(ids)s) AND j.status = 'pending' AND NOT j.paused
), due AS (
    SELECT s.id FROM scheduled_jobs s JOIN ranked ON ranked.id = s.id
    WHERE ranked.slot <= %(per_thread)s
    ORDER BY s.due_time
    LIMIT %(limit)s
    FOR UPDATE OF s SKIP LOCKED
)
UPDATE scheduled_jobs j
SET status = 'running', started_at = clock_timestamp(), lease_owner = %(owner)s,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s), attempts = j.attempts + 1,
    lease_token = gen_random_uuid(), launched_at = NULL,  -- this claim's fencing token (migration 008)
    completed_at = NULL, error_message = NULL, exit_code = NULL, output_tail = NULL, duration_ms = NULL
FROM due WHERE j.id = due.id
RETURNING j.*;

-- name: notify_jobs
-- A run ended: a job of its thread that waited for it may run now (runs of one thread are serialized).
SELECT pg_notify('runner_jobs', '');

-- name: renew_leases
UPDATE scheduled_jobs SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE status = 'running' AND lease_owner = %(owner)s AND id = ANY(%(ids)s)
RETURNING id;

-- name: finish_run
-- Only the lease holder can finish a run; a runner that lost its lease finishes nothing.
UPDATE scheduled_jobs
SET status = %(status)s, completed_at = clock_timestamp(), error_message = %(error_message)s,
    started_at = COALESCE(%(started_at)s, started_at),  -- when the script began, not the claim
    exit_code = %(exit_code)s, output_tail = %(output_tail)s, output_truncated = %(output_truncated)s,
    duration_ms = %(duration_ms)s, lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL
WHERE id = %(id)s AND status = 'running' AND lease_owner = %(owner)s AND lease_token = %(token)s::uuid
RETURNING *;

-- name: fail_finished_run
-- In the finish's own transaction: a copied run whose changes to jobs/ the thread's limits refused.
UPDATE scheduled_jobs SET status = 'failed', error_message = %(error_message)s WHERE id = %(id)s RETURNING *;

-- name: insert_next
-- The next instance of a recurring series; the unique (series_id, due_time) makes a repeat a no-op.
-- A series whose head was cancelled meanwhile gets no next instance.
INSERT INTO scheduled_jobs (user_id, thread_id, name, due_time, script_path, recurrence, cron, timezone,
                            series_id, timeout_seconds, memory_mb, cpus, pids_limit, allow_hosts,
                            grace_seconds, overlap, retries, retry_delay_seconds, after_job, paused, script_sha256)
SELECT user_id, thread_id, name, %(due_time)s, script_path, recurrence, cron, timezone,
       series_id, timeout_seconds, memory_mb, cpus, pids_limit, allow_hosts,
       grace_seconds, overlap, retries, retry_delay_seconds, after_job, paused, script_sha256
FROM scheduled_jobs WHERE id = %(id)s AND (cron IS NOT NULL OR after_job IS NOT NULL)
ON CONFLICT (series_id, due_time) DO NOTHING
RETURNING id;

-- name: job_states
-- Status and lease of the given job ids (the orphan-container sweep asks about its containers' jobs).
SELECT id, status, lease_owner, lease_token, lease_expires_at < clock_timestamp() AS lease_expired
FROM scheduled_jobs WHERE id = ANY(%(ids)s);

-- name: previous_run_status
-- The status of the series' run that finished before this one (failure notices are sent once).
SELECT status FROM scheduled_jobs
WHERE series_id = %(series_id)s AND id <> %(id)s AND status IN ('completed', 'failed')
ORDER BY completed_at DESC NULLS LAST, id DESC
LIMIT 1;

-- name: retry_run
-- A failed attempt with retries left goes back to pending, later; its result so far is kept on the row.
UPDATE scheduled_jobs
SET status = 'pending', due_time = %(due_time)s, error_message = %(error_message)s, exit_code = %(exit_code)s,
    started_at = COALESCE(%(started_at)s, started_at),
    output_tail = %(output_tail)s, output_truncated = %(output_truncated)s, duration_ms = %(duration_ms)s,
    completed_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL
WHERE id = %(id)s AND status = 'running' AND lease_owner = %(owner)s AND lease_token = %(token)s::uuid
RETURNING *;

-- name: note_skipped
UPDATE scheduled_jobs SET missed_runs = %(missed_runs)s, skipped_note = %(note)s WHERE id = %(id)s;

-- name: trigger_after
-- A job completed: start the jobs of its thread that wait for it (due at the far-future sentinel).
UPDATE scheduled_jobs SET due_time = clock_timestamp()
WHERE thread_id = %(thread_id)s AND after_job = %(name)s AND status = 'pending' AND due_time >= %(sentinel)s
RETURNING id;

-- name: prune_history
-- Keep the newest %(keep)s runs of a series; older finished runs go.
DELETE FROM scheduled_jobs
WHERE series_id = %(series_id)s AND status IN ('completed', 'failed', 'cancelled')
  AND id < (SELECT min(id) FROM (SELECT id FROM scheduled_jobs WHERE series_id = %(series_id)s
                                 ORDER BY id DESC LIMIT %(keep)s) newest);

-- name: ensure_store_id
-- Made on first use (not in the migration), so every database, even one copied from a template, has its own.
WITH made AS (
    INSERT INTO runner_meta (key, value) VALUES ('store_id', gen_random_uuid()::text)
    ON CONFLICT (key) DO NOTHING
    RETURNING value
)
SELECT value FROM made UNION ALL SELECT value FROM runner_meta WHERE key = 'store_id' LIMIT 1;

-- --- thread uids (migrations/006_thread_uids.sql) ------------------------------------------------------

-- name: pin_first_run
-- A series from before pinning is pinned to the script its first run finds.
UPDATE scheduled_jobs SET script_sha256 = %(script_sha256)s
WHERE series_id = %(series_id)s AND script_sha256 IS NULL;

-- name: hold_lease
-- The fence before a step with an effect: still running under this runner and this claim's token
-- (renewed as it is checked). No row: the lease is gone, touch nothing.
UPDATE scheduled_jobs SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE id = %(id)s AND status = 'running' AND lease_owner = %(owner)s AND lease_token = %(token)s::uuid
RETURNING id;

-- name: fence_start
-- The fence right before the container is started; it also records that the script may have started.
UPDATE scheduled_jobs SET launched_at = clock_timestamp(),
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE id = %(id)s AND status = 'running' AND lease_owner = %(owner)s AND lease_token = %(token)s::uuid
RETURNING id;

-- name: adopt_expired
-- Runs whose lease ran out (their runner died or froze): this runner becomes their owner (the claim's
-- token stays: it labels the run's container), then decides from that container what happened
-- (runner/adoption.py). The old runner is no longer the owner: whatever it tries when it wakes is refused.
WITH expired AS (
    SELECT id, lease_owner, lease_token FROM scheduled_jobs
    WHERE status = 'running' AND lease_expires_at < clock_timestamp()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE scheduled_jobs j
SET lease_owner = %(owner)s, lease_token = COALESCE(j.lease_token, gen_random_uuid()),
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
FROM expired WHERE j.id = expired.id
RETURNING j.*, expired.lease_owner AS dead_owner, expired.lease_token AS dead_token;

-- name: requeue_unstarted
-- An adopted run whose script never started had no effects: back to pending, to run again (the claim
-- it never used does not count as an attempt).
UPDATE scheduled_jobs
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL, launched_at = NULL,
    started_at = NULL, attempts = GREATEST(attempts - 1, 0)
WHERE id = %(id)s AND status = 'running' AND lease_owner = %(owner)s AND lease_token = %(token)s::uuid
RETURNING id;
