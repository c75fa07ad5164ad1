//! The daemon's lifecycle under real traffic (root only): restarts under a
//! connect loop (SIGTERM and SIGKILL mixed, each restart loading a fresh
//! program build and swapping it into the pinned links), SIGKILL in the
//! middle of a large apply, invalid directory states while traffic flows, and
//! interfaces that appear after start.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
const T: Duration = Duration::from_secs(3);

fn backend_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 10 + i as u8, 2)
}

/// Service web (VIP:80 → 8080/TCP) with the given backends, plus `extra`
/// filler services (to make applies large).
fn services_yaml(backends: &[Ipv4Addr], extra: usize) -> String {
    services_yaml_with(backends, &[], extra)
}

/// As `services_yaml`, with `terminating` endpoints listed as serving but
/// terminating (a pod shutting down gracefully).
fn services_yaml_with(backends: &[Ipv4Addr], terminating: &[Ipv4Addr], extra: usize) -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: d\nspec:\n  clusterIP: 198.19.0.10\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: d\n  labels:\n    kubernetes.io/service-name: web\naddressType: IPv4\nendpoints:\n",
    );
    for b in backends {
        y.push_str(&format!("- addresses: [\"{b}\"]\n  conditions: {{ready: true}}\n"));
    }
    for b in terminating {
        y.push_str(&format!(
            "- addresses: [\"{b}\"]\n  conditions: {{ready: false, serving: true, terminating: true}}\n"
        ));
    }
    y.push_str("ports:\n- name: http\n  port: 8080\n  protocol: TCP\n");
    for i in 0..extra {
        let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 128, 0)) + i as u32);
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: f{i}\n  namespace: d\nspec:\n  clusterIP: {vip}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: f{i}-1\n  namespace: d\n  labels:\n    kubernetes.io/service-name: f{i}\naddressType: IPv4\nendpoints:\n- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n- addresses: [\"{}\"]\n  conditions: {{ready: true}}\nports:\n- name: http\n  port: 8080\n  protocol: TCP\n",
            backend_ip(0),
            backend_ip(1)
        ));
    }
    y
}

struct Topo {
    state: StateDir,
    _servers: Vec<EchoServer>,
    cfg: TempDir,
    logs: TempDir,
    client: NetNs,
    _backends: Vec<NetNs>,
    node: NetNs,
    tag: String,
}

impl Topo {
    fn new() -> Topo {
        let node = NetNs::new("n");
        let client = NetNs::new("c");
        let tag = unique();
        node.sysctl("net.ipv4.ip_forward", "1");
        let cl = format!("cl{tag}c");
        node.veth(&cl, &client, "eth0");
        node.addr(&cl, "198.18.0.1/24");
        client.addr("eth0", "198.18.0.2/24");
        client.route(&["default", "via", "198.18.0.1"]);
        let mut backends = Vec::new();
        let mut servers = Vec::new();
        for i in 0..2 {
            let b = NetNs::new(&format!("b{i}"));
            let dev = format!("cl{tag}b{i}");
            node.veth(&dev, &b, "eth0");
            node.addr(&dev, &format!("198.18.{}.1/24", 10 + i));
            b.addr("eth0", &format!("{}/24", backend_ip(i)));
            b.route(&["default", "via", &format!("198.18.{}.1", 10 + i)]);
            servers.push(EchoServer::start(&b, &format!("be{i}"), Ipv4Addr::UNSPECIFIED, Some(8080), None));
            backends.push(b);
        }
        Topo {
            state: StateDir::new(&node),
            _servers: servers,
            cfg: TempDir::new("dcfg"),
            logs: TempDir::new("dlog"),
            client,
            _backends: backends,
            node,
            tag,
        }
    }

    fn edgeplane(&self, sub: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_edgeplane"));
        c.arg(sub)
            .arg("--config-dir")
            .arg(&self.cfg.path)
            .args(["--config", "/dev/null", "--netns", &self.node.name])
            .arg("--state-dir")
            .arg(&self.state.path)
            .args(["--workload-interfaces", "cl*"]);
        c
    }

    fn write(&self, yaml: &str) {
        // Write-then-rename, as editors and git-sync do: the daemon never reads half a file.
        let tmp = self.cfg.path.join(".services.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write yaml");
        std::fs::rename(&tmp, self.cfg.path.join("services.yaml")).expect("rename yaml");
    }

