#!/usr/bin/env bash
# Provision a throwaway local PostgreSQL for tests and dev (no Docker).
#
#   bash .ci/postgres.sh start|stop|status|url
#   TASKTIDE_PG_DURABLE=1 bash .ci/postgres.sh start|stop|status|url   # a second, durable cluster
#
# Consumes: env TASKTIDE_TEST_DATABASE_URL (if it points at another server, start/stop do nothing),
#           TASKTIDE_PG_PORT (default 55432), the Debian `postgresql` package (installed via apt if missing).
#           TASKTIDE_PG_DURABLE=1 selects a second cluster under <repo>/.local/pg-durable on
#           TASKTIDE_PG_DURABLE_PORT (default 55433) with fsync and synchronous_commit on, as a production
#           server commits (the test cluster turns both off), its role allowed to set commit_delay and
#           commit_siblings (Postgres 15+): for benchmarks of commit behaviour only.
# Emits:    a cluster under <repo>/.local/pg (data/, run/ socket dir, log/postgres.log) listening on
#           127.0.0.1:$TASKTIDE_PG_PORT only, role tasktide/tasktide, databases tasktide and tasktide_test;
#           `url` prints the SQLAlchemy URL of tasktide_test.
# Idempotent: start when running is a no-op (it still ensures the role and databases); stop when stopped is a no-op.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_HOST=127.0.0.1
DURABLE="${TASKTIDE_PG_DURABLE:-}"
if [[ -n "$DURABLE" ]]; then
    PG_PORT="${TASKTIDE_PG_DURABLE_PORT:-55433}"
    PG_NAME=pg-durable
else
    PG_PORT="${TASKTIDE_PG_PORT:-55432}"
    PG_NAME=pg
fi
PG_ROLE=tasktide
PG_PASSWORD=tasktide
PG_DATABASES=(tasktide tasktide_test)
OUR_URL="postgresql+psycopg://${PG_ROLE}:${PG_PASSWORD}@${PG_HOST}:${PG_PORT}/tasktide_test"

PG_BASE="$REPO_ROOT/.local/$PG_NAME"
PG_DATA="$PG_BASE/data"
PG_RUN="$PG_BASE/run"
PG_LOGDIR="$PG_BASE/log"
PG_LOG="$PG_LOGDIR/postgres.log"

