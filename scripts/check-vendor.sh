#!/usr/bin/env bash
# Checks that each vendored crate (vendor/quinn, vendor/quinn-proto) is exactly its pinned crates.io
# release plus vendor/<crate>.patch, so no vendored copy can drift into a fork that nobody can
# re-derive or upstream.
#
# The release is the version vendor/<crate>/Cargo.toml names. Its .crate comes from cargo's registry
# cache, or is fetched with `cargo fetch` (the only network use: the crates registry). The check
# strips what the vendored copy leaves out (benches/, examples/, tests/ and cargo's packaging files),
# applies the patch with `git apply` (exact context, no fuzz) and compares the trees.
#
# After changing a vendored crate on purpose, regenerate its patch with `scripts/check-vendor.sh --write`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

CRATES=(quinn quinn-proto)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A release's .crate ($1-$2.crate): from the registry cache, else fetched through a throwaway manifest.
find_crate() {
  local candidate
  for candidate in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$1-$2.crate"; do
    if [[ -f "$candidate" ]]; then
      echo "$candidate"
      return 0
    fi
  done
}

fetch_crate() {
  local name=$1 version=$2 dir="$work/fetch-$1"
  mkdir "$dir"
  printf '[package]\nname = "upstream-fetch"\nversion = "0.0.0"\nedition = "2021"\n[lib]\npath = "lib.rs"\n[dependencies]\n%s = { version = "=%s", default-features = false }\n' \
    "$name" "$version" >"$dir/Cargo.toml"
  touch "$dir/lib.rs"
  host=$(rustc -vV | sed -n 's/^host: //p')
  cargo fetch --quiet --manifest-path "$dir/Cargo.toml" --target "$host"
}

# Checks (or with --write, regenerates the patch of) one vendored crate.
check_crate() {
  local name=$1 mode=$2
  local vendored=vendor/$name patch_file=vendor/$name.patch
  local version crate upstream
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$vendored/Cargo.toml" | head -n 1)
  [[ -n "$version" ]] || { echo "check-vendor: no version in $vendored/Cargo.toml" >&2; exit 1; }
  crate=$(find_crate "$name" "$version")
  if [[ -z "$crate" ]]; then
    fetch_crate "$name" "$version"
    crate=$(find_crate "$name" "$version")
    [[ -n "$crate" ]] || { echo "check-vendor: cargo fetch did not provide $name-$version.crate" >&2; exit 1; }
  fi

  # Upstream as vendored: the release without the directories and files the copy leaves out.
  upstream="$work/$name/upstream"
  mkdir -p "$upstream"
  tar -xzf "$crate" -C "$upstream" --strip-components=1
  rm -rf "$upstream"/{benches,examples,tests,Cargo.lock,Cargo.toml.orig,.cargo_vcs_info.json}

  if [[ "$mode" == "--write" ]]; then
    local header
    header=$(sed '/^--- a\//,$d' "$patch_file")
    ln -s "$upstream" "$work/$name/a"
    ln -s "$repo/$vendored" "$work/$name/b"
    {
      printf '%s\n\n' "$header"
      (cd "$work/$name" && diff -ruN a/ b/ || true) | grep -v '^diff -ruN' |
        sed -E 's/^(---|\+\+\+) ([^\t]+)\t.*$/\1 \2/'
    } >"$work/$name/new.patch"
    mv "$work/$name/new.patch" "$patch_file"
    echo "check-vendor: wrote $patch_file against $name $version"
    return 0
  fi

  if ! (cd "$upstream" && git apply -p1 "$repo/$patch_file"); then
    echo "check-vendor: $patch_file does not apply to $name $version from crates.io" >&2
    exit 1
  fi
  if ! diff -r "$upstream" "$vendored" >"$work/$name/drift"; then
    echo "check-vendor: $vendored differs from $name $version + $patch_file:" >&2
    cat "$work/$name/drift" >&2
    echo "Put every change to $vendored in the patch (scripts/check-vendor.sh --write) and say why in vendor/README.md." >&2
    exit 1
  fi
  echo "check-vendor: $vendored is $name $version + $patch_file"
}

for name in "${CRATES[@]}"; do
  check_crate "$name" "${1:-}"
done
