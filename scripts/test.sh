#!/usr/bin/env bash
# Quick start (2): the whole test suite, as CI runs it (.ci/run calls this).
#   1. installs what is missing (apt packages, the arm64 cross toolchain and
#      libraries, the Rust target aarch64-unknown-linux-gnu, cargo-nextest,
#      cargo-deb, cargo-generate-rpm), mounts bpffs if missing;
#   2. cargo fmt --check                                  (warning only);
#   3. cargo clippy --all-targets -- -D warnings           (fails the run);
#   4. cargo nextest run --workspace --all-targets --no-fail-fast (every test:
#      unit, pipeline, property/fuzz, BPF_PROG_TEST_RUN, netns end-to-end and
#      packaging; tests that need root print "skipped: needs root" otherwise)
#      plus the library's doc tests.
# Every stage runs even if an earlier one failed; the exit status is non-zero
# if clippy or any test failed. Runs as root in CI; as a normal user only the
# root tests are skipped (and nothing can be installed).
set -uo pipefail
cd "$(dirname "$0")/.."
EP_SCRIPT=test
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

if [[ $EUID -eq 0 ]]; then
    # systemd: systemd-analyze verify; rpm, rpm2cpio, cpio, dpkg-dev and the
    # other architecture's cross toolchain and libraries: the packaging test;
    # debootstrap: the package lifecycle test (scripts/package-lifecycle.sh)
    # shellcheck disable=SC2046 # a list of package names
    ep_apt_install "${EP_APT_PACKAGES[@]}" systemd rpm rpm2cpio cpio dpkg-dev debootstrap $(ep_cross_apt_packages)
    ep_ensure_bpffs
else
    ep_log "not root: nothing is installed, tests that need root will be skipped"
fi
ep_require_cargo
ep_cross_rust_target
ep_cargo_install cargo-nextest cargo-nextest
ep_cargo_install cargo-deb cargo-deb
ep_cargo_install cargo-generate-rpm cargo-generate-rpm

failed=()
stage() { ep_log "== $*"; }

stage "cargo fmt --check (warning only)"
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --check >/dev/null 2>&1 || ep_log "warning: code is not rustfmt-formatted (cargo fmt --check)"
else
    ep_log "warning: rustfmt not installed, formatting not checked"
fi

stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings || failed+=(clippy)

# Bounded: the CI budget is 90 minutes; per-test limits are in .config/nextest.toml.
stage "cargo nextest run --workspace --all-targets --no-fail-fast"
timeout --signal=TERM --kill-after=60 75m \
    cargo nextest run --locked --workspace --all-targets --no-fail-fast --profile ci || failed+=(nextest)

stage "cargo test --doc"
cargo test --locked --doc || failed+=(doctests)

if ((${#failed[@]})); then
    ep_log "FAILED: ${failed[*]}"
    exit 1
fi
ep_log "all stages passed"
