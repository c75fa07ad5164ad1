//! The upstream Kubernetes NetworkPolicy end-to-end model, rebuilt with
//! network namespaces (root only): namespaces x, y, z (label ns), pods a, b, c
//! in each (label pod), each pod its own netns with a veth into ONE node
//! netns where edgeplane runs, each serving TCP and UDP on 80 and 81. Every
//! case writes Namespaces, Pods and NetworkPolicies as YAML, applies them,
//! probes the 9x9 matrix in parallel and compares it with the expected table,
//! printing both matrices on a mismatch.
//!
//! Applying is what a user does: the built binary, `edgeplane apply
//! --config-dir DIR --netns NODE --state-dir S --workload-interfaces GLOB
//! --node-name node-1`.

mod common;
#[path = "policy_common/model.rs"]
mod model;
#[path = "policy_common/yaml.rs"]
mod yaml;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use edgeplane::model::{Cluster, NetworkPolicy, Protocol};
use model::*;

const NSS: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const GATEWAY: &str = "169.254.1.1";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

struct Model {
    // Declaration order is drop order: detach and unpin before the namespaces go.
    state: StateDir,
    _servers: Vec<EchoServer>,
    cfg: TempDir,
    pods: BTreeMap<String, NetNs>,
    node: NetNs,
    tag: String,
}

fn pod_name(ns: &str, p: &str) -> String {
    format!("{ns}/{p}")
}

fn all_pods() -> Vec<String> {
    NSS.iter().flat_map(|n| PODS.iter().map(move |p| pod_name(n, p))).collect()
}

fn ip_of(name: &str) -> Ipv4Addr {
    let (n, p) = name.split_once('/').expect("ns/pod");
    xyz_ip(n, p)
}

impl Model {
    fn new() -> Model {
        let node = NetNs::new("pn");
        let tag = unique();
        node.sysctl("net.ipv4.ip_forward", "1");
        // The pods' gateway and the node's own address live on the node's lo.
        node.addr("lo", &format!("{GATEWAY}/32"));
        node.addr("lo", &format!("{NODE_IP}/32"));
        let mut pods = BTreeMap::new();
        let mut servers = Vec::new();
        for (i, name) in all_pods().into_iter().enumerate() {
            let ns = NetNs::new(&format!("p{i}"));
            let dev = format!("wl{tag}{i}");
            node.veth(&dev, &ns, "eth0");
            let ip = ip_of(&name);
            ns.addr("eth0", &format!("{ip}/32"));
            ns.route(&[GATEWAY, "dev", "eth0"]);
            ns.route(&["default", "via", GATEWAY, "dev", "eth0"]);
            node.route(&[&format!("{ip}/32"), "dev", &dev]);
            for port in [80, 81] {
                servers.push(EchoServer::start(&ns, &name, Ipv4Addr::UNSPECIFIED, Some(port), Some(port)));
            }
            pods.insert(name, ns);
        }
        Model { state: StateDir::new(&node), _servers: servers, cfg: TempDir::new("polcfg"), pods, node, tag }
    }

    fn edgeplane(&self, sub: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_edgeplane"));
        c.arg(sub)
            .arg("--config-dir")
            .arg(&self.cfg.path)
            .args(["--netns", &self.node.name])
            .arg("--state-dir")
            .arg(&self.state.path)
            .args(["--workload-interfaces", &format!("wl{}*", self.tag), "--node-name", NODE]);
        c
    }

