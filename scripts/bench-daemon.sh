#!/usr/bin/env bash
# Daemon benchmark (docs/BENCHMARKS.md): `edgeplane run` on N generated
# services (default 100000, 2 endpoints each) in a throwaway network namespace:
#   - full apply: the daemon's own "applied ... in X ms" line for the first pass;
#   - one endpoint change: endpointslices.yaml is rewritten with one endpoint
#     address changed and renamed over the old file (atomic, as editors and
#     git-sync do); time from the rename to the daemon's "applied" line, which
#     includes the watcher's debounce, plus the pass time the daemon reports;
#   - daemon RSS (VmRSS and peak VmHWM) after each.
# Prints one JSON line on stdout; progress on stderr. Everything (namespace,
# pinned state, daemon) is removed on exit. Nothing is attached in the root
# namespace (the namespace has no interfaces matching the globs at all).
#   scripts/bench-daemon.sh [N]       EDGEPLANE=path overrides the binary
set -euo pipefail
cd "$(dirname "$0")/.."
EP_SCRIPT=bench-daemon
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ep_require_root
ep_ensure_bpffs

N=${1:-100000}
EP=${EDGEPLANE:-${CARGO_TARGET_DIR:-target}/release/edgeplane}
[[ -x $EP ]] || ep_die "$EP missing (cargo build --release, or set EDGEPLANE)"
# The shared harness sits beside this repository (EP_SHARED elsewhere).
GEN=${EP_BENCH_GEN:-${EP_SHARED:-../shared}/baseline/gen.py}
NS=epbd$$
STATE=/sys/fs/bpf/ep-bench-daemon-$$
WORK=$(mktemp -d "/tmp/ep-bench-daemon.XXXX")
DAEMON=

cleanup() {
    set +e
    if [[ -n $DAEMON ]]; then
        kill -TERM "$DAEMON" 2>/dev/null
        wait "$DAEMON" 2>/dev/null
    fi
    [[ -e $STATE ]] && "$EP" reset --config /dev/null --netns "$NS" --state-dir "$STATE" >/dev/null 2>&1
    ip netns del "$NS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

ep_log "generating $N services into $WORK"
python3 "$GEN" --services "$N" --endpoints 2 --out "$WORK/gen" >/dev/null
mkdir "$WORK/cfg"
cp "$WORK/gen/services.yaml" "$WORK/gen/endpointslices.yaml" "$WORK/cfg/"
ip netns add "$NS"

# Waits until the log holds $1 lines matching "applied"; prints the wall time
# (seconds since the epoch) at which it saw them.
wait_applied() {
    python3 - "$WORK/daemon.log" "$1" "$DAEMON" <<'PY'
import os, sys, time
path, want, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.time() + 300
while time.time() < deadline:
    try:
        alive = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        alive = False
    if not alive:
        sys.exit("the daemon exited")
    with open(path) as f:
        lines = [l for l in f if " applied" in l or l.startswith("applied")]
    if len(lines) >= want:
        print(f"{time.time():.6f}")
        sys.exit(0)
    time.sleep(0.001)
sys.exit("timed out waiting for the daemon's 'applied' line")
PY
}
pass_ms() { grep -E ' applied|^applied' "$WORK/daemon.log" | sed -n "$1p" | sed -E 's/.* in ([0-9.]+) ms.*/\1/'; }
rss() { awk '/^VmRSS|^VmHWM/ {sub(/:/, "", $1); printf "%s=%d ", $1, $2}' "/proc/$DAEMON/status"; }

ep_log "starting edgeplane run"
t0=$(date +%s.%N)
RUST_LOG=${RUST_LOG:-info} "$EP" run --config /dev/null --netns "$NS" --config-dir "$WORK/cfg" --state-dir "$STATE" \
    --workload-interfaces 'epbench-none-*' >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
t1=$(wait_applied 1) || { cat "$WORK/daemon.log" >&2; exit 1; }
full_ms=$(pass_ms 1)
full_wall=$(python3 -c "print(round(($t1 - $t0) * 1000, 1))")
sleep 1  # idle: the pass has freed and trimmed its working memory
rss_full=$(rss)
ep_log "full apply: pass ${full_ms} ms, start to applied ${full_wall} ms; $rss_full"

# one endpoint changed: the first slice's second address .11 -> .12
python3 - "$WORK/cfg/endpointslices.yaml" "$WORK/next.yaml" <<'PY'
import sys
src, dst = sys.argv[1:]
text = open(src).read()
i = text.index("  - 198.18.1.11\n")
open(dst, "w").write(text[:i] + "  - 198.18.1.12\n" + text[i + len("  - 198.18.1.11\n"):])
PY
sleep 1  # let the first pass's own file events settle
c0=$(date +%s.%N)
mv "$WORK/next.yaml" "$WORK/cfg/endpointslices.yaml"
c1=$(wait_applied 2) || { cat "$WORK/daemon.log" >&2; exit 1; }
change_ms=$(pass_ms 2)
change_wall=$(python3 -c "print(round(($c1 - $c0) * 1000, 1))")
sleep 1
rss_change=$(rss)
ep_log "one endpoint change: pass ${change_ms} ms, rename to applied ${change_wall} ms; $rss_change"
grep -E ' applied|^applied' "$WORK/daemon.log" | sed -n 2p >&2

python3 - "$N" "$full_ms" "$full_wall" "$change_ms" "$change_wall" "$rss_full" "$rss_change" <<'PY'
import json, sys
n, full_ms, full_wall, change_ms, change_wall, rss_full, rss_change = sys.argv[1:]
kv = lambda s: {k: int(v) for k, v in (p.split("=") for p in s.split())}
print(json.dumps({"services": int(n), "full_apply_pass_ms": float(full_ms), "full_apply_wall_ms": float(full_wall),
                  "endpoint_change_pass_ms": float(change_ms), "endpoint_change_wall_ms": float(change_wall),
                  "rss_kb_after_full": kv(rss_full), "rss_kb_after_change": kv(rss_change)}))
PY
