#!/usr/bin/env bash
# Make `promtool` (and the `prometheus` binary) available for the alert-rule tests.
#
# Installs Debian's `prometheus` package only when the binaries are missing. We want the binaries, not a
# running server: service starts are denied during the install (policy-rc.d exit 101) and the unit/init
# script is disabled and stopped afterwards, so nothing listens on :9090 or competes with the test suite.
# Idempotent; prints the promtool version at the end. Needs root (or sudo) when it has to install.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  promtool --version 2>&1 | head -n1
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=600)

# Deny service starts for the duration of the install (the Debian-sanctioned mechanism), unless a policy
# is already in place (container images usually ship one that denies everything).
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  CREATED_POLICY=1
fi
cleanup() {
  if [ "$CREATED_POLICY" -eq 1 ]; then
    $SUDO rm -f "$POLICY"
  fi
}
trap cleanup EXIT

$SUDO apt-get update -q -o DPkg::Lock::Timeout=600
# Debian ships promtool inside the `prometheus` package (bookworm: 2.42).
$SUDO apt-get install "${APT_OPTS[@]}" prometheus

# Belt and braces: never leave the daemon enabled or running.
if command -v systemctl >/dev/null 2>&1; then
  # `disable` works offline (removes the wants/ symlink); `stop` only matters when systemd is running.
  $SUDO systemctl disable prometheus.service >/dev/null 2>&1 || true
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl stop prometheus.service >/dev/null 2>&1 || true
  fi
fi
if [ -x /etc/init.d/prometheus ]; then
  $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  if command -v update-rc.d >/dev/null 2>&1; then
    $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
fi

command -v promtool >/dev/null
promtool --version 2>&1 | head -n1
