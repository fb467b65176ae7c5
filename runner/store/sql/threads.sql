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
