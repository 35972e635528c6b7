#!/usr/bin/env bash
# Checks that vendor/quinn is exactly the pinned crates.io release of quinn plus vendor/quinn.patch,
# so the vendored copy cannot drift into a fork that nobody can re-derive or upstream.
#
# The release is the version vendor/quinn/Cargo.toml names. Its .crate comes from cargo's registry
# cache, or is fetched with `cargo fetch` (the only network use: the crates registry). The check
# strips what the vendored copy leaves out (benches/, examples/, tests/ and cargo's packaging files),
# applies the patch with `git apply` (exact context, no fuzz) and compares the trees.
#
# After changing vendor/quinn on purpose, regenerate the patch with `scripts/check-vendor.sh --write`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

vendored=vendor/quinn
patch_file=vendor/quinn.patch
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$vendored/Cargo.toml" | head -n 1)
[[ -n "$version" ]] || { echo "check-vendor: no version in $vendored/Cargo.toml" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The release's .crate: from the registry cache, else fetched through a throwaway manifest.
find_crate() {
  local candidate
  for candidate in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"quinn-$version.crate"; do
    if [[ -f "$candidate" ]]; then
      echo "$candidate"
      return 0
    fi
  done
}
crate=$(find_crate)
if [[ -z "$crate" ]]; then
  mkdir "$work/fetch"
  printf '[package]\nname = "quinn-upstream"\nversion = "0.0.0"\nedition = "2021"\n[lib]\npath = "lib.rs"\n[dependencies]\nquinn = { version = "=%s", default-features = false }\n' \
    "$version" >"$work/fetch/Cargo.toml"
  touch "$work/fetch/lib.rs"
  host=$(rustc -vV | sed -n 's/^host: //p')
  cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" --target "$host"
  crate=$(find_crate)
  [[ -n "$crate" ]] || { echo "check-vendor: cargo fetch did not provide quinn-$version.crate" >&2; exit 1; }
fi

# Upstream as vendored: the release without the directories and files the copy leaves out.
upstream="$work/upstream"
mkdir "$upstream"
tar -xzf "$crate" -C "$upstream" --strip-components=1
rm -rf "$upstream"/{benches,examples,tests,Cargo.lock,Cargo.toml.orig,.cargo_vcs_info.json}

if [[ "${1:-}" == "--write" ]]; then
  header=$(sed '/^--- a\//,$d' "$patch_file")
  ln -s "$upstream" "$work/a"
  ln -s "$repo/$vendored" "$work/b"
  {
    printf '%s\n\n' "$header"
    (cd "$work" && diff -ruN a/ b/ || true) | grep -v '^diff -ruN' |
      sed -E 's/^(---|\+\+\+) ([^\t]+)\t.*$/\1 \2/'
  } >"$work/new.patch"
  mv "$work/new.patch" "$patch_file"
  echo "check-vendor: wrote $patch_file against quinn $version"
  exit 0
fi

if ! (cd "$upstream" && git apply -p1 "$repo/$patch_file"); then
  echo "check-vendor: $patch_file does not apply to quinn $version from crates.io" >&2
  exit 1
fi
if ! diff -r "$upstream" "$vendored" >"$work/drift"; then
  echo "check-vendor: $vendored differs from quinn $version + $patch_file:" >&2
  cat "$work/drift" >&2
  echo "Put every change to $vendored in the patch (scripts/check-vendor.sh --write) and say why in vendor/README.md." >&2
  exit 1
fi
echo "check-vendor: $vendored is quinn $version + $patch_file"
