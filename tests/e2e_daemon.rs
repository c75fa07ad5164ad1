//! The daemon under real traffic (root only), on the shared harness
//! (tests/common): SIGKILL in the middle of a large apply, invalid directory
//! states while traffic flows, interfaces that appear after start. Restarts
//! under load are in e2e_restart.rs.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use common::topo::*;
use common::*;

fn terminating(ip: Ipv4Addr) -> Ep {
    Ep { ip, ready: false, serving: true, terminating: true }
}

fn last_plan_line(t: &Topo) -> String {
    let out = sh(&mut t.edgeplane("plan"));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string()
}

fn svc_entries(t: &Topo) -> u64 {
    edgeplane::datapath::read_status(&t.state.path)
        .ok()
        .and_then(|s| serde_json::to_value(&s).ok())
        .and_then(|v| {
            v["maps"].as_array()?.iter().find(|m| m["name"] == "ep_svc_v1").and_then(|m| m["entries"].as_u64())
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_in_the_middle_of_a_large_apply_converges_after_restart() {
    need_root!();
    let t = Topo::new(2, true);
    std::fs::write(
        t.settings.path.join("edgeplane.yaml"),
        "maps:\n  services: 262144\n  backends: 4096\n  conntrack: 65536\n  affinity: 4096\n  sknat: 4096\n",
    )
    .expect("settings");
    // 15,000 services x 2 ports x (slot 0 + 2 backends) = 90,000 service entries.
    let docs: Vec<String> = (0..15_000u32)
        .map(|i| {
            let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 128, 0)) + i);
            service_yaml(&format!("s{i}"), vip, &[ready(backend_ip(0)), ready(backend_ip(1))], None)
        })
        .collect();
    t.write_dir(&docs);
    let total = 90_000;
    let mut d = Daemon::spawn(t.edgeplane("run"));
    // Kill as soon as the service map holds some entries: mid-apply, not before it.
    let start = Instant::now();
    let mut seen = 0;
    while seen == 0 && start.elapsed() < Duration::from_secs(120) {
        seen = svc_entries(&t);
    }
    d.signal(libc::SIGKILL);
    let after_kill = svc_entries(&t);
    eprintln!("killed with {after_kill} of {total} service entries written");
    assert!(after_kill > 0, "the apply had started");
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    d.signal(libc::SIGTERM);
    assert_eq!(last_plan_line(&t), "plan: 0 step(s): no changes", "maps equal the desired state");
    assert_eq!(svc_entries(&t), total);
    let a = t.ask("tcp", SocketAddrV4::new(Ipv4Addr::new(198, 19, 128, 7), 80)).expect("a service forwards");
    assert!(a.server.starts_with("be"), "{a:?}");
}

#[test]
fn invalid_directory_keeps_the_last_good_state_forwarding() {
    need_root!();
    let t = Topo::new(2, true);
    t.write_dir(&[service_yaml("web", VIP, &[ready(backend_ip(0)), ready(backend_ip(1))], None)]);
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    let load = ConnectLoop::start(&t.client, vip(80));

    // One snapshot that turns be1 terminating AND holds an invalid file: none of it applies.
    let broken = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n  namespace: e2e\nspec:\n  clusterIP: 198.19.0.99\n  ports:\n  - port: 99999\n";
    std::fs::write(t.cfg.path.join("broken.yaml"), broken).expect("write");
    t.write_dir(&[service_yaml("web", VIP, &[ready(backend_ip(0)), terminating(backend_ip(1))], None)]);
    d.wait_for("nothing applied");
    assert!(
        d.log.iter().any(|l| l.contains("broken.yaml:9:") && l.contains("spec.ports[0].port")),
        "the error names file, line and field:\n{}",
        d.log.join("\n")
    );
    let servers: std::collections::BTreeSet<String> =
        (0..40).map(|_| t.ask("tcp", vip(80)).expect("answer").server).collect();
    assert_eq!(servers.len(), 2, "be1 still gets new flows: the half-valid snapshot was not applied");

    // Removing the bad file applies the pending change. be1 drains gracefully:
    // connections already open to it finish, new ones go to be0.
    std::fs::remove_file(t.cfg.path.join("broken.yaml")).expect("rm");
    d.wait_for("applied:");
    let (ok, failures) = load.finish();
    assert!(ok > 0, "the load loop ran");
    assert!(failures.is_empty(), "connections failed while the directory was invalid: {failures:?}");
    for _ in 0..20 {
        assert_eq!(t.ask("tcp", vip(80)).expect("answer").server, "be0");
    }
}

#[test]
fn interfaces_that_appear_later_are_attached() {
    need_root!();
    let t = Topo::new(2, true);
    t.write_dir(&[service_yaml("web", VIP, &[ready(backend_ip(0)), ready(backend_ip(1))], None)]);
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    // A new pod appears: its veth is created after the daemon started.
    let pod = NetNs::new("p");
    let dev = format!("cl{}p", unique());
    t.node.veth(&dev, &pod, "eth0");
    t.node.addr(&dev, "198.18.2.1/24");
    pod.addr("eth0", "198.18.2.2/24");
    pod.route(&["default", "via", "198.18.2.1"]);
    let start = Instant::now();
    let mut answered = None;
    while answered.is_none() && start.elapsed() < Duration::from_secs(20) {
        answered = pod.within(|| tcp_ask(vip(80), Duration::from_millis(300))).ok();
    }
    let a = answered.unwrap_or_else(|| panic!("new interface not attached:\n{}", d.log.join("\n")));
    eprintln!("new interface attached and translating after {:?}", start.elapsed());
    assert_eq!(a.client_peer, vip(80).into(), "the new pod sees the ClusterIP");
}

