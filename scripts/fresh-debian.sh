#!/usr/bin/env bash
# Runs README's Quick start on a fresh, minimal Debian 12, as a new machine
# would: proves that demo.sh and test.sh install everything they use.
#
#   scripts/fresh-debian.sh [demo|test|both]     (default both; as root)
#
#   1. debootstrap --variant=minbase bookworm into a temporary directory
#      (only Priority: required packages + apt: no procps, no ca-certificates,
#      no compiler); the mirror is the one this machine's apt uses
#      (EP_FRESH_MIRROR overrides it);
#   2. copies this working tree (the files git tracks or would track, not
#      target/) to /root/edgeplane in it, and installs the Rust toolchain as
#      rustup would have: this machine's rustup proxies in /root/.cargo/bin,
#      its RUSTUP_HOME bound read-only at /root/.rustup (README's one
#      prerequisite; rustup.rs itself is not reachable from CI machines);
#   3. in a private mount and PID namespace (unshare; every mount vanishes
#      with it): chroot with /proc, /dev and /sys (bpffs, cgroup2) and an
#      empty /run, then runs the two Quick-start commands, exactly as README
#      says, with a clean environment: ./scripts/demo.sh, ./scripts/test.sh;
#   4. prints each command's exit status and nextest's summary line, and
#      exits non-zero if either failed. The logs are kept in
#      $EP_FRESH_DIR/ (default /var/tmp/edgeplane-fresh-<pid>/), the chroot is
#      removed unless EP_FRESH_KEEP=1.
#
# Network: the chroot shares this machine's network namespace (apt and
# crates.io downloads), exactly as test.sh on this machine would; the demo
# and the tests create their own namespaces, as everywhere. Slow (a cold
# build, cargo installs of cargo-nextest/cargo-deb/cargo-generate-rpm, the
# whole suite): not part of .ci/run; run it before a release or after
# changing what the scripts install.
set -euo pipefail
cd "$(dirname "$0")/.."
EP_SCRIPT=fresh-debian
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

what=${1:-both}
case $what in demo | test | both) ;; *) ep_die "usage: $0 [demo|test|both]" ;; esac
ep_require_root
ep_apt_install debootstrap util-linux

REPO=$PWD
DIR=${EP_FRESH_DIR:-/var/tmp/edgeplane-fresh-$$}
ROOT=$DIR/root
mkdir -p "$DIR"
[[ ! -e $ROOT ]] || ep_die "$ROOT exists already (EP_FRESH_DIR of an earlier run?)"

MIRROR=${EP_FRESH_MIRROR:-$(ep_debian_mirror)}

# Rust as rustup installs it: the proxies (hard links of rustup) and RUSTUP_HOME.
RUSTUP_BIN=$(command -v rustup || true)
[[ -n $RUSTUP_BIN || ! -x $HOME/.cargo/bin/rustup ]] || RUSTUP_BIN=$HOME/.cargo/bin/rustup
[[ -n $RUSTUP_BIN ]] || ep_die "no rustup on this machine: the chroot gets its Rust toolchain from it"
RUSTUP_DIR=${RUSTUP_HOME:-$HOME/.rustup}
[[ -d $RUSTUP_DIR/toolchains ]] || ep_die "no rustup toolchains in $RUSTUP_DIR"

cleanup() {
    set +e
    if [[ ${EP_FRESH_KEEP:-0} == 1 ]]; then
        ep_log "kept $ROOT (EP_FRESH_KEEP=1)"
        return
    fi
    # The binds lived only in the namespace, which is gone with its last
    # process.
    ep_remove_root "$ROOT"
}
trap cleanup EXIT
trap 'ep_log interrupted; exit 130' INT TERM

