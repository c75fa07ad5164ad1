//! Shipping: completions and man page from the CLI definition, the start-up line.

mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use edgeplane::config::Settings;
use edgeplane::daemon::running_line;
use edgeplane::datapath::TcMode;

fn edgeplane(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_edgeplane")).args(args).output().expect("run edgeplane");
    assert!(out.status.success(), "edgeplane {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn completions_cover_every_subcommand_and_global_option() {
    for (shell, marker) in
        [("bash", "complete -F _edgeplane"), ("zsh", "#compdef edgeplane"), ("fish", "complete -c edgeplane")]
    {
        let text = edgeplane(&["completions", shell]);
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        for word in [
            "check",
            "plan",
            "apply",
            "run",
            "status",
            "drops",
            "reset",
            "services",
            "conntrack",
            "config-dir",
            "state-dir",
            "host-interfaces",
        ] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
    }
}

#[test]
fn man_page_is_roff_with_the_options_and_generators_stay_out_of_help() {
    let man = edgeplane(&["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH edgeplane 1"), "{man}");
    assert!(man.contains(".TH edgeplane 1") && man.contains(".SH NAME"), "{man}");
    for opt in [r"\-\-config\-dir", r"\-\-state\-dir", r"\-\-metrics\-address"] {
        assert!(man.contains(opt), "man page lacks {opt}");
    }
    let help = edgeplane(&["--help"]);
    assert!(help.contains("conntrack") && !help.contains("completions") && !help.contains("\n  man "), "{help}");
}

#[test]
fn running_line_names_version_interfaces_and_cgroup() {
    let mut s = Settings {
        config_dir: PathBuf::from("/etc/edgeplane/config.d"),
        state_dir: PathBuf::from("/sys/fs/bpf/edgeplane"),
        ..Settings::default()
    };
    let none = running_line(&s, &[]);
    assert!(none.starts_with("running: "), "{none}");
    assert!(none.contains(&format!("edgeplane {}", env!("CARGO_PKG_VERSION"))), "{none}");
    assert!(none.contains("interfaces: none") && none.contains("cgroup: none"), "{none}");
    assert!(none.contains("watching /etc/edgeplane/config.d") && none.contains("/sys/fs/bpf/edgeplane"), "{none}");

    s.cgroup = Some(PathBuf::from("/sys/fs/cgroup/kubepods"));
    let attached = [("eth1".to_string(), TcMode::Tcx), ("veth9".to_string(), TcMode::Clsact)];
    let line = running_line(&s, &attached);
    assert!(line.contains("interfaces: eth1 (tcx), veth9 (clsact)"), "{line}");
    assert!(line.contains("cgroup: /sys/fs/cgroup/kubepods"), "{line}");
}

#[test]
fn run_logs_version_attached_interfaces_and_cgroup_at_start() {
    need_root!();
    let t = common::topo::Topo::new(1, true);
    let vip = Ipv4Addr::new(198, 19, 0, 10);
    t.write_dir(&[common::topo::service_yaml("web", vip, &[common::topo::ready(common::topo::backend_ip(0))], None)]);
    let mut d = common::Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    let line = d.log.iter().find(|l| l.contains("running:")).cloned().expect("the running: line");
    d.signal(libc::SIGTERM);
    let release = edgeplane::kernel::running_release().expect("uname");
    let kernel = edgeplane::kernel::parse_release(&release).expect("release");
    let mode = if kernel >= edgeplane::kernel::TCX { "tcx" } else { "clsact" };
    assert!(line.contains(&format!("edgeplane {}", env!("CARGO_PKG_VERSION"))), "{line}");
    for iface in [format!("cl{}c", t.tag), format!("up{}", t.tag)] {
        assert!(line.contains(&format!("{iface} ({mode})")), "{iface} ({mode}) not in: {line}");
    }
    assert!(line.contains(&format!("cgroup: {}", t.cgroup.path.display())), "{line}");
    assert!(d.log.iter().any(|l| l.contains(&format!("kernel {release}"))), "no kernel line:\n{}", d.log.join("\n"));
}
