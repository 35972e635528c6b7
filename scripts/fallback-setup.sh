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
. "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

export DEBIAN_FRONTEND=noninteractive

die() {
  echo "fallback-setup: ERROR: $*" >&2
  exit 1
}
note() { echo "fallback-setup: $*" >&2; }

have_all() { command -v nft >/dev/null 2>&1 && command -v tinyproxy >/dev/null 2>&1; }

if ! have_all; then
  [ "$(id -u)" = 0 ] || die "nftables or tinyproxy is missing and installing them needs root"
  hold_lock fallback-setup
fi
if ! have_all; then
  note "installing nftables and tinyproxy ..."
  apt_install nftables tinyproxy
fi
have_all || die "nft or tinyproxy not found after installing them"

disable_service tinyproxy
# Without systemd, the package's init script may have started one anyway.
pkill -x tinyproxy -u tinyproxy 2>/dev/null || true

echo "fallback-setup: ok ($(nft --version 2>&1 | head -n 1), tinyproxy $(tinyproxy -v 2>&1 | awk '{print $2}'))"
