#!/usr/bin/env bash
# Per-path cost of the tc program (docs/BENCHMARKS.md section 5): every path
# (new flow, established forward, reply, untranslated on a workload and on a
# host interface) runs through BPF_PROG_TEST_RUN in a throwaway network
# namespace with host routing on and resolved neighbours; prints the median
# of the kernel's per-run time for each. Hot caches, one flow: the
# instructions and helper calls of a path, not the memory effects of full
# tables (those show in bench.sh runs with scripts/bench-bpf-stats.py).
#   scripts/bench-paths.sh      (root; builds the test in release mode)
set -euo pipefail
cd "$(dirname "$0")/.."
EP_SCRIPT=bench-paths
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ep_require_root
exec cargo test --release --locked --test prog_run_external cost_per_path -- --ignored --nocapture --test-threads 1
