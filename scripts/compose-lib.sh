# Shared by backup.sh and restore.sh: the compose command, the stack's settings and containers.
# Compose itself reads COMPOSE_FILE (e.g. compose.yaml:compose.offline.yaml) and COMPOSE_PROJECT_NAME.

compose() {
    if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

# A variable from the environment, else from .env, else the default compose.yaml uses.
setting() {
    local name=$1 default=$2 value=${!1:-}
    if [ -z "$value" ] && [ -f .env ]; then
        value=$(sed -n "s/^${name}=//p" .env | tail -n 1)
    fi
    printf '%s' "${value:-$default}"
}

container_of() {  # the id of a service's container, or nothing
    compose ps -q "$1" 2>/dev/null | head -n 1
}

wait_for_postgres() {
    local pg i
    for i in $(seq 1 60); do
        pg=$(container_of postgres)
        if [ -n "$pg" ] && docker exec "$pg" pg_isready -U runner -d runner -h 127.0.0.1 >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    echo "Postgres did not become ready in 60 s: see 'docker compose logs postgres'" >&2
    return 1
}

data_path() {  # RUNNER_DATA_PATH, refused unless it is an absolute path below /
    local data
    data=$(setting RUNNER_DATA_PATH /var/lib/runner/files)
    case "$data" in
        /?*) printf '%s' "${data%/}" ;;
        *) echo "RUNNER_DATA_PATH=$data: give an absolute directory such as /var/lib/runner/files" >&2; return 1 ;;
    esac
}