ep_debootstrap "$ROOT" "$MIRROR" "$DIR/debootstrap.log"
# As the Debian installer sets it up: the release, its updates and security.
security=${EP_FRESH_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $security bookworm-security main
EOF
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# This machine's site-local CAs (e.g. a TLS-inspecting egress proxy's): a new
# machine in the same network is provisioned with them too. ca-certificates
# itself is not installed: the Quick start has to do that (cargo needs it).
if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
fi
for t in procps ca-certificates build-essential; do
    ! chroot "$ROOT" dpkg-query -W -f='${Status}' "$t" 2>/dev/null | grep -q "install ok installed" ||
        ep_die "$t is in the minbase root; it would not show what a minimal Debian lacks"
done

ep_log "copying the working tree to $ROOT/root/edgeplane"
mkdir -p "$ROOT/root/edgeplane" "$ROOT/root/.cargo/bin" "$ROOT/root/.rustup"
if [[ -e .git ]] && command -v git >/dev/null; then
    git ls-files -z --cached --others --exclude-standard | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
        tar --null -T - -cf - | tar -C "$ROOT/root/edgeplane" -xf -
else
    tar --exclude=./target -cf - . | tar -C "$ROOT/root/edgeplane" -xf -
fi
# rustup and its proxies (cargo, rustc, …: links to the rustup binary).
RUSTUP_BIN=$(realpath "$RUSTUP_BIN")
cp "$RUSTUP_BIN" "$ROOT/root/.cargo/bin/rustup"
while IFS= read -r -d '' f; do
    [[ $(basename "$f") == rustup ]] || ln -s rustup "$ROOT/root/.cargo/bin/$(basename "$f")"
done < <(find -L "$(dirname "$RUSTUP_BIN")" -maxdepth 1 -samefile "$RUSTUP_BIN" -print0)
[[ -x $ROOT/root/.cargo/bin/cargo ]] || ep_die "no cargo proxy next to $RUSTUP_BIN"

# Runs inside the new mount+PID namespace (PID 1 there): mounts, chroot, the
# two commands with a clean environment. Everything mounted here disappears
# when this namespace's last process exits.
inner() {
    set -euo pipefail
    mount --make-rprivate /
    # The root must be a mount point: `ip netns add` runs mount --make-rslave /.
    mount --bind "$ROOT" "$ROOT"
    mount -t proc proc "$ROOT/proc"
    mount --rbind /dev "$ROOT/dev"
    mount --rbind /sys "$ROOT/sys"
    mount -t tmpfs -o mode=0755 tmpfs "$ROOT/run"
    mount --bind "$RUSTUP_DIR" "$ROOT/root/.rustup"
    mount -o remount,bind,ro "$ROOT/root/.rustup"
    local cmd rc=0
    for cmd in "$@"; do
        echo "[fresh-debian] == $cmd" >&2
        set +e
        chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            /bin/bash -c "cd /root/edgeplane && $cmd" 2>&1 | tee "$DIR/$(basename "$cmd" .sh).log"
        rc=${PIPESTATUS[0]}
        set -e
        echo "$rc" >"$DIR/$(basename "$cmd" .sh).rc"
    done
}

cmds=()
[[ $what == test ]] || cmds+=(./scripts/demo.sh)
[[ $what == demo ]] || cmds+=(./scripts/test.sh)
export ROOT DIR RUSTUP_DIR
ep_log "running ${cmds[*]} in a minimal Debian 12 (private mount+PID namespace, chroot)"
unshare --mount --pid --fork --propagation private \
    bash -c "$(declare -f inner); inner \"\$@\"" inner "${cmds[@]}" || true

failed=0
echo
for cmd in "${cmds[@]}"; do
    log=$DIR/$(basename "$cmd" .sh)
    rc=$(cat "$log.rc" 2>/dev/null || echo "not run")
    echo "[fresh-debian] $cmd: exit $rc (log: $log.log)"
    [[ $rc == 0 ]] || failed=1
done
if [[ -f $DIR/test.log ]]; then
    grep -E '^\s*Summary \[|tests? run:|FAIL \[|SIGKILL|TIMEOUT|^\[test\] (FAILED|all stages)' "$DIR/test.log" | tail -40 || true
fi
exit "$failed"
