#!/usr/bin/env bash
# --setup-cmd for ../shared/baseline/bench.sh (custom mode; see
# docs/BENCHMARKS.md): programs the harness's NODE namespace with edgeplane
# from the generated Kubernetes YAML and returns once the data plane is in
# place (`edgeplane apply` is one synchronous pass: when it exits 0 the
# programs are attached and the maps hold every service).
#   pod client:     tc program on $BL_NODE_IF_CLIENT (workload) and $BL_NODE_IF_BACKEND (uplink)
#   --client-in-node: cgroup socket hooks on $BL_CGROUP (the harness's own child cgroup)
# EDGEPLANE overrides the binary (default: this checkout's release build).
# --config /dev/null: a machine-wide /etc/edgeplane/edgeplane.yaml must not leak in.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
EP=${EDGEPLANE:-${CARGO_TARGET_DIR:-$repo/target}/release/edgeplane}
for v in BL_YAML_DIR BL_NODE_NS BL_NODE_IF_CLIENT BL_NODE_IF_BACKEND BL_CGROUP; do
    [[ -n ${!v:-} ]] || { echo "bench-setup.sh: $v is not set (run me from bench.sh --setup-cmd)" >&2; exit 2; }
done
[[ -x $EP ]] || { echo "bench-setup.sh: $EP missing (cargo build --release, or set EDGEPLANE)" >&2; exit 2; }
# the harness's namespaces and cgroups carry its bl<pid>- prefix; never the root cgroup
[[ $BL_CGROUP == */bl[0-9]*-* ]] || { echo "bench-setup.sh: refusing cgroup $BL_CGROUP" >&2; exit 2; }

exec "$EP" apply --config /dev/null --config-dir "$BL_YAML_DIR" --netns "$BL_NODE_NS" \
    --state-dir "/sys/fs/bpf/ep-bench-$BL_NODE_NS" \
    --workload-interfaces "$BL_NODE_IF_CLIENT" --host-interfaces "$BL_NODE_IF_BACKEND" \
    --cgroup "$BL_CGROUP"