    /// Writes the directory and applies it with the binary.
    fn apply(&mut self, c: &Cluster) {
        std::fs::write(self.cfg.path.join("cluster.yaml"), yaml::cluster(c)).expect("write yaml");
        let out = self.edgeplane("apply").output().expect("run edgeplane apply");
        assert!(out.status.success(), "edgeplane apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn probe_from(&self, from: &str, to: Ipv4Addr, proto: Protocol, port: u16) -> std::thread::JoinHandle<bool> {
        let target = SocketAddrV4::new(to, port);
        self.pods[from].spawn(move || match proto {
            Protocol::Tcp => tcp_ask(target, PROBE_TIMEOUT).is_ok(),
            _ => udp_ask_connected(target, PROBE_TIMEOUT).is_ok(),
        })
    }

    /// The 9x9 matrix for one protocol/port, probed in parallel.
    fn matrix(&self, proto: Protocol, port: u16) -> BTreeMap<(String, String), bool> {
        let mut handles = Vec::new();
        for s in all_pods() {
            for d in all_pods() {
                let h = self.probe_from(&s, ip_of(&d), proto, port);
                handles.push(((s.clone(), d), h));
            }
        }
        handles.into_iter().map(|(k, h)| (k, h.join().expect("probe thread"))).collect()
    }

    fn check(&self, case: &str, proto: Protocol, port: u16, want: &dyn Fn(&str, &str) -> bool) {
        let want: BTreeMap<(String, String), bool> = all_pods()
            .into_iter()
            .flat_map(|s| all_pods().into_iter().map(move |d| (s.clone(), d)))
            .map(|(s, d)| {
                let v = s == d || want(&s, &d);
                ((s, d), v)
            })
            .collect();
        let mut got = self.matrix(proto, port);
        // A probe that failed where traffic is expected gets one retry, so a
        // lost packet is not reported as a policy mismatch (a drop is stable).
        for (k, v) in got.iter_mut() {
            if !*v && want[k] {
                *v = self.probe_from(&k.0, ip_of(&k.1), proto, port).join().expect("probe");
            }
        }
        if got != want {
            panic!("{case}: {}/{port} matrix differs\n{}", proto.as_str(), render(&want, &got));
        }
    }
}

/// Upstream's truth-table rendering: rows = from, columns = to; `.` allowed,
/// `X` denied; a mismatch shows as `!` (allowed, want denied) or `?`
/// (denied, want allowed).
fn render(want: &BTreeMap<(String, String), bool>, got: &BTreeMap<(String, String), bool>) -> String {
    let pods = all_pods();
    let mut s = format!("{:>5} {}\n", "", pods.iter().map(|p| format!("{p:>4}")).collect::<String>());
    for from in &pods {
        s.push_str(&format!("{from:>5} "));
        for to in &pods {
            let k = (from.clone(), to.clone());
            let c = match (want[&k], got[&k]) {
                (true, true) => ".",
                (false, false) => "X",
                (false, true) => "!",
                (true, false) => "?",
            };
            s.push_str(&format!("{c:>4}"));
        }
        s.push('\n');
    }
    s.push_str("(. allowed, X denied, ! allowed but should be denied, ? denied but should be allowed)\n");
    s
}

fn with(policies: Vec<NetworkPolicy>) -> Cluster {
    let mut c = xyz_cluster();
    c.policies = policies;
    c
}

fn in_ns(p: &str, ns: &str) -> bool {
    p.starts_with(&format!("{ns}/"))
}

// All cases share one topology (nine namespaces take a while to build) and
// run in sequence, each starting from its own directory contents.
#[test]
fn upstream_policy_matrix() {
    need_root!();
    let mut m = Model::new();
    let tcp80 = (Protocol::Tcp, 80);

    // No policy: everything reachable.
    m.apply(&with(vec![]));
    m.check("no policy", Protocol::Tcp, 80, &|_, _| true);

    // Default deny ingress in x.
    m.apply(&with(vec![Pol::new("x", "deny-ingress", sel(&[])).build()]));
    for (proto, port) in [tcp80, (Protocol::Udp, 81)] {
        m.check("default deny ingress", proto, port, &|_, d| !in_ns(d, "x"));
    }
    // Every denial was counted under its reason, and the recent drops name
    // the tuple, the direction and the endpoint whose policy denied it.
    let status: serde_json::Value =
        serde_json::from_slice(&sh(m.edgeplane("status").arg("--json")).stdout).expect("status --json");
    let denied = status["drops"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["reason"] == "policy-denied-ingress"))
        .and_then(|d| d["count"].as_u64())
        .unwrap_or(0);
    assert!(denied > 0, "policy-denied-ingress counted: {status}");
    let drops: serde_json::Value =
        serde_json::from_slice(&sh(m.edgeplane("drops").args(["--json", "--count", "256"])).stdout)
            .expect("drops --json");
    let ev = drops
        .as_array()
        .and_then(|a| {
            a.iter().find(|e| {
                e["reason"] == "policy-denied-ingress"
                    && e["saddr"] == "198.18.0.4"
                    && e["daddr"] == "198.18.0.1"
                    && e["dport"] == 81
                    && e["proto"] == "udp"
            })
        })
        .unwrap_or_else(|| panic!("a drop event y/a -> x/a udp/81: {drops}"));
    assert_eq!(ev["direction"], "ingress");
    assert_ne!(ev["endpoint"], 0);
    assert_eq!(ev["pod"], "x/a", "the denying endpoint is named by its pod");
    // The node itself still reaches the isolated pods (kubelet probes).
    let probe = m.node.within(|| tcp_ask(SocketAddrV4::new(xyz_ip("x", "a"), 80), PROBE_TIMEOUT).is_ok());
    assert!(probe, "node -> x/a must stay allowed under default deny");

