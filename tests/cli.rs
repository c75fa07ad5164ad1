//! The CLI contract, from outside: exit codes, output forms, option placement.
//! No privileges needed (plan runs against empty maps when nothing is pinned).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn edgeplane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeplane"))
        .args(args)
        // never pick up a machine-wide /etc/edgeplane/edgeplane.yaml in tests
        .args(["--config", "/dev/null"])
        .output()
        .expect("run edgeplane")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples-config")
}

fn tmpdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ep-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn check_valid_examples_exits_0_with_summary() {
    let out = edgeplane(&["check", examples().to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("valid:"), "{stdout}");
}

#[test]
fn check_invalid_exits_1_naming_file_line_column_and_field() {
    let dir = tmpdir("invalid");
    std::fs::write(
        dir.join("svc.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  clusterIP: 198.19.0.10\n  ports:\n  - port: 99999\n    protocol: TCP\n",
    )
    .expect("write");
    let out = edgeplane(&["check", dir.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.contains("svc.yaml:9:"), "{first}");
    assert!(first.contains("Service demo/web"), "{first}");
    assert!(first.contains("spec.ports[0].port"), "{first}");
    assert!(first.contains("99999"), "{first}");

    // JSON form: the same diagnostic as an array element.
    let out = edgeplane(&["check", "--format", "json", dir.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json array");
    let first = &v.as_array().expect("array")[0];
    assert_eq!(first["line"], 9);
    assert_eq!(first["field"], "spec.ports[0].port");
    assert_eq!(first["severity"], "error");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_missing_dir_and_usage_errors_exit_2() {
    let out = edgeplane(&["check", "/nonexistent/edgeplane-test-dir"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // `apply` too (before touching any state); `run` waits for the directory instead.
    let out = edgeplane(&[
        "apply",
        "--config-dir",
        "/nonexistent/edgeplane-test-dir",
        "--state-dir",
        "/nonexistent/edgeplane-test-state",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no such directory"), "{stderr}");
    let out = edgeplane(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = edgeplane(&["check"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn plan_against_empty_state_lists_every_entry_and_options_go_after_the_subcommand() {
    let state = tmpdir("state-none");
    let out = edgeplane(&[
        "plan",
        "--config-dir",
        examples().to_str().expect("utf-8"),
        "--state-dir",
        state.join("absent").to_str().expect("utf-8"),
        "--node-name",
        "demo-node",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // examples-config/demo.yaml: web has 2 ports x (slot 0 + 2 backend slots), 4 backends
    assert!(stdout.contains("add    ep_svc_v1 198.19.0.10:80/tcp scope 0 slot 0"), "{stdout}");
    assert!(stdout.contains("add    ep_be_v1 backend#1 = 198.18.1.10:"), "{stdout}");
    assert!(stdout.contains("ep_svc_v1 +6 ~0 -0"), "{stdout}");
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn bad_config_file_is_a_usage_error_naming_the_line() {
    let dir = tmpdir("cfg");
    let cfg = dir.join("edgeplane.yaml");
    std::fs::write(&cfg, "workload-interfaces: [veth*]\nstate-dri: /x\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_edgeplane"))
        .args(["check", examples().to_str().expect("utf-8"), "--config", cfg.to_str().expect("utf-8")])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("edgeplane.yaml:2:"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_applies_the_configured_map_sizes() {
    let dir = tmpdir("capacity");
    let settings = dir.join("edgeplane.yaml");
    std::fs::write(&settings, "maps:\n  services: 2\n").expect("write settings");
    let out = Command::new(env!("CARGO_BIN_EXE_edgeplane"))
        .args(["check", examples().to_str().expect("utf-8"), "--config", settings.to_str().expect("utf-8")])
        .output()
        .expect("run edgeplane");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // apply would refuse this input with these map sizes, so check must too.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ep_svc_v1") && stderr.contains("maps.services"), "{stderr}");
}

#[test]
fn as_root_input_others_can_write_is_refused_with_the_fix() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (the ownership rules apply to root only)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tmpdir("trust");
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec:\n  clusterIP: 198.19.0.10\n  ports: [{port: 80}]\n";
    std::fs::write(dir.join("svc.yaml"), svc).expect("write");
    std::fs::set_permissions(dir.join("svc.yaml"), std::fs::Permissions::from_mode(0o666)).expect("chmod");
    // check validates content and applies nothing: it warns (apply and run refuse).
    let out = edgeplane(&["check", dir.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("svc.yaml:1:1: warning: apply and run as root refuse this input: this file is writable by group or others (mode 0666)"),
        "{stderr}"
    );
    assert!(stderr.contains("chmod go-w"), "{stderr}");
    // A symlink to a root-only file elsewhere: refused, its content never shown.
    let secret = tmpdir("secret").join("secret.yaml");
    std::fs::write(&secret, "password: hunter2\n").expect("write");
    std::fs::set_permissions(dir.join("svc.yaml"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::os::unix::fs::symlink(&secret, dir.join("leak.yaml")).expect("symlink");
    let out = edgeplane(&["check", dir.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("leak.yaml:1:1: refused: symlink leads outside the config directory"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn dash_o_json_is_accepted_like_the_older_flags() {
    let dir = examples();
    let dir = dir.to_str().expect("utf-8");
    let new = edgeplane(&["check", "-o", "json", dir]);
    let old = edgeplane(&["check", "--format", "json", dir]);
    assert_eq!(new.status.code(), Some(0));
    assert_eq!(new.stdout, old.stdout);
    serde_json::from_slice::<serde_json::Value>(&new.stdout).expect("check -o json is JSON");
    // The read-only commands take it too (no usage error); with nothing
    // pinned, services and conntrack say so and exit 2.
    let state = tmpdir("nothing-pinned");
    let none = state.join("none");
    for cmd in ["status", "drops", "services", "conntrack"] {
        let out = edgeplane(&[cmd, "-o", "json", "--state-dir", none.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("Usage:"), "{cmd} -o json: {stderr}");
        if matches!(cmd, "services" | "conntrack") {
            assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
            assert!(stderr.contains("nothing pinned"), "{cmd}: {stderr}");
        }
    }
    let bad = edgeplane(&["services", "-o", "yaml"]);
    assert_eq!(bad.status.code(), Some(2), "an unknown format is a usage error");
}

/// `trace` and `policy` answer from the directory alone (nothing pinned).
#[test]
fn trace_and_policy_explain_the_example_directory() {
    let state = tmpdir("trace-state");
    let dir = examples();
    let common = ["--config-dir", dir.to_str().expect("utf-8"), "--state-dir", state.to_str().expect("utf-8")];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = common.to_vec();
        all.extend_from_slice(args);
        edgeplane(&all)
    };
    let out = run(&["--node-name", "demo-node", "trace", "198.18.0.2", "198.19.0.10:80/tcp", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).expect("trace -o json");
    assert_eq!(t["ingress"], "workload", "the client is a pod of the directory: {t:#}");
    assert_eq!(t["source_pod"], "demo/client");
    assert_eq!(t["frontend"]["service"], "demo/web:http");
    assert_eq!(t["action"], "forward");
    let paths = t["paths"].as_array().expect("paths");
    let mut pods: Vec<&str> = paths.iter().filter_map(|p| p["pod"].as_str()).collect();
    pods.sort();
    assert_eq!(pods, ["demo/web-1", "demo/web-2"], "{t:#}");
    for p in paths {
        assert_eq!(p["policy"], "allowed", "{p:#}");
        assert_eq!(p["policy_rules"]["ingress"]["allowed_by"][0], "demo/web-allow-client ingress[0]", "{p:#}");
    }
    // 198.18.9.9 is no pod: forced onto a workload interface, web-allow-client denies it.
    let out = run(&["--node-name", "demo-node", "trace", "198.18.9.9", "198.19.0.10:80", "--from", "workload"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("verdict: dropped (policy-denied-ingress)"), "{text}");
    assert!(text.contains("ingress of demo/web-1: denied (isolated by demo/web-allow-client)"), "{text}");

    let out = run(&["--node-name", "demo-node", "policy", "demo/web-1", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).expect("policy -o json");
    assert_eq!(p["enforced_here"], true);
    assert_eq!(p["ingress_isolated"], true);
    assert_eq!(p["egress_isolated"], false);
    assert_eq!(p["policies"][0]["name"], "demo/web-allow-client");
    assert_eq!(p["policies"][0]["rules"][0]["peers"][0], "pods {app=client} in namespace demo");
    assert_eq!(p["policies"][0]["rules"][0]["ports"], serde_json::json!(["tcp/http", "udp/5353"]));

    // Usage errors exit 2, an unknown pod 1.
    assert_eq!(run(&["trace", "198.18.0.2", "198.19.0.10:80/icmp"]).status.code(), Some(2));
    assert_eq!(run(&["trace", "198.18.0.2", "198.19.0.10"]).status.code(), Some(2));
    assert_eq!(run(&["policy", "web-1"]).status.code(), Some(2));
    assert_eq!(run(&["policy", "demo/nobody"]).status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&state);
}
