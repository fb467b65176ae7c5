-- Named queries, split on "-- name:" headers and loaded once (runner/db.py).
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
      AND thread_id IN (SELECT thread_id FROM scheduled_jobs WHERE id = ANY(%(ids)s))
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

-- name: get_job
SELECT * FROM scheduled_jobs WHERE id = %(id)s;

-- name: list_jobs
-- %(thread_id)s and %(status)s are optional filters (NULL: all).
SELECT * FROM scheduled_jobs
WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY id DESC
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

-- name: queue_message
-- %(chat_id)s is the thread's Telegram chat (NULL for other channels); a migrated group's new chat wins.
INSERT INTO outbox (job_id, kind, thread_id, job_name, text, chat_id)
VALUES (%(job_id)s, %(kind)s, %(thread_id)s, %(job_name)s, %(text)s,
        COALESCE((SELECT chat_id FROM threads WHERE thread_id = %(thread_id)s), %(chat_id)s))
ON CONFLICT (job_id, kind) DO NOTHING
RETURNING id;

-- name: queue_attachment
INSERT INTO outbox_attachments (outbox_id, filename, content) VALUES (%(outbox_id)s, %(filename)s, %(content)s);

-- name: previous_run_status
-- The status of the series' run that finished before this one (failure notices are sent once).
SELECT status FROM scheduled_jobs
WHERE series_id = %(series_id)s AND id <> %(id)s AND status IN ('completed', 'failed')
ORDER BY completed_at DESC NULLS LAST, id DESC
LIMIT 1;

-- name: chats_with_due_messages
SELECT DISTINCT chat_id FROM outbox
WHERE chat_id IS NOT NULL AND (
      (status = 'pending' AND next_attempt_at <= clock_timestamp())
   OR (status = 'sending' AND lease_expires_at < clock_timestamp()))
LIMIT %(limit)s;

