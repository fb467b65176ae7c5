-- Named queries of threads: the host uid each thread's jobs run as (runner.store.threads).
-- Split on "-- name:" headers and loaded once with the other files here (runner/store/database.py).
-- Parameters use psycopg's %(name)s style; nothing here is built by string formatting.

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

-- name: lock_thread_files
-- Held by a writer of a thread's jobs/ files through the API while it measures the directory and
-- writes, so two writers at once cannot both fit under the thread's limits (across runners too).
SELECT pg_advisory_xact_lock(hashtextextended('runner-files:' || %(thread_id)s, 0));

-- === Thread settings: the webhook (issue 14, migration 010) =======================================

-- name: thread_settings
SELECT timezone, webhook_url, webhook_secret IS NOT NULL AS has_secret FROM threads WHERE thread_id = %(thread_id)s;

-- name: set_thread_webhook
-- Set (or, with NULL, remove) the thread's webhook. A thread that has no secret yet keeps
-- %(secret)s; removing the webhook removes its secret too. new_secret: whether %(secret)s was kept.
INSERT INTO threads (thread_id, webhook_url, webhook_secret)
VALUES (%(thread_id)s, %(url)s, CASE WHEN %(url)s::text IS NULL THEN NULL ELSE %(secret)s END)
ON CONFLICT (thread_id) DO UPDATE SET
    webhook_url = EXCLUDED.webhook_url,
    webhook_secret = CASE WHEN EXCLUDED.webhook_url IS NULL THEN NULL
                          ELSE COALESCE(threads.webhook_secret, EXCLUDED.webhook_secret) END
RETURNING webhook_secret IS NOT DISTINCT FROM %(secret)s::text AND webhook_url IS NOT NULL AS new_secret;

-- name: rotate_webhook_secret
-- A new secret for a thread that has a webhook; nothing returned if it has none.
UPDATE threads SET webhook_secret = %(secret)s
WHERE thread_id = %(thread_id)s AND webhook_url IS NOT NULL
RETURNING thread_id;