    // Default deny egress in x (and the node can still probe x's pods: their answers leave).
    m.apply(&with(vec![Pol::new("x", "deny-egress", sel(&[])).egress_only().build()]));
    for (proto, port) in [tcp80, (Protocol::Udp, 80)] {
        m.check("default deny egress", proto, port, &|s, _| !in_ns(s, "x"));
    }
    let probe = m.node.within(|| tcp_ask(SocketAddrV4::new(xyz_ip("x", "b"), 81), PROBE_TIMEOUT).is_ok());
    assert!(probe, "node -> x/b must stay allowed under default deny egress");

    // Allow from the same namespace only.
    m.apply(&with(vec![
        Pol::new("x", "same-ns", sel(&[])).ingress(rule(vec![pods_peer(Some(sel(&[])), None)], vec![])).build(),
    ]));
    m.check("allow same namespace", Protocol::Tcp, 80, &|s, d| !in_ns(d, "x") || in_ns(s, "x"));

    // Allow from another namespace by label.
    m.apply(&with(vec![
        Pol::new("x", "from-y", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(None, Some(sel(&[("ns", "y")])))], vec![]))
            .build(),
    ]));
    m.check("allow from namespace y", Protocol::Tcp, 80, &|s, d| d != "x/a" || in_ns(s, "y"));

    // podSelector AND namespaceSelector in one peer ...
    m.apply(&with(vec![
        Pol::new("x", "and", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(Some(sel(&[("pod", "b")])), Some(sel(&[("ns", "y")])))], vec![]))
            .build(),
    ]));
    m.check("podSelector AND namespaceSelector", Protocol::Tcp, 80, &|s, d| d != "x/a" || s == "y/b");
    // ... OR in two peers.
    m.apply(&with(vec![
        Pol::new("x", "or", sel(&[("pod", "a")]))
            .ingress(rule(
                vec![pods_peer(Some(sel(&[("pod", "b")])), None), pods_peer(None, Some(sel(&[("ns", "y")])))],
                vec![],
            ))
            .build(),
    ]));
    m.check("podSelector OR namespaceSelector", Protocol::Tcp, 80, &|s, d| d != "x/a" || s == "x/b" || in_ns(s, "y"));

    // ipBlock with except (pod IPs 198.18.0.1-9; /29 = .0-.7; except x/b=.2 and z/a=.7).
    m.apply(&with(vec![
        Pol::new("x", "cidr", sel(&[("pod", "a")]))
            .ingress(rule(vec![ipblock("198.18.0.0/29", &["198.18.0.2/32", "198.18.0.7/32"])], vec![]))
            .build(),
    ]));
    m.check("ipBlock with except", Protocol::Tcp, 80, &|s, d| d != "x/a" || ["x/c", "y/a", "y/b", "y/c"].contains(&s));

    // Named ports: ingress to x by name (resolved on each x pod), egress from z by name.
    m.apply(&with(vec![
        Pol::new("x", "named-in", sel(&[])).ingress(rule(vec![], vec![named(Protocol::Tcp, "serve-81-tcp")])).build(),
        Pol::new("z", "named-out", sel(&[]))
            .egress_only()
            .egress(rule(vec![], vec![named(Protocol::Udp, "serve-80-udp")]))
            .build(),
    ]));
    m.check("named port ingress tcp/81", Protocol::Tcp, 81, &|s, _| !in_ns(s, "z"));
    m.check("named port ingress: tcp/80 not named", Protocol::Tcp, 80, &|s, d| !in_ns(d, "x") && !in_ns(s, "z"));
    m.check("named port egress udp/80 (x admits only tcp/81)", Protocol::Udp, 80, &|_, d| !in_ns(d, "x"));
    m.check("named port egress: udp/81 not named", Protocol::Udp, 81, &|s, d| !in_ns(s, "z") && !in_ns(d, "x"));

    // endPort: y admits TCP 81-82 only.
    m.apply(&with(vec![
        Pol::new("y", "range", sel(&[])).ingress(rule(vec![], vec![range(Protocol::Tcp, 81, 82)])).build(),
    ]));
    m.check("endPort: 81 in range", Protocol::Tcp, 81, &|_, _| true);
    m.check("endPort: 80 below range", Protocol::Tcp, 80, &|_, d| !in_ns(d, "y"));

    // Several policies are additive.
    m.apply(&with(vec![
        Pol::new("x", "p1", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(Some(sel(&[("pod", "b")])), None)], vec![tcp(80)]))
            .build(),
        Pol::new("x", "p2", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(None, Some(sel(&[("ns", "z")])))], vec![tcp(81)]))
            .build(),
    ]));
    m.check("additive: p1 on 80", Protocol::Tcp, 80, &|s, d| d != "x/a" || s == "x/b");
    m.check("additive: p2 on 81", Protocol::Tcp, 81, &|s, d| d != "x/a" || in_ns(s, "z"));

    // Policy update while traffic flows: x/b -> x/a is allowed before and
    // after and must never fail; z/c -> x/a switches from allowed to denied.
    let before = with(vec![
        Pol::new("x", "upd", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(Some(sel(&[])), Some(sel(&[])))], vec![tcp(80)]))
            .build(),
    ]);
    let after = with(vec![
        Pol::new("x", "upd", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(Some(sel(&[])), None)], vec![tcp(80)]))
            .build(),
    ]);
    m.apply(&before);
    m.check("update: before", Protocol::Tcp, 80, &|_, _| true);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let looper = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        m.pods["x/b"].spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match tcp_ask(SocketAddrV4::new(xyz_ip("x", "a"), 80), Duration::from_secs(3)) {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    for round in 0..7 {
        m.apply(if round % 2 == 0 { &after } else { &before });
    }
    m.check("update: after", Protocol::Tcp, 80, &|s, d| d != "x/a" || in_ns(s, "x"));
    stop.store(true, Ordering::Relaxed);
    looper.join().expect("loop");
    assert!(ok.load(Ordering::Relaxed) > 0, "the connection loop ran");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "connections allowed before and after a change never fail");

    // Deleting the policy lifts the isolation.
    m.apply(&with(vec![]));
    m.check("policy deleted", Protocol::Tcp, 80, &|_, _| true);
}

