#!/usr/bin/env bash
# Installs the scraper the metrics tests run: Debian's `prometheus` (the
# server), which tests/tests/metrics.rs starts itself on a loopback port with
# its own configuration and data directory, pointed at the hub's metrics
# listener.
#
# The package's own service is never wanted: its default configuration
# listens on every interface on :9090 and scrapes whatever it finds. Its init
# script is kept from starting it while installing (policy-rc.d), and a
# service that a system manager started anyway is stopped and disabled.
#
# Idempotent, and quick when the binary is already there. Prints one summary
# line on success; exits non-zero with a message otherwise. Must run as root to
# install; a machine that has the binary needs nothing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

export DEBIAN_FRONTEND=noninteractive

die() {
  echo "metrics-setup: ERROR: $*" >&2
  exit 1
}
note() { echo "metrics-setup: $*" >&2; }

if ! command -v prometheus >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "prometheus is missing and installing it needs root"
  # One install at a time (test runs may start side by side); the later one finds it there.
  hold_lock metrics-setup
fi
if ! command -v prometheus >/dev/null 2>&1; then
  note "installing prometheus ..."
  apt_install prometheus
fi
command -v prometheus >/dev/null 2>&1 || die "prometheus not found after installing it"

# Under systemd the package enables and starts its service; the tests want no
# second scraper on :9090.
disable_service prometheus

echo "metrics-setup: ok ($(prometheus --version 2>&1 | head -n 1))"
