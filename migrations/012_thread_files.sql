-- A thread's files in the database (issue 17, RUNNER_FILES=postgres): one row per file of its jobs/,
-- so that runners on several hosts share no file system. The service writes them through
-- runner.store.files (queries in runner/store/sql/files.sql), under the thread's files lock, with the
-- thread's limits (RUNNER_MAX_FILE_MB, RUNNER_DISK_MB, RUNNER_MAX_FILES) checked in the transaction.
--
-- name: a relative path under jobs/ (prices.json, check_attachments/note.bin), compared byte by byte
-- (COLLATE "C": the order is the bytes', and a range on the primary key finds a directory's files).
-- The shape checked here is runner.filerules.name_problem's: each part 1-128 of [A-Za-z0-9._-] starting
-- with a letter or digit, at most 64 parts and 4096 bytes.
-- size: the content's length, made by the database (it cannot disagree with the content).
CREATE TABLE thread_files (
    thread_id text NOT NULL,
    name text COLLATE "C" NOT NULL,
    content bytea NOT NULL,
    size bigint GENERATED ALWAYS AS (octet_length(content)) STORED,
    modified timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (thread_id, name),
    CONSTRAINT thread_files_plain_name CHECK (
        octet_length(name) BETWEEN 1 AND 4096
        AND name ~ '^[A-Za-z0-9._/-]+$'
        AND name !~ '(^|/)[^A-Za-z0-9]'   -- every part starts with a letter or digit (no '', '.', '..')
        AND name !~ '/$'
        AND name !~ '[^/]{129}'           -- no part longer than 128
        AND length(name) - length(replace(name, '/', '')) < 64
    )
);
