#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/api/test_board_browser.py) and `make screenshots`.
#
# Installs Debian's `chromium` and `chromium-driver` with apt-get when /usr/bin/chromium is missing
# (as root or via sudo). Playwright for Python (a pyproject dev dependency) drives this system
# Chromium through `executable_path`; `playwright install` (which downloads its own browser) is never run.
#
# Usage: bash .ci/chromium.sh [install|path]   (default: install)
set -euo pipefail

CHROMIUM="${TASKTIDE_CHROMIUM:-/usr/bin/chromium}"

install_chromium() {
  if [[ -x "${CHROMIUM}" ]]; then
    return 0
  fi
  local sudo=""
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    else
      echo "chromium.sh: ${CHROMIUM} missing and not root: browser tests will fail under CI" >&2
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium.sh: ${CHROMIUM} missing and no apt-get" >&2
    return 1
  fi
  echo "chromium.sh: installing chromium and chromium-driver via apt-get" >&2
  ${sudo} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >/dev/null
}

case "${1:-install}" in
  install) install_chromium ;;
  path) echo "${CHROMIUM}" ;;
  *)
    echo "usage: $0 [install|path]" >&2
    exit 2
    ;;
esac
