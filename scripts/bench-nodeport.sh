#!/usr/bin/env bash
# NodePort benchmark (issue 9): outside client -> router -> node1:30080 ->
# backends on node2 (pods 198.18.2.0/24), the topology of
# tests/common/multinode.rs built with ip commands. Modes, same run:
#   iptables      kube-proxy-style rules in node1's namespace (KUBE-NODEPORTS ->
#                 KUBE-EXT -> KUBE-SVC DNAT with statistic, KUBE-POSTROUTING MASQUERADE)
#   edgeplane-snat / edgeplane-dsr   `edgeplane apply` on both nodes with
#                 settings node-ips/dsr (skipped, with a note, while the binary
#                 rejects those settings)
# Per mode: connections/s (../shared/baseline/connbench.c, new TCP connection
# per request), single-stream throughput (iperf3 -P1), and CPU time per
# connection: machine-wide busy jiffies from /proc/stat over the connbench run
# divided by connections (all namespaces share the CPUs, so this includes the
# client and servers; compare modes against each other, not in absolute), and
# the entry node's own CPU per connection: every process runs on CPU 0
# (taskset) and Receive Packet Steering puts every packet's receive processing
# on CPU 0 except what arrives at node1 (its up0), which runs on CPU 1 -- so
# CPU 1's busy time is node1's forwarding work (tc programs or netfilter,
# routing, up to handing the packet to the next veth), minus CPU 1's idle
# noise measured first. Needs 2 CPUs (otherwise that figure is left out).
# One JSON line per mode on stdout; progress on stderr. Bounded: DURATION
# seconds per measurement (default 5). Everything is removed on exit; nothing
# is attached or configured in the root namespace.
#   scripts/bench-nodeport.sh [DURATION]    EDGEPLANE=path overrides the binary
set -Eeuo pipefail
cd "$(dirname "$0")/.."
EP_SCRIPT=bench-nodeport
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ep_require_root
ep_ensure_bpffs

DURATION=${1:-5}
EP=${EDGEPLANE:-${CARGO_TARGET_DIR:-target}/release/edgeplane}
# The shared harness sits beside this repository (EP_SHARED elsewhere).
CONNBENCH_C=${EP_SHARED:-../shared}/baseline/connbench.c
[[ -f $CONNBENCH_C ]] || ep_die "$CONNBENCH_C missing (set EP_SHARED)"
command -v iperf3 >/dev/null || ep_die "iperf3 missing (apt-get install iperf3)"

T=$$
RT=epbr$T CL=epbc$T N1=epb1$T N2=epb2$T
PODS=(epbp0$T epbp1$T)
WORK=$(mktemp -d /tmp/ep-bench-nodeport.XXXX)
PIDS=()
STATES=()

