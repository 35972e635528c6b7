#!/usr/bin/env bash
# The whole test suite, as README.md gives it and CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Docker proxy tests drive the real docker CLI against a real dockerd with a local test image.
scripts/docker-setup.sh

# A workspace test run also builds outpost-hub and outpost-agent, which the end-to-end tests start.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
