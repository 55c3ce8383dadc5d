#!/usr/bin/env bash
# Install the real kustomize (pinned) from the Go module proxy into <repo>/.local/bin, like actionlint.
#
# The local runtime (`tasktide dev`, `make run`) and the manifest tests read what `kustomize build`
# renders, so this is the one source of truth for namespaces, overlays and patches.
#
# Usage: bash .ci/kustomize.sh [install|path]   (default: install if needed)
#   install  build sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION} unless already there
#   path     print the binary's path (exit 1 if not installed)
# Env:   KUSTOMIZE_VERSION (default v5.7.1)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN_DIR="${ROOT}/.local/bin"
VERSION="${KUSTOMIZE_VERSION:-v5.7.1}"
BIN="${BIN_DIR}/kustomize"

installed_version() {
  "${BIN}" version 2>/dev/null | tr -d '\n' || true
}

# shellcheck source=.ci/go.sh
source "$(dirname "${BASH_SOURCE[0]}")/go.sh"

install_kustomize() {
  if [[ -x "${BIN}" && "$(installed_version)" == "${VERSION}" ]]; then
    return 0
  fi
  find_go "kustomize ${VERSION}"
  mkdir -p "${BIN_DIR}"
  echo "kustomize.sh: installing kustomize ${VERSION} via the Go module proxy" >&2
  # -ldflags sets the version `kustomize version` prints (go install leaves it "(devel)" otherwise).
  GOBIN="${BIN_DIR}" GOFLAGS="${GOFLAGS:--mod=mod}" go install \
    -ldflags "-X sigs.k8s.io/kustomize/api/provenance.version=${VERSION}" \
    "sigs.k8s.io/kustomize/kustomize/v5@${VERSION}"
}

case "${1:-install}" in
  install)
    install_kustomize
    ;;
  path)
    if [[ -x "${BIN}" ]]; then
      echo "${BIN}"
    else
      echo "kustomize.sh: not installed; run: bash .ci/kustomize.sh install" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 [install|path]" >&2
    exit 2
    ;;
esac
