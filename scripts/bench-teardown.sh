#!/usr/bin/env bash
# --teardown-cmd for ../shared/baseline/bench.sh: detaches and unpins what
# scripts/bench-setup.sh created for this point (same variables, same state dir).
# EP_BPF_STATS_OUT=FILE: first append one JSON line with the point's service
# count and its programs' kernel run counts and times (`edgeplane status`;
# they only grow while kernel.bpf_stats_enabled=1), for scripts/bench-bpf-stats.py.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
EP=${EDGEPLANE:-${CARGO_TARGET_DIR:-$repo/target}/release/edgeplane}
for v in BL_NODE_NS BL_NODE_IF_CLIENT BL_NODE_IF_BACKEND BL_CGROUP; do
    [[ -n ${!v:-} ]] || { echo "bench-teardown.sh: $v is not set" >&2; exit 2; }
done
STATE="/sys/fs/bpf/ep-bench-$BL_NODE_NS"
if [[ -n ${EP_BPF_STATS_OUT:-} ]]; then
    "$EP" status -o json --state-dir "$STATE" | python3 -c '
import json, os, sys
progs = json.load(sys.stdin).get("programs") or []
keep = ("name", "links", "run_count", "run_time_ns")
print(json.dumps({"services": int(os.environ["BL_SERVICES"]), "programs": [{k: p[k] for k in keep} for p in progs]}))
' >>"$EP_BPF_STATS_OUT"
fi
exec "$EP" reset --config /dev/null --netns "$BL_NODE_NS" --state-dir "$STATE" \
    --workload-interfaces "$BL_NODE_IF_CLIENT" --host-interfaces "$BL_NODE_IF_BACKEND" \
    --cgroup "$BL_CGROUP"
