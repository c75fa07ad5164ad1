//! `edgeplane run`'s /metrics, /healthz and /livez (root only), on the shared
//! harness: the daemon serves inside the node namespace; a thread that
//! entered it scrapes, with real traffic through a ClusterIP and a rejected
//! connection to a service without endpoints; then a broken input file, and
//! later an input the mass-deletion guard holds, turn /healthz to 503 while
//! /livez stays 200.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use common::topo::*;
use common::*;

/// 127.0.0.1 inside the node namespace (each test has its own namespace).
const METRICS: &str = "127.0.0.1:9964";

/// `GET path` from a thread in the node namespace: (status, body), or None
/// while nothing listens yet.
fn get(t: &Topo, path: &str) -> Option<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: edgeplane\r\n\r\n");
    t.node.within(move || {
        let mut s = TcpStream::connect(METRICS).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(req.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    })
}

/// Polls `path` until `done` holds for its answer (a deadline against hangs, not a timing assertion).
fn until(t: &Topo, path: &str, what: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = get(t, path);
        if let Some((status, body)) = &got
            && done(*status, body)
        {
            return (*status, body.clone());
        }
        assert!(Instant::now() < deadline, "{what}: last answer from {path}: {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Prometheus text → `name{labels}` → value (comments skipped; every sample parses).
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample without value: {line}"));
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        out.insert(series.to_string(), v);
    }
    out
}

fn scrape(t: &Topo) -> BTreeMap<String, f64> {
    let (status, body) = get(t, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("edgeplane_"), "unprefixed sample {line}");
    }
    assert!(body.contains("# HELP edgeplane_drops_total "), "{body}");
    if std::env::var_os("E2E_METRICS_SHOW").is_some() {
        eprintln!("{body}");
    }
    parse(&body)
}

fn value(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series).unwrap_or_else(|| panic!("no {series} in {m:#?}"))
}

