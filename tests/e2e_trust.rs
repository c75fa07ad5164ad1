//! The state directory under a hostile or careless neighbour (root only): a
//! directory pre-created by an unprivileged user, a symlinked state directory
//! (reset must not follow it into another instance's pins), concurrent
//! applies and a second daemon on one state directory, and an attach failure
//! (the command fails, the interface's old link keeps forwarding).

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::topo::*;
use common::*;

const VIP2: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 20);
const NOBODY: u32 = 65534;

fn web() -> String {
    service_yaml("web", VIP, &[ready(backend_ip(0)), ready(backend_ip(1))], None)
}

fn web2() -> String {
    service_yaml("web2", VIP2, &[ready(backend_ip(1))], None)
}

/// `t.edgeplane(sub)` with another --state-dir.
fn with_state_dir(t: &Topo, sub: &str, state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgeplane"));
    c.arg(sub)
        .arg("--config-dir")
        .arg(&t.cfg.path)
        .arg("--config")
        .arg(t.settings.path.join("edgeplane.yaml"))
        .args(["--netns", &t.node.name])
        .arg("--state-dir")
        .arg(state)
        .args(["--workload-interfaces", "cl*", "--host-interfaces", "up*"])
        .arg("--cgroup")
        .arg(&t.cgroup.path);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The interfaces the topology's edgeplane must be attached to.
fn wanted(t: &Topo) -> BTreeSet<String> {
    [format!("cl{}c", t.tag), format!("up{}", t.tag), format!("cl{}b1", t.tag)].into_iter().collect()
}

/// Interfaces with a pinned TCX link that still reaches its device.
fn attached(t: &Topo) -> BTreeSet<String> {
    let s = t.status();
    s["links"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| l["kind"] == "tcx" && l["attached"] == true)
                .filter_map(|l| l["target"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_forwarding(t: &Topo, vip: Ipv4Addr) {
    let a = t.ask("tcp", SocketAddrV4::new(vip, 80)).unwrap_or_else(|e| panic!("{vip}:80 does not answer: {e}"));
    assert!(a.server.starts_with("be"), "{a:?}");
}

/// Removes a path (a symlink or an empty directory) on drop.
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let r = match std::fs::symlink_metadata(&self.0) {
            Ok(md) if md.is_dir() => std::fs::remove_dir(&self.0),
            Ok(_) => std::fs::remove_file(&self.0),
            Err(_) => Ok(()),
        };
        if let Err(e) = r {
            eprintln!("cleanup: removing {}: {e}", self.0.display());
        }
    }
}

#[test]
fn state_dir_pre_created_by_another_user_is_refused() {
    need_root!();
    let t = Topo::new(2, true);
    t.write_dir(&[web()]);
    // An unprivileged user gets there first (bpffs mounted 1777, as the kernel
    // does by default). Where bpffs is 0700, nobody cannot: create it as root
    // and give it away, which is the same on-disk state.
    let path = t.state.path.to_str().expect("utf-8 path");
    let by_nobody = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "mkdir", "-m", "0777", path])
        .output()
        .expect("setpriv");
    if !by_nobody.status.success() {
        eprintln!("nobody cannot create it ({}): simulating with chown", stderr(&by_nobody).trim());
        std::fs::create_dir(&t.state.path).expect("mkdir");
        std::os::unix::fs::chown(&t.state.path, Some(NOBODY), Some(NOBODY)).expect("chown");
    }
    let guard = Remove(t.state.path.clone());

    for sub in ["apply", "run", "reset"] {
        let out = t.edgeplane(sub).output().expect("edgeplane");
        assert!(!out.status.success(), "{sub} accepted a state dir owned by nobody");
        let err = stderr(&out);
        assert!(err.contains("belongs to uid 65534") && err.contains("rm -r"), "{sub}: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(&t.state.path).expect("readdir").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "nothing pinned into it: {left:?}");
    assert!(t.ask("tcp", vip(80)).is_err(), "nothing attached, the VIP does not answer");

    // Our own directory, made 0755 by an older edgeplane: tightened to 0700 and used.
    drop(guard);
    std::fs::create_dir(&t.state.path).expect("mkdir");
    std::fs::set_permissions(&t.state.path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    sh(&mut t.edgeplane("apply"));
    let mode = std::fs::metadata(&t.state.path).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    assert_forwarding(&t, VIP);
}

#[test]
fn symlinked_state_dir_is_refused_and_reset_does_not_follow_it() {
    need_root!();
    let t = Topo::new(2, true);
    t.apply(&[web()]);
    assert_forwarding(&t, VIP);
    let pins_before = std::fs::read_dir(&t.state.path).expect("readdir").count();

    // A state dir that is a symlink to this instance's, and one reached through a symlinked parent.
    let link = PathBuf::from(format!("/sys/fs/bpf/ep-test-link-{}", unique()));
    std::os::unix::fs::symlink(&t.state.path, &link).expect("symlink");
    let _link = Remove(link.clone());
    let parent = PathBuf::from(format!("/sys/fs/bpf/ep-test-plink-{}", unique()));
    std::os::unix::fs::symlink("/sys/fs/bpf", &parent).expect("symlink");
    let _parent = Remove(parent.clone());
    let via_parent = parent.join(t.state.path.file_name().expect("name"));

    for state in [&link, &via_parent] {
        for sub in ["reset", "apply"] {
            let out = with_state_dir(&t, sub, state).output().expect("edgeplane");
            assert!(!out.status.success(), "{sub} --state-dir {} accepted a symlink", state.display());
            let err = stderr(&out);
            assert!(err.contains("is a symlink"), "{sub} --state-dir {}: {err}", state.display());
        }
    }
    assert_eq!(std::fs::read_dir(&t.state.path).expect("readdir").count(), pins_before, "no pin removed");
    assert_eq!(attached(&t), wanted(&t), "every link still attached");
    assert_forwarding(&t, VIP);
}

#[test]
fn concurrent_applies_wait_for_each_other_and_keep_every_link() {
    need_root!();
    let t = Topo::new(2, true);
    t.apply(&[web()]);
    assert_eq!(attached(&t), wanted(&t));

    // Hold the state directory's lock as another instance would: both applies
    // must wait, naming the holder, and both go ahead (one after the other)
    // once it is released.
    let dir = std::fs::File::open(&t.state.path).expect("open state dir");
    // SAFETY: flock on an open fd.
    assert_eq!(unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) }, 0);
    t.write_dir(&[web(), web2()]);
    let holder = format!("is in use by pid {}", std::process::id());
    let mut a = Daemon::spawn(t.edgeplane("apply"));
    let mut b = Daemon::spawn(t.edgeplane("apply"));
    a.wait_for(&holder);
    b.wait_for(&holder);
    drop(dir);
    for d in [&mut a, &mut b] {
        let status = d.child.wait().expect("wait");
        assert!(status.success(), "apply failed after waiting ({status}):\n{}", d.log.join("\n"));
    }
    assert_eq!(attached(&t), wanted(&t), "every interface keeps its link");
    assert_forwarding(&t, VIP);
    assert_forwarding(&t, VIP2);

    // Unsynchronised: three applies at once, of alternating directories.
    for round in 0..4 {
        let docs = if round % 2 == 0 { vec![web()] } else { vec![web(), web2()] };
        t.write_dir(&docs);
        let children: Vec<_> = (0..3)
            .map(|_| {
                t.edgeplane("apply").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn()
            })
            .map(|c| c.expect("spawn apply"))
            .collect();
        for c in children {
            let out = c.wait_with_output().expect("wait");
            assert!(out.status.success(), "round {round}: apply failed: {}", stderr(&out));
        }
        assert_eq!(attached(&t), wanted(&t), "round {round}: every interface keeps its link");
        assert_forwarding(&t, VIP);
        if round % 2 == 1 {
            assert_forwarding(&t, VIP2);
        }
    }
}

#[test]
fn a_second_run_is_refused_and_apply_waits_for_the_daemon() {
    need_root!();
    let t = Topo::new(2, true);
    t.write_dir(&[web()]);
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    let holder = format!("is in use by pid {}", d.child.id());

    // Read the second run's log until it either fails or says it runs (it
    // must not: killed on drop), so a regression cannot hang the test.
    let mut second = Daemon::spawn(t.edgeplane("run"));
    second.wait_for_any(&[holder.as_str(), "running:"]);
    let last = second.log.last().cloned().unwrap_or_default();
    assert!(last.contains(&holder), "a second run on the same state dir started:\n{}", second.log.join("\n"));
    let status = second.child.wait().expect("wait");
    assert!(!status.success(), "the second run exits with a failure: {status}");

    // apply waits while the daemon runs, then applies once it has stopped.
    t.write_dir(&[web(), web2()]);
    let mut a = Daemon::spawn(t.edgeplane("apply"));
    a.wait_for(&holder);
    d.signal(libc::SIGTERM);
    let status = a.child.wait().expect("wait");
    assert!(status.success(), "apply after the daemon stopped ({status}):\n{}", a.log.join("\n"));
    assert_eq!(attached(&t), wanted(&t));
    assert_forwarding(&t, VIP);
    assert_forwarding(&t, VIP2);
}

#[test]
fn attach_failure_fails_apply_and_keeps_the_old_link_forwarding() {
    need_root!();
    let t = Topo::new(2, true);
    t.apply(&[web()]);
    assert_forwarding(&t, VIP);

    // The client-facing interface's link pin is no longer ours: edgeplane
    // refuses to use it, so attaching there fails.
    let client_if = format!("cl{}c", t.tag);
    let pin = t.state.path.join("links").join(format!("tcx_{client_if}"));
    std::os::unix::fs::chown(&pin, Some(NOBODY), Some(NOBODY)).expect("chown pin");
    t.write_dir(&[web(), web2()]);
    let out = t.edgeplane("apply").output().expect("apply");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "apply must fail: {err}");
    assert!(err.contains(&client_if) && err.contains("belongs to uid 65534"), "{err}");

    // The old link stays pinned and attached, and forwards; the maps were
    // applied for it and the other interfaces.
    assert!(pin.exists(), "the failed interface's link was unpinned");
    assert_eq!(attached(&t), wanted(&t));
    assert_forwarding(&t, VIP);
    assert_forwarding(&t, VIP2);

    std::os::unix::fs::chown(&pin, Some(0), Some(0)).expect("chown back");
    sh(&mut t.edgeplane("apply"));
}
