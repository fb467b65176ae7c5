-- Per-job policies: missed runs (grace), overlap, retries, chaining (--after); and a record of the
-- slots a run stood for that did not run (missed while the runner was down, or skipped by overlap).
ALTER TABLE scheduled_jobs ADD COLUMN grace_seconds integer NOT NULL DEFAULT 3600 CHECK (grace_seconds >= 0);
ALTER TABLE scheduled_jobs ADD COLUMN overlap text NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'queue'));
ALTER TABLE scheduled_jobs ADD COLUMN retries integer NOT NULL DEFAULT 0 CHECK (retries >= 0);
ALTER TABLE scheduled_jobs ADD COLUMN retry_delay_seconds integer NOT NULL DEFAULT 60 CHECK (retry_delay_seconds >= 0);
ALTER TABLE scheduled_jobs ADD COLUMN after_job text;     -- run when this job of the thread completes
ALTER TABLE scheduled_jobs ADD COLUMN missed_runs integer NOT NULL DEFAULT 0;
ALTER TABLE scheduled_jobs ADD COLUMN skipped_note text;  -- which slots were missed or skipped, in words
CREATE INDEX scheduled_jobs_after ON scheduled_jobs (thread_id, after_job) WHERE after_job IS NOT NULL AND status = 'pending';