#[test]
fn metrics_and_health_follow_traffic_and_input() {
    need_root!();
    let t = Topo::new(2, true);
    std::fs::write(
        t.settings.path.join("edgeplane.yaml"),
        "maps:\n  services: 4096\n  backends: 4096\n  conntrack: 65536\n  affinity: 4096\n  sknat: 4096\n\
         settle-milliseconds: 100\n",
    )
    .expect("settings");
    let web = service_yaml("web", VIP, &[ready(backend_ip(0)), ready(backend_ip(1))], None);
    let empty = service_yaml("empty", VIP_EMPTY, &[], None);
    t.write_dir(&[web.clone(), empty.clone()]);
    let mut cmd = t.edgeplane("run");
    cmd.args(["--metrics-address", METRICS]);
    let mut d = Daemon::spawn(cmd);

    let (_, body) = until(&t, "/healthz", "healthy after the first apply", |s, _| s == 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(get(&t, "/livez").map(|(s, _)| s), Some(200));

    // Real traffic through the ClusterIP, and a reject from the service without endpoints.
    for _ in 0..4 {
        let a = t.ask("tcp", vip(80)).expect("ClusterIP forwards");
        assert!(a.server.starts_with("be"), "{a:?}");
    }
    t.ask("tcp", SocketAddrV4::new(VIP_EMPTY, 80)).expect_err("no endpoints: rejected");

    let m = scrape(&t);
    assert!(value(&m, "edgeplane_passes_total{outcome=\"applied\"}") >= 1.0);
    assert_eq!(value(&m, "edgeplane_passes_total{outcome=\"refused\"}"), 0.0);
    assert!(value(&m, "edgeplane_pass_stage_duration_seconds_count{stage=\"apply\"}") >= 1.0);
    assert!(value(&m, "edgeplane_pass_stage_duration_seconds_count{stage=\"load\"}") >= 1.0);
    assert!(value(&m, "edgeplane_last_successful_pass_timestamp_seconds") > 1.0e9);
    assert_eq!(value(&m, "edgeplane_objects{kind=\"Service\"}"), 2.0);
    assert_eq!(value(&m, "edgeplane_objects{kind=\"EndpointSlice\"}"), 2.0);
    assert_eq!(value(&m, "edgeplane_input_held"), 0.0);
    assert_eq!(value(&m, "edgeplane_datapath_readable"), 1.0);
    // The same numbers `status` reads from the pinned maps.
    let status = t.status();
    let svc = status["maps"].as_array().and_then(|a| a.iter().find(|x| x["name"] == "ep_svc_v1")).expect("ep_svc_v1");
    let svc_entries = value(&m, "edgeplane_map_entries{map=\"ep_svc_v1\"}");
    assert!(svc_entries > 0.0);
    assert_eq!(Some(svc_entries as u64), svc["entries"].as_u64(), "{svc}");
    assert_eq!(value(&m, "edgeplane_map_capacity{map=\"ep_svc_v1\"}"), 4096.0);
    assert!(value(&m, "edgeplane_drops_total{reason=\"no-endpoints\"}") >= 1.0, "the reject is counted");
    assert!(value(&m, "edgeplane_datapath_events_total{event=\"lb-new-flows\"}") >= 4.0);
    assert!(m.contains_key("edgeplane_conntrack_entries"), "{m:#?}");
    assert_eq!(value(&m, "edgeplane_conntrack_insert_failed_total"), 0.0);
    assert_eq!(value(&m, "edgeplane_errors_total{kind=\"invalid-input\"}"), 0.0);

    // A change to the directory is programmed: one file-change → maps latency sample.
    let before = value(&m, "edgeplane_network_programming_duration_seconds_count");
    t.write_dir(&[web, empty, service_yaml("more", VIP_HAIRPIN, &[ready(backend_ip(1))], None)]);
    until(&t, "/metrics", "the change is programmed", |_, body| {
        parse(body).get("edgeplane_network_programming_duration_seconds_count").is_some_and(|n| *n > before)
    });
    let m = scrape(&t);
    assert_eq!(value(&m, "edgeplane_objects{kind=\"Service\"}"), 3.0);
    assert!(t.ask("tcp", SocketAddrV4::new(VIP_HAIRPIN, 80)).is_ok(), "the new service forwards");

    // A broken file: the pass is refused, /healthz says why, the old state keeps forwarding.
    std::fs::write(t.cfg.path.join("broken.yaml"), "apiVersion: v1\nkind: Service\nmetadata: [oops\n").expect("write");
    let (_, body) = until(&t, "/healthz", "unhealthy after an invalid input", |s, _| s == 503);
    let v: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON reason");
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert!(v["reason"].as_str().is_some_and(|r| r.contains("invalid-input")), "{v}");
    assert_eq!(get(&t, "/livez").map(|(s, _)| s), Some(200), "the loop still turns");
    let m = scrape(&t);
    assert!(value(&m, "edgeplane_errors_total{kind=\"invalid-input\"}") >= 1.0);
    assert!(value(&m, "edgeplane_passes_total{outcome=\"refused\"}") >= 1.0);
    assert!(t.ask("tcp", vip(80)).is_ok(), "the last good state keeps forwarding");

    // Fixed again: healthy.
    std::fs::remove_file(t.cfg.path.join("broken.yaml")).expect("remove");
    until(&t, "/healthz", "healthy again once the input is valid", |s, _| s == 200);

    // An input without objects would remove every service: held, and /healthz says so.
    t.write_dir(&[]);
    let (_, body) = until(&t, "/healthz", "unhealthy while the input is held", |s, _| s == 503);
    assert!(body.contains("held"), "{body}");
    let m = scrape(&t);
    assert_eq!(value(&m, "edgeplane_input_held"), 1.0);
    assert!(value(&m, "edgeplane_passes_total{outcome=\"held\"}") >= 1.0);
    assert!(value(&m, "edgeplane_map_entries{map=\"ep_svc_v1\"}") > 0.0, "nothing removed");
    d.signal(libc::SIGTERM);
}
