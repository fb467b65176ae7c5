-- Named queries of the outbox: queue, claim, send and prune messages (runner.store.outbox).
-- Split on "-- name:" headers and loaded once with the other files here (runner/store/database.py).
-- Parameters use psycopg's %(name)s style; nothing here is built by string formatting.

-- name: queue_message
-- %(chat_id)s is the thread's Telegram chat (NULL for other channels); a migrated group's new chat wins.
INSERT INTO outbox (job_id, kind, thread_id, job_name, text, chat_id)
VALUES (%(job_id)s, %(kind)s, %(thread_id)s, %(job_name)s, %(text)s,
        COALESCE((SELECT chat_id FROM threads WHERE thread_id = %(thread_id)s), %(chat_id)s))
ON CONFLICT (job_id, kind) DO NOTHING
RETURNING id;

-- name: queue_attachment
INSERT INTO outbox_attachments (outbox_id, filename, content) VALUES (%(outbox_id)s, %(filename)s, %(content)s);

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

-- name: seconds_until_next_message
SELECT EXTRACT(EPOCH FROM (min(next_attempt_at) - clock_timestamp()))::float8 AS seconds
FROM outbox WHERE status = 'pending';

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
