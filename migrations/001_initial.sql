-- The jobs table keeps the seed's scheduled_jobs columns and status values, with timestamptz times,
-- and adds what the runner needs: leases, attempts, results, the schedule's zone and per-job limits.
-- Each row is one run of a job; a recurring job is a series of rows sharing series_id.

CREATE TABLE threads (
    thread_id   text PRIMARY KEY,
    user_id     text NOT NULL DEFAULT '',
    timezone    text,                                  -- NULL: the operator's default zone
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scheduled_jobs (
    id               bigserial PRIMARY KEY,
    user_id          varchar(255) NOT NULL DEFAULT '',
    thread_id        varchar(255) NOT NULL,
    name             varchar(255) NOT NULL,
    due_time         timestamptz NOT NULL,
    script_path      text NOT NULL,
    status           varchar(20) NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    recurrence       varchar(100),                     -- as the user wrote it: "daily 9am"
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    error_message    text,
    -- runner additions
    series_id        uuid NOT NULL DEFAULT gen_random_uuid(),
    cron             text,                             -- the recurrence as the cron line evaluated
    timezone         text NOT NULL DEFAULT 'UTC',      -- IANA zone the schedule is computed in
    lease_owner      text,
    lease_expires_at timestamptz,
    attempts         integer NOT NULL DEFAULT 0,
    exit_code        integer,
    output_tail      text,                             -- bounded tail of stdout+stderr
    output_truncated boolean NOT NULL DEFAULT false,
    duration_ms      integer,
    timeout_seconds  integer NOT NULL DEFAULT 30 CHECK (timeout_seconds > 0),
    memory_mb        integer NOT NULL DEFAULT 256 CHECK (memory_mb > 0),
    cpus             real NOT NULL DEFAULT 1 CHECK (cpus > 0),
    pids_limit       integer NOT NULL DEFAULT 64 CHECK (pids_limit > 0),
    -- A recurring series has at most one row per due time: the second runner's insert of the
    -- next instance is a no-op.
    CONSTRAINT scheduled_jobs_series_due UNIQUE (series_id, due_time),
    CONSTRAINT scheduled_jobs_recurrence CHECK ((recurrence IS NULL) = (cron IS NULL))
);

-- Serves the claim query and "when is the next job due" whatever the table's size
-- (the seed's (due_time, status) index also covers finished rows, which only grow).
CREATE INDEX scheduled_jobs_pending_due ON scheduled_jobs (due_time) WHERE status = 'pending';
CREATE INDEX scheduled_jobs_running_lease ON scheduled_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX scheduled_jobs_thread ON scheduled_jobs (thread_id, id);
CREATE INDEX scheduled_jobs_series ON scheduled_jobs (series_id, id);

-- Messages waiting for delivery. One row per (run, kind): finishing a run twice cannot queue twice.
CREATE TABLE outbox (
    id               bigserial PRIMARY KEY,
    job_id           bigint REFERENCES scheduled_jobs (id) ON DELETE SET NULL,
    kind             text NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'failure')),
    thread_id        text NOT NULL,
    job_name         text NOT NULL,
    text             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    CONSTRAINT outbox_once UNIQUE (job_id, kind)
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_sending ON outbox (lease_expires_at) WHERE status = 'sending';

-- NOTIFY is a wake-up hint; the tables are the truth. Empty payloads fold into one per transaction.
CREATE FUNCTION runner_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('runner_jobs', '');
    RETURN NULL;
END $$;

CREATE TRIGGER scheduled_jobs_notify
    AFTER INSERT OR UPDATE OF due_time, status ON scheduled_jobs
    FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION runner_notify_jobs();

CREATE FUNCTION runner_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('runner_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify
    AFTER INSERT OR UPDATE OF status, next_attempt_at ON outbox
    FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION runner_notify_outbox();
