#!/usr/bin/env bash
# Restore a backup made by scripts/backup.sh: REPLACES the database and the thread files.
#
#   scripts/restore.sh [-y] BACKUP_DIR   (run from the clone, as root; -y: do not ask)
#
# Works on a fresh machine or after `docker compose down -v`: Postgres is started alone, the dump is
# restored (existing tables are dropped first), the files are unpacked, then the whole stack starts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/compose-lib.sh

yes=no
if [ "${1:-}" = "-y" ]; then yes=yes; shift; fi
src=${1:?usage: scripts/restore.sh [-y] BACKUP_DIR}
for f in runner.dump files.tar.gz; do
    [ -f "$src/$f" ] || { echo "$src/$f is missing: give a directory made by scripts/backup.sh" >&2; exit 1; }
done
data=$(data_path)
if [ "$yes" != yes ]; then
    read -r -p "replace the runner database and everything in $data with $src? [y/N] " answer
    [ "$answer" = y ] || [ "$answer" = Y ] || { echo "nothing changed"; exit 1; }
fi

compose stop runner >/dev/null 2>&1 || true
compose up -d postgres
wait_for_postgres
pg=$(container_of postgres)
docker exec -i "$pg" pg_restore -U runner -d runner --clean --if-exists --no-owner --exit-on-error < "$src/runner.dump"

mkdir -p "$data"
find "$data" -mindepth 1 -delete
tar --numeric-owner -C "$data" -xzf "$src/files.tar.gz"  # members backup.sh stored sparse come back sparse

compose up -d
echo "restored $src; 'docker compose ps' shows the runner healthy in a few seconds"
