#!/usr/bin/env bash
# Installs what the TCP-fallback tests run: Debian's `nftables` (the `nft` tool that drops UDP
# between device and hub inside the test's own network namespace) and `tinyproxy` (a real HTTP
# proxy, which tests/tests/tcp_fallback.rs starts itself in that namespace with its own
# configuration).
#
# tinyproxy's own service is never wanted: its default configuration listens on :8888 on every
# interface. Its init script is kept from starting it while installing (policy-rc.d), and a service
# a system manager started anyway is stopped and disabled.
#
# Idempotent, and quick when both are there. Prints one summary line on success; exits non-zero
# with a message otherwise. Must run as root to install.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

die() {
  echo "fallback-setup: ERROR: $*" >&2
  exit 1
}
note() { echo "fallback-setup: $*" >&2; }

have_all() { command -v nft >/dev/null 2>&1 && command -v tinyproxy >/dev/null 2>&1; }

if ! have_all; then
  [ "$(id -u)" = 0 ] || die "nftables or tinyproxy is missing and installing them needs root"
  exec 9>/run/outpost-fallback-setup.lock
  flock -w 600 9 || die "another fallback-setup.sh held /run/outpost-fallback-setup.lock for 10 minutes"
fi
if ! have_all; then
  note "installing nftables and tinyproxy ..."
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt_log=$(mktemp /tmp/outpost-apt.XXXXXX)
  ok=1
  apt-get update -q >"$apt_log" 2>&1 &&
    apt-get install -y -q --no-install-recommends nftables tinyproxy >>"$apt_log" 2>&1 || ok=
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
  if [ -z "$ok" ]; then
    tail -n 20 "$apt_log" >&2
    die "apt-get install nftables tinyproxy failed (log: $apt_log)"
  fi
  rm -f "$apt_log"
fi
have_all || die "nft or tinyproxy not found after installing them"

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now tinyproxy.service >/dev/null 2>&1 || true
fi
# Without systemd, the package's init script may have started one anyway.
pkill -x tinyproxy -u tinyproxy 2>/dev/null || true

echo "fallback-setup: ok ($(nft --version 2>&1 | head -n 1), tinyproxy $(tinyproxy -v 2>&1 | awk '{print $2}'))"
