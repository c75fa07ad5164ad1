//! `edgeplane run` as systemd sees it (root only), on the shared harness
//! (tests/common): READY=1, STATUS= and WATCHDOG=1 through a real
//! $NOTIFY_SOCKET; a config directory that appears only after start; SIGHUP
//! re-reading the settings file.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::topo::*;
use common::*;

/// Writes the directory (a Namespace plus `docs`), write-then-rename.
fn write_dir(dir: &Path, docs: &[String]) {
    let mut text = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: e2e\n");
    for d in docs {
        text.push_str("---\n");
        text.push_str(d);
    }
    let tmp = dir.join(".services.yaml.tmp");
    std::fs::write(&tmp, text).expect("write yaml");
    std::fs::rename(&tmp, dir.join("services.yaml")).expect("rename yaml");
}

/// The systemd side of sd_notify: a datagram socket the daemon is pointed at.
struct NotifySocket {
    sock: UnixDatagram,
    _dir: TempDir,
    path: std::path::PathBuf,
    /// Every message received so far, in order.
    seen: Vec<String>,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = TempDir::new("notify");
        let path = dir.path.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        // Only a bound on a hung test, never a pass/fail threshold.
        sock.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        NotifySocket { sock, _dir: dir, path, seen: Vec::new() }
    }

    /// `run` as systemd starts it: NOTIFY_SOCKET, and the watchdog for exactly
    /// this process (WATCHDOG_PID is the daemon's own pid: sh execs it).
    fn command(&self, run: Command, watchdog_usec: Option<u64>) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg("[ -n \"$EP_WD\" ] && export WATCHDOG_USEC=$EP_WD WATCHDOG_PID=$$; exec \"$@\"").arg("sh");
        c.arg(run.get_program()).args(run.get_args());
        for (k, v) in run.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c.env("NOTIFY_SOCKET", &self.path);
        if let Some(us) = watchdog_usec {
            c.env("EP_WD", us.to_string());
        }
        c
    }

    fn next(&mut self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).unwrap_or_else(|e| panic!("no notification ({e}); so far: {:?}", self.seen));
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.seen.push(msg.clone());
        msg
    }

    /// Receives until a message has a line equal to `line` (or starting with
    /// it, for `STATUS=...` prefixes); returns that message.
    fn wait_for(&mut self, line: &str) -> String {
        loop {
            let msg = self.next();
            if msg.lines().any(|l| l.starts_with(line)) {
                return msg;
            }
        }
    }
}

fn status_of(msg: &str) -> &str {
    msg.lines().find_map(|l| l.strip_prefix("STATUS=")).unwrap_or_default()
}