    /// Starts `edgeplane run`, logging to logs/<n>.log.
    fn start_daemon(&self, n: usize) -> Daemon {
        let log = self.logs.path.join(format!("{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = self.edgeplane("run").stderr(Stdio::from(file)).stdout(Stdio::null()).spawn().expect("spawn daemon");
        Daemon { child: Some(child), log }
    }

    fn plan_steps(&self) -> String {
        let out = sh(&mut self.edgeplane("plan"));
        String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string()
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        let _ = self.edgeplane("reset").output();
        let _ = &self.tag;
    }
}

struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits (bounded) until the log contains `needle`.
    fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        self.wait_log_count(needle, 1, limit)
    }

    /// Waits (bounded) until the log contains `needle` at least `n` times.
    fn wait_log_count(&self, needle: &str, n: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.log().matches(needle).count() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn signal(&mut self, sig: i32) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(child.id() as i32, sig) };
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// Connects to VIP:80 in a loop from the client namespace until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(client: &NetNs) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, o, f, e) = (stop.clone(), ok.clone(), failed.clone(), errors.clone());
        let thread = client.spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match tcp_ask(SocketAddrV4::new(VIP, 80), T) {
                    Ok(_) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut v) = e.lock() {
                            v.push(err.to_string());
                        }
                    }
                }
            }
        });
        Load { stop, ok, failed, errors, thread: Some(thread) }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the loop; returns (ok, failed, first errors).
    fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let errs = self.errors.lock().map(|v| v.iter().take(5).cloned().collect()).unwrap_or_default();
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed), errs)
    }
}