cleanup() {
    set +e
    [[ -n ${STATS_WAS:-} ]] && echo "$STATS_WAS" >/proc/sys/kernel/bpf_stats_enabled
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for s in "${STATES[@]}"; do
        [[ -x $EP ]] && "$EP" reset --state-dir "$s" >/dev/null 2>&1
        rm -rf "$s"
    done
    for ns in "${PODS[@]}" $N1 $N2 $CL $RT; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'ep_log "failed at line $LINENO: $BASH_COMMAND"' ERR

ep_log "building the topology"
for ns in $RT $CL $N1 $N2 "${PODS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
sysctl_ns $RT net.ipv4.ip_forward 1
ip -n $RT link add br0 type bridge
ip -n $RT link set br0 up
ip -n $RT addr add 198.18.200.1/24 dev br0
ip -n $RT link add rc type veth peer name eth0 netns $CL
ip -n $RT link set rc up
ip -n $CL link set eth0 up
ip -n $RT addr add 198.19.250.1/24 dev rc
ip -n $CL addr add 198.19.250.2/24 dev eth0
ip -n $CL route add default via 198.19.250.1
# Every mode opens thousands of connections from the same client to the same
# NodePort: let the client reuse its TIME_WAIT ports (timestamps make it safe),
# or later modes would run short of ephemeral ports.
sysctl_ns $CL net.ipv4.tcp_tw_reuse 1
for n in 1 2; do
    ns=$N1; [[ $n == 2 ]] && ns=$N2
    sysctl_ns "$ns" net.ipv4.ip_forward 1
    sysctl_ns "$ns" net.ipv4.conf.all.rp_filter 0
    sysctl_ns "$ns" net.ipv4.conf.default.rp_filter 0
    ip -n "$ns" link add up0 type veth peer name rn$n netns $RT
    ip -n "$ns" link set up0 up
    ip -n $RT link set rn$n master br0 up
    ip -n "$ns" addr add 198.18.200.1$n/24 dev up0
    ip -n "$ns" route add default via 198.18.200.1
done
ip -n $N1 route add 198.18.2.0/24 via 198.18.200.12
ip -n $N2 route add 198.18.1.0/24 via 198.18.200.11
for i in 0 1; do
    pod=${PODS[$i]} ip=198.18.2.1$i
    ip -n $N2 link add pv$i type veth peer name eth0 netns "$pod"
    ip -n $N2 link set pv$i up
    ip -n "$pod" link set eth0 up
    ip -n "$pod" addr add $ip/32 dev eth0
    ip -n "$pod" route add 169.254.1.1 dev eth0 scope link
    ip -n "$pod" route add default via 169.254.1.1 dev eth0
    ip -n $N2 addr add 169.254.1.1/32 dev pv$i
    ip -n $N2 route add $ip/32 dev pv$i
    sysctl_ns $N2 net.ipv4.conf.pv$i.proxy_arp 1
done

# Receive Packet Steering: node1's arrivals on CPU 1, everything else on CPU 0.
# rps_cpus is in the namespace's own sysfs: mounted in a private mount
# namespace (nsenter + unshare; this machine's /sys is left alone).
set_rps() {
    nsenter --net="/run/netns/$1" unshare --mount -- sh -c \
        "mount -t sysfs sysfs /sys && echo $3 > /sys/class/net/$2/queues/rx-0/rps_cpus"
}
ENTRY_CPU=0
if (($(nproc) >= 2)); then
    ENTRY_CPU=1
    for ns in $RT $CL $N1 $N2 "${PODS[@]}"; do
        for dev in $(ip -n "$ns" -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
            [[ $dev == lo ]] && continue
            mask=1; [[ $ns == "$N1" ]] && mask=2
            set_rps "$ns" "$dev" "$mask"
        done
    done
else
    ep_log "one CPU: the entry node's CPU per connection is not measured"
fi
PIN=(taskset -c 0)

gcc -O2 -pthread -o "$WORK/connbench" "$CONNBENCH_C" || ep_die "gcc failed"
# nsenter execs the server, so $! is the server itself (a shell function run
# in the background would be a subshell, and killing it would orphan the server).
for pod in "${PODS[@]}"; do
    "${PIN[@]}" nsenter --net="/run/netns/$pod" "$WORK/connbench" server --port 8080 --threads 2 >/dev/null 2>&1 &
    PIDS+=($!)
    "${PIN[@]}" nsenter --net="/run/netns/$pod" iperf3 -s -p 5201 >/dev/null 2>&1 &
    PIDS+=($!)
done
sleep 0.5
echo "198.18.200.11 30080" >"$WORK/targets.txt"

# Busy jiffies (user nice system irq softirq) of all CPUs ("cpu") or one ("cpu1").
busy_jiffies() { awk -v c="${1:-cpu}" '$1 == c {print $2+$3+$4+$7+$8}' /proc/stat; }
HZ=$(getconf CLK_TCK)
# rx packets of interface $2 in namespace $1 (`ip -s -o`: RX: then 6 column names, `\`, bytes, packets).
rx_packets() { ip -n "$1" -s -o link show dev "$2" | awk '{for (i = 1; i <= NF; i++) if ($i == "RX:") {print $(i + 9); exit}}'; }
# Run time of node1's edgeplane programs so far, ns (kernel.bpf_stats_enabled=1
# while this script runs); 0 without a state dir (the iptables mode).
bpf_ns() {
    [[ -n ${1:-} ]] || { echo 0; return; }
    "$EP" status -o json --state-dir "$1" | awk -F': ' '/"run_time_ns"/ {gsub(/[ ,]/, "", $2); s += $2} END {print s + 0}'
}
STATS_WAS=$(cat /proc/sys/kernel/bpf_stats_enabled)
echo 1 >/proc/sys/kernel/bpf_stats_enabled
# CPU 1's background, per second, to subtract from the entry node's figure.
e0=$(busy_jiffies cpu$ENTRY_CPU); t0=$(date +%s.%N)
sleep 2
e1=$(busy_jiffies cpu$ENTRY_CPU); t1=$(date +%s.%N)
IDLE_NOISE=$(awk -v d=$((e1 - e0)) -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", d / (b - a)}')
ep_log "CPU $ENTRY_CPU background: $IDLE_NOISE jiffies/s"

measure() {
    local mode=$1 j0 j1 e0 e1 t0 t1 p0 p1 b0 b1 cb tp conns
    # Packets node1 received (its up0): what DSR saves is visible here first.
    p0=$(rx_packets $N1 up0)
    b0=$(bpf_ns "$2")
    j0=$(busy_jiffies); e0=$(busy_jiffies cpu$ENTRY_CPU); t0=$(date +%s.%N)
    cb=$(in_ns $CL timeout $((DURATION + 30)) "${PIN[@]}" "$WORK/connbench" client --targets "$WORK/targets.txt" \
        --conns 16 --threads 4 --duration "$DURATION")
    j1=$(busy_jiffies); e1=$(busy_jiffies cpu$ENTRY_CPU); t1=$(date +%s.%N)
    p1=$(rx_packets $N1 up0)
    b1=$(bpf_ns "$2")
    # iperf3 to the NodePort's TCP throughput port: 30201 maps to pod 0's 5201 in every mode
    # (one endpoint: iperf3's control and data connections must meet the same server).
    # (awk reads to the end: an early exit would kill iperf3 with SIGPIPE under pipefail.)
    tp=$(in_ns $CL timeout $((DURATION + 30)) "${PIN[@]}" iperf3 -c 198.18.200.11 -p 30201 -P 1 -t "$DURATION" -J |
        awk -F: '/"sum_received"/{f=1} f && !done && /"bits_per_second"/{gsub(/[ \t,]/,"",$2); print $2; done=1}') || {
        ep_log "$mode: iperf3 failed; throughput reported as 0"
        tp=0
    }
    conns=$(sed 's/.*"conns":\([0-9]*\).*/\1/' <<<"$cb")
    awk -v m="$mode" -v cb="$cb" -v tp="${tp:-0}" -v c="$conns" -v d=$((j1 - j0)) -v hz="$HZ" \
        -v e=$((e1 - e0)) -v a="$t0" -v b="$t1" -v noise="$IDLE_NOISE" -v entry="$ENTRY_CPU" -v rx=$((p1 - p0)) -v bpf=$((b1 - b0)) 'BEGIN {
        ent = e - noise * (b - a); if (ent < 0) ent = 0
        printf "{\"mode\":\"%s\",\"connbench\":%s,\"throughput_bits_per_s\":%s,\"cpu_us_per_conn\":%.2f,", m, cb, tp, c ? d * 1e6 / hz / c : 0
        if (entry) printf "\"entry_node_cpu_us_per_conn\":%.2f,", c ? ent * 1e6 / hz / c : 0
        printf "\"entry_node_rx_packets_per_conn\":%.2f,", c ? rx / c : 0
        if (bpf > 0) printf "\"entry_node_bpf_us_per_conn\":%.3f,", c ? bpf / 1000 / c : 0
        printf "\"cpu_source\":\"/proc/stat: machine-wide busy jiffies; entry node = CPU 1 (RPS) minus its background\"}\n" }'
}

iptables_mode() {
    ep_log "mode iptables (kube-proxy-style NodePort)"
    in_ns $N1 iptables-restore <<'RULES'
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-EXT-IPERF - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-SEP-0 - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-NODEPORTS -p tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-NODEPORTS -p tcp --dport 30201 -j KUBE-EXT-IPERF
-A KUBE-EXT-WEB -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-EXT-IPERF -j KUBE-MARK-MASQ
-A KUBE-EXT-IPERF -p tcp -j DNAT --to-destination 198.18.2.10:5201
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-SVC-WEB -m statistic --mode random --probability 0.5 -j KUBE-SEP-0
-A KUBE-SVC-WEB -j KUBE-SEP-1
-A KUBE-SEP-0 -p tcp --dport 30080 -j DNAT --to-destination 198.18.2.10:8080
-A KUBE-SEP-1 -p tcp --dport 30080 -j DNAT --to-destination 198.18.2.11:8080
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
COMMIT
RULES
    measure iptables ""
    in_ns $N1 iptables -t nat -F
    in_ns $N1 iptables -t nat -X
}

# NodePort services (30080 -> 8080 with both node2 pods, 30201 -> 5201 with pod 0),
# applied on both nodes; returns non-zero when the binary rejects it.
edgeplane_mode() {
    local mode=$1 dsr=$2 n ns dir
    ep_log "mode $mode"
    for n in 1 2; do
        ns=$N1; [[ $n == 2 ]] && ns=$N2
        dir=$WORK/$mode-node$n
        mkdir -p "$dir/cfg"
        printf 'node-ips: ["198.18.200.1%s"]\ndsr: %s\nhost-interfaces: ["up0"]\nworkload-interfaces: ["pv*"]\n' "$n" "$dsr" >"$dir/edgeplane.yaml"
        cat >"$dir/cfg/web.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: bench}
spec:
  type: NodePort
  clusterIP: 198.18.250.10
  externalTrafficPolicy: Cluster
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: bench, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- {addresses: ["198.18.2.10"], nodeName: node2, conditions: {ready: true}}
- {addresses: ["198.18.2.11"], nodeName: node2, conditions: {ready: true}}
ports:
- {name: http, protocol: TCP, port: 8080}
---
# iperf3's control and data connections must reach the same server: one endpoint.
apiVersion: v1
kind: Service
metadata: {name: iperf, namespace: bench}
spec:
  type: NodePort
  clusterIP: 198.18.250.11
  externalTrafficPolicy: Cluster
  ports:
  - {name: iperf, protocol: TCP, port: 5201, targetPort: 5201, nodePort: 30201}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: iperf-1, namespace: bench, labels: {kubernetes.io/service-name: iperf}}
addressType: IPv4
endpoints:
- {addresses: ["198.18.2.10"], nodeName: node2, conditions: {ready: true}}
ports:
- {name: iperf, protocol: TCP, port: 5201}
YAML
        STATES+=("/sys/fs/bpf/ep-bench-nodeport-$T-$mode-$n")
        if ! "$EP" apply --config-dir "$dir/cfg" --config "$dir/edgeplane.yaml" --netns "$ns" \
            --node-name "node$n" --state-dir "${STATES[-1]}" >"$dir/apply.log" 2>&1; then
            ep_log "skipped $mode: edgeplane apply failed: $(tail -1 "$dir/apply.log")"
            return 0
        fi
    done
    measure "$mode" "/sys/fs/bpf/ep-bench-nodeport-$T-$mode-1"
    for n in 1 2; do "$EP" reset --state-dir "/sys/fs/bpf/ep-bench-nodeport-$T-$mode-$n" >/dev/null 2>&1 || true; done
}

iptables_mode
if [[ -x $EP ]]; then
    edgeplane_mode edgeplane-snat false
    edgeplane_mode edgeplane-dsr true
else
    ep_log "skipped edgeplane modes: $EP missing (cargo build --release, or set EDGEPLANE)"
fi
