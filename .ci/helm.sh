#!/usr/bin/env bash
# Install (once) and print the path of a real helm CLI, built from the Go module proxy.
#
# `go install helm.sh/helm/v3/cmd/helm@HELM_VERSION` (helm's go.mod has no replace directives, so a
# plain `go install` works); the binary is cached outside the checkout, so later runs on the same
# machine find it. Costs a few minutes of two cores the first time.
#
# Usage: bash .ci/helm.sh [install|path]   (install: build if missing, print path; path: print only)
# Env:   HELM_VERSION (default v3.22.0), TASKTIDE_CACHE (default ~/.cache/tasktide)
set -euo pipefail

VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${TASKTIDE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasktide}"
OUT="${CACHE}/helm/${VERSION}"
BIN="${OUT}/helm"

find_go() {
  command -v go >/dev/null 2>&1 && return 0
  for candidate in /usr/local/go/bin /usr/lib/go/bin; do
    if [[ -x "${candidate}/go" ]]; then
      export PATH="${PATH}:${candidate}"
      return 0
    fi
  done
  echo "helm.sh: go is not installed; it is needed once to build helm" >&2
  return 1
}

case "${1:-install}" in
  install)
    if [[ ! -x "${BIN}" ]]; then
      find_go
      mkdir -p "${OUT}"
      echo "helm.sh: building helm ${VERSION} from the Go module proxy (first time only)" >&2
      CGO_ENABLED=0 GOBIN="${OUT}" GOFLAGS=-mod=mod go install -trimpath -ldflags "-s -w" \
        "helm.sh/helm/v3/cmd/helm@${VERSION}"
    fi
    echo "${BIN}"
    ;;
  path)
    echo "${BIN}"
    ;;
  *)
    echo "usage: $0 [install|path]" >&2
    exit 2
    ;;
esac
