#!/usr/bin/env bash
# The whole test suite, as README.md gives it and CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Docker proxy tests drive the real docker CLI against a real dockerd with a local test image.
scripts/docker-setup.sh
# The metrics test scrapes the hub with a real Prometheus (Debian's package).
scripts/metrics-setup.sh
# The TCP-fallback tests drop UDP with nftables and go through a real HTTP proxy (tinyproxy).
scripts/fallback-setup.sh
# The hub's store tests run on SQLite and on a throwaway PostgreSQL cluster (a database each).
OUTPOST_TEST_POSTGRES=$(scripts/postgres-setup.sh)
export OUTPOST_TEST_POSTGRES
echo "test: store tests use $OUTPOST_TEST_POSTGRES"

# The end-to-end tests start the real binaries; build them before the test harnesses.
cargo build --workspace --bins --quiet

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi

# The vendored quinn-proto's own tests, with Outpost's patches (tail repair's among them).
if [ $# -eq 0 ]; then
  echo "test: vendored quinn-proto with Outpost's patches (scripts/vendor-tests.sh)"
  scripts/vendor-tests.sh
fi

# Once more: the Docker proxy's end-to-end tests through two hubs on PostgreSQL,
# the CLI on the hub that does not hold the device (issue #18: any hub serves any device).
if [ $# -eq 0 ]; then
  echo "test: the Docker proxy tests through a second hub (OUTPOST_TEST_RELAY=1)"
  if cargo nextest --version >/dev/null 2>&1; then
    OUTPOST_TEST_RELAY=1 cargo nextest run -p outpost-tests --test docker_proxy --no-fail-fast
  else
    OUTPOST_TEST_RELAY=1 cargo test -p outpost-tests --test docker_proxy --no-fail-fast
  fi
fi
