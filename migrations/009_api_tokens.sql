-- API tokens (issue 14). Only the SHA-256 of a token's secret is kept; public_id names the row and is
-- part of the token's text. A token reaches one thread, or every thread when admin; read_only tokens
-- may not write. A revoked token keeps its row (for `runner token list`), and its name may be reused.
CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    public_id     text NOT NULL UNIQUE CHECK (public_id ~ '^[0-9a-f]{16}$'),
    name          text NOT NULL CHECK (name ~ '^[a-z0-9_.-]{1,64}$'),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    thread_id     text,
    admin         boolean NOT NULL DEFAULT false,
    read_only     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CHECK (admin = (thread_id IS NULL))
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- The messages feed of a thread (GET /v1/threads/{thread}/messages?after=<id>): its outbox in id order.
CREATE INDEX outbox_thread_feed ON outbox (thread_id, id);
