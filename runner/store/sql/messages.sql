-- Named queries of the messages feed: what a thread's jobs said, for a client that pulls it
-- (runner.store.messages).
-- Split on "-- name:" headers and loaded once with the other files here (runner/store/database.py).
-- Parameters use psycopg's %(name)s style; nothing here is built by string formatting.

-- name: thread_messages
-- A thread's messages and failure notices after the cursor %(after)s, oldest first (outbox_thread_feed).
SELECT o.id, o.job_id, o.job_name, o.kind, o.text, o.created_at, o.status,
       COALESCE((SELECT array_agg(a.filename ORDER BY a.id) FROM outbox_attachments a WHERE a.outbox_id = o.id),
                '{}') AS attachments
FROM outbox o
WHERE o.thread_id = %(thread_id)s AND o.id > %(after)s
ORDER BY o.id
LIMIT %(limit)s;
