-- The API's job list filtered by status (GET /v1/threads/{thread}/jobs?status=…, issue 14): read
-- backwards on (thread_id, status, id), a page costs the rows it shows. On (thread_id, id) alone, the
-- pending jobs of a thread with 10,000 finished runs were found by reading past every finished one.
CREATE INDEX scheduled_jobs_thread_status ON scheduled_jobs (thread_id, status, id);
