//! The two answers every command must give the same way: "nothing pinned"
//! (missing or empty state dir) and "not permitted" (run without root), the
//! latter as one line with the hint and no libbpf noise.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

mod common;

const HINT: &str = "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run as root or via the edgeplane.service unit";
const NOBODY: u32 = 65534;

fn edgeplane(args: &[&str], as_nobody: bool) -> Output {
    let mut cmd =
        Command::new(if as_nobody { nobody_binary() } else { PathBuf::from(env!("CARGO_BIN_EXE_edgeplane")) });
    cmd.args(args).args(["--config", "/dev/null"]).env_remove("RUST_LOG");
    if as_nobody {
        // With a uid set, std also clears the supplementary groups (as root).
        cmd.uid(NOBODY).gid(NOBODY).current_dir("/");
    }
    cmd.output().expect("run edgeplane")
}

/// A copy of the binary that nobody can execute: the build's own may sit under
/// a directory only root can enter (a checkout in /root, as the Quick start has it).
fn nobody_binary() -> PathBuf {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmpdir("bin");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod bin dir");
        let bin = dir.join("edgeplane");
        std::fs::copy(env!("CARGO_BIN_EXE_edgeplane"), &bin).expect("copy the binary");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod binary");
        bin
    })
    .clone()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples-config")
}

/// A fresh directory of this test's own (unique per process and name).
fn tmpdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ep-errs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn read_only_commands_agree_on_nothing_pinned() {
    let base = tmpdir("nothing-pinned");
    let missing = base.join("missing");
    let empty = base.join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    // A state dir holding something that is not ours is empty too.
    let foreign = base.join("foreign");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::write(foreign.join("README"), "not a pin").expect("write");
    for dir in [&missing, &empty, &foreign] {
        let d = dir.to_str().expect("utf-8");
        let want = format!(
            "error: no data plane state under {d} (nothing pinned: run `edgeplane apply` or start the service)\n"
        );
        for cmd in ["status", "drops", "services", "conntrack"] {
            for json in [false, true] {
                let mut args = vec![cmd, "--state-dir", d];
                if json {
                    args.extend(["-o", "json"]);
                }
                let out = edgeplane(&args, false);
                assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
                assert_eq!(text(&out.stderr), want, "{args:?}");
                assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
            }
        }
        // plan plans against empty maps and says why, with the same words.
        let cfg = examples();
        let out = edgeplane(&["plan", "--state-dir", d, "--config-dir", cfg.to_str().expect("utf-8")], false);
        assert_eq!(out.status.code(), Some(0), "plan: {out:?}");
        let err = text(&out.stderr);
        assert!(err.contains(want.trim_start_matches("error: ").trim_end()), "plan: {err}");
        assert!(err.contains("planning against empty maps"), "plan: {err}");
        assert!(text(&out.stdout).contains("plan: "), "plan: {}", text(&out.stdout));
    }
    assert!(!missing.exists(), "no command created the missing state dir");
    let _ = std::fs::remove_dir_all(&base);
}

fn assert_one_hint_line(what: &str, out: &Output) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
    assert!(!err.lines().any(|l| l.starts_with("libbpf:")), "{what}: libbpf noise: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line expected: {err}");
    assert!(lines[0].ends_with(HINT), "{what}: {err}");
    assert!(out.stdout.is_empty(), "{what}: {}", text(&out.stdout));
}

#[test]
fn without_root_one_line_with_the_hint_and_no_libbpf_noise() {
    if !common::is_root() {
        eprintln!("skipped: needs root (to drop to an unprivileged user)");
        return;
    }
    let base = tmpdir("unprivileged");
    let cfg = examples();
    let cfg = cfg.to_str().expect("utf-8");

    // Commands that change the data plane refuse before touching anything.
    let never = base.join("never-created");
    let never_s = never.to_str().expect("utf-8");
    for cmd in ["apply", "reset"] {
        let out = edgeplane(&[cmd, "--state-dir", never_s, "--config-dir", cfg], true);
        assert_one_hint_line(cmd, &out);
        assert!(text(&out.stderr).contains(&format!("{cmd}: not permitted")), "{cmd}: {out:?}");
        assert!(!never.exists(), "{cmd} created {never_s}");
    }

    // Reading a root-only state dir (what /sys/fs/bpf/edgeplane is) is
    // EACCES, reported with the hint, not as "nothing pinned".
    let state = base.join("state");
    std::fs::create_dir(&state).expect("mkdir");
    std::fs::write(state.join("ep_svc_v1"), "").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let state_s = state.to_str().expect("utf-8");
    for cmd in ["status", "drops", "services", "conntrack"] {
        let out = edgeplane(&[cmd, "--state-dir", state_s], true);
        assert_one_hint_line(cmd, &out);
        let err = text(&out.stderr);
        assert!(err.contains("Permission denied") && !err.contains("nothing pinned"), "{cmd}: {err}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Everything libbpf says reaches our log (debug level, target "libbpf"),
/// nothing its own stderr printer.
#[test]
fn libbpf_messages_go_to_the_log_at_debug_level() {
    static SEEN: Mutex<Vec<(log::Level, String, String)>> = Mutex::new(Vec::new());
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, r: &log::Record) {
            SEEN.lock().expect("lock").push((r.level(), r.target().to_string(), r.args().to_string()));
        }
        fn flush(&self) {}
    }
    log::set_boxed_logger(Box::new(Capture)).expect("only this test installs a logger");
    log::set_max_level(log::LevelFilter::Trace);
    edgeplane::datapath::route_libbpf_output();
    // Not an ELF object: libbpf warns (at its WARN level) and fails.
    let err = libbpf_rs::ObjectBuilder::default().open_memory(b"not an ELF object at all").err();
    assert!(err.is_some(), "garbage must not open");
    let seen = SEEN.lock().expect("lock");
    let from_libbpf: Vec<_> = seen.iter().filter(|(_, t, _)| t == "libbpf").collect();
    assert!(!from_libbpf.is_empty(), "libbpf's warning reached the log: {seen:?}");
    assert!(from_libbpf.iter().all(|(l, _, _)| *l >= log::Level::Debug), "at debug level or below: {from_libbpf:?}");
    assert!(from_libbpf.iter().any(|(_, _, m)| m.contains("libbpf: ")), "libbpf's own text kept: {from_libbpf:?}");
}
