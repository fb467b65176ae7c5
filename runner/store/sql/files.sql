-- Named queries of a thread's files in the database, RUNNER_FILES=postgres (runner.store.files).
-- Split on "-- name:" headers and loaded once with the other files here (runner/store/database.py).
-- Parameters use psycopg's %(name)s style; nothing here is built by string formatting.
-- A name's files below it (the directory name/) are the range [name || '/', name || '0') of the primary
-- key: '0' is the byte after '/', and names compare byte by byte (COLLATE "C", migration 012).

-- name: list_thread_files
-- The plain files of jobs/ itself (those in a directory below it are counted by thread_file_dirs).
SELECT name, size, modified FROM thread_files
WHERE thread_id = %(thread_id)s AND strpos(name, '/') = 0
ORDER BY name
LIMIT %(limit)s;

-- name: thread_file_dirs
-- The directories of jobs/ (what a listing counts as "other", as it does a local directory).
SELECT count(DISTINCT split_part(name, '/', 1)) AS dirs FROM thread_files
WHERE thread_id = %(thread_id)s AND strpos(name, '/') > 0;

-- name: read_thread_file
-- One file; its content only if it has at most %(cap)s bytes (a larger one is refused by its size, unread).
SELECT size, modified, CASE WHEN size <= %(cap)s::bigint THEN content END AS content
FROM thread_files WHERE thread_id = %(thread_id)s AND name = %(name)s::text;

-- name: thread_files_content
-- Every file of the thread with its content (a run's copy into its container; runner files migrate).
SELECT name, content, modified FROM thread_files WHERE thread_id = %(thread_id)s ORDER BY name;

-- name: thread_files_usage
-- What the thread holds: files and bytes. Run under lock_thread_files, after a write, in its transaction.
SELECT count(*) AS files, COALESCE(sum(size), 0)::bigint AS bytes FROM thread_files WHERE thread_id = %(thread_id)s;

-- name: delete_thread_files
-- The files of exactly these names (those a write replaces, and the files a new path runs through).
DELETE FROM thread_files WHERE thread_id = %(thread_id)s AND name = ANY(%(names)s::text[]);

-- name: delete_thread_file_trees
-- Everything below these names, as if each were a directory removed whole.
DELETE FROM thread_files f USING unnest(%(names)s::text[]) AS n(name)
WHERE f.thread_id = %(thread_id)s
  AND f.name >= (n.name || '/') COLLATE "C" AND f.name < (n.name || '0') COLLATE "C";

-- name: insert_thread_files
-- New files (their names were cleared first); a NULL modified time is the database's now.
INSERT INTO thread_files (thread_id, name, content, modified)
SELECT %(thread_id)s, f.name, f.content, COALESCE(f.modified, clock_timestamp())
FROM unnest(%(names)s::text[], %(contents)s::bytea[], %(modified)s::timestamptz[]) AS f(name, content, modified);

-- name: delete_thread_file
-- A name and everything below it (a file, or a directory of them), as rm does in a local jobs/.
DELETE FROM thread_files
WHERE thread_id = %(thread_id)s
  AND (name = %(name)s::text
       OR (name >= (%(name)s::text || '/') COLLATE "C" AND name < (%(name)s::text || '0') COLLATE "C"))
RETURNING name;

-- name: threads_with_files
SELECT DISTINCT thread_id FROM thread_files ORDER BY thread_id;