#[test]
fn drift_in_the_live_maps_is_repaired_and_logged() {
    need_root!();
    let t = Topo::new(2, true);
    t.write_dir(&[service_yaml("web", VIP, &[ready(backend_ip(0)), ready(backend_ip(1))], None)]);
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    // Someone deletes the service's slot 0 behind the daemon's back: the VIP stops translating.
    let mut maps = edgeplane::datapath::open_pinned_maps(&t.state.path).expect("open").expect("pinned");
    use edgeplane::maps::MapBackend;
    let slot0 = edgeplane::maps::layout::SvcKey::new(VIP, 80, 6, 0, 0).to_bytes();
    maps.delete(edgeplane::maps::MapId::Services, &slot0).expect("delete slot 0");
    assert!(!last_plan_line(&t).starts_with("plan: 0 step"), "the drift is visible to plan");
    // A resync (SIGHUP forces one; the timer does the same every resync-interval-seconds).
    // SAFETY: a signal to our own child, by pid.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    d.wait_for("repaired drift in the live maps");
    assert_eq!(last_plan_line(&t), "plan: 0 step(s): no changes");
    assert!(t.ask("tcp", vip(80)).expect("translates again").server.starts_with("be"));
}

/// Resident memory of a process in KiB (VmRSS), 0 when unknown.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sigterm_during_a_huge_parse_stops_the_daemon_at_once() {
    need_root!();
    let t = Topo::new(1, true);
    // About 150 MB of services in 4 files: parsing takes many seconds in a
    // debug build (and seconds in a release one).
    for f in 0..4u32 {
        let mut text = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: e2e\n");
        for i in 0..50_000u32 {
            let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + (f * 50_000 + i) % 65_536);
            text.push_str("---\n");
            text.push_str(&service_yaml(&format!("s{f}-{i}"), vip, &[ready(backend_ip(0))], None));
        }
        std::fs::write(t.cfg.path.join(format!("s{f}.yaml")), text).expect("write yaml");
    }
    let mut d = Daemon::spawn(t.edgeplane("run"));
    // The first pass is parsing once all texts are read (about 120 MB) and trees
    // are being built: an idle daemon is far smaller.
    let start = Instant::now();
    while rss_kib(d.child.id()) < 160 * 1024 {
        assert!(start.elapsed() < Duration::from_secs(120), "the daemon never started loading");
        if let Ok(Some(status)) = d.child.try_wait() {
            panic!("edgeplane run exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: a signal to our own child, by pid.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    let signalled = Instant::now();
    // Generous: without cancellation the pass runs to its end (tens of seconds in a debug build).
    let mut status = None;
    while status.is_none() && signalled.elapsed() < Duration::from_secs(10) {
        status = d.child.try_wait().expect("wait");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = status.unwrap_or_else(|| panic!("still running 10 s after SIGTERM"));
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    assert!(status.success(), "{status}");
    d.wait_for("cancelled");
    assert!(!d.log.iter().any(|l| l.contains("applied")), "the cancelled load applied nothing:\n{}", d.log.join("\n"));
}

/// A socket-LB cgroup that does not exist yet (kubepods.slice before the
/// kubelet starts) does not stop `run`: pods' traffic is translated at once,
/// and the hooks are attached when the cgroup appears (here: at the next
/// interface change), after which a process in it reaches the ClusterIP.
#[test]
fn a_cgroup_that_appears_later_gets_the_socket_hooks() {
    need_root!();
    let t = Topo::new(1, true);
    t.write_dir(&[service_yaml("web", VIP, &[ready(backend_ip(0))], None)]);
    let later = Cgroup { path: t.cgroup.path.join("later") };
    let mut d = Daemon::spawn(t.edgeplane_with_cgroup("run", &later.path));
    d.wait_for("does not exist (yet)");
    d.wait_for("running:");
    assert_eq!(t.ask("tcp", vip(80)).expect("pods are served meanwhile").server, "be0");

    std::fs::create_dir(&later.path).expect("mkdir the cgroup");
    // Any interface change syncs: a new pod veth.
    let pod = NetNs::new("p");
    t.node.veth(&format!("cl{}q", unique()), &pod, "eth0");
    d.wait_for("socket hooks attached");
    let a =
        ask_from_cgroup(&t.node, &later, "harness_client_entry", "tcp", vip(80)).expect("a process in the new cgroup");
    assert_eq!(a.server, "be0");
    assert_eq!(a.client_peer, vip(80).into(), "getpeername shows the ClusterIP");
    drop(d);
    // Hooks detached before the cgroup is removed (Drop order: later, then t).
    sh(&mut t.edgeplane_with_cgroup("reset", &later.path));
}

harness_client_entry!();