#[test]
fn ready_after_the_first_apply_status_lines_and_watchdog_through_a_real_notify_socket() {
    need_root!();
    let t = Topo::new(1, true);
    write_dir(&t.cfg.path, &[service_yaml("web", VIP, &[ready(backend_ip(0))], None)]);
    let mut ns = NotifySocket::new();
    // 400 ms: WATCHDOG=1 every 200 ms.
    let mut d = Daemon::spawn(ns.command(t.edgeplane("run"), Some(400_000)));

    let first = ns.wait_for("READY=1");
    // The first message systemd gets is READY=1, and only after the apply: the
    // service answers at once, before anything else happened.
    assert_eq!(ns.seen.len(), 1, "messages before READY=1: {:?}", ns.seen);
    assert_eq!(status_of(&first), "applied: 2 services, 2 backends", "{first:?}");
    assert_eq!(t.ask("tcp", vip(80)).expect("the service answers once READY=1 is sent").server, "be0");

    // The event loop kicks the watchdog again and again while idle.
    for _ in 0..3 {
        assert_eq!(ns.wait_for("WATCHDOG=1"), "WATCHDOG=1");
    }

    // An invalid input: STATUS says the last good state keeps forwarding.
    let broken = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n  namespace: e2e\nspec:\n  clusterIP: 198.19.0.99\n  ports:\n  - port: 99999\n";
    std::fs::write(t.cfg.path.join("broken.yaml"), broken).expect("write");
    let msg = ns.wait_for("STATUS=input invalid");
    assert!(status_of(&msg).contains("last good state keeps forwarding"), "{msg:?}");
    assert_eq!(t.ask("tcp", vip(80)).expect("still forwarding").server, "be0");
    std::fs::remove_file(t.cfg.path.join("broken.yaml")).expect("rm");
    write_dir(
        &t.cfg.path,
        &[
            service_yaml("web", VIP, &[ready(backend_ip(0))], None),
            service_yaml("two", VIP_EMPTY, &[ready(backend_ip(0))], None),
        ],
    );
    let msg = ns.wait_for("STATUS=applied: 4 services");
    assert_eq!(status_of(&msg), "applied: 4 services, 4 backends", "{msg:?}");

    // systemctl reload: RELOADING=1 (with the monotonic time), then READY=1 again.
    // SAFETY: a signal to our own child, by pid.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    let reloading = ns.wait_for("RELOADING=1");
    assert!(reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{reloading:?}");
    let again = ns.wait_for("READY=1");
    assert!(status_of(&again).starts_with("applied: 4 services"), "{again:?}");
    // Still kicked after the reload.
    ns.wait_for("WATCHDOG=1");

    d.signal(libc::SIGTERM);
    ns.wait_for("STOPPING=1");
}

#[test]
fn a_config_directory_that_appears_after_start_is_waited_for_then_applied() {
    need_root!();
    let t = Topo::new(1, true);
    // git-sync has not cloned yet: the directory does not exist.
    std::fs::remove_dir_all(&t.cfg.path).expect("remove the config dir");
    let mut ns = NotifySocket::new();
    let mut d = Daemon::spawn(ns.command(t.edgeplane("run"), None));
    d.wait_for("to appear; the pinned state keeps forwarding");
    // Ready: the data plane is attached (with nothing to forward yet), and
    // systemd's start timeout must not kill it while the directory is missing.
    let first = ns.wait_for("READY=1");
    assert!(status_of(&first).starts_with("waiting for "), "{first:?}");
    assert!(d.child.try_wait().expect("try_wait").is_none(), "run exited without a config directory");

    // The directory appears (made elsewhere and renamed in, as a clone would be).
    let staging = t.cfg.path.with_extension("staging");
    std::fs::create_dir(&staging).expect("mkdir");
    write_dir(&staging, &[service_yaml("web", VIP, &[ready_ep()], None)]);
    std::fs::rename(&staging, &t.cfg.path).expect("rename the directory in");
    d.wait_for("appeared: reading it");
    d.wait_for("applied: 2 services");
    let msg = ns.wait_for("STATUS=applied: 2 services");
    assert_eq!(status_of(&msg), "applied: 2 services, 2 backends");
    assert_eq!(t.ask("tcp", vip(80)).expect("traffic flows once the directory appeared").server, "be0");

    // And it is watched from then on.
    write_dir(
        &t.cfg.path,
        &[service_yaml("web", VIP, &[ready_ep()], None), service_yaml("two", VIP_EMPTY, &[ready_ep()], None)],
    );
    d.wait_for("applied: 4 services");
    assert_eq!(t.ask("tcp", std::net::SocketAddrV4::new(VIP_EMPTY, 80)).expect("second service").server, "be0");
}

fn ready_ep() -> Ep {
    ready(backend_ip(0))
}

#[test]
fn sighup_rereads_the_settings_file_applies_what_it_can_and_reports_the_rest() {
    need_root!();
    let t = Topo::new(1, true);
    write_dir(&t.cfg.path, &[service_yaml("web", VIP, &[ready(backend_ip(0))], None)]);
    let settings_file = t.settings.path.join("edgeplane.yaml");
    let base = std::fs::read_to_string(&settings_file).expect("read settings");
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    let hup = |d: &Daemon| {
        // SAFETY: a signal to our own child, by pid.
        unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    };

    // Emptying the directory is held by the mass-deletion guard.
    write_dir(&t.cfg.path, &[]);
    d.wait_for("not applied, the last applied state keeps forwarding");
    assert_eq!(t.ask("tcp", vip(80)).expect("held: still forwarding").server, "be0");

    // An invalid settings file: reported, the running settings stay.
    std::fs::write(&settings_file, format!("{base}allow-mass-delete: maybe\n")).expect("write");
    hup(&d);
    d.wait_for("SIGHUP: settings not re-read, the running settings stay in effect");
    d.wait_for("not applied, the last applied state keeps forwarding");
    assert_eq!(t.ask("tcp", vip(80)).expect("still held").server, "be0");

    // allow-mass-delete: true, bigger maps and a state-dir. The first takes
    // effect at once (the held removal is applied); map sizes need a restart
    // and are said so; state-dir is given on the command line, which keeps
    // overriding the file after a reload: nothing to report for it.
    assert!(base.contains("services: 4096"), "{base}");
    let text = base.replace("services: 4096", "services: 8192");
    std::fs::write(&settings_file, format!("{text}allow-mass-delete: true\nstate-dir: /sys/fs/bpf/elsewhere\n"))
        .expect("write");
    hup(&d);
    d.wait_for("maps changed, which needs a restart");
    d.wait_for("now in effect: allow-mass-delete");
    d.wait_for("applied: 0 services");
    assert!(!d.log.iter().any(|l| l.contains("state-dir")), "{}", d.log.join("\n"));
    assert!(t.ask("tcp", vip(80)).is_err(), "the service is still there after allow-mass-delete");
    // The running state dir (the command line's) is still the one in use.
    assert!(t.status()["maps"].as_array().is_some_and(|m| !m.is_empty()));
    d.signal(libc::SIGTERM);
}
