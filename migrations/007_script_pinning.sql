-- Script pinning: each run carries the sha256 of the script approved when its job was scheduled or
-- updated, and the runner runs those bytes only (one job of a thread can no longer swap its script for
-- another's, whose grant it would borrow). NULL: a row from before this migration; its first run pins
-- the script it finds (docs/security.md, "Script pinning").
ALTER TABLE scheduled_jobs ADD COLUMN script_sha256 text
    CHECK (script_sha256 IS NULL OR script_sha256 ~ '^[0-9a-f]{64}$');

-- Delivered and failed messages whose run has left the history are pruned; this finds them cheaply.
CREATE INDEX outbox_done_orphans ON outbox (id) WHERE job_id IS NULL AND status IN ('sent', 'failed');
