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

# The `install|path` command line of a script that builds one binary into a cache: it defines BIN and a
# `build` function, sources this file and ends with `cached_build_main "$@"`.
cached_build_main() {
  case "${1:-install}" in
    install)
      [[ -x "${BIN}" ]] || build
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
}
