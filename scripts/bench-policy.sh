#!/usr/bin/env bash
# Connection rate with NetworkPolicy on (issue 11): ../shared/baseline/bench.sh's
# pod client -> ClusterIP -> backends through edgeplane (scripts/bench-setup.sh),
# once as is and once with POLICIES NetworkPolicies selecting the backend pods
# (ingress allowed, so every connection must still succeed), in alternating
# bench.sh runs (`--modes direct,custom`, one round each) for ROUNDS rounds.
# The policy runs add to bench.sh's generated YAML (its BL_YAML_DIR) the
# namespace, the client and backend pods (spec.nodeName = this node, so the
# backends are enforced here) and the policies: policy i allows TCP 8080 from
# pods labelled role=r<i>, and the client carries role=r<POLICIES-1>, so one
# policy of the POLICIES admits it. A first short point with the client
# labelled role=none checks that the policies are enforced (every connection
# must fail); otherwise the measurement would prove nothing.
#   scripts/bench-policy.sh [--policies 1000] [--rounds 5] [--services 1]
#                           [--duration 5] [--out FILE]
# bench.sh's JSON lines go to stdout (and FILE); the summary (medians, ratios
# of the policy runs to the plain runs and each to its own direct) to stderr.
# EDGEPLANE=path overrides the binary; EP_SHARED if ../shared is elsewhere.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
EP_SCRIPT=bench-policy
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ep_require_root

POLICIES=1000 ROUNDS=5 SERVICES=1 DURATION=5 OUT=
while (($#)); do
    case $1 in
    --policies) POLICIES=$2 ;;
    --rounds) ROUNDS=$2 ;;
    --services) SERVICES=$2 ;;
    --duration) DURATION=$2 ;;
    --out) OUT=$2 ;;
    *) ep_die "unknown argument $1 (see the header of $0)" ;;
    esac
    shift 2 || ep_die "$1 needs a value"
done
((POLICIES >= 1)) || ep_die "--policies must be at least 1"
EP=${EDGEPLANE:-${CARGO_TARGET_DIR:-$PWD/target}/release/edgeplane}
[[ -x $EP ]] || ep_die "$EP missing (cargo build --release, or set EDGEPLANE)"
EP=$(realpath "$EP")
BENCH=${EP_SHARED:-$PWD/../shared}/baseline/bench.sh
[[ -x $BENCH ]] || ep_die "$BENCH missing (set EP_SHARED)"

WORK=$(mktemp -d /tmp/ep-bench-policy.XXXX)
trap 'rm -rf "$WORK"' EXIT

# bench.sh's namespace and addresses: client pod 198.18.0.2, backends
# 198.18.1.10 and up (--endpoints, default 2).
policy_yaml() {
    local client_role=$1 i
    cat <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench, labels: {app: client, role: $client_role}}
spec: {nodeName: bench-node, containers: [{name: c, image: i}]}
status: {podIP: 198.18.0.2, podIPs: [{ip: 198.18.0.2}]}
YAML
    for i in 0 1; do
        cat <<YAML
---
apiVersion: v1
kind: Pod
metadata: {name: backend-$i, namespace: bench, labels: {app: backend}}
spec: {nodeName: bench-node, containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080, protocol: TCP}]}]}
status: {podIP: 198.18.1.1$i, podIPs: [{ip: 198.18.1.1$i}]}
YAML
    done
    for ((i = 0; i < POLICIES; i++)); do
        cat <<YAML
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-r$i, namespace: bench}
spec:
  podSelector: {matchLabels: {app: backend}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {role: r$i}}}]
    ports: [{protocol: TCP, port: 8080}]
YAML
    done
}
mkdir -p "$WORK/allowed" "$WORK/denied"
policy_yaml "r$((POLICIES - 1))" >"$WORK/allowed/policy.yaml"
policy_yaml none >"$WORK/denied/policy.yaml"
# The pods' spec.nodeName is this node's: node-name for edgeplane (global
# options go after the subcommand).
printf '#!/bin/sh\nexec %s "$@" --node-name bench-node\n' "$EP" >"$WORK/edgeplane"
chmod +x "$WORK/edgeplane"

