#!/usr/bin/env python3
"""Where a bench.sh run's per-packet BPF time goes (docs/BENCHMARKS.md section 5).

Usage: scripts/bench-bpf-stats.py BENCH.jsonl STATS.jsonl

BENCH.jsonl is bench.sh --out of a run with one custom mode; STATS.jsonl the
lines scripts/bench-teardown.sh appended for the same run (EP_BPF_STATS_OUT,
with kernel.bpf_stats_enabled=1), one per custom point, in the same order.
Prints per service count: medians over rounds of conns/s and CPU per
connection (direct and the custom mode), the ratio of the medians, and per
program its runs per connection, ns per run and ns per connection. A round
whose programs all report 0 runs (stats were off) is left out of the
program figures.
"""
import json
import statistics as st
import sys


def main(bench_path, stats_path):
    rows = [json.loads(line) for line in open(bench_path) if line.strip()]
    stats = [json.loads(line) for line in open(stats_path) if line.strip()]
    custom = [r for r in rows if r["mode"] != "direct"]
    if len(custom) != len(stats):
        sys.exit(f"{len(custom)} custom points but {len(stats)} stats lines: not the same run")
    for n in sorted({r["services"] for r in rows}):
        direct = [r for r in rows if r["mode"] == "direct" and r["services"] == n]
        points = [(r, s) for r, s in zip(custom, stats) if r["services"] == n]
        d_cps = st.median(r["conns_per_s"] for r in direct)
        c_cps = st.median(r["conns_per_s"] for r, _ in points)
        d_us = st.median(r["cpu"]["us_per_conn"] for r in direct)
        c_us = st.median(r["cpu"]["us_per_conn"] for r, _ in points)
        fails = sum(r["failures"] for r, _ in points) + sum(r["failures"] for r in direct)
        print(f"N={n}: direct {d_cps:.0f} conns/s {d_us:.0f} us/conn; {points[0][0]['mode']} "
              f"{c_cps:.0f} conns/s {c_us:.0f} us/conn; ratio {c_cps / d_cps:.2f}; failures {fails}")
        per_prog = {}
        for r, s in points:
            if not any(p["run_count"] for p in s["programs"]):
                continue
            for p in s["programs"]:
                if p["run_count"]:
                    per_prog.setdefault(p["name"], []).append(
                        (p["run_count"] / r["conns"], p["run_time_ns"] / p["run_count"], p["run_time_ns"] / r["conns"]))
        for name, v in per_prog.items():
            print(f"  {name}: {st.median(x[0] for x in v):.2f} runs/conn, {st.median(x[1] for x in v):.0f} ns/run, "
                  f"{st.median(x[2] for x in v):.0f} ns/conn ({len(v)} rounds)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
