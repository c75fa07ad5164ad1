//! Restart under load (root only): a connect loop runs against a ClusterIP
//! while `edgeplane run` is stopped and started 50 times, with SIGTERM and
//! SIGKILL mixed (some kills land during start-up, while programs are being
//! loaded and replaced). Forwarding must never stop: zero failed connections.

mod common;

use common::topo::*;
use common::*;

#[test]
fn daemon_restarts_and_program_replacement_lose_no_connection() {
    need_root!();
    let t = Topo::new(2, true);
    let eps: Vec<Ep> = (0..2).map(|i| ready(backend_ip(i))).collect();
    t.apply(&[service_yaml("web", VIP, &eps, None)]);
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    let load = ConnectLoop::start(&t.client, vip(80));
    for i in 0..50 {
        let sig = if i % 2 == 0 { libc::SIGTERM } else { libc::SIGKILL };
        d.signal(sig);
        d = Daemon::spawn(t.edgeplane("run"));
        if i % 5 == 4 {
            // Killed mid start-up: the next start must still adopt the state.
            d.signal(libc::SIGKILL);
            d = Daemon::spawn(t.edgeplane("run"));
        }
        d.wait_for("running:");
    }
    let (ok, failures) = load.finish();
    eprintln!("restart under load: {ok} connections over 50 restarts, {} failed", failures.len());
    assert!(ok > 0, "the loop made connections");
    assert!(failures.is_empty(), "{} of {} connections failed across restarts: {:?}", failures.len(), ok as usize + failures.len(), failures);
    drop(d);
    // After all that, the live maps are exactly the desired state.
    let plan = sh(&mut t.edgeplane("plan"));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("plan: 0 step"), "maps drifted from the directory: {text}");
}

/// `n` services (ClusterIPs 198.19.x.y:80) with the topology's two backends.
fn many_services(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let vip = std::net::Ipv4Addr::new(198, 19, 100 + (i / 250) as u8, (i % 250) as u8 + 1);
            service_yaml(&format!("s{i}"), vip, &[ready(backend_ip(0)), ready(backend_ip(1))], None)
        })
        .collect()
}

#[test]
fn killed_in_the_middle_of_a_large_apply_converges_after_restart() {
    need_root!();
    let t = Topo::new(2, true);
    // Room for 120,000 service entries (20,000 services x 2 ports x 3 slots).
    std::fs::write(
        t.settings.path.join("edgeplane.yaml"),
        "maps:\n  services: 262144\n  backends: 4096\n  conntrack: 65536\n  affinity: 4096\n  sknat: 4096\n",
    )
    .expect("settings");
    // Write the directory without applying it: the daemon does the large apply.
    let mut text = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: e2e\n");
    for d in many_services(20_000) {
        text.push_str("---\n");
        text.push_str(&d);
    }
    std::fs::write(t.cfg.path.join("services.yaml"), text).expect("write yaml");
    for delay_ms in [150u64, 400, 900] {
        let mut d = Daemon::spawn(t.edgeplane("run"));
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        d.signal(libc::SIGKILL);
    }
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    drop(d);
    let plan = sh(&mut t.edgeplane("plan"));
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(out.contains("plan: 0 step"), "maps differ from the desired state after restart: {}", out.lines().last().unwrap_or_default());
    let a = t.ask("tcp", std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(198, 19, 100, 1), 80)).expect("a service forwards");
    assert!(a.server.starts_with("be"));
}