SETUP=$PWD/scripts/bench-setup.sh TEARDOWN=$PWD/scripts/bench-teardown.sh
# run NAME POLICY_DIR|"" MODES DURATION: one bench.sh run, JSON lines appended to results.
run() {
    local name=$1 dir=$2 modes=$3 duration=$4 setup=$SETUP
    rm -f "$WORK/run.jsonl"
    [[ -z $dir ]] || setup="cp $dir/policy.yaml \"\$BL_YAML_DIR\"/ && exec $SETUP"
    EDGEPLANE=$WORK/edgeplane "$BENCH" --modes "$modes" --custom-name "$name" --setup-cmd "$setup" \
        --teardown-cmd "$TEARDOWN" --services "$SERVICES" --duration "$duration" --repeat 1 \
        --out "$WORK/run.jsonl" >/dev/null 2>"$WORK/run.err" ||
        { tail -20 "$WORK/run.err" >&2; ep_die "bench.sh failed ($name)"; }
    sed "s/\"round\": [0-9]*/\"round\": $round/" "$WORK/run.jsonl" | tee -a "$WORK/results.jsonl"
}

ep_log "check: $POLICIES policies, client not admitted by any: every connection must fail"
round=0
run edgeplane-policy-deny "$WORK/denied" custom 2 >/dev/null
python3 - "$WORK/results.jsonl" <<'PY' || ep_die "the policies were not enforced: the measurement would prove nothing"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
print(f"[bench-policy] deny check: {r.get('conns')} connections, {r.get('failures')} failures", file=sys.stderr)
sys.exit(0 if r.get("conns") == 0 and r.get("failures", 0) > 0 and "error" not in r else 1)
PY
: >"$WORK/results.jsonl"

for ((round = 1; round <= ROUNDS; round++)); do
    # Alternate which run goes first.
    if ((round % 2)); then order=(plain policy); else order=(policy plain); fi
    for what in "${order[@]}"; do
        ep_log "round $round/$ROUNDS: $what"
        if [[ $what == plain ]]; then
            run edgeplane "" direct,custom "$DURATION"
        else
            run edgeplane-policy "$WORK/allowed" direct,custom "$DURATION"
        fi
    done
done
[[ -z $OUT ]] || cp "$WORK/results.jsonl" "$OUT"

python3 - "$WORK/results.jsonl" "$POLICIES" <<'PY' >&2
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# Each bench.sh run has its own direct point: pair it with that run's edgeplane point.
by = {"edgeplane": [], "edgeplane-policy": []}
for i, r in enumerate(rows):
    if r["mode"] in by:
        # bench.sh writes direct first, then custom, within one run.
        d = rows[i - 1] if i and rows[i - 1]["mode"] == "direct" else None
        by[r["mode"]].append((r, d))
med = lambda v: statistics.median(v) if v else float("nan")
print(f"{sys.argv[2]} policies; medians over {len(by['edgeplane'])} rounds (conns/s, machine-wide CPU µs per connection)")
print(f"{'run':18} {'conns/s':>9} {'x own direct':>12} {'failures':>8} {'us/conn':>8} {'p99us':>6}")
for name, pts in by.items():
    c = [p["conns_per_s"] for p, _ in pts if "conns_per_s" in p]
    rd = [p["conns_per_s"] / d["conns_per_s"] for p, d in pts if d and d.get("conns_per_s")]
    f = sum(p.get("failures", 0) for p, _ in pts) + sum(1 for p, _ in pts if "error" in p)
    us = [p["cpu"]["us_per_conn"] for p, _ in pts if p.get("cpu")]
    p99 = [p["latency_us"]["p99"] for p, _ in pts if p.get("latency_us")]
    print(f"{name:18} {med(c):>9.0f} {med(rd):>12.3f} {f:>8} {med(us):>8.1f} {med(p99):>6.0f}")
plain = [p["conns_per_s"] for p, _ in by["edgeplane"]]
pol = [p["conns_per_s"] for p, _ in by["edgeplane-policy"]]
pairs = [b / a for a, b in zip(plain, pol)]
print(f"policy / plain conns/s: median of medians {med(pol) / med(plain):.3f}; per round {', '.join(f'{x:.3f}' for x in pairs)}")
PY
