#!/usr/bin/env bash
# --teardown-cmd for ../shared/baseline/bench.sh: detaches and unpins what
# scripts/bench-setup.sh created for this point (same variables, same state dir).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
EP=${EDGEPLANE:-${CARGO_TARGET_DIR:-$repo/target}/release/edgeplane}
for v in BL_NODE_NS BL_NODE_IF_CLIENT BL_NODE_IF_BACKEND BL_CGROUP; do
    [[ -n ${!v:-} ]] || { echo "bench-teardown.sh: $v is not set" >&2; exit 2; }
done
exec "$EP" reset --config /dev/null --netns "$BL_NODE_NS" --state-dir "/sys/fs/bpf/ep-bench-$BL_NODE_NS" \
    --workload-interfaces "$BL_NODE_IF_CLIENT" --host-interfaces "$BL_NODE_IF_BACKEND" \
    --cgroup "$BL_CGROUP"
