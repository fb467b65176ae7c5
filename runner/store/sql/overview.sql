-- Named queries of the web dashboard: the overview's figures and the jobs page (runner.store.overview).
-- Split on "-- name:" headers and loaded once with the other files here (runner/store/database.py).
-- %(thread_id)s is an optional filter in each (NULL: every thread); nothing here is built by string formatting.

-- name: overview_runs_by_status
-- Runs that started or ended in the last 24 hours, by status (a run cancelled before it started counts by its end).
SELECT status, count(*) AS n FROM scheduled_jobs
WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
  AND status IN ('running', 'completed', 'failed', 'cancelled')
  AND COALESCE(completed_at, started_at) >= clock_timestamp() - interval '24 hours'
GROUP BY status;

-- name: overview_failures
-- The failed runs of the last 24 hours, newest first, with their reasons.
SELECT id, thread_id, name, error_message, exit_code, completed_at FROM scheduled_jobs
WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
  AND status = 'failed' AND completed_at >= clock_timestamp() - interval '24 hours'
ORDER BY completed_at DESC, id DESC
LIMIT %(limit)s;

-- name: overview_next_hour
-- What runs in the next hour (and what is overdue), earliest first; paused jobs do not run.
SELECT id, thread_id, name, due_time, timezone, recurrence, cron FROM scheduled_jobs
WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
  AND status = 'pending' AND NOT paused AND due_time <= clock_timestamp() + interval '1 hour'
ORDER BY due_time, id
LIMIT %(limit)s;

-- name: overview_lateness
-- Milliseconds from due time to start of the runs started in the last 24 hours: how many, p50, p99, and
-- how many fall in each bucket of %(edges)s (width_bucket: 0 is below the first edge, i is [edge i, edge i+1)).
-- Runs that waited for another job (due at the far-future sentinel) have no lateness.
WITH late AS (
    SELECT GREATEST(0, EXTRACT(EPOCH FROM (started_at - due_time)) * 1000)::float8 AS ms FROM scheduled_jobs
    WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
      AND status IN ('running', 'completed', 'failed') AND started_at IS NOT NULL
      AND started_at >= clock_timestamp() - interval '24 hours' AND due_time < %(sentinel)s
)
SELECT count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
       (SELECT coalesce(json_agg(json_build_array(b, c)), '[]'::json)
        FROM (SELECT width_bucket(ms, %(edges)s::float8[]) AS b, count(*) AS c FROM late GROUP BY 1) h) AS buckets
FROM late;

-- name: overview_outbox
-- Messages by delivery status.
SELECT status, count(*) AS n FROM outbox
WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
GROUP BY status;

-- name: overview_outbox_failed
-- The latest messages that failed for good, with why.
SELECT id, job_id, thread_id, job_name, last_error, created_at FROM outbox
WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s) AND status = 'failed'
ORDER BY id DESC
LIMIT %(limit)s;

-- name: dashboard_jobs
-- One row per job (a series): its live run if it has one, else its latest, with the status and reason of
-- its latest finished run; %(status)s matches either. Newest first, a page of %(limit)s from %(offset)s,
-- each row carrying the count of all that match. The series are ranked on narrow rows (id, series,
-- status) and only the page's rows are read whole: a lateral lookup per series, and sorting whole rows
-- (their output tails), each cost 50-110 ms at 10,000 rows of 2,000 series.
WITH heads AS (
    SELECT DISTINCT ON (series_id) id, series_id, status FROM scheduled_jobs
    WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
    ORDER BY series_id, (status IN ('pending', 'running')) DESC, id DESC
), finished AS (
    SELECT DISTINCT ON (series_id) id, series_id, status FROM scheduled_jobs
    WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
      AND status IN ('completed', 'failed', 'cancelled')
    ORDER BY series_id, id DESC
), page AS (
    SELECT h.id, l.id AS last_id, count(*) OVER () AS total
    FROM heads h LEFT JOIN finished l ON l.series_id = h.series_id
    WHERE %(status)s::text IS NULL OR h.status = %(status)s OR l.status = %(status)s
    ORDER BY h.id DESC
    LIMIT %(limit)s OFFSET %(offset)s
)
SELECT j.*, f.status AS last_status, f.error_message AS last_reason, f.completed_at AS last_completed_at,
       p.total
FROM page p JOIN scheduled_jobs j ON j.id = p.id LEFT JOIN scheduled_jobs f ON f.id = p.last_id
ORDER BY j.id DESC;

-- name: dashboard_threads
-- The threads that have jobs, for an admin's thread filter.
SELECT DISTINCT thread_id FROM scheduled_jobs ORDER BY thread_id LIMIT %(limit)s;
