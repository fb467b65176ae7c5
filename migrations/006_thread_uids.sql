-- A host uid (and gid, the same number) per thread, from RUNNER_UID_RANGE: per-user kernel limits
-- (inotify instances and watches, pipe buffers, message queues) are counted per host uid, so threads
-- that shared one uid could exhaust each other's. Allocated once, on a thread's first run; UNIQUE, so
-- two runners allocating at once can never give one uid to two threads.
ALTER TABLE threads ADD COLUMN uid integer UNIQUE CHECK (uid > 0);
