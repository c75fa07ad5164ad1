//! `edgeplane services` and `edgeplane conntrack` end to end (root only), with
//! the built binary as a user runs it: a Service with two backends, real TCP
//! (held open) and UDP traffic from the client pod, then what the two
//! commands print, as JSON and as text, with and without filters.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::topo::*;
use common::*;

const HOLD_PORT: u16 = 9090;

/// A TCP server that answers each connection with its name and keeps it open
/// until dropped (so the flow stays established).
struct HoldServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HoldServer {
    fn start(ns: &NetNs, name: &str) -> HoldServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (s, name) = (stop.clone(), name.to_string());
        let thread = ns.spawn(move || {
            let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, HOLD_PORT)).expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            tx.send(()).ok();
            let held = Mutex::new(Vec::new());
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).ok();
                        let _ = conn.write_all(format!("{name}\n").as_bytes());
                        held.lock().expect("lock").push(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        rx.recv().expect("server started");
        HoldServer { stop, thread: Some(thread) }
    }
}

impl Drop for HoldServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Service e2e/web: 81/TCP -> 9090 ("tcp") and 53/UDP -> 5353 ("dns") on every backend.
fn web_service(t: &Topo) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: e2e\nspec:\n  clusterIP: {VIP}\n  ports:\n  - name: tcp\n    protocol: TCP\n    port: 81\n    targetPort: {HOLD_PORT}\n  - name: dns\n    protocol: UDP\n    port: 53\n    targetPort: 5353\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: e2e\n  labels:\n    kubernetes.io/service-name: web\naddressType: IPv4\nendpoints:\n"
    );
    for i in 0..t.backends.len() {
        y.push_str(&format!("- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n", backend_ip(i)));
    }
    y.push_str(&format!(
        "ports:\n- name: tcp\n  protocol: TCP\n  port: {HOLD_PORT}\n- name: dns\n  protocol: UDP\n  port: 5353\n"
    ));
    y
}

