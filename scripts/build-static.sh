#!/usr/bin/env bash
# Builds the fully static (static-pie) release binary that the .deb and .rpm
# ship and checks that it really is static. Prints the binary's path on stdout.
#
#   feature `static`         links libelf.a and libz.a (from libelf-dev, zlib1g-dev)
#   LIBBPF_SYS_LIBRARY_PATH  where libbpf-sys finds those archives
#   +crt-static              links glibc statically
#   --target                 explicit, so +crt-static reaches only the final
#                            binary, not build.rs or proc-macros (which must
#                            stay dynamic); output goes to
#                            $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/
# Same as `cargo build-static` (.cargo/config.toml); same fingerprints, so
# either one reuses the other's artefacts.
set -euo pipefail
cd "$(dirname "$0")/.."

TRIPLE=x86_64-unknown-linux-gnu
[[ $(uname -m) == x86_64 ]] || { echo "build-static.sh: only $TRIPLE is set up" >&2; exit 2; }
for f in /usr/lib/x86_64-linux-gnu/libelf.a /usr/lib/x86_64-linux-gnu/libz.a; do
    [[ -e $f ]] || { echo "build-static.sh: $f missing (apt-get install libelf-dev zlib1g-dev)" >&2; exit 2; }
done

RUSTFLAGS="-C target-feature=+crt-static" \
LIBBPF_SYS_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu \
    cargo build --release --locked --target "$TRIPLE" --features static >&2

target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/$TRIPLE/release/edgeplane
desc=$(file -b "$bin")
if [[ $desc != *"static-pie linked"* && $desc != *"statically linked"* ]]; then
    echo "build-static.sh: $bin is not static: $desc" >&2
    exit 1
fi
echo "build-static.sh: $bin: $desc" >&2
echo "$bin"
