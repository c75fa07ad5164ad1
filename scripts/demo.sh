#!/usr/bin/env bash
# Quick start (1): build edgeplane and run it in a throwaway network-namespace
# demo with examples-config/ (see examples-config/demo.yaml for the names and
# addresses this script relies on).
#
#   netns <p>-client  pod0 198.18.0.2/32 ── veth-client ┐
#                                                        ├ netns <p>-node: edgeplane on veth-* (tc),
#   netns <p>-web1    pod0 198.18.1.10/32 ── veth-web1 ──┤   ip_forward, 198.18.0.1 / 198.18.1.1
#   netns <p>-web2    pod0 198.18.1.11/32 ── veth-web2 ──┘   (no link to the root namespace)
#
# web1/web2 run a small TCP server on 8080 and a UDP server on 5353; the client
# reaches them only through Service demo/web, ClusterIP 198.19.0.10 (80/TCP,
# 53/UDP). Everything (namespaces, servers, pinned state) is removed on exit,
# also on error or Ctrl-C. Nothing is attached in the root namespace.
#
# Every edgeplane call gets --config /dev/null: an installed
# /etc/edgeplane/edgeplane.yaml (uplinks of this machine) must not leak into the demo.
# Environment: CARGO_TARGET_DIR is honoured; EP_DEMO_CONNS (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
EP_SCRIPT=demo
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ep_require_root
ep_apt_install "${EP_APT_PACKAGES[@]}"
ep_require_cargo
ep_ensure_bpffs

ep_log "building edgeplane (release)"
cargo build --release --locked --bin edgeplane >&2
EP=$(realpath "${CARGO_TARGET_DIR:-target}/release/edgeplane")
CONFIG=$PWD/examples-config

echo
echo "== edgeplane check examples-config"
"$EP" check --config /dev/null "$CONFIG"

# ---- throwaway topology ---------------------------------------------------------
P="epdemo$$"
NS_NODE=$P-node NS_CLIENT=$P-client NS_WEB1=$P-web1 NS_WEB2=$P-web2
STATE=/sys/fs/bpf/edgeplane-demo-$$
WORKLOAD_GLOB='veth-*'
WORK=$(mktemp -d "/tmp/$P.XXXX")
PIDS=() NSS=() APPLIED=0
ROOT_NS=$(stat -Lc %i /proc/self/ns/net)

cleanup() {
    set +e
    if ((APPLIED)) || [[ -e $STATE ]]; then
        "$EP" reset --config /dev/null --netns "$NS_NODE" --state-dir "$STATE" --workload-interfaces "$WORKLOAD_GLOB" >/dev/null 2>&1 ||
            ep_log "edgeplane reset failed; pinned state may remain in $STATE"
    fi
    local pid ns
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    [[ -d $STATE ]] && rmdir "$STATE" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'ep_log interrupted; exit 130' INT TERM

# Enter one of this demo's namespaces with nsenter (iproute2's netns exec
# would remount /sys and hide bpffs). Refuses anything that is not ours or is the root ns.
check_ns() {
    [[ $1 == "$P"-* && -e /run/netns/$1 ]] || ep_die "refusing to enter namespace '$1'"
    [[ $(stat -Lc %i "/run/netns/$1") != "$ROOT_NS" ]] || ep_die "'$1' is the root namespace"
}
in_ns() { check_ns "$1"; nsenter --net="/run/netns/$1" "${@:2}"; }

ep_log "creating namespaces $P-{node,client,web1,web2}"
for ns in "$NS_NODE" "$NS_CLIENT" "$NS_WEB1" "$NS_WEB2"; do
    ip netns add "$ns"
    NSS+=("$ns")
    ip -n "$ns" link set lo up
done
# pod <-> node links; both ends are created inside the namespaces, so no
# interface ever exists in the root namespace. /32 addressing with the node
# as gateway, as CNI plugins do: pods reach each other only through the node.
pod_link() { # node-ifname pod-ns pod-ip gateway-ip
    ip -n "$NS_NODE" link add "$1" type veth peer name pod0 netns "$2"
    ip -n "$NS_NODE" addr add "$4/32" dev "$1"
    ip -n "$NS_NODE" link set "$1" up
    ip -n "$NS_NODE" route add "$3/32" dev "$1"
    ip -n "$2" addr add "$3/32" dev pod0
    ip -n "$2" link set pod0 up
    ip -n "$2" route add "$4/32" dev pod0
    ip -n "$2" route add default via "$4" dev pod0
}
pod_link veth-client "$NS_CLIENT" 198.18.0.2 198.18.0.1
pod_link veth-web1 "$NS_WEB1" 198.18.1.10 198.18.1.1
pod_link veth-web2 "$NS_WEB2" 198.18.1.11 198.18.1.1
# /proc/sys/net is the namespace of the writer: write it from inside (no
# procps sysctl needed, a minimal Debian has none).
in_ns "$NS_NODE" sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'

# backends: TCP 8080 answers one line naming the pod; UDP 5353 likewise
cat >"$WORK/server.py" <<'PY'
import socket, sys, threading
name, ip = sys.argv[1], sys.argv[2]
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 5353))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(f"{name} ({ip}) udp reply to {peer[0]}".encode(), peer)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((ip, 8080)); t.listen(64)
while True:
    c, peer = t.accept()
    with c:
        c.sendall(f"{name} ({ip}) tcp reply to {peer[0]}:{peer[1]}\n".encode())
