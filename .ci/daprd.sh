#!/usr/bin/env bash
# Build (once) and print the path of a real daprd from the Go module proxy.
#
# `go install github.com/dapr/dapr/cmd/daprd@v` is refused because dapr's go.mod has replace
# directives, so this makes a throw-away module that requires dapr at DAPR_VERSION, copies dapr's own
# replace directives (all `module => module version`, none local) and builds cmd/daprd with the
# stablecomponents tag (state.postgresql, secretstores.local.file, pubsub.kafka, bindings.cron,
# nameresolution kubernetes/mdns ...). Costs ~13 min of two idle cores (51 min measured on two cores
# shared with six other builds and test runs) and ~6.7 GB of Go caches (module cache 4.3 GB, build cache
# 2.4 GB) the first time, for a 124 MiB static binary; it is cached outside the checkout, so later runs on
# the same machine find it.
#
# Usage: bash .ci/daprd.sh [install|path]   (install: build if missing, print path; path: print only)
# Env:   DAPR_VERSION (default v1.16.0; v1.16.1-3 and v1.15.5 are refused by the proxy here)
#        TASKTIDE_CACHE (default ~/.cache/tasktide)
set -euo pipefail

VERSION="${DAPR_VERSION:-v1.16.0}"
CACHE="${TASKTIDE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasktide}"
OUT="${CACHE}/daprd/${VERSION}"
BIN="${OUT}/daprd"

# shellcheck source=.ci/go.sh
source "$(dirname "${BASH_SOURCE[0]}")/go.sh"

build() {
  find_go daprd
  local work="${OUT}/module"
  mkdir -p "${work}"
  cd "${work}"
  echo "daprd.sh: building daprd ${VERSION} from the Go module proxy (first time only, ~13 min)" >&2
  local gomod
  gomod="$(go mod download -json "github.com/dapr/dapr@${VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  local goline
  goline="$(grep -m1 '^go ' "${gomod}")"
  {
    echo "module tasktide.local/daprd"
    echo
    echo "${goline}"
    echo
    echo "require github.com/dapr/dapr ${VERSION}"
    echo
    # dapr's own replace directives, comments dropped: a block `replace ( ... )` or a single line.
    awk '
      /^replace \(/ { inblock = 1; print; next }
      inblock && /^\)/ { inblock = 0; print; next }
      inblock { sub(/\/\/.*/, ""); if ($0 ~ /=>/) print; next }
      /^replace [^(]/ { print }
    ' "${gomod}"
  } >go.mod
  GOFLAGS=-mod=mod go get "github.com/dapr/dapr/cmd/daprd@${VERSION}"
  # -X sets what `daprd --version` prints (else "edge").
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -tags stablecomponents -trimpath \
    -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${VERSION#v}" \
    -o "${BIN}.tmp" github.com/dapr/dapr/cmd/daprd
  mv "${BIN}.tmp" "${BIN}"
  echo "daprd.sh: built ${BIN}" >&2
}

cached_build_main "$@"
