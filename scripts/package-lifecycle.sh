#!/usr/bin/env bash
# install → upgrade → remove → purge of the .deb (and the .rpm) in a clean Debian 12 root, with
# real pinned data-plane state that must survive the upgrade and be gone after
# the removal. (tests/package_lifecycle.rs runs it in the suite.)
#
#   scripts/package-lifecycle.sh        (as root; exit 0 passed, 77 skipped, else failed)
#
#   1. a minimal Debian 12 root: debootstrap --variant=minbase bookworm from
#      the mirror this machine's apt uses (EP_LIFECYCLE_MIRROR overrides it),
#      cached in $EP_LIFECYCLE_CACHE (default /var/cache/edgeplane-lifecycle/
#      bookworm-minbase-YYYYMMDD/) and reused for EP_LIFECYCLE_CACHE_DAYS
#      (default 7) days; every run works on a fresh copy of it;
#   2. two package versions of this tree (scripts/build-packages.sh): the
#      current one, and the same tree as version "<version>~lifecycle.old"
#      (dpkg sorts it lower), so `dpkg -i` of the current one is a real
#      upgrade that runs both versions' maintainer scripts;
#   3. in a private mount, PID and network namespace (unshare: nothing is
#      created in this machine's network namespace, every mount vanishes with
#      the namespace) and a chroot into the copy, with /proc, /dev, a sysfs of
#      the new network namespace, this machine's cgroup tree, a bpffs of its
#      own at /sys/fs/bpf and an empty /run (no booted systemd: the scripts'
#      deb-systemd-invoke calls skip, as in any chroot; policy-rc.d says 101):
#        dpkg -i OLD: files, conffile, config.d; nothing started or enabled;
#        pinned state as the service makes it: a veth pair (198.18.0.0/30) in
#          the new namespace, a child cgroup ep-test-lifecycle-<pid>, the
#          settings file edited as an admin would (its own state-dir, that
#          cgroup), a Service + EndpointSlice in config.d, `edgeplane apply`;
#          a process in the cgroup reaches the ClusterIP (connect() hook);
#        dpkg -i NEW (upgrade): same pins (names and inodes, i.e. the same
#          objects), same maps' fill and links' programs in `status -o json`,
#          same `services -o json`, the edited conffile kept, the ClusterIP
#          still answers; then `edgeplane apply` by the new binary (what the
#          unit's try-restart would do) keeps the maps;
#        dpkg -r: prerm's `edgeplane reset` unpinned and detached everything
#          (state dir gone, the ClusterIP no longer translated), the binary
#          and unit are gone, the edited conffile is kept;
#        dpkg -P: the conffiles are gone; the admin's own file in config.d is
#          left alone, as dpkg does;
#      then the same with the .rpm and this machine's rpm (`rpm --root`, so
#      the scriptlets run chrooted): rpm -i OLD, apply, rpm -U NEW (state
#      survives), rpm -e (%preun's reset; the edited settings file is kept as
#      edgeplane.yaml.rpmsave). EP_LIFECYCLE_RPM=0 leaves the rpm out.
# Whatever happens, the pinned state is reset (and a killed run's bpffs and
# network namespace die with its namespaces), the cgroup and the copy of the
# root are removed; the logs stay in $EP_LIFECYCLE_DIR (default
# /var/tmp/edgeplane-lifecycle-<pid>/) on failure, or always with
# EP_LIFECYCLE_KEEP=1 (which also keeps the root).
# Needs debootstrap, rpm, cargo-deb and cargo-generate-rpm (scripts/test.sh
# installs them) and the network only for the first debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
EP_SCRIPT=package-lifecycle
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# Exit 77: tests/package_lifecycle.rs reports the test as skipped, with this reason.
PASSED=0
skip() {
    echo "[package-lifecycle] skipped: $*" >&2
    PASSED=1 # nothing to keep
    exit 77
}

