-- Fencing (issue 12, items 3 and 4). Each claim of a run gets a token of its own: every step with an
-- effect (starting the container, recording the result, deleting the run's files) checks, in one indexed
-- UPDATE, that the row is still running under this runner and this token. A runner that lost the lease
-- (it froze, another adopted the run) finds the token changed and touches nothing. The job container is
-- labelled with the token, so the orphan sweep tells a live claim's container from an earlier claim's.
-- launched_at: when the runner asked the engine to start the script; unset, a dead runner's run had no
-- effects and is run again instead of being failed.
ALTER TABLE scheduled_jobs ADD COLUMN lease_token uuid;
ALTER TABLE scheduled_jobs ADD COLUMN launched_at timestamptz;
