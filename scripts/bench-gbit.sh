#!/usr/bin/env bash
# CPU per Gbit (issue 11): a client pod on node1 sends to a server pod on
# node2 across the two-node topology of scripts/bench-nodeport.sh (node links
# on a bridge in a router namespace), measured per mode in the same run:
#   direct     to the server pod's IP, nothing translates (the limit)
#   edgeplane  to a ClusterIP; `edgeplane apply` on both nodes
#   iptables   to the ClusterIP; kube-proxy-style iptables rules on both nodes
#   nftables   to the ClusterIP; kube-proxy-style nftables rules on both nodes
# Tests, for each MTU of the node links (and pod veths): iperf3 TCP with 1 and
# with 8 streams (tcp1, tcp8), and UDP with 64-byte payloads at no rate limit
# (udp64). Per measurement: throughput (received) and CPU time per Gbit
# received, or per million UDP packets received, counted two ways:
#   cpu_*       the benchmark's own CPU: iperf3 client and server run in a child
#               cgroup of their own, whose cpu.stat usage_usec includes the
#               softirq work done in their context (veth transmit runs the
#               whole receive path of both nodes, forwarding, netfilter and tc
#               programs, in the sender's context), plus ksoftirqd's time
#               (softirq work deferred to it); other users of the machine are
#               not in it
#   machine_*   machine-wide busy jiffies from /proc/stat (all CPUs): includes
#               whatever else runs on the machine (background_busy_cpus, the
#               second before each measurement, says how much)
# and edgeplane's BPF run time on both nodes (kernel.bpf_stats_enabled=1
# while this script runs, from `edgeplane status -o json`).
# Modes are interleaved within each round, in a
# rotated order per round; the summary (stderr) gives medians over rounds and
# ratios to direct of the same run.
#   scripts/bench-gbit.sh [--duration S] [--rounds R] [--mtus 1500,9000]
#                         [--modes direct,edgeplane,iptables,nftables]
#                         [--tests tcp1,tcp8,udp64] [--out FILE]
# One JSON line per measurement on stdout (and FILE); progress and the summary
# on stderr. EDGEPLANE=path overrides the binary. Bounded (every iperf3 run
# has a timeout); everything is removed on exit; nothing is attached or
# configured in the root namespace. Exit status 1 if any measurement failed.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
EP_SCRIPT=bench-gbit
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ep_require_root
ep_ensure_bpffs

DURATION=5 ROUNDS=3 MTUS=1500,9000 MODES=direct,edgeplane,iptables,nftables TESTS=tcp1,tcp8,udp64 OUT=
while (($#)); do
    case $1 in
    --duration) DURATION=$2 ;;
    --rounds) ROUNDS=$2 ;;
    --mtus) MTUS=$2 ;;
    --modes) MODES=$2 ;;
    --tests) TESTS=$2 ;;
    --out) OUT=$2 ;;
    *) ep_die "unknown argument $1 (see the header of $0)" ;;
    esac
    shift 2 || ep_die "$1 needs a value"
done
IFS=, read -ra MTU_LIST <<<"$MTUS"
IFS=, read -ra MODE_LIST <<<"$MODES"
IFS=, read -ra TEST_LIST <<<"$TESTS"
for m in "${MODE_LIST[@]}"; do
    [[ $m =~ ^(direct|edgeplane|iptables|nftables)$ ]] || ep_die "unknown mode $m"
done
for t in "${TEST_LIST[@]}"; do [[ $t =~ ^(tcp1|tcp8|udp64)$ ]] || ep_die "unknown test $t"; done
EP=${EDGEPLANE:-${CARGO_TARGET_DIR:-target}/release/edgeplane}
[[ " ${MODE_LIST[*]} " != *" edgeplane "* || -x $EP ]] || ep_die "$EP missing (cargo build --release, or set EDGEPLANE)"
ep_apt_install iperf3 iptables nftables python3

T=$$
RT=epgr$T N1=epg1$T N2=epg2$T CLIENT=epgc$T SERVER=epgs$T
CLIENT_IP=198.18.1.10 SERVER_IP=198.18.2.10 VIP=198.18.250.10 PORT=5201
WORK=$(mktemp -d /tmp/ep-bench-gbit.XXXX)
PIDS=()
STATE_BASE=/sys/fs/bpf/ep-bench-gbit-$T
STATES=()
CGROUP_ROOT=$(ep_cgroup2_root) || ep_die "no cgroup v2 mount"
CGROUP=$CGROUP_ROOT/ep-bench-gbit-$T

