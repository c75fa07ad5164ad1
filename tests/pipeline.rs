//! Golden tests of the loader: every `tests/invalid/NAME.{yaml,json}` gives
//! exactly the diagnostics in `tests/invalid/NAME.stderr`, and the examples
//! load without any diagnostic.
//!
//! To re-create the .stderr files after an intended change, run with
//! `UPDATE_GOLDEN=1` and review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use edgeplane::diag::{self, Severity};
use edgeplane::model::{self, Loaded};
use edgeplane::source::LoadLimits;

/// Paths relative to the crate root, as `edgeplane check tests/invalid/x.yaml`
/// run there would print them.
fn load(path: &str) -> Loaded {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("cd to the crate root");
    // Content, not ownership: the checkout may belong to anyone.
    let limits = LoadLimits { trusted_owner: None, ..LoadLimits::default() };
    model::load_dirs(&[PathBuf::from(path)], &limits).expect("readable")
}

fn render(loaded: &Loaded) -> String {
    loaded.diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

#[test]
fn invalid_cases_match_their_golden_stderr() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("tests/invalid exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "expected the invalid cases, found {cases:?}");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
        let rel = format!("tests/invalid/{name}");
        let loaded = load(&rel);
        assert!(loaded.has_errors(), "{rel} should be invalid");
        let got = render(&loaded);
        let golden = case.with_extension("stderr");
        if update {
            fs::write(&golden, &got).expect("write golden");
            continue;
        }
        let want = fs::read_to_string(&golden).unwrap_or_else(|_| panic!("{} is missing", golden.display()));
        if got != want {
            failures.push(format!("--- {}\n+++ actual\n{got}", golden.display()));
        }
    }
    assert!(failures.is_empty(), "golden mismatch:\n{}", failures.join("\n"));
}

#[test]
fn examples_config_is_valid_and_complete() {
    let loaded = load("examples-config");
    assert_eq!(render(&loaded), "", "examples-config must load without diagnostics");
    assert!(!loaded.has_errors());
    let c = &loaded.cluster;
    assert!(!c.services.is_empty() && !c.endpoint_slices.is_empty() && !c.pods.is_empty() && !c.policies.is_empty());
    assert!(c.namespaces.iter().all(|n| n.labels.get("kubernetes.io/metadata.name") == Some(&n.name)));
    assert!(model::summary(c).contains("services"));
    // Deterministic: loading twice gives the same model and hash.
    let again = load("examples-config");
    assert_eq!(again.cluster, loaded.cluster);
    assert_eq!(again.content_hash, loaded.content_hash);
}

#[test]
fn json_rendering_has_one_object_per_diagnostic() {
    let loaded = load("tests/invalid/service-ports.yaml");
    let json: serde_json::Value = serde_json::from_str(&diag::to_json(&loaded.diagnostics)).expect("valid JSON");
    let rows = json.as_array().expect("an array");
    assert_eq!(rows.len(), loaded.diagnostics.len());
    let first = &rows[0];
    let d = &loaded.diagnostics[0];
    assert_eq!(first["file"], "tests/invalid/service-ports.yaml");
    assert_eq!(first["line"], d.span.line);
    assert_eq!(first["column"], d.span.col);
    assert_eq!(first["field"], d.field.as_str());
    assert_eq!(first["message"], d.message.as_str());
    assert_eq!(first["severity"], if d.severity == Severity::Error { "error" } else { "warning" });
    assert!(rows.iter().any(|r| r["severity"] == "warning"));
}

#[test]
fn every_problem_is_reported_sorted() {
    let loaded = load("tests/invalid/networkpolicy.yaml");
    let lines: Vec<u32> = loaded.diagnostics.iter().map(|d| d.span.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    assert!(loaded.diagnostics.iter().filter(|d| d.is_error()).count() >= 10);
}
