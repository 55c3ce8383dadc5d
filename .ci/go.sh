# shellcheck shell=bash
# Sourced by the .ci scripts that build a tool from the Go module proxy (daprd.sh, helm.sh, kustomize.sh).
# find_go WHAT: puts Go on PATH (PATH, /usr/local/go/bin, /usr/lib/go/bin) or says it is needed for WHAT.
find_go() {
  command -v go >/dev/null 2>&1 && return 0
  local candidate
  for candidate in /usr/local/go/bin /usr/lib/go/bin; do
    if [[ -x "${candidate}/go" ]]; then
      export PATH="${PATH}:${candidate}"
      return 0
    fi
  done
  echo "$(basename "$0"): go is not installed; it is needed once to build $1" >&2
  return 1
}