cleanup() {
    set +e
    trap - ERR
    [[ -n ${STATS_WAS:-} ]] && echo "$STATS_WAS" >/proc/sys/kernel/bpf_stats_enabled
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for s in "${STATES[@]}"; do
        [[ -d $s ]] && "$EP" reset --config /dev/null --state-dir "$s" >/dev/null 2>&1
        rm -rf "$s"
    done
    for ns in $CLIENT $SERVER $N1 $N2 $RT; do ip netns del "$ns" 2>/dev/null; done
    [[ -d $CGROUP ]] && rmdir "$CGROUP"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'ep_log "failed at line $LINENO: $BASH_COMMAND"' ERR

ep_log "building the topology"
for ns in $RT $N1 $N2 $CLIENT $SERVER; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n $RT link add br0 type bridge
ip -n $RT link set br0 up
for n in 1 2; do
    ns=$N1; [[ $n == 2 ]] && ns=$N2
    sysctl_ns "$ns" net.ipv4.ip_forward 1
    sysctl_ns "$ns" net.ipv4.conf.all.rp_filter 0
    sysctl_ns "$ns" net.ipv4.conf.default.rp_filter 0
    ip -n "$ns" link add up0 type veth peer name rn$n netns $RT
    ip -n "$ns" link set up0 up
    ip -n $RT link set rn$n master br0 up
    ip -n "$ns" addr add 198.18.200.1$n/24 dev up0
done
ip -n $N1 route add 198.18.2.0/24 via 198.18.200.12
ip -n $N2 route add 198.18.1.0/24 via 198.18.200.11
# One pod per node, Calico-style: /32 address, default route via a link-local
# gateway answered by proxy ARP on the node's end of the veth.
for n in 1 2; do
    node=$N1 pod=$CLIENT ip=$CLIENT_IP
    [[ $n == 2 ]] && node=$N2 pod=$SERVER ip=$SERVER_IP
    ip -n "$node" link add pv0 type veth peer name eth0 netns "$pod"
    ip -n "$node" link set pv0 up
    ip -n "$pod" link set eth0 up
    ip -n "$pod" addr add $ip/32 dev eth0
    ip -n "$pod" route add 169.254.1.1 dev eth0 scope link
    ip -n "$pod" route add default via 169.254.1.1 dev eth0
    ip -n "$node" addr add 169.254.1.1/32 dev pv0
    ip -n "$node" route add $ip/32 dev pv0
    sysctl_ns "$node" net.ipv4.conf.pv0.proxy_arp 1
done
# Every link of the path, both ends.
LINKS=("$RT br0" "$RT rn1" "$RT rn2" "$N1 up0" "$N2 up0" "$N1 pv0" "$N2 pv0" "$CLIENT eth0" "$SERVER eth0")
set_mtu() {
    local l
    for l in "${LINKS[@]}"; do
        read -r ns dev <<<"$l"
        ip -n "$ns" link set dev "$dev" mtu "$1"
    done
}

# The benchmark's own processes, in a child cgroup (never the root one).
mkdir "$CGROUP"
# (sh writes its own PID, then execs.)
# shellcheck disable=SC2016 # $$, $0 and $@ are the inner shell's
IN_CGROUP=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CGROUP")
# Not through a shell function: backgrounded, that would be a subshell and $!
# its PID. sh and nsenter exec iperf3, so $! is the server itself.
"${IN_CGROUP[@]}" nsenter --net=/run/netns/$SERVER iperf3 -s -p $PORT >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5

busy_jiffies() { awk '$1 == "cpu" {print $2+$3+$4+$7+$8}' /proc/stat; }
HZ=$(getconf CLK_TCK)
KSOFTIRQD=()
for p in /proc/[0-9]*; do [[ $(cat "$p/comm" 2>/dev/null) == ksoftirqd/* ]] && KSOFTIRQD+=("$p/stat"); done
# The benchmark's CPU so far, µs: its cgroup plus ksoftirqd (utime + stime, fields 14 and 15).
own_usec() {
    local cg
    cg=$(awk '$1 == "usage_usec" {print $2}' "$CGROUP/cpu.stat")
    awk -v cg="$cg" -v hz="$HZ" '{t += $14 + $15} END {printf "%d\n", cg + t * 1e6 / hz}' "${KSOFTIRQD[@]}"
}
# edgeplane's programs on both nodes so far: "runs ns" (0 0 without edgeplane).
bpf_totals() {
    local s runs=0 ns=0 r n
    for s in "${STATES[@]}"; do
        read -r r n < <("$EP" status -o json --config /dev/null --state-dir "$s" | awk -F': ' '
            /"run_count"/ {gsub(/[ ,]/, "", $2); r += $2} /"run_time_ns"/ {gsub(/[ ,]/, "", $2); t += $2}
            END {print r + 0, t + 0}')
        runs=$((runs + r)) ns=$((ns + n))
    done
    echo "$runs $ns"
}
STATS_WAS=$(cat /proc/sys/kernel/bpf_stats_enabled)
echo 1 >/proc/sys/kernel/bpf_stats_enabled

kube_proxy_iptables() {
    local proto rules
    rules="*filter
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
-A INPUT -m conntrack --ctstate NEW -j KUBE-PROXY-FIREWALL
-A INPUT -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES
-A FORWARD -m conntrack --ctstate NEW -j KUBE-PROXY-FIREWALL
-A FORWARD -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -j KUBE-PROXY-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -j KUBE-SERVICES
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
"
    for proto in tcp udp; do
        rules+=":KUBE-SVC-${proto^^} - [0:0]
:KUBE-SEP-${proto^^} - [0:0]
-A KUBE-SERVICES -d $VIP/32 -p $proto -m $proto --dport $PORT -j KUBE-SVC-${proto^^}
-A KUBE-SVC-${proto^^} -d $VIP/32 -p $proto -m $proto --dport $PORT ! -s 198.18.0.0/20 -j KUBE-MARK-MASQ
-A KUBE-SVC-${proto^^} -j KUBE-SEP-${proto^^}
-A KUBE-SEP-${proto^^} -s $SERVER_IP/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-${proto^^} -p $proto -m $proto -j DNAT --to-destination $SERVER_IP:$PORT
"
    done
    rules+="-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
"
    echo "$rules"
}

kube_proxy_nft() {
    local proto
    cat <<NFT
table ip kube-proxy {
    set cluster-ips { type ipv4_addr; elements = { $VIP } }
    map service-ips {
        type ipv4_addr . inet_proto . inet_service : verdict
        elements = { $VIP . tcp . $PORT : goto service-tcp, $VIP . udp . $PORT : goto service-udp }
    }
    chain mark-for-masquerade { meta mark set meta mark | 0x4000; }
    chain masquerading {
        meta mark & 0x4000 == 0 return
        meta mark set meta mark ^ 0x4000
        masquerade fully-random
    }
    chain services { ip daddr . meta l4proto . th dport vmap @service-ips; }
    chain cluster-ips-check {
        ip daddr @cluster-ips reject
        ip daddr 198.18.250.0/24 drop
    }
    chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
    chain nat-output { type nat hook output priority -100; policy accept; jump services; }
    chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; jump masquerading; }
    chain filter-forward { type filter hook forward priority filter; policy accept; ct state new jump cluster-ips-check; }
    chain filter-output { type filter hook output priority filter; policy accept; ct state new jump cluster-ips-check; }
NFT
    for proto in tcp udp; do
        cat <<NFT
    chain service-$proto {
        ip daddr $VIP $proto dport $PORT ip saddr != 198.18.0.0/20 jump mark-for-masquerade
        numgen random mod 1 vmap { 0 : goto endpoint-$proto }
    }
    chain endpoint-$proto {
        ip saddr $SERVER_IP jump mark-for-masquerade
        meta l4proto $proto dnat to $SERVER_IP:$PORT
    }
NFT
    done
    echo "}"
}

edgeplane_yaml() {
    cat <<YAML
apiVersion: v1
kind: Service
metadata: {name: iperf, namespace: bench}
spec:
  clusterIP: $VIP
  ports:
  - {name: iperf-tcp, protocol: TCP, port: $PORT, targetPort: $PORT}
  - {name: iperf-udp, protocol: UDP, port: $PORT, targetPort: $PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: iperf-1, namespace: bench, labels: {kubernetes.io/service-name: iperf}}
addressType: IPv4
endpoints:
- {addresses: ["$SERVER_IP"], nodeName: node2, conditions: {ready: true}}
ports:
- {name: iperf-tcp, protocol: TCP, port: $PORT}
- {name: iperf-udp, protocol: UDP, port: $PORT}
YAML
}
mkdir -p "$WORK/cfg"
edgeplane_yaml >"$WORK/cfg/iperf.yaml"

# Programs both nodes for a mode; TARGET = the address the client connects to.
mode_up() {
    local n ns
    TARGET=$VIP
    case $1 in
    direct) TARGET=$SERVER_IP ;;
    iptables)
        for ns in $N1 $N2; do kube_proxy_iptables | in_ns "$ns" iptables-restore; done ;;
    nftables)
        for ns in $N1 $N2; do kube_proxy_nft | in_ns "$ns" nft -f -; done ;;
    edgeplane)
        for n in 1 2; do
            ns=$N1; [[ $n == 2 ]] && ns=$N2
            STATES+=("$STATE_BASE-$n")
            "$EP" apply --config /dev/null --config-dir "$WORK/cfg" --netns "$ns" --node-name node$n \
                --node-ip 198.18.200.1$n --host-interfaces up0 --workload-interfaces 'pv*' \
                --state-dir "$STATE_BASE-$n" >"$WORK/apply-$n.log" 2>&1 ||
                ep_die "edgeplane apply on node$n failed: $(tail -3 "$WORK/apply-$n.log")"
        done ;;
    esac
}
mode_down() {
    local ns s
    case $1 in
    iptables)
        for ns in $N1 $N2; do
            in_ns "$ns" iptables -t nat -F; in_ns "$ns" iptables -t nat -X
            in_ns "$ns" iptables -t filter -F; in_ns "$ns" iptables -t filter -X
        done ;;
    nftables) for ns in $N1 $N2; do in_ns "$ns" nft delete table ip kube-proxy; done ;;
    edgeplane)
        for s in "${STATES[@]}"; do "$EP" reset --config /dev/null --state-dir "$s" >/dev/null; done
        STATES=() ;;
    esac
}

FAILED=0
measure() {
    local round=$1 mtu=$2 mode=$3 test=$4 target=$5 args j0 j1 o0 o1 t0 t1 g0 g1 r0 r1 n0 n1 rc=0
    case $test in
    tcp1) args=(-P 1) ;;
    tcp8) args=(-P 8) ;;
    udp64) args=(-u -l 64 -b 0 -w 4M) ;;
    esac
    # The second before: what the rest of the machine (other users) was doing.
    g0=$(busy_jiffies); sleep 1; g1=$(busy_jiffies)
    read -r r0 n0 < <(bpf_totals)
    j0=$(busy_jiffies); o0=$(own_usec); t0=$(date +%s.%N)
    "${IN_CGROUP[@]}" nsenter --net=/run/netns/$CLIENT timeout $((DURATION + 15)) iperf3 -c "$target" -p $PORT -t "$DURATION" "${args[@]}" -J \
        >"$WORK/iperf.json" 2>"$WORK/iperf.err" || rc=$?
    j1=$(busy_jiffies); o1=$(own_usec); t1=$(date +%s.%N)
    read -r r1 n1 < <(bpf_totals)
    python3 - "$WORK/iperf.json" "$rc" "$round" "$mtu" "$mode" "$test" $((j1 - j0)) $((o1 - o0)) $((g1 - g0)) "$HZ" "$t0" "$t1" \
        $((r1 - r0)) $((n1 - n0)) <<'PY' | tee -a "$WORK/results.jsonl"
import json, sys
path, rc, rnd, mtu, mode, test, busy, own, bg, hz, t0, t1, bruns, bns = sys.argv[1:]
busy_s, own_s, window = int(busy) / int(hz), int(own) / 1e6, float(t1) - float(t0)
row = {"round": int(rnd), "mtu": int(mtu), "mode": mode, "test": test, "window_s": round(window, 3),
       "cpu_s": round(own_s, 3), "machine_busy_s": round(busy_s, 3), "background_busy_cpus": round(int(bg) / int(hz), 2)}
try:
    end = json.load(open(path))["end"]
    received = end["sum_received"]
    seconds = received["seconds"]
    gbit = received["bytes"] * 8 / 1e9
    row["gbit_s"] = round(gbit / seconds, 3)
    row["cpu_ms_per_gbit"] = round(own_s * 1e3 / gbit, 2)
    row["machine_cpu_ms_per_gbit"] = round(busy_s * 1e3 / gbit, 2)
    if test == "udp64":
        pkts = received["packets"] - received["lost_packets"]
        row["pps_received"] = round(pkts / seconds)
        row["pps_sent"] = round(end["sum_sent"]["packets"] / seconds)
        row["loss_pct"] = round(received["lost_percent"], 1)
        row["cpu_ms_per_mpkt"] = round(own_s * 1e3 / (pkts / 1e6), 2)
        row["cpu_ms_per_mpkt_sent"] = round(own_s * 1e3 / (end["sum_sent"]["packets"] / 1e6), 2)
        row["machine_cpu_ms_per_mpkt"] = round(busy_s * 1e3 / (pkts / 1e6), 2)
    else:
        row["retransmits"] = end["sum_sent"].get("retransmits", 0)
    row["iperf3_cpu_pct"] = {k: round(end["cpu_utilization_percent"][k], 1) for k in ("host_total", "remote_total")}
    if int(bns) > 0:
        row["bpf_runs"] = int(bruns)
        row["bpf_ns_per_run"] = round(int(bns) / max(int(bruns), 1))
        row["bpf_ms_per_gbit"] = round(int(bns) / 1e6 / gbit, 3)
        if test == "udp64":
            row["bpf_ms_per_mpkt"] = round(int(bns) / 1e6 / (pkts / 1e6), 2)
    if int(rc) != 0 or gbit <= 0:
        raise ValueError(f"iperf3 exit status {rc}")
    row["ok"] = True
except Exception as e:  # a failed run is a row too: the summary counts it
    row["ok"] = False
    row["error"] = repr(e)
print(json.dumps(row))
PY
    if ! tail -1 "$WORK/results.jsonl" | grep -q '"ok": true'; then
        FAILED=$((FAILED + 1))
        ep_log "$mode $test at MTU $mtu failed: $(tail -2 "$WORK/iperf.err" "$WORK/iperf.json" | tr '\n' ' ' | cut -c1-300)"
    fi
}

for ((round = 1; round <= ROUNDS; round++)); do
    for mtu in "${MTU_LIST[@]}"; do
        set_mtu "$mtu"
        # Rotate the mode order each round: no mode always follows the same one.
        for ((i = 0; i < ${#MODE_LIST[@]}; i++)); do
            mode=${MODE_LIST[$(((i + round - 1) % ${#MODE_LIST[@]}))]}
            ep_log "round $round/$ROUNDS, MTU $mtu: $mode"
            mode_up "$mode"
            for test in "${TEST_LIST[@]}"; do measure "$round" "$mtu" "$mode" "$test" "$TARGET"; done
            mode_down "$mode"
        done
    done
done
[[ -z $OUT ]] || cp "$WORK/results.jsonl" "$OUT"

# Medians over rounds; ratios to direct at the same MTU and test.
python3 - "$WORK/results.jsonl" <<'PY' >&2
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(rs, k):
    v = [r[k] for r in rs if k in r]
    return statistics.median(v) if v else None
groups = {}
for r in rows:
    groups.setdefault((r["mtu"], r["test"], r["mode"]), []).append(r)
print("medians over rounds; ratio = value / direct's (same MTU, test, run); CPU = the benchmark's own (cgroup + ksoftirqd);")
print("machine = /proc/stat busy of all CPUs (includes other users: bg CPUs = busy CPUs the second before)")
print(f"{'mtu':>5} {'test':6} {'mode':10} {'ok':>3} {'rate':>12} {'x direct':>8} {'CPU/unit':>14} {'x direct':>8} {'machine':>9} {'BPF/unit':>10} {'ns/run':>7} {'bg CPUs':>7}")
for (mtu, test, mode), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
    ok = [r for r in rs if r.get("ok")]
    d = [r for r in groups.get((mtu, test, "direct"), []) if r.get("ok")]
    udp = test == "udp64"
    unit = "mpkt" if udp else "gbit"
    rk, ck, mk, bk = "pps_received" if udp else "gbit_s", f"cpu_ms_per_{unit}", f"machine_cpu_ms_per_{unit}", f"bpf_ms_per_{unit}"
    rate, cpu, drate, dcpu = med(ok, rk), med(ok, ck), med(d, rk), med(d, ck)
    fmt = lambda v, f: "-" if v is None else f.format(v)
    unit = " ms/Mpkt" if udp else " ms/Gbit"
    mcpu = med(ok, mk)
    rate_s = fmt(rate, "{:,.0f} pps") if udp else fmt(rate, "{:.2f} Gbit/s")
    print(f"{mtu:>5} {test:6} {mode:10} {len(ok):>2}/{len(rs)} {rate_s:>12} {fmt(rate / drate if rate and drate else None, '{:.2f}'):>8}"
          f" {fmt(cpu, '{:.1f}') + unit:>14} {fmt(cpu / dcpu if cpu and dcpu else None, '{:.2f}'):>8} {fmt(mcpu, '{:.1f}'):>9}"
          f" {fmt(med(ok, bk), '{:.2f}'):>10} {fmt(med(ok, 'bpf_ns_per_run'), '{:.0f}'):>7} {fmt(med(rs, 'background_busy_cpus'), '{:.2f}'):>7}")
PY
((FAILED == 0)) || { ep_log "$FAILED measurement(s) failed"; exit 1; }
