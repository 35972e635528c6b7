#!/usr/bin/env bash
# The vendored quinn-proto's own tests, with Outpost's patches applied (vendor/README.md): the
# patches' tests (tail repair's frames, parity and two endpoints losing packets at a burst's end)
# and upstream's ~320, which must still pass. Cargo will not test a patched dependency in place
# (it is no member of the workspace), so the copy is tested as a workspace of its own in a
# temporary directory, from the workspace's lock file (its dev-dependencies resolved there).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${TMPDIR:-/tmp}/outpost-vendor-tests"
rm -rf "$work/quinn-proto"
mkdir -p "$work"
cp -r vendor/quinn-proto "$work/quinn-proto"
printf '\n[workspace]\n' >> "$work/quinn-proto/Cargo.toml"
cp Cargo.lock "$work/quinn-proto/Cargo.lock"
cd "$work/quinn-proto"
CARGO_TARGET_DIR="$work/target" cargo test --lib --quiet