#[test]
fn yaml_dir_is_what_the_binary_reads() {
    // Guard for the harness above: the directory written for each case loads
    // without errors (no root needed).
    let dir = TempDir::new("polyaml");
    let c = with(vec![
        Pol::new("x", "p", sel(&[]))
            .ingress(rule(vec![ipblock("198.18.0.0/29", &["198.18.0.2/32"])], vec![tcp(80)]))
            .build(),
    ]);
    std::fs::write(dir.path.join("cluster.yaml"), yaml::cluster(&c)).expect("write");
    let loaded = edgeplane::model::load_dirs(&[PathBuf::from(&dir.path)], &Default::default()).expect("load");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    assert_eq!(loaded.cluster.policies.len(), 1);
    assert_eq!(loaded.cluster.pods.len(), 9);
}

/// A blocking accept-answer-close server on x/a:90 (the echo servers poll,
/// which would cap the rate), stopped on drop.
struct FastServer {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FastServer {
    fn start(m: &Model) -> FastServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = m.pods["x/a"].within(|| std::net::TcpListener::bind("0.0.0.0:90").expect("bind :90"));
        let l = Arc::new(l);
        let threads = (0..2)
            .map(|_| {
                let (l, stop, tx) = (l.clone(), stop.clone(), tx.clone());
                std::thread::spawn(move || {
                    tx.send(()).ok();
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((mut s, _)) = l.accept() {
                            let _ = std::io::Write::write_all(&mut s, b"x 0.0.0.0:0\n");
                        }
                    }
                })
            })
            .collect();
        rx.recv().expect("server up");
        FastServer { stop, threads }
    }
}