/// Waits (bounded) until the load loop made `n` more successful connections.
fn wait_progress(load: &Load, n: u64) {
    let target = load.ok() + n;
    let start = Instant::now();
    while load.ok() < target && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn restart_fifty_times_under_load_loses_no_connection() {
    need_root!();
    let t = Topo::new();
    t.write(&services_yaml(&[backend_ip(0), backend_ip(1)], 0));
    let mut daemon = t.start_daemon(0);
    assert!(daemon.wait_log("running:", Duration::from_secs(30)), "daemon did not start:\n{}", daemon.log());
    let load = Load::start(&t.client);
    wait_progress(&load, 20);
    for round in 1..=50 {
        // Mixed: SIGTERM (clean exit) and SIGKILL (no chance to clean up).
        daemon.signal(if round % 2 == 0 { libc::SIGTERM } else { libc::SIGKILL });
        wait_progress(&load, 5); // forwarding goes on with no daemon at all
        daemon = t.start_daemon(round);
        assert!(daemon.wait_log("running:", Duration::from_secs(30)), "restart {round}:\n{}", daemon.log());
        // The restarted daemon adopted the pinned state: unchanged YAML, no writes.
        assert!(!daemon.log().contains("applied"), "restart {round} rewrote maps:\n{}", daemon.log());
        wait_progress(&load, 5);
    }
    daemon.signal(libc::SIGTERM);
    let (ok, failed, errors) = load.finish();
    eprintln!("restart under load: {ok} connections, {failed} failed");
    assert!(ok > 500, "the load loop ran ({ok} connections)");
    assert_eq!(failed, 0, "connections failed during restarts: {errors:?}");
}

#[test]
fn sigkill_in_the_middle_of_a_large_apply_converges_after_restart() {
    need_root!();
    let t = Topo::new();
    const EXTRA: usize = 30_000;
    t.write(&services_yaml(&[backend_ip(0), backend_ip(1)], EXTRA));
    let mut daemon = t.start_daemon(0);
    // Kill as soon as the service map holds some but not all entries.
    let total = (EXTRA + 1) * 3;
    let start = Instant::now();
    let mut seen = 0;
    while start.elapsed() < Duration::from_secs(60) {
        seen = edgeplane::datapath::read_status(&t.state.path)
            .ok()
            .and_then(|s| serde_json::to_value(&s).ok())
            .and_then(|v| {
                v["maps"].as_array()?.iter().find(|m| m["name"] == "ep_svc_v1").and_then(|m| m["entries"].as_u64())
            })
            .unwrap_or(0) as usize;
        if seen > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    daemon.signal(libc::SIGKILL);
    eprintln!("killed with {seen} of {total} service entries written");
    assert!(seen > 0, "the apply started:\n{}", daemon.log());
    // Restart: it adopts whatever is pinned and finishes the job.
    let mut daemon = t.start_daemon(1);
    assert!(daemon.wait_log("running:", Duration::from_secs(60)), "{}", daemon.log());
    daemon.signal(libc::SIGTERM);
    assert_eq!(t.plan_steps(), "plan: 0 step(s): no changes", "maps equal the desired state");
    let a = t.client.within(|| tcp_ask(SocketAddrV4::new(VIP, 80), T)).expect("service answers");
    assert!(a.server.starts_with("be"));
}

#[test]
fn invalid_directory_keeps_the_last_good_state_forwarding() {
    need_root!();
    let t = Topo::new();
    t.write(&services_yaml(&[backend_ip(0), backend_ip(1)], 0));
    let daemon = t.start_daemon(0);
    assert!(daemon.wait_log("running:", Duration::from_secs(30)), "{}", daemon.log());
    let load = Load::start(&t.client);
    wait_progress(&load, 20);

    // One snapshot with an endpoint turned terminating AND an invalid file: nothing
    // of it applies.
    let broken = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n  namespace: d\nspec:\n  clusterIP: 198.19.0.99\n  ports:\n  - port: 99999\n";
    std::fs::write(t.cfg.path.join("broken.yaml"), broken).expect("write");
    t.write(&services_yaml_with(&[backend_ip(0)], &[backend_ip(1)], 0));
    assert!(daemon.wait_log("nothing applied", Duration::from_secs(10)), "{}", daemon.log());
    assert!(daemon.log().contains("broken.yaml:9:"), "the error names file and line:\n{}", daemon.log());
    wait_progress(&load, 50);
    let servers: std::collections::BTreeSet<String> = (0..40)
        .map(|_| t.client.within(|| tcp_ask(SocketAddrV4::new(VIP, 80), T)).expect("answer").server)
        .collect();
    assert_eq!(servers.len(), 2, "be1 still gets new flows: the half-valid snapshot was not applied");

    // Fixing the file applies the pending change; be1 drains gracefully: connections
    // already open to it finish (no resets), new ones go to be0.
    assert_eq!(daemon.log().matches("applied:").count(), 1, "only the start-up apply so far");
    std::fs::remove_file(t.cfg.path.join("broken.yaml")).expect("rm");
    assert!(daemon.wait_log_count("applied:", 2, Duration::from_secs(10)), "{}", daemon.log());
    wait_progress(&load, 20);
    let (ok, failed, errors) = load.finish();
    assert!(ok > 0);
    assert_eq!(failed, 0, "{errors:?}");
    for _ in 0..20 {
        let a = t.client.within(|| tcp_ask(SocketAddrV4::new(VIP, 80), T)).expect("answer");
        assert_eq!(a.server, "be0");
    }
}

#[test]
fn interfaces_that_appear_later_are_attached() {
    need_root!();
    let t = Topo::new();
    t.write(&services_yaml(&[backend_ip(0), backend_ip(1)], 0));
    let daemon = t.start_daemon(0);
    assert!(daemon.wait_log("running:", Duration::from_secs(30)), "{}", daemon.log());
    // A new pod appears: its veth is created after the daemon started.
    let pod = NetNs::new("p");
    let dev = format!("cl{}p", unique());
    t.node.veth(&dev, &pod, "eth0");
    t.node.addr(&dev, "198.18.2.1/24");
    pod.addr("eth0", "198.18.2.2/24");
    pod.route(&["default", "via", "198.18.2.1"]);
    let start = Instant::now();
    let mut answered = None;
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(a) = pod.within(|| tcp_ask(SocketAddrV4::new(VIP, 80), Duration::from_millis(300))) {
            answered = Some(a);
            break;
        }
    }
    let a = answered.unwrap_or_else(|| panic!("new interface not attached:\n{}", daemon.log()));
    eprintln!("new interface attached and translating after {:?}", start.elapsed());
    assert_eq!(a.client_peer, SocketAddrV4::new(VIP, 80).into());
}