log() { printf '[postgres.sh] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# A URL set by the caller that is not ours means "use that server, provision nothing" (the test cluster's
# URL: the durable cluster is never the test database).
external_url() {
    [[ -z "$DURABLE" && -n "${TASKTIDE_TEST_DATABASE_URL:-}" && "${TASKTIDE_TEST_DATABASE_URL}" != "$OUR_URL" ]]
}

# Unix socket paths are limited to ~107 bytes; fall back to a short per-repo dir under /tmp.
socket_dir() {
    if ((${#PG_RUN} + 20 > 100)); then
        printf '/tmp/tasktide-%s-%s' "$PG_NAME" "$(printf '%s' "$REPO_ROOT" | cksum | cut -d' ' -f1)"
    else
        printf '%s' "$PG_RUN"
    fi
}

find_bindir() {
    local d
    # Prefer the newest Debian versioned dir, then whatever is on PATH.
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5 -V -r); do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
            printf '%s' "$d"
            return 0
        fi
    done
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    return 1
}

install_postgres() {
    log "initdb/pg_ctl not found; installing the Debian postgresql package"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install postgresql yourself"
        sudo=(sudo)
    fi
    # Do not let the package create and start its own 'main' cluster on :5432.
    "${sudo[@]}" mkdir -p /etc/postgresql-common
    if [[ ! -f /etc/postgresql-common/createcluster.conf ]]; then
        echo "create_main_cluster = false" | "${sudo[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
}

BINDIR=""
resolve_bindir() {
    if ! BINDIR="$(find_bindir)"; then
        install_postgres
        BINDIR="$(find_bindir)" || die "postgresql installed but initdb/pg_ctl still not found"
    fi
}

# Root may not run the server: run the server tools as the 'postgres' OS user.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u postgres -- "$@")
        else
            local q
            q="$(printf '%q ' "$@")"
            (cd / && su -s /bin/sh postgres -c "$q")
        fi
    else
        "$@"
    fi
}

ensure_dirs() {
    local sock
    sock="$(socket_dir)"
    mkdir -p "$PG_BASE" "$PG_RUN" "$PG_LOGDIR" "$sock"
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
        chown -R postgres: "$PG_BASE" "$sock"
        chmod 700 "$PG_BASE"
        # Every ancestor of the data dir must be traversable by 'postgres'.
        local d="$REPO_ROOT/.local"
        while [[ "$d" != "/" ]]; do
            if ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
                log "making $d traversable (o+x) for the postgres user"
                chmod o+x "$d"
            fi
            d="$(dirname "$d")"
        done
    fi
}

pg_running() {
    [[ -f "$PG_DATA/PG_VERSION" ]] || return 1
    as_pg "$BINDIR/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

port_open() {
    (exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null
}

psql_admin() {
    as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$(socket_dir)" -p "$PG_PORT" -U postgres -d postgres "$@"
}

bootstrap() {
    psql_admin <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${PG_ROLE}') THEN
    CREATE ROLE ${PG_ROLE} LOGIN PASSWORD '${PG_PASSWORD}' CREATEDB;
  END IF;
END
\$\$;
SQL
    local db
    for db in "${PG_DATABASES[@]}"; do
        if [[ -z "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '${db}'")" ]]; then
            psql_admin -c "CREATE DATABASE ${db} OWNER ${PG_ROLE}"
        fi
    done
    if [[ -n "$DURABLE" ]]; then
        # loadtests/bench/notify_commits.py emulates a slower disk per connection (Postgres 15+ only).
        psql_admin <<SQL
DO \$\$
BEGIN
  IF current_setting('server_version_num')::int >= 150000 THEN
    EXECUTE 'GRANT SET ON PARAMETER commit_delay, commit_siblings TO ${PG_ROLE}';
  END IF;
END
\$\$;
SQL
    fi
}

init_cluster() {
    log "initdb in $PG_DATA"
    as_pg "$BINDIR/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C --no-sync \
        --auth-local=trust --auth-host=scram-sha-256 >"$PG_LOGDIR/initdb.log" 2>&1 ||
        {
            tail -n 30 "$PG_LOGDIR/initdb.log" >&2
            die "initdb failed"
        }
    # Settings that do not depend on where the repo lives (the socket dir is passed at start).
    local durability=off
    [[ -n "$DURABLE" ]] && durability=on
    as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<CONF

# --- tasktide ${PG_NAME} cluster (.ci/postgres.sh) ---
listen_addresses = '${PG_HOST}'
port = ${PG_PORT}
fsync = ${durability}
synchronous_commit = ${durability}
full_page_writes = ${durability}
max_connections = 200
logging_collector = off
CONF
}

cmd_start() {
    if external_url; then
        log "TASKTIDE_TEST_DATABASE_URL points elsewhere; not provisioning a local server"
        return 0
    fi
    resolve_bindir
    ensure_dirs
    if pg_running; then
        log "already running on $PG_HOST:$PG_PORT"
        bootstrap
        return 0
    fi
    if port_open; then
        die "$PG_HOST:$PG_PORT is already taken by another process; stop it or set TASKTIDE_PG_PORT"
    fi
    [[ -f "$PG_DATA/PG_VERSION" ]] || init_cluster
    log "starting postgres ($BINDIR) on $PG_HOST:$PG_PORT, log $PG_LOG"
    if ! as_pg "$BINDIR/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
        -o "-k '$(socket_dir)' -p $PG_PORT -h $PG_HOST" >/dev/null 9>&-; then
        tail -n 40 "$PG_LOG" >&2 || true
        die "postgres failed to start"
    fi
    bootstrap
    log "ready: $OUR_URL"
}

cmd_stop() {
    if external_url; then
        log "TASKTIDE_TEST_DATABASE_URL points elsewhere; nothing to stop"
        return 0
    fi
    resolve_bindir
    if pg_running; then
        as_pg "$BINDIR/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null
        log "stopped"
    else
        log "not running"
    fi
}

cmd_status() {
    if external_url; then
        log "external server: ${TASKTIDE_TEST_DATABASE_URL}"
        return 0
    fi
    if ! BINDIR="$(find_bindir)"; then
        echo "postgres: not installed"
        return 3
    fi
    if pg_running; then
        echo "postgres: running on $PG_HOST:$PG_PORT (data $PG_DATA)"
    else
        echo "postgres: stopped"
        return 3
    fi
}

# Serialise start/stop between concurrent callers.
if [[ "${1:-}" == start || "${1:-}" == stop ]] && ! external_url; then
    mkdir -p "$REPO_ROOT/.local"
    exec 9>"$REPO_ROOT/.local/$PG_NAME.lock"
    command -v flock >/dev/null 2>&1 && flock -w 300 9
fi

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
url) if external_url; then echo "$TASKTIDE_TEST_DATABASE_URL"; else echo "$OUR_URL"; fi ;;
*)
    echo "usage: $0 start|stop|status|url" >&2
    exit 2
    ;;
esac
