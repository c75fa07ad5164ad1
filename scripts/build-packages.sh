#!/usr/bin/env bash
# Builds the .deb (cargo-deb) and .rpm (cargo-generate-rpm) of the static
# binary into OUT_DIR (default: $CARGO_TARGET_DIR/packages, or target/packages)
# and prints the two package paths on stdout, .deb first.
#   scripts/build-packages.sh [OUT_DIR]
# Needs cargo-deb and cargo-generate-rpm (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

TRIPLE=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-target}
out=${1:-$target_dir/packages}
for tool in cargo-deb cargo-generate-rpm; do
    command -v "$tool" >/dev/null ||
        { echo "build-packages.sh: $tool missing (cargo install --locked $tool)" >&2; exit 2; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

scripts/build-static.sh >/dev/null
# --no-build: package exactly the binary build-static.sh checked. --target maps
# the assets' target/release/ prefix to $target_dir/$TRIPLE/release/.
# --no-strip: the release profile already strips; the static binary is final.
cargo deb --no-build --no-strip --target "$TRIPLE" --output "$out/" >&2
cargo generate-rpm --target "$TRIPLE" --output "$out/" >&2

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb=$(ls -t "$out"/edgeplane_"$version"*_amd64.deb | head -1)
rpm=$(ls -t "$out"/edgeplane-"$version"*.x86_64.rpm | head -1)
echo "$deb"
echo "$rpm"
