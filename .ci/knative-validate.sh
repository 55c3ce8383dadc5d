#!/usr/bin/env bash
# Build (once) and print the path of knative-validate: our program in .ci/knative-validate/ that runs
# Knative's own SetDefaults + Validate (serving v0.50.0, eventing v0.50.0, eventing-kafka-broker v0.50.1,
# k8s.io v0.35.7, all from the Go module proxy) over rendered manifests (tests/manifests/
# test_knative_validation.py).
#
# The binary is cached outside the checkout, in <cache>/knative-validate/<hash of go.mod, go.sum and
# main.go>/, so later runs on the same machine find it and a change to the program builds a new one.
# The first build compiles much of k8s.io and knative.dev: measured with empty Go caches, 15 min 42 s
# wall on two cores shared with five other engineers' builds and tests (load average 13), 5.5 CPU-minutes
# (user 279 s + sys 48 s), so about 3 min on two idle cores; it adds ~1.0 GB of build cache and ~0.5 GB
# of module cache (89 modules), for a 52 MiB static binary. A rebuild after editing main.go alone: 25 s.
#
# Usage: bash .ci/knative-validate.sh [install|path]   (install: build if missing, print path; path: print only)
# Env:   TASKTIDE_CACHE (default ~/.cache/tasktide)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="${ROOT}/.ci/knative-validate"
CACHE="${TASKTIDE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasktide}"
HASH="$(cat "${SRC}/go.mod" "${SRC}/go.sum" "${SRC}/main.go" | sha256sum | cut -c1-16)"
OUT="${CACHE}/knative-validate/${HASH}"
BIN="${OUT}/knative-validate"

# shellcheck source=.ci/go.sh
source "$(dirname "${BASH_SOURCE[0]}")/go.sh"

build() {
  find_go knative-validate
  mkdir -p "${OUT}"
  echo "knative-validate.sh: building ${BIN} from the Go module proxy (first time only, ~3 min of two idle cores)" >&2
  cd "${SRC}"
  CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags "-s -w" \
    -o "${BIN}.tmp" .
  mv "${BIN}.tmp" "${BIN}"
  echo "knative-validate.sh: built ${BIN}" >&2
}

cached_build_main "$@"