impl Drop for FastServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake every thread blocked in accept() (from inside no namespace:
        // the listener fd works without entering one).
        for _ in &self.threads {
            let _ =
                std::net::TcpStream::connect_timeout(&"127.0.0.1:1".parse().expect("addr"), Duration::from_millis(1));
        }
        self.threads.clear(); // threads blocked in accept end with the process
    }
}

/// Connections per second from x/b to x/a:90 (connect, short answer, close)
/// for `secs` seconds with `threads` client threads.
fn conn_rate(m: &Model, secs: f64, threads: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count) = (stop.clone(), count.clone());
            m.pods["x/b"].spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if tcp_ask(SocketAddrV4::new(xyz_ip("x", "a"), 90), Duration::from_secs(2)).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("client");
    }
    count.load(Ordering::Relaxed) as f64 / secs
}

/// `n` policies on x/a (each admitting a different ipBlock on its own port)
/// plus the one that admits x/b, and `extra_pods` pods on another node.
fn bench_cluster(n: usize, extra_pods: usize) -> Cluster {
    let mut c = xyz_cluster();
    for i in 0..extra_pods {
        let ns = format!("bench-{}", i % 100);
        if i < 100 {
            c.namespaces.push(namespace(&ns, &[("team", &format!("t{}", i % 10))]));
        }
        let ip = format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256);
        c.pods.push(pod(&ns, &format!("p{i}"), &[("app", &format!("a{}", i % 50))], &ip, "node-2", vec![]));
    }
    if n > 0 {
        c.policies.push(
            Pol::new("x", "from-b", sel(&[("pod", "a")]))
                .ingress(rule(vec![pods_peer(Some(sel(&[("pod", "b")])), None)], vec![tcp(80), tcp(90)]))
                .build(),
        );
    }
    for i in 1..n {
        let cidr = format!("10.{}.{}.0/24", 100 + i / 65536, (i / 256) % 256);
        c.policies.push(
            Pol::new("x", &format!("p{i}"), sel(&[("pod", "a")]))
                .ingress(rule(vec![ipblock(&cidr, &[])], vec![tcp(1000 + (i % 60000) as u16)]))
                .build(),
        );
    }
    c.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    c
}

#[test]
#[ignore = "benchmark: cargo test --release --test policy_e2e policy_connection_rate -- --ignored --nocapture"]
fn policy_connection_rate() {
    need_root!();
    let mut m = Model::new();
    let secs = 3.0;
    let _server = FastServer::start(&m);
    let measure = |m: &Model| {
        conn_rate(m, 0.5, 2); // warm up
        conn_rate(m, secs, 2)
    };
    // Enforcement on, but only z/c isolated: x/b -> x/a pays conntrack and
    // the stage's two endpoint lookups, no rule lookups.
    let mut other = xyz_cluster();
    other.policies.push(Pol::new("z", "iso", sel(&[("pod", "c")])).build());
    for round in 0..2 {
        m.apply(&bench_cluster(0, 0));
        let base = measure(&m);
        println!("round {round}: no policy:                      {base:>8.0} conn/s");
        m.apply(&other);
        let r = measure(&m);
        println!("round {round}: enforcement on, x/a not isolated: {r:>8.0} conn/s  ratio {:.3}", r / base);
        for (n, pods) in [(1, 0), (100, 0), (10_000, 10_000)] {
            m.apply(&bench_cluster(n, pods));
            m.check("bench: x/b reaches x/a", Protocol::Tcp, 80, &|s, d| d != "x/a" || s == "x/b");
            let r = measure(&m);
            println!(
                "round {round}: {n:>6} policies, {:>6} pods:     {r:>8.0} conn/s  ratio {:.3}",
                pods + 9,
                r / base
            );
        }
    }
}
