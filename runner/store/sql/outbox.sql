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
-- Not the messages of threads delivered by webhook (a thread's own webhook_url, or its channel's in
-- %(webhook_channels)s: every claim below leaves those to the webhook deliverer).
SELECT DISTINCT o.chat_id FROM outbox o
WHERE o.chat_id IS NOT NULL AND (
      (o.status = 'pending' AND o.next_attempt_at <= clock_timestamp())
   OR (o.status = 'sending' AND o.lease_expires_at < clock_timestamp()))
  AND NOT (EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = o.thread_id AND t.webhook_url IS NOT NULL)
       OR split_part(o.thread_id, ':', 1) = ANY(%(webhook_channels)s::text[]))
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
  AND NOT (EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = o.thread_id AND t.webhook_url IS NOT NULL)
       OR split_part(o.thread_id, ':', 1) = ANY(%(webhook_channels)s::text[]))
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
      AND NOT (EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = outbox.thread_id AND t.webhook_url IS NOT NULL)
       OR split_part(outbox.thread_id, ':', 1) = ANY(%(webhook_channels)s::text[]))
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
FROM outbox WHERE status = 'pending' AND NOT (EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = outbox.thread_id AND t.webhook_url IS NOT NULL)
       OR split_part(outbox.thread_id, ':', 1) = ANY(%(webhook_channels)s::text[]));

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

-- === Webhook delivery (issue 14, migration 010) ===================================================
-- A message goes by webhook when its thread has a webhook_url of its own, or its channel (the part of
-- the thread id before ':') is one of %(webhook_channels)s (RUNNER_WEBHOOK_CHANNELS). The route is
-- decided when the message is claimed, so a webhook set later takes the thread's undelivered messages.

-- name: webhook_threads_with_due_messages
SELECT DISTINCT o.thread_id FROM outbox o
WHERE ((o.status = 'pending' AND o.next_attempt_at <= clock_timestamp())
    OR (o.status = 'sending' AND o.lease_expires_at < clock_timestamp()))
  AND (EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = o.thread_id AND t.webhook_url IS NOT NULL)
       OR split_part(o.thread_id, ':', 1) = ANY(%(webhook_channels)s::text[]))
LIMIT %(limit)s;

-- name: claim_webhook_head
-- The oldest undelivered message of one thread (whatever its route: a message Telegram is still
-- sending holds the next), if it is due and goes by webhook; found first and only then locked, as
-- claim_chat_head. Returned with the thread's own webhook (NULL: its channel's).
WITH head AS (
    SELECT id FROM outbox
    WHERE thread_id = %(thread_id)s AND status IN ('pending', 'sending')
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
  AND (EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = o.thread_id AND t.webhook_url IS NOT NULL)
       OR split_part(o.thread_id, ':', 1) = ANY(%(webhook_channels)s::text[]))
RETURNING o.*,
    (SELECT t.webhook_url FROM threads t WHERE t.thread_id = o.thread_id) AS webhook_url,
    (SELECT t.webhook_secret FROM threads t WHERE t.thread_id = o.thread_id) AS webhook_secret;

-- name: seconds_until_next_webhook_message
-- When the next webhook thread's head is due: a pending head's next attempt, or the lease of one
-- being sent running out. Only heads count, so the messages queued behind a head that waits (for a
-- retry, or a slow receiver) do not make the deliverer look again and again.
SELECT EXTRACT(EPOCH FROM (min(CASE WHEN h.status = 'pending' THEN h.next_attempt_at ELSE h.lease_expires_at END)
                           - clock_timestamp()))::float8 AS seconds
FROM (SELECT DISTINCT ON (o.thread_id) o.status, o.next_attempt_at, o.lease_expires_at
      FROM outbox o
      WHERE o.status IN ('pending', 'sending') AND (EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = o.thread_id AND t.webhook_url IS NOT NULL)
       OR split_part(o.thread_id, ':', 1) = ANY(%(webhook_channels)s::text[]))
      ORDER BY o.thread_id, o.id) h;
