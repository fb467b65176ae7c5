-- Webhook delivery (issue 14): a thread may have a webhook URL; its messages and failure notices are
-- then POSTed there, signed with the thread's secret, instead of going to Telegram or the console.
-- The secret is made by the runner (never chosen by a caller) and shown only when set or rotated.
ALTER TABLE threads ADD COLUMN webhook_url text CHECK (length(webhook_url) <= 2048);
ALTER TABLE threads ADD COLUMN webhook_secret text;

-- The webhook deliverer finds the oldest undelivered message of each thread (claimed one at a time per
-- thread, in order) among the undelivered ones only.
CREATE INDEX outbox_thread_undelivered ON outbox (thread_id, id) WHERE status IN ('pending', 'sending');
