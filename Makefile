# tasktide: `make run` serves everything on SQLite; `make test` provisions Postgres + Kafka and runs every check.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

PG_PORT ?= $(or $(TASKTIDE_PG_PORT),55432)
KAFKA_PORT ?= $(or $(TASKTIDE_KAFKA_PORT),9092)

.PHONY: run kustomize run-dapr test install lint typecheck pytest services stop-services loadtest bench clean screenshots

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install kustomize
	$(BIN)/tasktide dev $(ARGS)

# The router reads what the real `kustomize build` renders: pinned, built from the Go module proxy.
kustomize:
	bash .ci/kustomize.sh install

# Dapr mode: Postgres + Kafka, then every app beside its own real daprd (README, "Dapr mode").
run-dapr: install
	bash .ci/postgres.sh start
	bash eventing/local/kafka.sh start
	bash eventing/local/kafka.sh topics
	bash .ci/daprd.sh install
	$(BIN)/tasktide dapr-run --database-url postgresql+psycopg://tasktide:tasktide@127.0.0.1:$(PG_PORT)/tasktide \
	  --kafka 127.0.0.1:$(KAFKA_PORT) $(ARGS)

lint: install
	$(BIN)/ruff check functions tests loadtests grafana
	$(BIN)/ruff format --check functions tests loadtests grafana
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

services: install
	bash .ci/postgres.sh start
	bash eventing/local/kafka.sh start
	bash eventing/local/kafka.sh topics
	bash .ci/prometheus.sh
	bash .ci/actionlint.sh install
	bash .ci/kustomize.sh install
	bash .ci/knative-validate.sh install
	bash .ci/chromium.sh install
	bash .ci/helm.sh install
	bash .ci/daprd.sh install

stop-services:
	-bash eventing/local/kafka.sh stop
	-bash .ci/postgres.sh stop
	-TASKTIDE_PG_DURABLE=1 bash .ci/postgres.sh stop

# Parallel workers (pytest-xdist): each gets its own Postgres database; Kafka tests share one worker
# (xdist group `kafka`, see tests/conftest.py). PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= auto

pytest: install
	source .ci/test-env.sh && $(BIN)/pytest tests loadtests/bench -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test: lint typecheck services
	@status=0; $(MAKE) pytest || status=$$?; \
	echo "make test: Postgres (127.0.0.1:$${TASKTIDE_PG_PORT:-55432}) and Kafka (127.0.0.1:$${TASKTIDE_KAFKA_PORT:-9092}) are still running for the next run; \`make stop-services\` stops them."; \
	exit $$status

screenshots: install
	bash .ci/chromium.sh install
	$(BIN)/python -m tests.board_screenshot docs/board.png

loadtest: install
	bash loadtests/smoke.sh

bench: install
	$(BIN)/python loadtests/bench/run_all.py

clean:
	rm -rf $(VENV) .local tasktide.db
