-- Telegram delivery: per-message chat (follows group migrations), progress through a long message's
-- parts (a retry resumes after the last part sent), attachments, failure notices; paused jobs.

ALTER TABLE threads ADD COLUMN chat_id text;              -- set when a group chat migrated

ALTER TABLE outbox ADD COLUMN chat_id text;               -- where to send; NULL: not a Telegram thread
ALTER TABLE outbox ADD COLUMN parts_sent integer NOT NULL DEFAULT 0;
CREATE INDEX outbox_chat ON outbox (chat_id, id) WHERE status IN ('pending', 'sending');

CREATE TABLE outbox_attachments (
    id        bigserial PRIMARY KEY,
    outbox_id bigint NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    filename  text NOT NULL,
    content   bytea NOT NULL,
    sent      boolean NOT NULL DEFAULT false
);
CREATE INDEX outbox_attachments_message ON outbox_attachments (outbox_id, id);

ALTER TABLE scheduled_jobs ADD COLUMN paused boolean NOT NULL DEFAULT false;
DROP INDEX scheduled_jobs_pending_due;
CREATE INDEX scheduled_jobs_pending_due ON scheduled_jobs (due_time) WHERE status = 'pending' AND NOT paused;
