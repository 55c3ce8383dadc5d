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

# shellcheck source=.ci/go.sh
source "$(dirname "${BASH_SOURCE[0]}")/go.sh"

build() {
  find_go helm
  mkdir -p "${OUT}"
  echo "helm.sh: building helm ${VERSION} from the Go module proxy (first time only)" >&2
  CGO_ENABLED=0 GOBIN="${OUT}" GOFLAGS=-mod=mod go install -trimpath -ldflags "-s -w" \
    "helm.sh/helm/v3/cmd/helm@${VERSION}"
}

cached_build_main "$@"
