#!/usr/bin/env bash
# Builds the fully static (static-pie) release binary that the .deb and .rpm
# ship, for one architecture, and checks that it really is static and for that
# architecture. Prints the binary's path on stdout.
#
#   scripts/build-static.sh [x86_64|aarch64]     (default: this machine's; amd64/arm64 too)
#
#   feature `static`         links libelf.a and libz.a (from libelf-dev, zlib1g-dev;
#                            for another architecture the multiarch ones,
#                            e.g. libelf-dev:arm64 zlib1g-dev:arm64)
#   LIBBPF_SYS_LIBRARY_PATH  where libbpf-sys finds those archives
#                            (/usr/lib/<arch>-linux-gnu)
#   +crt-static              links glibc statically
#   --target                 explicit, so +crt-static reaches only the final
#                            binary, not build.rs or proc-macros (which must
#                            stay dynamic); output goes to
#                            $CARGO_TARGET_DIR/<arch>-unknown-linux-gnu/release/
# Cross builds (target architecture != this machine's) link with Debian's
# cross gcc (<arch>-linux-gnu-gcc: gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross for aarch64), which also compiles libbpf-sys's
# vendored libbpf; the Rust target is added with rustup when missing. The BPF
# objects are the same for every architecture (clang -target bpf).
# For x86_64 this is the same as `cargo build-static` (.cargo/config.toml);
# same fingerprints, so either one reuses the other's artefacts.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "build-static.sh: $*" >&2; exit 2; }
norm() {
    case $1 in
    x86_64 | amd64) echo x86_64 ;;
    aarch64 | arm64) echo aarch64 ;;
    *) return 1 ;;
    esac
}
host=$(norm "$(uname -m)") || die "unsupported build machine $(uname -m) (x86_64 or aarch64)"
arch=$(norm "${1:-$host}") || die "unsupported architecture ${1:-} (usage: $0 [x86_64|aarch64])"
TRIPLE=$arch-unknown-linux-gnu
gnu=$arch-linux-gnu         # Debian's multiarch tuple and cross-tool prefix
libdir=/usr/lib/$gnu
deb_arch=$([[ $arch == x86_64 ]] && echo amd64 || echo arm64)
case $arch in
x86_64) file_arch="x86-64" ;;
aarch64) file_arch="ARM aarch64" ;;
esac

for f in "$libdir/libelf.a" "$libdir/libz.a"; do
    [[ -e $f ]] || {
        if [[ $arch == "$host" ]]; then
            die "$f missing (apt-get install libelf-dev zlib1g-dev)"
        else
            die "$f missing (dpkg --add-architecture $deb_arch; apt-get update; apt-get install libelf-dev:$deb_arch zlib1g-dev:$deb_arch)"
        fi
    }
done

env_triple=${TRIPLE//-/_}
cross_env=()
if [[ $arch != "$host" ]]; then
    cc=$gnu-gcc
    command -v "$cc" >/dev/null ||
        die "$cc missing (apt-get install gcc-${gnu//_/-} libc6-dev-$deb_arch-cross)"
    # The linker of the final binary, and the C compiler/archiver for the
    # target's build scripts (libbpf-sys's vendored libbpf, through cc-rs).
    cross_env=(
        "CARGO_TARGET_${env_triple^^}_LINKER=$cc"
        "CC_$env_triple=$cc"
        "AR_$env_triple=$gnu-ar"
    )
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TRIPLE"; then
    echo "build-static.sh: rustup target add $TRIPLE" >&2
    rustup target add "$TRIPLE" >&2 || die "rustup target add $TRIPLE failed"
fi

# LIBBPF_SYS_LIBRARY_PATH: this machine's archives, for the host's libbpf-sys
# too (build.rs links it through libbpf-cargo, with the same `static`
# features); a cross build adds the target's under the target's own name,
# searched first by the target's libbpf-sys only.
lib_env=("LIBBPF_SYS_LIBRARY_PATH=/usr/lib/$host-linux-gnu")
[[ $arch == "$host" ]] || lib_env+=("LIBBPF_SYS_LIBRARY_PATH_$env_triple=$libdir")
env RUSTFLAGS="-C target-feature=+crt-static" "${lib_env[@]}" "${cross_env[@]}" \
    cargo build --release --locked --target "$TRIPLE" --features static >&2

target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/$TRIPLE/release/edgeplane
desc=$(file -b "$bin")
if [[ $desc != *"static-pie linked"* && $desc != *"statically linked"* ]]; then
    echo "build-static.sh: $bin is not static: $desc" >&2
    exit 1
fi
if [[ $desc != *"$file_arch"* ]]; then
    echo "build-static.sh: $bin is not a $file_arch binary: $desc" >&2
    exit 1
fi
echo "build-static.sh: $bin: $desc" >&2
echo "$bin"
