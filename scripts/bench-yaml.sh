#!/usr/bin/env bash
# YAML layer benchmark (docs/BENCHMARKS.md, "YAML layer"): `edgeplane check`
# and the parse-only example (examples/parse_bench.rs) on gen.py's N services
# in two layouts: gen.py's multi-document files and one `kind: List` as
# `kubectl get -o yaml` writes it. Inputs:
#   slices       endpointslices.yaml (56 MB at N=100000)
#   slices-list  the same slices as one List (62 MB)
#   all          services.yaml + endpointslices.yaml (97 MB)
#   all-list     services and slices as one List (107 MB)
# Every variant runs once per round, rounds interleaved (the machine is
# shared: compare medians within one run). A variant is NAME or
# NAME:VAR=VALUE,...; the variables are set for its runs, and EDGEPLANE /
# PARSE_BENCH among them pick other builds (say, of main) to compare against.
# Prints one CSV line per run (stdout) and the medians (stderr).
#   scripts/bench-yaml.sh [VARIANT...]     N=100000 ROUNDS=5 by default
# No root needed; nothing outside a temporary directory is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
ROUNDS=${ROUNDS:-5}
TARGET=${CARGO_TARGET_DIR:-target}
GEN=${EP_BENCH_GEN:-${EP_SHARED:-../shared}/baseline/gen.py}
WORK=$(mktemp -d /tmp/ep-bench-yaml.XXXX)
trap 'rm -rf "$WORK"' EXIT
(($# > 0)) || set -- default

python3 "$GEN" --services "$N" --endpoints 2 --out "$WORK/gen" >/dev/null
# Multi-document YAML -> one List: each document becomes an item.
to_list() {
    python3 - "$@" <<'PY'
import sys
out = sys.stdout
out.write("apiVersion: v1\nitems:\n")
for path in sys.argv[1:]:
    first = False
    for line in open(path):
        if line.startswith("---"):
            first = True
        elif first:
            out.write("- " + line)
            first = False
        else:
            out.write("  " + line)
out.write('kind: List\nmetadata:\n  resourceVersion: ""\n')
PY
}
mkdir "$WORK"/{slices,slices-list,all,all-list}
cp "$WORK/gen/endpointslices.yaml" "$WORK/slices/"
cp "$WORK/gen/services.yaml" "$WORK/gen/endpointslices.yaml" "$WORK/all/"
to_list "$WORK/gen/endpointslices.yaml" >"$WORK/slices-list/list.yaml"
to_list "$WORK/gen/services.yaml" "$WORK/gen/endpointslices.yaml" >"$WORK/all-list/list.yaml"

{
echo "kind,round,input,variant,wall_s,cpu_s,max_rss_kib,parse_ms"
for r in $(seq "$ROUNDS"); do
    for input in slices slices-list all all-list; do
        for v in "$@"; do
            name=${v%%:*}
            vars=()
            [[ $v == *:* ]] && IFS=, read -ra vars <<<"${v#*:}"
            ep=$TARGET/release/edgeplane pb=$TARGET/release/examples/parse_bench
            for a in "${vars[@]}"; do
                case $a in EDGEPLANE=*) ep=${a#*=} ;; PARSE_BENCH=*) pb=${a#*=} ;; esac
            done
            env "${vars[@]}" /usr/bin/time -o "$WORK/time" -f "%e,%U,%S,%M" \
                "$ep" check --config /dev/null --max-file-size 1000000000 "$WORK/$input" >/dev/null 2>&1 || true
            IFS=, read -r wall user sys rss <"$WORK/time"
            echo "check,$r,$input,$name,$wall,$(awk "BEGIN {print $user + $sys}"),$rss,"
            # parse_bench: only the single files (one unit each, as the loader
            # parses a List; a multi-document file is parsed whole here).
            [[ $input == slices || $input == slices-list ]] || continue
            ms=$(env "${vars[@]}" /usr/bin/time -o "$WORK/time" -f "%e,%U,%S,%M" "$pb" "$WORK/$input"/*.yaml |
                sed -E 's/.* ms=([0-9]+).*/\1/')
            IFS=, read -r wall user sys rss <"$WORK/time"
            echo "parse,$r,$input,$name,$wall,$(awk "BEGIN {print $user + $sys}"),$rss,$ms"
        done
    done
done
} | tee "$WORK/runs.csv"

python3 - "$WORK/runs.csv" >&2 <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
keys = sorted({(r["kind"], r["input"], r["variant"]) for r in rows}, key=lambda k: (k[0], k[1]))
for kind, inp, var in keys:
    rs = [r for r in rows if (r["kind"], r["input"], r["variant"]) == (kind, inp, var)]
    med = lambda f: statistics.median(float(r[f]) for r in rs)
    parse = f", parse {med('parse_ms'):.0f} ms" if kind == "parse" else ""
    print(f"{kind:5} {inp:11} {var:14} median of {len(rs)}: wall {med('wall_s'):.2f} s, cpu {med('cpu_s'):.2f} s, "
          f"peak RSS {max(int(r['max_rss_kib']) for r in rs) / 1024:.0f} MiB{parse}")
PY
