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

export DEBIAN_FRONTEND=noninteractive

die() {
  echo "metrics-setup: ERROR: $*" >&2
  exit 1
}
note() { echo "metrics-setup: $*" >&2; }

if ! command -v prometheus >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "prometheus is missing and installing it needs root"
  # One install at a time (test runs may start side by side); the later one finds it there.
  exec 9>/run/outpost-metrics-setup.lock
  flock -w 600 9 || die "another metrics-setup.sh held /run/outpost-metrics-setup.lock for 10 minutes"
fi
if ! command -v prometheus >/dev/null 2>&1; then
  note "installing prometheus ..."
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt_log=$(mktemp /tmp/outpost-apt.XXXXXX)
  ok=1
  apt-get update -q >"$apt_log" 2>&1 &&
    apt-get install -y -q --no-install-recommends prometheus >>"$apt_log" 2>&1 || ok=
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
  if [ -z "$ok" ]; then
    tail -n 20 "$apt_log" >&2
    die "apt-get install prometheus failed (log: $apt_log)"
  fi
  rm -f "$apt_log"
fi
command -v prometheus >/dev/null 2>&1 || die "prometheus not found after installing it"

# Under systemd the package enables and starts its service; the tests want no
# second scraper on :9090.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi

echo "metrics-setup: ok ($(prometheus --version 2>&1 | head -n 1))"