# ---- inside the namespaces (this script re-run as PID 1 there) --------------
if [[ ${1:-} == __inner ]]; then
    : "${ROOT:?}" "${DIR:?}" "${STATE:?}" "${CG:?}" "${OLD_VERSION:?}" "${NEW_VERSION:?}" "${HOST_NETNS:?}"
    PY=/usr/bin/python3
    LISTENER=
    step() { ep_log "== $*"; }
    ok() { ep_log "ok: $*"; }
    fail() { ep_die "FAILED: $*"; }
    # A command in the chroot, with a clean environment.
    c() {
        chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" </dev/null
    }
    # A package command; its output is shown, and kept in $DIR/NAME.log.
    pkg_step() {
        local name=$1
        shift
        if ! "$@" >"$DIR/$name.log" 2>&1 </dev/null; then
            cat "$DIR/$name.log" >&2
            fail "$*"
        fi
        sed 's/^/    | /' "$DIR/$name.log" >&2
        ! grep -q "reset' failed" "$DIR/$name.log" || fail "$name: a maintainer script's edgeplane reset failed"
    }
    deb_state() { c dpkg-query -W -f='${Version} ${Status}' edgeplane 2>/dev/null || echo "not-installed"; }
    rpm_q() {
        local v
        if v=$(rpm --root "$ROOT" -q --qf '%{VERSION}' edgeplane 2>/dev/null); then echo "$v"; else echo "not-installed"; fi
    }
    # A process moved into the cgroup connects to the ClusterIP and prints
    # the backend's greeting (the cgroup's connect4 hook translates it).
    ask_vip() {
        # shellcheck disable=SC2016
        sh -c 'echo $$ >"$1/cgroup.procs" && exec "$2" -c "
import socket
s = socket.create_connection((\"198.19.0.10\", 80), timeout=2)
print(s.makefile().readline().strip())"' sh "$CG" "$PY" 2>/dev/null || true
    }
    # The pins under the state dir: relative name and inode (the same inode
    # is the same pinned object, not a re-created one).
    # What is in this namespace's bpffs besides the kernel's own preloaded
    # iterators (maps.debug, progs.debug).
    bpffs_entries() { ls -A "$ROOT/sys/fs/bpf" | grep -vxE 'maps\.debug|progs\.debug' || true; }
    pins() { (cd "$ROOT$STATE" && find . -mindepth 1 -printf '%P %i\n' | LC_ALL=C sort); }
    # The parts of `status -o json` that must not change while nothing is
    # applied: the maps' fill and the links with their programs.
    status_core() {
        c edgeplane status -o json | "$PY" -c '
import json, sys
s = json.load(sys.stdin)
for m in s["maps"]:
    print("map", m["name"], m["kind"], m["entries"], m["capacity"])
for l in s["links"]:
    print("link", l["pin"], l["kind"], l["target"], l["attached"], l["prog_id"])'
    }
    # The real stderr, for the traps: they may run inside a function whose
    # output is redirected to a log (pkg_step).
    exec 3>&2
    inner_cleanup() {
        set +e
        exec 2>&3
        [[ -n $LISTENER ]] && kill "$LISTENER" 2>/dev/null
        if [[ -e $ROOT$STATE ]]; then
            ep_log "cleanup: edgeplane reset of $STATE"
            cp "$DIR/pkgs/edgeplane" "$ROOT/tmp/edgeplane-cleanup"
            c /tmp/edgeplane-cleanup reset --config /dev/null --state-dir "$STATE" --cgroup "$CG" \
                --workload-interfaces 'veth-lc*' >&2
            rm -rf "${ROOT:?}$STATE"
        fi
        ip link del veth-lc0 2>/dev/null
        # The cgroup is removed by the caller, once this namespace (and any
        # process moved into the cgroup) is gone.
    }
    trap inner_cleanup EXIT
    # PID 1 of its namespace gets no signal it has no handler for.
    trap 'exec 2>&3; ep_log "interrupted (in the namespace)"; exit 130' INT TERM
    # This process's PID outside (the host's /proc): the caller waits for it.
    read -r host_pid _ </proc/self/stat
    echo "$host_pid" >"$DIR/inner.pid"

    # Installed, not started, not enabled: files, no process (in this PID
    # namespace: the chroot's /proc), no pinned state, no wants link.
    check_installed() {
        local f p
        for f in /usr/bin/edgeplane /usr/lib/systemd/system/edgeplane.service /etc/edgeplane/edgeplane.yaml \
            /etc/edgeplane/config.d/README /usr/share/man/man1/edgeplane.1.gz; do
            [[ -f $ROOT$f ]] || fail "$f not installed"
        done
        c edgeplane --version >&2 || fail "the installed binary does not run"
        for p in "$ROOT"/proc/[0-9]*; do
            [[ $(cat "$p/comm" 2>/dev/null) != edgeplane ]] || fail "an edgeplane process runs after install ($p)"
        done
        [[ -z $(bpffs_entries) ]] || fail "pinned state after install: $(bpffs_entries)"
        [[ ! -e $ROOT/etc/systemd/system/multi-user.target.wants/edgeplane.service ]] || fail "enabled on install"
    }

    # The admin's settings (an edited conffile) and input; `edgeplane apply`;
    # the ClusterIP answers; snapshot of the pinned state ($DIR/*-before.*).
    make_state() {
        cat >"$ROOT/etc/edgeplane/edgeplane.yaml" <<EOF
# Edited by scripts/package-lifecycle.sh, as an admin would.
host-interfaces: []
workload-interfaces: ["veth-lc*"]
config-dir: /etc/edgeplane/config.d
state-dir: $STATE
cgroup: $CG
metrics-address: ""
settle-milliseconds: 0
EOF
        cp "$ROOT/etc/edgeplane/edgeplane.yaml" "$DIR/edgeplane.yaml.edited"
        cat >"$ROOT/etc/edgeplane/config.d/lifecycle.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: lifecycle}
spec:
  clusterIP: 198.19.0.10
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: lifecycle
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: ["198.18.0.2"]
  conditions: {ready: true}
ports: [{name: http, protocol: TCP, port: 8080}]
EOF
        c edgeplane apply >"$DIR/apply-$1.log" 2>&1 || { cat "$DIR/apply-$1.log" >&2; fail "edgeplane apply"; }
        [[ -d $ROOT$STATE ]] || fail "no state dir $STATE after apply"
        [[ $(ask_vip) == lifecycle-backend ]] || fail "a process in $CG does not reach the ClusterIP 198.19.0.10:80"
        c edgeplane services -o json >"$DIR/services-before.json"
        status_core >"$DIR/status-before.txt"
        pins >"$DIR/pins-before.txt"
        grep -q '"198.19.0.10' "$DIR/services-before.json" || fail "services -o json lacks 198.19.0.10"
        grep -q '^link .* True [0-9]' "$DIR/status-before.txt" || fail "no attached link in status"
        ok "applied: $(grep -c '^link' "$DIR/status-before.txt") links, $(wc -l <"$DIR/pins-before.txt") pins; ClusterIP answers"
    }

    # After the upgrade: the same pinned objects, maps, links and services,
    # the edited conffile kept, forwarding on; then the new binary's apply
    # (what the unit's try-restart does) keeps the maps and services.
    check_survived() {
        cmp -s "$DIR/edgeplane.yaml.edited" "$ROOT/etc/edgeplane/edgeplane.yaml" || fail "the edited conffile was replaced"
        pins >"$DIR/pins-after-upgrade.txt"
        diff -u "$DIR/pins-before.txt" "$DIR/pins-after-upgrade.txt" >&2 || fail "pinned objects changed by the upgrade"
        status_core >"$DIR/status-after-upgrade.txt"
        diff -u "$DIR/status-before.txt" "$DIR/status-after-upgrade.txt" >&2 || fail "status changed by the upgrade"
        c edgeplane services -o json >"$DIR/services-after-upgrade.json"
        diff -u "$DIR/services-before.json" "$DIR/services-after-upgrade.json" >&2 || fail "services changed by the upgrade"
        [[ $(ask_vip) == lifecycle-backend ]] || fail "the ClusterIP stopped answering after the upgrade"
        ok "$1: same pinned objects, maps, links and services; conffile kept; ClusterIP answers"

        c edgeplane apply >"$DIR/apply-new.log" 2>&1 || { cat "$DIR/apply-new.log" >&2; fail "edgeplane apply (new)"; }
        pins >"$DIR/pins-after-apply.txt"
        # Maps are kept (same objects); programs and links may be replaced.
        grep -v '^links' "$DIR/pins-before.txt" >"$DIR/maps-before.txt" || true
        grep -v '^links' "$DIR/pins-after-apply.txt" >"$DIR/maps-after-apply.txt" || true
        [[ -s $DIR/maps-before.txt ]] || fail "no map pins in $STATE"
        diff -u "$DIR/maps-before.txt" "$DIR/maps-after-apply.txt" >&2 || fail "the new binary's apply re-created maps"
        c edgeplane services -o json >"$DIR/services-after-apply.json"
        diff -u "$DIR/services-before.json" "$DIR/services-after-apply.json" >&2 || fail "services changed by re-apply"
        [[ $(ask_vip) == lifecycle-backend ]] || fail "the ClusterIP stopped answering after re-apply"
        ok "re-applied by the new binary: same maps and services; ClusterIP answers"
    }

    # After removal: nothing pinned, nothing translated, the files gone, the
    # edited settings file kept (as FILE).
    check_removed() {
        local f
        [[ ! -e $ROOT$STATE ]] || fail "pinned state left after removal: $(pins | head)"
        [[ -z $(bpffs_entries) ]] || fail "pins left in bpffs: $(bpffs_entries)"
        [[ $(ask_vip) != lifecycle-backend ]] || fail "the ClusterIP is still translated after removal"
        for f in /usr/bin/edgeplane /usr/lib/systemd/system/edgeplane.service /usr/share/man/man1/edgeplane.1.gz; do
            [[ ! -e $ROOT$f ]] || fail "$f left after removal"
        done
        cmp -s "$DIR/edgeplane.yaml.edited" "$ROOT$1" || fail "the edited settings file was not kept as $1"
    }

    mount --make-rprivate /
    mount --bind "$ROOT" "$ROOT"
    mount -t proc proc "$ROOT/proc"
    mount --rbind /dev "$ROOT/dev"
    # sysfs of this network namespace (not the host's interfaces), the host's
    # cgroup tree (the test's child cgroup lives there), a bpffs instance of
    # this namespace only (it goes away with it, pins and all).
    mount -t sysfs sysfs "$ROOT/sys"
    mount --rbind /sys/fs/cgroup "$ROOT/sys/fs/cgroup"
    mount -t bpf -o mode=0700 bpf "$ROOT/sys/fs/bpf"
    mount -t tmpfs -o mode=0755 tmpfs "$ROOT/run"
    [[ $(stat -Lc %i /proc/self/ns/net) != "$HOST_NETNS" ]] || fail "not in a new network namespace"
    ip link set lo up
    ip link add veth-lc0 type veth peer name veth-lc1
    ip addr add 198.18.0.1/30 dev veth-lc0
    ip addr add 198.18.0.2/30 dev veth-lc1
    ip link set veth-lc0 up
    ip link set veth-lc1 up
    # The backend: one greeting per connection (the host's python3, in this
    # namespace; the chroot has none).
    "$PY" -c '
import socket
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("198.18.0.2", 8080)); t.listen(16)
while True:
    c, _ = t.accept()
    c.sendall(b"lifecycle-backend\n"); c.close()' &
    LISTENER=$!
    for _ in {1..50}; do ss -Hltn 'sport = :8080' | grep -q . && break; sleep 0.1; done

    # ---- .deb ----
    step "deb: dpkg -i edgeplane $OLD_VERSION (first install)"
    pkg_step deb-install c dpkg -i /tmp/pkgs/old.deb
    [[ $(deb_state) == "$OLD_VERSION install ok installed" ]] || fail "after install: $(deb_state)"
    grep -q "installed, not enabled" "$DIR/deb-install.log" || fail "postinst did not say it is not enabled"
    grep -qx /etc/edgeplane/edgeplane.yaml "$ROOT/var/lib/dpkg/info/edgeplane.conffiles" ||
        fail "edgeplane.yaml is not a conffile"
    [[ -d $ROOT/etc/edgeplane/config.d ]] || fail "no /etc/edgeplane/config.d"
    check_installed
    ok "deb: installed $OLD_VERSION: files, conffile, config.d; not started, not enabled"

    step "deb: pinned state as the service makes it (veth pair, cgroup, settings, config.d, edgeplane apply)"
    make_state deb

    step "deb: dpkg -i edgeplane $NEW_VERSION (upgrade)"
    pkg_step deb-upgrade c dpkg -i /tmp/pkgs/new.deb
    [[ $(deb_state) == "$NEW_VERSION install ok installed" ]] || fail "after upgrade: $(deb_state)"
    ! grep -q "reset:" "$DIR/deb-upgrade.log" || fail "the upgrade ran edgeplane reset"
    check_survived "deb: upgraded to $NEW_VERSION"

    step "deb: dpkg -r edgeplane"
    pkg_step deb-remove c dpkg -r edgeplane
    [[ $(deb_state) == "$NEW_VERSION deinstall ok config-files" ]] || fail "after remove: $(deb_state)"
    grep -qF "reset: detached and unpinned everything under $STATE" "$DIR/deb-remove.log" ||
        fail "prerm did not reset $STATE"
    check_removed /etc/edgeplane/edgeplane.yaml
    ok "deb: removed: prerm's reset unpinned and detached everything, files gone, conffile kept"

    step "deb: dpkg -P edgeplane"
    pkg_step deb-purge c dpkg -P edgeplane
    [[ $(deb_state) == *not-installed ]] || fail "after purge: $(deb_state)"
    [[ ! -e $ROOT/etc/edgeplane/edgeplane.yaml && ! -e $ROOT/etc/edgeplane/config.d/README ]] ||
        fail "conffiles left after purge"
    [[ -f $ROOT/etc/edgeplane/config.d/lifecycle.yaml ]] || fail "purge removed the admin's own config.d file"
    ok "deb: purged: conffiles gone, the admin's config.d file left alone"

    # ---- .rpm (this machine's rpm, --root: the scriptlets run chrooted) ----
    if [[ ${EP_LIFECYCLE_RPM:-0} == 1 ]]; then
        rm -rf "${ROOT:?}/etc/edgeplane"
        # --nodeps: the Debian root's /bin/sh and mount are not in rpm's
        # database; --force-debian: Debian's rpm refuses a dpkg system otherwise.
        rpmi() { rpm --root "$ROOT" --force-debian --nodeps "$@"; }
        rpm --root "$ROOT" --initdb
        step "rpm: rpm -i edgeplane $OLD_VERSION (first install)"
        pkg_step rpm-install rpmi -i "$ROOT/tmp/pkgs/old.rpm"
        [[ $(rpm_q) == "$OLD_VERSION" ]] || fail "after rpm -i: $(rpm_q)"
        grep -q "installed, not enabled" "$DIR/rpm-install.log" || fail "%post did not say it is not enabled"
        check_installed
        ok "rpm: installed $OLD_VERSION: files, config.d; not started, not enabled"

        step "rpm: pinned state as the service makes it"
        make_state rpm

        step "rpm: rpm -U edgeplane $RPM_NEW_VERSION (upgrade)"
        pkg_step rpm-upgrade rpmi -U "$ROOT/tmp/pkgs/new.rpm"
        [[ $(rpm_q) == "$RPM_NEW_VERSION" ]] || fail "after rpm -U: $(rpm_q)"
        ! grep -q "reset:" "$DIR/rpm-upgrade.log" || fail "the upgrade ran edgeplane reset"
        check_survived "rpm: upgraded to $RPM_NEW_VERSION"

        step "rpm: rpm -e edgeplane"
        pkg_step rpm-erase rpmi -e edgeplane
        [[ $(rpm_q) == not-installed ]] || fail "after rpm -e: $(rpm_q)"
        # A modified %config(noreplace) file is saved as .rpmsave on erase.
        grep -qF "reset: detached and unpinned everything under $STATE" "$DIR/rpm-erase.log" ||
            fail "%preun did not reset $STATE"
        check_removed /etc/edgeplane/edgeplane.yaml.rpmsave
        ok "rpm: erased: %preun's reset unpinned and detached everything, files gone, settings kept as .rpmsave"
    fi
    exit 0
fi

# ---- outside ----------------------------------------------------------------
ep_require_root
command -v debootstrap >/dev/null || skip "debootstrap missing (apt-get install debootstrap)"
for tool in cargo-deb cargo-generate-rpm; do
    command -v "$tool" >/dev/null || skip "$tool missing (cargo install --locked $tool)"
done
for tool in unshare chroot ip ss dpkg-deb /usr/bin/python3; do
    command -v "$tool" >/dev/null || skip "$tool missing"
done
CG_ROOT=$(ep_cgroup2_root) || skip "no cgroup2 mount"
[[ $CG_ROOT == /sys/fs/cgroup* ]] || skip "cgroup2 at $CG_ROOT, expected under /sys/fs/cgroup"

CACHE=${EP_LIFECYCLE_CACHE:-/var/cache/edgeplane-lifecycle}
DIR=${EP_LIFECYCLE_DIR:-/var/tmp/edgeplane-lifecycle-$$}
ROOT=$DIR/root
STATE=/sys/fs/bpf/ep-lifecycle-$$
CG=$CG_ROOT/ep-test-lifecycle-$$
mkdir -p "$CACHE" "$DIR"
[[ ! -e $ROOT ]] || ep_die "$ROOT exists already (EP_LIFECYCLE_DIR of an earlier run?)"
cleanup() {
    set +e
    # On an interrupt, let the namespace's PID 1 finish its own cleanup first.
    local pid i
    pid=$(cat "$DIR/inner.pid" 2>/dev/null)
    for ((i = 0; i < 300; i++)); do
        [[ -n $pid && -e /proc/$pid ]] || break
        sleep 0.1
    done
    [[ -d $CG ]] && { rmdir "$CG" || ep_log "cleanup: could not remove $CG"; }
    # The namespace's bpffs is gone with it; should the host's /sys/fs/bpf
    # ever have got pins of this run, remove them too.
    [[ -e $STATE ]] && rm -rf "$STATE"
    if [[ ${EP_LIFECYCLE_KEEP:-0} == 1 ]]; then
        ep_log "kept $DIR (EP_LIFECYCLE_KEEP=1)"
        return
    fi
    ep_remove_root "$ROOT" || return
    if ((PASSED)); then
        rm -rf "$DIR"
    else
        rm -rf "$DIR/pkgs" "$DIR/pkgs-old"
        ep_log "logs: $DIR"
    fi
}
trap cleanup EXIT
trap 'ep_log interrupted; exit 130' INT TERM

# ---- 1. the cached minimal root ----
started=$SECONDS
# One run at a time makes or copies the cache.
exec {cache_lock}>"$CACHE/.lock"
flock "$cache_lock"
cached=$(find "$CACHE" -maxdepth 2 -name .complete -path "$CACHE/bookworm-minbase-*/.complete" \
    -mtime -"${EP_LIFECYCLE_CACHE_DAYS:-7}" -printf '%h\n' 2>/dev/null | sort | tail -1)
if [[ -z $cached ]]; then
    cached=$CACHE/bookworm-minbase-$(date -u +%Y%m%d)
    rm -rf --one-file-system "$cached"
    mirror=${EP_LIFECYCLE_MIRROR:-$(ep_debian_mirror)}
    if ! (ep_debootstrap "$cached" "$mirror" "$DIR/debootstrap.log"); then
        rm -rf --one-file-system "$cached"
        skip "debootstrap from $mirror failed (no network?)"
    fi
    touch "$cached/.complete"
    # Older caches are superseded.
    find "$CACHE" -mindepth 1 -maxdepth 1 -name 'bookworm-minbase-*' ! -path "$cached" -exec rm -rf --one-file-system {} +
fi
ep_log "root: copy of $cached ($((SECONDS - started))s)"
cp -a "$cached" "$ROOT"
flock -u "$cache_lock"
rm -f "$ROOT/.complete"
# As in any chroot: no init script may be started (deb-systemd-invoke and
# invoke-rc.d ask policy-rc.d).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

# ---- 2. two package versions ----
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
OLD_VERSION="$version~lifecycle.old"
ep_log "building the packages: $OLD_VERSION and the current one"
mkdir -p "$DIR/pkgs" "$DIR/pkgs-old"
built=$(scripts/build-packages.sh "$DIR/pkgs" "$(uname -m)") || ep_die "scripts/build-packages.sh failed"
mapfile -t new <<<"$built"
built=$(EP_PACKAGE_VERSION=$OLD_VERSION scripts/build-packages.sh "$DIR/pkgs-old" "$(uname -m)") ||
    ep_die "EP_PACKAGE_VERSION=$OLD_VERSION scripts/build-packages.sh failed"
mapfile -t old <<<"$built"
[[ ${new[0]} == *.deb && ${old[0]} == *.deb ]] || ep_die "no .deb from build-packages.sh: ${new[*]} / ${old[*]}"
NEW_VERSION=$(dpkg-deb -f "${new[0]}" Version)
[[ $(dpkg-deb -f "${old[0]}" Version) == "$OLD_VERSION" ]] || ep_die "old package has version $(dpkg-deb -f "${old[0]}" Version)"
dpkg --compare-versions "$OLD_VERSION" lt "$NEW_VERSION" || ep_die "$OLD_VERSION is not older than $NEW_VERSION"
dpkg-deb --fsys-tarfile "${new[0]}" | tar -xOf - ./usr/bin/edgeplane >"$DIR/pkgs/edgeplane"
chmod 755 "$DIR/pkgs/edgeplane"
mkdir -p "$ROOT/tmp/pkgs"
cp "${old[0]}" "$ROOT/tmp/pkgs/old.deb"
cp "${new[0]}" "$ROOT/tmp/pkgs/new.deb"
# The .rpm too, with this machine's rpm (EP_LIFECYCLE_RPM=0 skips it).
EP_LIFECYCLE_RPM=${EP_LIFECYCLE_RPM:-1}
RPM_NEW_VERSION=
if [[ $EP_LIFECYCLE_RPM == 1 ]]; then
    command -v rpm >/dev/null || ep_die "rpm missing (apt-get install rpm; or EP_LIFECYCLE_RPM=0)"
    [[ ${new[1]:-} == *.rpm && ${old[1]:-} == *.rpm ]] || ep_die "no .rpm from build-packages.sh"
    [[ $(rpm -qp --qf '%{VERSION}' "${old[1]}") == "$OLD_VERSION" ]] || ep_die "old .rpm: $(rpm -qp "${old[1]}")"
    RPM_NEW_VERSION=$(rpm -qp --qf '%{VERSION}' "${new[1]}")
    cp "${old[1]}" "$ROOT/tmp/pkgs/old.rpm"
    cp "${new[1]}" "$ROOT/tmp/pkgs/new.rpm"
fi
ep_log "packages built ($((SECONDS - started))s)"

# ---- 3. the lifecycle, in new mount+PID+network namespaces ----
mkdir "$CG"
HOST_NETNS=$(stat -Lc %i /proc/self/ns/net)
export ROOT DIR STATE CG OLD_VERSION NEW_VERSION HOST_NETNS EP_LIFECYCLE_RPM RPM_NEW_VERSION
rc=0
unshare --mount --pid --net --fork --kill-child=TERM --propagation private "$PWD/scripts/package-lifecycle.sh" __inner || rc=$?
if ((rc == 0)); then
    PASSED=1
    what=deb
    [[ $EP_LIFECYCLE_RPM != 1 ]] || what="deb and rpm"
    ep_log "PASSED ($what): install $OLD_VERSION → upgrade $NEW_VERSION → remove → purge ($((SECONDS - started))s)"
else
    ep_log "FAILED (exit $rc)"
fi
exit "$rc"