PY
for pod in "web1 $NS_WEB1 198.18.1.10" "web2 $NS_WEB2 198.18.1.11"; do
    set -- $pod
    check_ns "$2"
    # nsenter execs python3, so $! is the server itself (killed by PID on exit)
    nsenter --net="/run/netns/$2" python3 "$WORK/server.py" "$1" "$3" &
    PIDS+=($!)
done
for ns in "$NS_WEB1" "$NS_WEB2"; do
    for _ in {1..50}; do
        in_ns "$ns" ss -Hltn 'sport = :8080' | grep -q . && break
        sleep 0.1
    done
done

echo
echo "== edgeplane apply --config /dev/null --config-dir examples-config --netns $NS_NODE --state-dir $STATE --workload-interfaces '$WORKLOAD_GLOB'"
APPLIED=1
# As root, edgeplane applies only input that root owns and nobody else can write
# (docs/SECURITY.md): apply a root-owned copy, whoever owns this checkout.
cp -r "$CONFIG" "$WORK/config"
chown -R 0:0 "$WORK/config"
chmod -R go-w "$WORK/config"
if ! "$EP" apply --config /dev/null --config-dir "$WORK/config" --netns "$NS_NODE" --state-dir "$STATE" \
    --workload-interfaces "$WORKLOAD_GLOB" 2>"$WORK/apply.err"; then
    cat "$WORK/apply.err" >&2
    if grep -qiE 'not (built|implemented)|not yet' "$WORK/apply.err"; then
        echo
        echo "The data plane is not built into this version yet: the demo stops after"
        echo "'edgeplane check' above (the configuration is valid)."
        exit 0
    fi
    ep_die "edgeplane apply failed"
fi
cat "$WORK/apply.err" >&2

# the client: TCP connections and UDP queries to the ClusterIP
cat >"$WORK/client.py" <<'PY'
import collections, socket, sys
vip, n = sys.argv[1], int(sys.argv[2])
seen = collections.Counter()
for i in range(n):
    s = socket.create_connection((vip, 80), timeout=3)
    line = s.makefile().readline().strip()
    peer = s.getpeername()
    s.close()
    if i < 4:
        print(f"  tcp {vip}:80 -> {line}   (socket peer {peer[0]}:{peer[1]})")
    seen[line.split()[0]] += 1
print(f"  {n} TCP connections to {vip}:80 answered by: " + ", ".join(f"{k} x{v}" for k, v in sorted(seen.items())))
useen = collections.Counter()
for i in range(n):
    # a new socket (source port) per query: each one is a new flow, balanced anew
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(3)
    u.sendto(b"query", (vip, 53))
    data, src = u.recvfrom(2048)
    u.close()
    if src != (vip, 53):
        sys.exit(f"UDP reply came from {src}, expected {vip}:53")
    if i < 2:
        print(f"  udp {vip}:53 -> {data.decode()}   (reply source {src[0]}:{src[1]})")
    useen[data.decode().split()[0]] += 1
print(f"  {n} UDP queries to {vip}:53 answered by: " + ", ".join(f"{k} x{v}" for k, v in sorted(useen.items())))
if set(seen) != {"web1", "web2"}:
    sys.exit(f"expected both backends to answer over TCP, got {dict(seen)}")
PY
echo
echo "== client pod (198.18.0.2) -> Service demo/web (ClusterIP 198.19.0.10)"
in_ns "$NS_CLIENT" python3 "$WORK/client.py" 198.19.0.10 "${EP_DEMO_CONNS:-20}"

echo
echo "== edgeplane status --netns $NS_NODE --state-dir $STATE"
"$EP" status --config /dev/null --netns "$NS_NODE" --state-dir "$STATE"

echo
echo "== edgeplane reset (and removing the demo namespaces)"
"$EP" reset --config /dev/null --netns "$NS_NODE" --state-dir "$STATE" --workload-interfaces "$WORKLOAD_GLOB"
APPLIED=0
echo "demo finished: every connection went through the eBPF data plane."
