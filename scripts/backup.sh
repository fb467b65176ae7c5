#!/usr/bin/env bash
# Back up a compose deployment of runner: the database (pg_dump, custom format) and the thread files.
#
#   scripts/backup.sh [DEST_DIR]        (default backups/<UTC time>; run from the clone, as root)
#
# The runner is stopped for the moment of the copy, so the files and the database agree (running jobs
# get RUNNER_SHUTDOWN_GRACE to finish), and started again afterwards. Postgres keeps running.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/compose-lib.sh

dest=${1:-backups/$(date -u +%Y%m%dT%H%M%SZ)}
data=$(data_path)
pg=$(container_of postgres)
[ -n "$pg" ] || { echo "the postgres service is not running: start it with 'docker compose up -d postgres'" >&2; exit 1; }
[ -d "$data" ] || { echo "$data does not exist: set RUNNER_DATA_PATH as in .env" >&2; exit 1; }
mkdir -p "$dest"

runner=$(container_of runner)
was_running=no
if [ -n "$runner" ] && [ "$(docker inspect -f '{{.State.Running}}' "$runner")" = true ]; then
    was_running=yes
    echo "stopping the runner (running jobs finish first)"
    compose stop runner
fi
restart() { if [ "$was_running" = yes ]; then compose start runner >/dev/null; fi; }
trap restart EXIT

docker exec "$pg" pg_dump -U runner -d runner --format=custom > "$dest/runner.dump.partial"
mv "$dest/runner.dump.partial" "$dest/runner.dump"
# --sparse: a job's sparse file (truncate to 50 MiB, 8 KiB on disk) is stored, and restored, as holes;
# without it a restore writes every zero out (4.9 GiB for 100 such files).
tar --numeric-owner --sparse -C "$data" -czf "$dest/files.tar.gz.partial" .
mv "$dest/files.tar.gz.partial" "$dest/files.tar.gz"
echo "backed up the database ($(du -h "$dest/runner.dump" | cut -f1)) and $data ($(du -h "$dest/files.tar.gz" | cut -f1)) to $dest"
