# shellcheck shell=bash
# Sourced by `make pytest` (source .ci/test-env.sh): points the test suite at the services that
# `.ci/postgres.sh start` and `eventing/local/kafka.sh start` provision. Connects to nothing itself.
# Exports (each only if not already set by the caller):
#   TASKTIDE_TEST_DATABASE_URL  SQLAlchemy URL of the tasktide_test database
#   TASKTIDE_TEST_KAFKA         bootstrap servers of the local broker
#   TASKTIDE_KAFKA_SCRIPT       path of kafka.sh, so tests can stop/start the broker (outage tests)
#   TASKTIDE_KAFKA_HOME         KAFKA_HOME-like tree: libs/, config/, bin/kafka-topics.sh, logs/
#   TASKTIDE_DAPRD              the real daprd `.ci/daprd.sh install` built (tests/dapr start it)
_tasktide_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TASKTIDE_TEST_DATABASE_URL="${TASKTIDE_TEST_DATABASE_URL:-postgresql+psycopg://tasktide:tasktide@127.0.0.1:${TASKTIDE_PG_PORT:-55432}/tasktide_test}"
export TASKTIDE_TEST_KAFKA="${TASKTIDE_TEST_KAFKA:-127.0.0.1:${TASKTIDE_KAFKA_PORT:-9092}}"
export TASKTIDE_KAFKA_SCRIPT="${TASKTIDE_KAFKA_SCRIPT:-$_tasktide_root/eventing/local/kafka.sh}"
export TASKTIDE_KAFKA_HOME="${TASKTIDE_KAFKA_HOME:-$_tasktide_root/.local/kafka}"
export TASKTIDE_DAPRD="${TASKTIDE_DAPRD:-$(bash "$_tasktide_root/.ci/daprd.sh" path)}"
unset _tasktide_root