-- name: claim_chat_head
-- The oldest undelivered message of one chat, if it is due: messages to a chat go out in order. The
-- head is found first and only then locked: while its sender holds it locked (renewing its lease,
-- recording a part) nothing is claimed, rather than skipping to the chat's next message.
WITH head AS (
    SELECT id FROM outbox
    WHERE chat_id = %(chat_id)s AND status IN ('pending', 'sending')
    ORDER BY id
    LIMIT 1
), locked AS (
    SELECT o.id FROM outbox o JOIN head ON o.id = head.id
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE outbox o
SET status = 'sending', attempts = o.attempts + 1, lease_owner = %(owner)s,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
FROM locked
WHERE o.id = locked.id
  AND ((o.status = 'pending' AND o.next_attempt_at <= clock_timestamp())
    OR (o.status = 'sending' AND o.lease_expires_at < clock_timestamp()))
RETURNING o.*;

-- name: part_sent
-- Recorded right after each part goes out, so a retry resumes after it (and the lease is renewed).
-- No row returned: the sender lost its lease, and stops before the next part.
UPDATE outbox SET parts_sent = %(parts_sent)s,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE id = %(id)s AND status = 'sending' AND lease_owner = %(owner)s
RETURNING id;

-- name: attachments_of
SELECT id, filename, content, sent FROM outbox_attachments WHERE outbox_id = %(outbox_id)s ORDER BY id;

-- name: attachment_sent
-- Sent: its bytes are not needed again (a retry resumes after the attachments that are gone). Only
-- the lease holder records it, renewing its lease; no row returned: the lease is lost.
WITH held AS (
    UPDATE outbox SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
    WHERE id = %(outbox_id)s AND status = 'sending' AND lease_owner = %(owner)s
    RETURNING id
)
DELETE FROM outbox_attachments a USING held WHERE a.id = %(id)s AND a.outbox_id = held.id
RETURNING a.id;

-- name: migrate_chat
-- A group became a supergroup: its thread's messages follow it.
WITH t AS (
    INSERT INTO threads (thread_id, chat_id) VALUES (%(thread_id)s, %(new_chat_id)s)
    ON CONFLICT (thread_id) DO UPDATE SET chat_id = EXCLUDED.chat_id
)
UPDATE outbox SET chat_id = %(new_chat_id)s
WHERE chat_id = %(old_chat_id)s AND status IN ('pending', 'sending');

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

-- name: claim_messages
-- Take due messages for delivery, with a lease so a dead notifier's messages are retried.
-- %(without_chat)s: only messages of threads that have no Telegram chat (the Telegram notifier
-- takes the others chat by chat, in order).
WITH due AS (
    SELECT id FROM outbox
    WHERE ((status = 'pending' AND next_attempt_at <= clock_timestamp())
       OR (status = 'sending' AND lease_expires_at < clock_timestamp()))
      AND (NOT %(without_chat)s OR chat_id IS NULL)
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
SET status = 'sending', attempts = o.attempts + 1, lease_owner = %(owner)s,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
FROM due WHERE o.id = due.id
RETURNING o.*, (SELECT coalesce(json_agg(json_build_array(a.filename, length(a.content)) ORDER BY a.id), '[]')
                FROM outbox_attachments a WHERE a.outbox_id = o.id) AS attachments;

-- name: mark_sent
-- Delivered: its attachments' bytes go (the row, and its text, stay while its run is in the history).
WITH done AS (
    UPDATE outbox SET status = 'sent', sent_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL,
        last_error = NULL
    WHERE id = %(id)s AND status = 'sending' AND lease_owner = %(owner)s
    RETURNING id
)
DELETE FROM outbox_attachments a USING done WHERE a.outbox_id = done.id;

-- name: mark_failed
-- Failed for good: never retried, so its attachments' bytes go too.
WITH done AS (
    UPDATE outbox SET status = 'failed', last_error = %(error)s, lease_owner = NULL, lease_expires_at = NULL
    WHERE id = %(id)s AND status = 'sending' AND lease_owner = %(owner)s
    RETURNING id
)
DELETE FROM outbox_attachments a USING done WHERE a.outbox_id = done.id;

-- name: retry_later
UPDATE outbox SET status = 'pending', last_error = %(error)s, lease_owner = NULL, lease_expires_at = NULL,
    next_attempt_at = clock_timestamp() + make_interval(secs => %(delay)s)
WHERE id = %(id)s AND status = 'sending' AND lease_owner = %(owner)s;

-- name: messages_for_job
SELECT * FROM outbox WHERE job_id = %(job_id)s ORDER BY id;

-- name: seconds_until_next_message
SELECT EXTRACT(EPOCH FROM (min(next_attempt_at) - clock_timestamp()))::float8 AS seconds
FROM outbox WHERE status = 'pending';

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

-- name: ensure_store_id
-- Made on first use (not in the migration), so every database, even one copied from a template, has its own.
WITH made AS (
    INSERT INTO runner_meta (key, value) VALUES ('store_id', gen_random_uuid()::text)
    ON CONFLICT (key) DO NOTHING
    RETURNING value
)
SELECT value FROM made UNION ALL SELECT value FROM runner_meta WHERE key = 'store_id' LIMIT 1;

-- --- thread uids (migrations/006_thread_uids.sql) ------------------------------------------------------

-- name: thread_uid
SELECT uid FROM threads WHERE thread_id = %(thread_id)s;

-- name: lock_thread_uids
-- Serialises uid allocation across runners until the allocating transaction ends.
SELECT pg_advisory_xact_lock(1920298606, 6);

-- name: thread_uids_in_range
-- The uids this database has given in [first, last]; the next one is chosen from the rest (and, with the
-- engine's registry, from those no other database on the engine holds). Run under lock_thread_uids.
SELECT uid FROM threads WHERE uid BETWEEN %(first)s AND %(last)s;

-- name: give_thread_uid
-- Give the thread %(uid)s unless its uid is no longer %(old)s (NULL: none yet); nothing returned then.
-- Run under lock_thread_uids in the same transaction.
INSERT INTO threads (thread_id, uid) VALUES (%(thread_id)s, %(uid)s)
ON CONFLICT (thread_id) DO UPDATE SET uid = EXCLUDED.uid WHERE threads.uid IS NOT DISTINCT FROM %(old)s::integer
RETURNING uid;

-- === Script pinning and outbox pruning (migration 007) ==========================================

-- name: pin_first_run
-- A series from before pinning is pinned to the script its first run finds.
UPDATE scheduled_jobs SET script_sha256 = %(script_sha256)s
WHERE series_id = %(series_id)s AND script_sha256 IS NULL;

-- name: lock_series
-- Approving a script: the series' rows, locked so that none is claimed meanwhile (claims skip them).
SELECT id, status FROM scheduled_jobs WHERE series_id = %(series_id)s ORDER BY id FOR UPDATE;

-- name: approve_series
-- The approved script of every row of the series (the pending run and the rows later runs copy).
UPDATE scheduled_jobs SET script_sha256 = %(script_sha256)s
WHERE series_id = %(series_id)s AND status <> 'running';

-- name: prune_outbox
-- Delivered or failed messages whose run has been pruned from the history (its job_id was set NULL):
-- nothing shows them any more. Undelivered ones stay until they are delivered.
DELETE FROM outbox WHERE job_id IS NULL AND status IN ('sent', 'failed');

-- === Outbox send leases (issue 12, item 5) ========================================================

-- name: renew_outbox_lease
-- The heartbeat of a message being sent. No row returned: another runner holds it now.
UPDATE outbox SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE id = %(id)s AND status = 'sending' AND lease_owner = %(owner)s
RETURNING id;

-- === Fencing and adoption of a dead runner's runs (issue 12 items 3-4, migration 008) ==============

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
