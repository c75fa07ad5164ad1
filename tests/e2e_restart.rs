//! Restart under load (root only): a connect loop runs against a ClusterIP
//! while `edgeplane run` is stopped and started 50 times, with SIGTERM and
//! SIGKILL mixed (some kills land during start-up, while programs are being
//! loaded and replaced). Forwarding must never stop: zero failed connections.
//! (SIGKILL during a large apply and late interfaces: e2e_daemon.rs.)

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
    assert!(
        failures.is_empty(),
        "{} of {} connections failed across restarts: {:?}",
        failures.len(),
        ok as usize + failures.len(),
        failures
    );
    drop(d);
    // After all that, the live maps are exactly the desired state.
    let plan = sh(&mut t.edgeplane("plan"));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("plan: 0 step"), "maps drifted from the directory: {text}");
}