fn run(t: &Topo, args: &[&str]) -> String {
    let out = sh(t.edgeplane(args[0]).args(&args[1..]));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(t: &Topo, args: &[&str]) -> serde_json::Value {
    let text = run(t, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
}

fn addr_of(v: &serde_json::Value) -> String {
    format!("{}:{}", v["addr"].as_str().unwrap_or("?"), v["port"])
}

#[test]
fn services_and_conntrack_show_real_flows() {
    need_root!();
    let t = Topo::new(2, true);
    let _servers: Vec<HoldServer> =
        t.backends.iter().enumerate().map(|(i, b)| HoldServer::start(b, &format!("be{i}"))).collect();
    t.apply(&[web_service(&t)]);
    let backends: Vec<String> = (0..2).map(|i| format!("{}:{HOLD_PORT}", backend_ip(i))).collect();

    // ---- services ----
    let svcs = json(&t, &["services", "-o", "json"]);
    let list = svcs.as_array().expect("services -o json is a list");
    let tcp = list
        .iter()
        .find(|s| s["vip"] == VIP.to_string() && s["port"] == 81 && s["proto"] == "tcp")
        .unwrap_or_else(|| panic!("no {VIP}:81/tcp in {svcs:#}"));
    assert_eq!(tcp["name"], "e2e/web:tcp", "{tcp:#}");
    assert_eq!(tcp["backend_count"], 2);
    let mut got: Vec<String> = tcp["backends"].as_array().expect("backends").iter().map(addr_of).collect();
    got.sort();
    assert_eq!(got, backends, "{tcp:#}");
    assert!(tcp["backends"].as_array().expect("backends").iter().all(|b| b["weight"] == 1 && b["draining"] == false));
    let udp = list.iter().find(|s| s["port"] == 53 && s["proto"] == "udp").expect("53/udp frontend");
    assert_eq!(udp["name"], "e2e/web:dns");
    let text = run(&t, &["services"]);
    eprintln!("{text}");
    assert!(text.starts_with("FRONTEND"), "{text}");
    assert!(text.contains(&format!("{VIP}:81")) && text.contains("e2e/web:tcp"), "{text}");

    // ---- traffic: one TCP connection held open, one UDP exchange ----
    let started = Instant::now();
    let vip81 = vip(81);
    let (conn, server) = t.client.within(move || {
        let c = TcpStream::connect_timeout(&vip81.into(), T).expect("connect to the VIP");
        c.set_read_timeout(Some(T)).expect("timeout");
        let mut line = String::new();
        BufReader::new(c.try_clone().expect("clone")).read_line(&mut line).expect("answer");
        (c, line.trim().to_string())
    });
    assert!(server.starts_with("be"), "answer {server:?}");
    let udp_answer = t.ask("udp", vip(53)).expect("udp through the VIP");
    assert!(udp_answer.server.starts_with("be"));

    // ---- conntrack ----
    let ct = json(&t, &["conntrack", "-o", "json"]);
    let elapsed = started.elapsed().as_secs_f64();
    let flows = ct["flows"].as_array().expect("flows");
    let local = conn.local_addr().expect("local addr");
    let flow = flows
        .iter()
        .find(|f| {
            f["proto"] == "tcp"
                && f["src"]["addr"] == CLIENT_IP.to_string()
                && f["src"]["port"] == local.port()
                && f["dst"]["addr"] == VIP.to_string()
                && f["dst"]["port"] == 81
        })
        .unwrap_or_else(|| panic!("no flow from {local} to {VIP}:81 in {ct:#}"));
    assert_eq!(flow["state"], "established", "{flow:#}");
    assert_eq!(flow["direction"], "forward");
    assert_eq!(flow["paired"], true);
    let backend = addr_of(&flow["translation"]["backend"]);
    assert!(backends.contains(&backend), "translated to {backend}, not a backend: {flow:#}");
    let age = flow["age_s"].as_f64().expect("age");
    // The flow was created after `started`: its last packet is younger than that.
    assert!((0.0..=elapsed).contains(&age), "age {age} s, but the flow is at most {elapsed} s old");
    let udp_flow = flows
        .iter()
        .find(|f| f["proto"] == "udp" && f["src"]["addr"] == CLIENT_IP.to_string() && f["dst"]["port"] == 53)
        .unwrap_or_else(|| panic!("no UDP flow to {VIP}:53 in {ct:#}"));
    assert_eq!(udp_flow["state"], "established", "a reply was seen: {udp_flow:#}");
    assert!(backends.iter().any(|b| b.starts_with(udp_flow["translation"]["backend"]["addr"].as_str().unwrap_or("?"))));

    // ---- filters ----
    let by_client = json(&t, &["conntrack", "-o", "json", "--addr", &CLIENT_IP.to_string()]);
    assert!(by_client["matched"].as_u64().expect("matched") >= 2, "{by_client:#}");
    let by_backend_addr = json(&t, &["conntrack", "-o", "json", "--addr", backend.split(':').next().expect("addr")]);
    assert!(
        by_backend_addr["flows"]
            .as_array()
            .expect("flows")
            .iter()
            .any(|f| f["src"] == flow["src"] && f["dst"] == flow["dst"]),
        "the backend side matches: {by_backend_addr:#}"
    );
    let none = json(&t, &["conntrack", "-o", "json", "--addr", "198.18.99.99"]);
    assert_eq!(none["matched"], 0, "{none:#}");
    let by_port = json(&t, &["conntrack", "-o", "json", "--port", "81"]);
    let ports: Vec<_> = by_port["flows"].as_array().expect("flows").iter().map(|f| f["proto"].clone()).collect();
    assert!(!ports.is_empty() && ports.iter().all(|p| p == "tcp"), "{by_port:#}");
    let limited = json(&t, &["conntrack", "-o", "json", "--limit", "1"]);
    assert_eq!(limited["flows"].as_array().expect("flows").len(), 1);
    assert_eq!(limited["more"].as_u64(), limited["matched"].as_u64().map(|m| m - 1));

    let text = run(&t, &["conntrack", "--addr", &CLIENT_IP.to_string()]);
    eprintln!("{text}");
    assert!(text.starts_with("PROTO"), "{text}");
    assert!(text.contains("established") && text.contains(&format!("-> {backend}")), "{text}");
    let text = run(&t, &["conntrack", "--limit", "1"]);
    assert!(text.contains("more matching flows not shown"), "{text}");

    // ---- the same flag on status and drops; the old ones still work ----
    let status = json(&t, &["status", "-o", "json"]);
    assert!(status["conntrack"]["entries"].as_u64().expect("entries") >= 2);
    assert!(json(&t, &["status", "--json"])["maps"].is_array());
    assert!(json(&t, &["drops", "-o", "json"]).is_array());
    assert!(json(&t, &["drops", "--json"]).is_array());
    drop(conn);
}

#[test]
fn services_mark_draining_backends_and_affinity() {
    need_root!();
    let t = Topo::new(2, true);
    let leaving = Ep { ip: backend_ip(1), ready: false, serving: true, terminating: true };
    t.apply(&[service_yaml("sticky", VIP, &[ready(backend_ip(0)), leaving], Some(30))]);
    let svcs = json(&t, &["services", "--output", "json"]);
    let http = svcs
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["port"] == 80 && s["proto"] == "tcp")
        .unwrap_or_else(|| panic!("no 80/tcp in {svcs:#}"));
    assert_eq!(http["name"], "e2e/sticky:http");
    assert_eq!(http["flags"], serde_json::json!(["affinity"]));
    assert_eq!(http["affinity_timeout"], 30);
    assert_eq!(http["backend_count"], 1, "only the ready endpoint gets new flows: {http:#}");
    let shown: Vec<(String, bool)> = http["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| (addr_of(b), b["draining"].as_bool().expect("draining")))
        .collect();
    assert_eq!(shown, vec![(format!("{}:8080", backend_ip(0)), false), (format!("{}:8080", backend_ip(1)), true)]);
    let text = run(&t, &["services"]);
    eprintln!("{text}");
    assert!(text.contains("affinity=30s") && text.contains("draining"), "{text}");

    // Without a readable config dir the ids stay and nothing fails.
    std::fs::remove_file(t.cfg.path.join("services.yaml")).expect("remove yaml");
    let svcs = json(&t, &["services", "-o", "json"]);
    let http = svcs.as_array().expect("list").iter().find(|s| s["port"] == 80).expect("80/tcp still programmed");
    assert!(http["name"].is_null() && http["svc_id"].as_u64().is_some(), "{http:#}");
}

#[test]
fn nothing_pinned_is_an_error_not_an_empty_list() {
    need_root!();
    let t = Topo::new(1, true);
    for cmd in ["services", "conntrack"] {
        let out = t.edgeplane(cmd).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("nothing pinned"), "{cmd}: {err}");
    }
}

/// Cost of listing a large table, for people (no threshold): fills ep_ct4_v2
/// with FLOWS (default 200,000) synthetic service flows, then times three
/// listings and prints wall time and peak RSS. Run with
/// `FLOWS=200000 cargo nextest run --test e2e_inspect --run-ignored only --no-capture`.
#[test]
#[ignore = "measurement, prints only"]
fn measure_large_table() {
    use edgeplane::maps::layout::{CT_DIR_FORWARD, CT_DIR_REPLY, CT_F_ESTABLISHED, CT_F_SERVICE, CtKey, CtValue};
    use libbpf_rs::{MapCore, MapFlags, MapHandle};
    need_root!();
    let t = Topo::new(2, true);
    std::fs::write(
        t.settings.path.join("edgeplane.yaml"),
        "maps:\n  services: 4096\n  backends: 4096\n  conntrack: 1048576\n  affinity: 4096\n  sknat: 4096\n",
    )
    .expect("settings");
    t.apply(&[web_service(&t)]);
    let ct = MapHandle::from_pinned_path(t.state.path.join("ep_ct4_v2")).expect("ct map");
    let n: u32 = std::env::var("FLOWS").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let started = Instant::now();
    let (be, vip) = (backend_ip(0).octets(), VIP.octets());
    for i in 0..n {
        let client = [198, 18, (i >> 16) as u8, (i >> 8) as u8];
        let sport = (10000 + (i & 0xff) as u16).to_be_bytes();
        let (p81, hold) = (81u16.to_be_bytes(), HOLD_PORT.to_be_bytes());
        let fk = CtKey { saddr: client, daddr: vip, sport, dport: p81, proto: 6, dir: CT_DIR_FORWARD, _pad0: 0 };
        let fv = CtValue {
            nat_addr: be,
            nat_port: hold,
            backend_id: 1,
            svc_id: 2,
            flags: CT_F_SERVICE,
            ..Default::default()
        };
        let rk = CtKey { saddr: be, daddr: client, sport: hold, dport: sport, proto: 6, dir: CT_DIR_REPLY, _pad0: 0 };
        let rv = CtValue {
            nat_addr: vip,
            hairpin_addr: client,
            nat_port: p81,
            svc_id: 2,
            flags: CT_F_SERVICE | CT_F_ESTABLISHED,
            ..Default::default()
        };
        ct.update(&fk.to_bytes(), &fv.to_bytes(), MapFlags::ANY).expect("insert");
        ct.update(&rk.to_bytes(), &rv.to_bytes(), MapFlags::ANY).expect("insert");
    }
    eprintln!("filled {n} flows ({} entries) in {:?}", 2 * n, started.elapsed());
    let runs: [&[&str]; 3] =
        [&["conntrack"], &["conntrack", "--addr", "198.18.0.1"], &["conntrack", "-o", "json", "--limit", "1000000"]];
    for args in runs {
        let started = Instant::now();
        let out = sh(t.edgeplane(args[0]).args(&args[1..]));
        let took = started.elapsed();
        // SAFETY: getrusage into a zeroed struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
        eprintln!(
            "{args:?}: {took:?}, {} bytes out, peak RSS of any child so far {} MiB",
            out.stdout.len(),
            ru.ru_maxrss / 1024
        );
    }
    let all = json(&t, &["conntrack", "-o", "json", "--limit", "0"]);
    assert_eq!(all["matched"].as_u64(), Some(u64::from(n)), "every synthetic flow pairs into one row");
}

/// `edgeplane monitor --flows -o json` as a user runs it, started before the
/// traffic: a connection through a Service shows as a new flow (service,
/// chosen backend, verdict), one to a Service without endpoints as a drop.
#[test]
fn monitor_follows_new_flows_and_drops_live() {
    need_root!();
    let t = Topo::new(1, false);
    t.apply(&[service_yaml("web", VIP, &[ready(backend_ip(0))], None), service_yaml("empty", VIP_EMPTY, &[], None)]);
    let mut child = t
        .edgeplane("monitor")
        .args(["--flows", "--count", "2", "--duration", "60", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn monitor");
    let reap = KillOnDrop(child.id());
    // It says so on stderr once its lease is written: only then is traffic seen.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut banner = String::new();
    stderr.read_line(&mut banner).expect("monitor banner");
    assert!(banner.starts_with("monitoring drops and new flows"), "{banner}");

    let answer = t.ask("tcp", vip(80)).expect("tcp through the VIP");
    assert_eq!(answer.server, "be0");
    let refused = t.ask("tcp", SocketAddrV4::new(VIP_EMPTY, 80));
    assert!(refused.is_err(), "a service without endpoints answered: {refused:?}");

    let out = child.wait_with_output().expect("monitor output");
    std::mem::forget(reap); // reaped: its pid is no longer ours to signal
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert!(out.status.success(), "monitor: {out:?} {rest}");
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    let flow = &events[0];
    assert_eq!(flow["kind"], "flow", "{flow:#}");
    assert_eq!(flow["verdict"], "not-evaluated", "no policy here: {flow:#}");
    assert_eq!(
        (flow["saddr"].as_str(), flow["daddr"].as_str(), &flow["dport"]),
        (Some("198.18.0.2"), Some("198.19.0.10"), &serde_json::json!(80))
    );
    assert_eq!(flow["to_addr"], backend_ip(0).to_string(), "{flow:#}");
    assert_eq!(flow["to_port"], 8080);
    assert_eq!(flow["service"], "e2e/web:http");
    assert_eq!(flow["translation"], serde_json::json!(["service"]));
    assert!(flow["interface"].as_str().is_some_and(|i| !i.starts_with("if")), "interface not named: {flow:#}");
    // `status` names the programs behind the links (run counts need kernel.bpf_stats_enabled).
    let st = t.status();
    let progs = st["programs"].as_array().expect("status programs");
    assert!(progs.iter().any(|p| p["name"] == "ep_tc_ingress" && p["links"].as_u64() >= Some(1)), "{st:#}");
    let drop = &events[1];
    assert_eq!(drop["kind"], "drop", "{drop:#}");
    assert_eq!(drop["reason"], "no-endpoints");
    assert_eq!(drop["service"], "e2e/empty:http");
    assert_eq!(drop["daddr"], VIP_EMPTY.to_string());
}

/// Kills our child (by its pid) if the test fails before reaping it;
/// forgotten once the child is reaped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own, not yet reaped child: its pid cannot be reused.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}
