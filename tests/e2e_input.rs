//! Torn input never reaches the data plane (root only): a writer that writes
//! the directory in pieces while connections run, a file truncated and left
//! empty, and `apply` of an empty directory. The settle window and the
//! mass-deletion guard (src/guard.rs) are what these exercise.

mod common;

use std::io::Write;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::topo::*;
use common::*;

const SERVICES: u32 = 4;

/// A Namespace and four services on VIP .. VIP+3, each with both backends.
fn full_text() -> String {
    let mut text = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: e2e\n");
    for i in 0..SERVICES {
        let ip = Ipv4Addr::from(u32::from(VIP) + i);
        text.push_str("---\n");
        text.push_str(&service_yaml(&format!("web{i}"), ip, &[ready(backend_ip(0)), ready(backend_ip(1))], None));
    }
    text
}

/// Lines where the daemon applied something, and what it applied.
fn applied_lines(log: &[String]) -> Vec<&String> {
    log.iter().filter(|l| l.contains("applied") && l.contains(" services, ")).collect()
}

#[test]
fn files_written_in_pieces_are_never_applied_half_written() {
    need_root!();
    let t = Topo::new(2, true);
    let path = t.cfg.path.join("services.yaml");
    let full = full_text();
    std::fs::write(&path, &full).expect("write");
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    let load = ConnectLoop::start(&t.client, vip(80));

    for round in 0..6 {
        // In place, in two pieces 0.5 s apart (a slow `kubectl get > file`, an
        // editor saving in place): the first piece ends inside the third service.
        let cut = full.len() * (2 + round % 2) / 5;
        let mut f = std::fs::File::create(&path).expect("truncate");
        f.write_all(&full.as_bytes()[..cut]).expect("piece 1");
        f.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(500));
        f.write_all(&full.as_bytes()[cut..]).expect("piece 2");
        drop(f);
        // Truncate, then write it all 0.5 s later.
        std::thread::sleep(Duration::from_millis(300));
        std::fs::File::create(&path).expect("truncate");
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(&path, &full).expect("rewrite");
        std::thread::sleep(Duration::from_millis(300));
    }
    d.wait_for_quiet(Duration::from_secs(3));
    let (ok, failures) = load.finish();
    assert!(ok > 0, "the load loop ran");
    assert!(failures.is_empty(), "connections failed while the file was rewritten: {failures:?}");
    // Two ports per service (each a frontend), two backends per port.
    let expected = format!("{} services, {} backends", SERVICES * 2, SERVICES * 2 * 2);
    for line in applied_lines(&d.log) {
        assert!(line.contains(&expected), "a partial state was applied: {line}\n{}", d.log.join("\n"));
    }
    assert!(
        d.log.iter().any(|l| l.contains("input changed within the settle window")),
        "the settle window saw the pieces:\n{}",
        d.log.join("\n")
    );
    assert_eq!(t.status()["input_held"], false);
}

#[test]
fn an_input_truncated_to_nothing_is_held_and_reported() {
    need_root!();
    let t = Topo::new(2, false);
    let path = t.cfg.path.join("services.yaml");
    std::fs::write(&path, full_text()).expect("write");
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    let load = ConnectLoop::start(&t.client, vip(80));

    // The writer dies after truncating: the file stays empty.
    std::fs::File::create(&path).expect("truncate");
    d.wait_for("the input holds no Service");
    assert!(d.log.last().is_some_and(|l| l.contains("edgeplane reset") && l.contains("allow-mass-delete")));
    assert_eq!(t.status()["input_held"], true, "status reports the held input");
    let text = String::from_utf8_lossy(&sh(&mut t.edgeplane("status")).stdout).to_string();
    assert!(text.contains("input: HELD"), "{text}");
    // Most objects gone (three of four services with their slices) is held too.
    let half: String = full_text().split("---\n").take(1 + 2).collect::<Vec<_>>().join("---\n");
    std::fs::write(&path, half).expect("write half");
    d.wait_for("fewer than half of the");
    for _ in 0..10 {
        t.ask("tcp", vip(80)).expect("the last applied state keeps forwarding");
    }
    // The input recovers: applied, and the mark is cleared.
    std::fs::write(&path, full_text()).expect("restore");
    d.wait_for("no longer held");
    let (ok, failures) = load.finish();
    assert!(ok > 0 && failures.is_empty(), "{ok} ok, failures: {failures:?}");
    assert_eq!(t.status()["input_held"], false);
}

#[test]
fn apply_of_an_empty_directory_fails_and_says_how_to_clear() {
    need_root!();
    let t = Topo::new(2, true);
    // Nothing live yet: an empty directory is still refused by `apply`.
    let out = t.edgeplane("apply").output().expect("run apply");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    t.apply(&[service_yaml("web", VIP, &[ready(backend_ip(0)), ready(backend_ip(1))], None)]);
    assert!(t.ask("tcp", vip(80)).is_ok());

    std::fs::remove_file(t.cfg.path.join("services.yaml")).expect("rm");
    let out = t.edgeplane("apply").output().expect("run apply");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("edgeplane reset") && stderr.contains("--allow-mass-delete"), "{stderr}");
    assert!(t.ask("tcp", vip(80)).is_ok(), "still forwarding after the refused apply");

    // Meant: the flag clears the services.
    let out = t.edgeplane("apply").arg("--allow-mass-delete").output().expect("run apply");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let svc = t.status()["maps"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "ep_svc_v1").and_then(|m| m["entries"].as_u64()));
    assert_eq!(svc, Some(0), "every service entry removed");
}

#[test]
fn a_file_others_can_write_is_refused_and_the_last_state_keeps_forwarding() {
    need_root!();
    use std::os::unix::fs::PermissionsExt;
    let t = Topo::new(2, true);
    let path = t.cfg.path.join("services.yaml");
    std::fs::write(&path, full_text()).expect("write");
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    // Made world-writable, and changed by "someone else": nothing of it applies.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let one: String = full_text().split("---\n").take(3).collect::<Vec<_>>().join("---\n");
    std::fs::write(&path, one).expect("rewrite");
    d.wait_for("refused: this file is writable by group or others (mode 0666)");
    d.wait_for("nothing applied");
    for i in 0..SERVICES {
        let ip = Ipv4Addr::from(u32::from(VIP) + i);
        t.ask("tcp", std::net::SocketAddrV4::new(ip, 80)).expect("every service still forwards");
    }
    d.wait_for_quiet(Duration::from_secs(2));
    let refused_at = d.log.iter().position(|l| l.contains("refused:")).expect("refusal logged");
    assert!(applied_lines(&d.log[refused_at..]).is_empty(), "applied after the refusal:\n{}", d.log.join("\n"));
}
