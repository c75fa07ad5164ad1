//! The benchmark scripts still run: scripts/bench-gbit.sh and
//! scripts/bench-policy.sh with their shortest settings against this build's
//! binary. What they report is checked, never how fast: every mode and test
//! present, no failed measurement or connection, edgeplane's programs ran for
//! the edgeplane mode's traffic (and for no other mode's), and the policy
//! script's own check that the policies are enforced passed. Needs root;
//! bench-policy.sh also needs ../shared/baseline/bench.sh (EP_SHARED), and is
//! skipped without it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs scripts/NAME with ARGS against this build's binary; its JSON lines.
fn run_script(name: &str, args: &[&str]) -> Vec<Value> {
    let out: Output = Command::new(repo().join("scripts").join(name))
        .args(args)
        .env("EDGEPLANE", env!("CARGO_BIN_EXE_edgeplane"))
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/{name} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    // The summary, for the test's output.
    eprintln!("{stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("scripts/{name}: not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn bench_gbit_reports_every_mode_and_test_without_failures() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces, BPF)");
        return;
    }
    let rows =
        run_script("bench-gbit.sh", &["--duration", "1", "--rounds", "1", "--mtus", "9000", "--tests", "tcp1,udp64"]);
    for mode in ["direct", "edgeplane", "iptables", "nftables"] {
        for test in ["tcp1", "udp64"] {
            let row = rows
                .iter()
                .find(|r| r["mode"] == mode && r["test"] == test)
                .unwrap_or_else(|| panic!("no {mode} {test} row in {rows:?}"));
            assert_eq!(row["ok"], true, "{row}");
            assert_eq!(row["mtu"], 9000, "{row}");
            assert!(row["gbit_s"].as_f64().is_some_and(|g| g > 0.0), "{row}");
            assert!(row["cpu_ms_per_gbit"].as_f64().is_some_and(|c| c > 0.0), "{row}");
            if test == "udp64" {
                assert!(row["pps_received"].as_f64().is_some_and(|p| p > 0.0), "{row}");
            }
            // The edgeplane mode's traffic ran its programs; no other mode has any.
            let runs = row["bpf_runs"].as_u64().unwrap_or(0);
            assert_eq!(runs > 0, mode == "edgeplane", "{row}");
        }
    }
    assert_eq!(rows.len(), 8, "{rows:?}");
}

#[test]
fn bench_policy_runs_with_and_without_policies_without_failures() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces, BPF)");
        return;
    }
    let shared = std::env::var_os("EP_SHARED").map_or_else(|| repo().join("../shared"), PathBuf::from);
    if !shared.join("baseline/bench.sh").exists() {
        eprintln!("skipped: {} missing (set EP_SHARED)", shared.join("baseline/bench.sh").display());
        return;
    }
    let rows = run_script("bench-policy.sh", &["--policies", "3", "--rounds", "1", "--duration", "1"]);
    for mode in ["direct", "edgeplane", "edgeplane-policy"] {
        assert!(rows.iter().any(|r| r["mode"] == mode), "no {mode} point in {rows:?}");
    }
    for r in &rows {
        assert!(r.get("error").is_none(), "{r}");
        assert_eq!(r["failures"], 0, "{r}");
        assert!(r["conns"].as_u64().is_some_and(|c| c > 0), "{r}");
    }
}
