-- Named queries of API tokens (runner.store.tokens).
-- Split on "-- name:" headers and loaded once with the other files here (runner/store/database.py).
-- Parameters use psycopg's %(name)s style; nothing here is built by string formatting.

-- name: insert_token
-- A name already held by a live token is refused by the unique index (api_tokens_live_name).
INSERT INTO api_tokens (public_id, name, secret_sha256, thread_id, admin, read_only, expires_at)
VALUES (%(public_id)s, %(name)s, %(secret_sha256)s, %(thread_id)s, %(admin)s, %(read_only)s,
        CASE WHEN %(expires_seconds)s::float8 IS NULL THEN NULL
             ELSE now() + make_interval(secs => %(expires_seconds)s::float8) END)
ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
RETURNING id, public_id, name, thread_id, admin, read_only, created_at, expires_at;

-- name: live_token
-- The row a presented token names, if it is neither revoked nor expired (by the database's clock).
SELECT id, public_id, name, secret_sha256, thread_id, admin, read_only, expires_at
FROM api_tokens
WHERE public_id = %(public_id)s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now());

-- name: token_used
-- At most one write a minute per token, however busy it is.
UPDATE api_tokens SET last_used_at = now()
WHERE id = %(id)s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- name: list_tokens
SELECT name, public_id, thread_id, admin, read_only, created_at, expires_at, revoked_at, last_used_at,
       (expires_at IS NOT NULL AND expires_at <= now()) AS expired
FROM api_tokens
WHERE %(include_revoked)s OR revoked_at IS NULL
ORDER BY created_at, id;

-- name: revoke_token
UPDATE api_tokens SET revoked_at = now()
WHERE name = %(name)s AND revoked_at IS NULL
RETURNING name, public_id;

-- name: token_is_live
-- Whether the token of row %(id)s may still be used (a held request checks again while it waits).
SELECT 1 AS live FROM api_tokens
WHERE id = %(id)s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now());

-- name: any_live_admin_token
-- Whether some admin token is live (`runner up` on embedded defaults makes one for the dashboard if not).
SELECT id FROM api_tokens
WHERE admin AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > clock_timestamp())
LIMIT 1;
