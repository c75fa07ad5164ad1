//! Packaging: the .deb and .rpm built by scripts/build-packages.sh carry the
//! static binary, the unit, the example settings file (as a config file) and
//! /etc/edgeplane/config.d; the unit passes `systemd-analyze verify`; the
//! shipped settings file is valid and documents the real defaults; README's
//! quick start and .ci/run agree. Root is not needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgeplane::config::{self, Settings};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command to completion; panics with its output unless it succeeds.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

/// cargo-deb / cargo-generate-rpm: present, or installed now (scripts/test.sh
/// installs them in CI). None when neither works: the caller skips visibly.
fn ensure_cargo_tool(bin: &str) -> Option<()> {
    if have(bin) {
        return Some(());
    }
    eprintln!("{bin} missing: cargo install --locked {bin}");
    let ok = Command::new("cargo").args(["install", "--locked", bin]).status().is_ok_and(|s| s.success());
    (ok && have(bin)).then_some(())
}

/// One architecture's .deb and .rpm.
struct Pkg {
    deb: PathBuf,
    rpm: PathBuf,
}

struct Packages {
    _dir: tempfile::TempDir,
    /// In the order of the architectures asked for.
    arches: Vec<Pkg>,
}

/// Runs scripts/build-packages.sh for `arches` (x86_64, aarch64) into a
/// temporary directory.
fn build_packages(arches: &[&str]) -> Option<Packages> {
    if ensure_cargo_tool("cargo-deb").is_none() || ensure_cargo_tool("cargo-generate-rpm").is_none() {
        eprintln!("skipped: cargo-deb or cargo-generate-rpm is missing and could not be installed");
        return None;
    }
    for tool in ["dpkg-deb", "rpm", "rpm2cpio", "cpio", "file"] {
        assert!(have(tool), "{tool} is missing: apt-get install dpkg-dev rpm cpio file (scripts/test.sh does)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out =
        run(Command::new(repo().join("scripts/build-packages.sh")).arg(dir.path()).args(arches).current_dir(repo()));
    let paths: Vec<PathBuf> = out.lines().map(PathBuf::from).collect();
    assert_eq!(
        paths.len(),
        2 * arches.len(),
        "build-packages.sh should print a .deb and an .rpm per architecture: {out:?}"
    );
    let arches = paths
        .chunks(2)
        .map(|p| {
            assert!(p[0].extension().is_some_and(|e| e == "deb") && p[0].is_file(), "{paths:?}");
            assert!(p[1].extension().is_some_and(|e| e == "rpm") && p[1].is_file(), "{paths:?}");
            Pkg { deb: p[0].clone(), rpm: p[1].clone() }
        })
        .collect();
    Some(Packages { arches, _dir: dir })
}

/// How a packaged binary is run: directly, under qemu-user (another
/// architecture's), or not at all (no emulator: its files are checked only).
enum Exec {
    Native,
    Emulated(PathBuf),
    NotRunnable,
}

impl Exec {
    /// For a binary of `arch` (std::env::consts::ARCH spelling).
    fn for_arch(arch: &str) -> Exec {
        if arch == std::env::consts::ARCH {
            return Exec::Native;
        }
        let qemu = format!("qemu-{arch}-static");
        match Command::new("sh").args(["-c", &format!("command -v {qemu}")]).output() {
            Ok(o) if o.status.success() => Exec::Emulated(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())),
            _ => {
                eprintln!("{qemu} missing (apt-get install qemu-user-static): the {arch} binary is not run");
                Exec::NotRunnable
            }
        }
    }

    fn command(&self, bin: &Path) -> Option<Command> {
        match self {
            Exec::Native => Some(Command::new(bin)),
            Exec::Emulated(qemu) => {
                let mut cmd = Command::new(qemu);
                cmd.arg(bin);
                Some(cmd)
            }
            Exec::NotRunnable => None,
        }
    }
}

/// `bin` is a static binary for `file_arch` (as file(1) names it) that runs
/// (when `exec` can run it) and prints its version.
fn assert_static_and_runs(bin: &Path, file_arch: &str, exec: &Exec) {
    let desc = run(Command::new("file").arg("-b").arg(bin));
    assert!(
        desc.contains("static-pie linked") || desc.contains("statically linked"),
        "{} is not static: {desc}",
        bin.display()
    );
    assert!(desc.contains(file_arch), "{} is not an {file_arch} binary: {desc}", bin.display());
    let Some(mut cmd) = exec.command(bin) else { return };
    let version = run(cmd.arg("--version"));
    assert!(version.starts_with("edgeplane "), "{}: --version printed {version:?}", bin.display());
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn deb_and_rpm_carry_static_binary_unit_config_and_config_dir() {
    let Some(built) = build_packages(&["x86_64"]) else { return };
    let pkgs = &built.arches[0];
    assert_eq!(run(Command::new("dpkg-deb").arg("-f").arg(&pkgs.deb).arg("Architecture")).trim(), "amd64");
    assert_eq!(run(Command::new("rpm").args(["-qp", "--qf", "%{ARCH}"]).arg(&pkgs.rpm)), "x86_64");
    let unit = read(&repo().join("systemd/edgeplane.service"));
    let example = read(&repo().join("packaging/edgeplane.yaml"));

    // ---- .deb ----
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&pkgs.deb));
    let entry = |path: &str| listing.lines().find(|l| l.ends_with(path)).map(str::to_string);
    let bin = entry(" ./usr/bin/edgeplane").unwrap_or_else(|| panic!("no /usr/bin/edgeplane in:\n{listing}"));
    assert!(bin.starts_with("-rwxr-xr-x"), "{bin}");
    for path in
        [" ./usr/lib/systemd/system/edgeplane.service", " ./etc/edgeplane/edgeplane.yaml", " ./etc/edgeplane/config.d/"]
    {
        assert!(entry(path).is_some(), "{path} missing from the .deb:\n{listing}");
    }
    let conffiles = run(Command::new("dpkg-deb").args(["-I"]).arg(&pkgs.deb).arg("conffiles"));
    assert!(conffiles.lines().any(|l| l == "/etc/edgeplane/edgeplane.yaml"), "conffiles: {conffiles}");
    let depends = run(Command::new("dpkg-deb").args(["-f"]).arg(&pkgs.deb).arg("Depends"));
    assert!(!depends.contains("libc6") && !depends.contains("libelf"), "static binary, yet Depends: {depends}");
    // What the unit runs: deb-systemd-helper (scripts) and mount (ExecStartPre).
    let deps: Vec<&str> = depends.trim().split(", ").collect();
    assert_eq!(deps, ["init-system-helpers (>= 1.54~)", "mount"], "Depends: {depends}");

    let x = tempfile::tempdir().expect("tempdir");
    run(Command::new("dpkg-deb").arg("-x").arg(&pkgs.deb).arg(x.path()));
    let deb_bin = x.path().join("usr/bin/edgeplane");
    assert_static_and_runs(&deb_bin, "x86-64", &Exec::Native);
    assert_eq!(read(&x.path().join("usr/lib/systemd/system/edgeplane.service")), unit, "packaged unit differs");
    assert_eq!(read(&x.path().join("etc/edgeplane/edgeplane.yaml")), example, "packaged settings file differs");
    assert_completions_and_man_page(x.path(), DEB_ZSH, &Exec::Native);

    // Maintainer scripts: never enable or start on install; restart a running
    // service on upgrade; reset the data plane on removal.
    let ctl = tempfile::tempdir().expect("tempdir");
    run(Command::new("dpkg-deb").arg("-e").arg(&pkgs.deb).arg(ctl.path()));
    let postinst = String::from_utf8_lossy(&read(&ctl.path().join("postinst"))).into_owned();
    assert!(!postinst.contains("#DEBHELPER#"), "token left unexpanded:\n{postinst}");
    assert!(!postinst.contains("deb-systemd-invoke start"), "postinst starts the service:\n{postinst}");
    assert!(postinst.contains("try-restart edgeplane.service"), "no restart on upgrade:\n{postinst}");
    assert!(postinst.contains("mkdir -p -m 0755 /etc/edgeplane/config.d"), "{postinst}");
    let prerm = String::from_utf8_lossy(&read(&ctl.path().join("prerm"))).into_owned();
    assert!(prerm.contains("deb-systemd-invoke stop edgeplane.service"), "{prerm}");
    assert!(prerm.contains("/usr/bin/edgeplane reset"), "{prerm}");

    // ---- .rpm ----
    let files = run(Command::new("rpm").arg("-qlp").arg(&pkgs.rpm));
    for path in [
        "/usr/bin/edgeplane",
        "/usr/lib/systemd/system/edgeplane.service",
        "/etc/edgeplane/edgeplane.yaml",
        "/etc/edgeplane/config.d/README",
    ] {
        assert!(files.lines().any(|l| l == path), "{path} missing from the .rpm:\n{files}");
    }
    let config_files = run(Command::new("rpm").args(["-qp", "--configfiles"]).arg(&pkgs.rpm));
    assert!(config_files.lines().any(|l| l == "/etc/edgeplane/edgeplane.yaml"), "config files: {config_files}");
    let noreplace =
        run(Command::new("rpm").args(["-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]"]).arg(&pkgs.rpm));
    assert!(
        noreplace
            .lines()
            .filter_map(|l| l.strip_prefix("/etc/edgeplane/edgeplane.yaml "))
            .any(|flags| flags.contains('c') && flags.contains('n')),
        "edgeplane.yaml is not %config(noreplace):\n{noreplace}"
    );
    let requires = run(Command::new("rpm").arg("-qpR").arg(&pkgs.rpm));
    assert!(!requires.contains(".so"), "static binary, yet shared-library requirements:\n{requires}");
    for tool in ["/bin/sh", "/usr/bin/mount", "/usr/bin/mountpoint"] {
        assert!(requires.lines().any(|l| l.trim() == tool), "the unit runs {tool}, not required:\n{requires}");
    }
    let scripts = run(Command::new("rpm").args(["-qp", "--scripts"]).arg(&pkgs.rpm));
    assert!(scripts.contains("/usr/bin/edgeplane reset"), "{scripts}");
    for forbidden in ["systemctl enable", "systemctl start", "systemctl preset"] {
        let runs = scripts.lines().any(|l| l.trim_start().starts_with(forbidden));
        assert!(!runs, "rpm scriptlets must not run {forbidden}:\n{scripts}");
    }
    assert!(scripts.contains("try-restart edgeplane.service"), "no restart on upgrade:\n{scripts}");

    let rx = tempfile::tempdir().expect("tempdir");
    run(Command::new("sh")
        .arg("-c")
        .arg("rpm2cpio \"$1\" | cpio -idm --quiet")
        .arg("sh")
        .arg(&pkgs.rpm)
        .current_dir(rx.path()));
    let rpm_bin = rx.path().join("usr/bin/edgeplane");
    assert_static_and_runs(&rpm_bin, "x86-64", &Exec::Native);
    assert_eq!(read(&rpm_bin), read(&deb_bin), "the .deb and the .rpm ship different binaries");
    assert_eq!(read(&rx.path().join("usr/lib/systemd/system/edgeplane.service")), unit);

    // config.d must not depend on documentation: its README is %config, not
    // %doc, and an install without docs (containers, tsflags=nodocs) has it.
    assert!(
        noreplace.lines().filter_map(|l| l.strip_prefix("/etc/edgeplane/config.d/README ")).any(|f| !f.contains('d')),
        "config.d/README is documentation, absent with --nodocs:\n{noreplace}"
    );
    assert!(scripts.contains("mkdir -p -m 0755 /etc/edgeplane/config.d"), "{scripts}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let root = tempfile::tempdir().expect("tempdir");
        run(Command::new("rpm").arg("--root").arg(root.path()).arg("--initdb"));
        run(Command::new("rpm")
            .args(["-i", "--nodeps", "--nodocs", "--noscripts", "--root"])
            .arg(root.path())
            .arg(&pkgs.rpm));
        assert!(root.path().join("etc/edgeplane/config.d").is_dir(), "no config.d after an rpm --nodocs install");
        assert!(!root.path().join("usr/share/doc/edgeplane").exists(), "--nodocs installed the docs anyway");
    } else {
        eprintln!("rpm --nodocs install: skipped: needs root");
    }
    assert_completions_and_man_page(rx.path(), RPM_ZSH, &Exec::Native);
}

const DEB_ZSH: &str = "usr/share/zsh/vendor-completions/_edgeplane";
const RPM_ZSH: &str = "usr/share/zsh/site-functions/_edgeplane";
/// The generated files, below the package root (the zsh one is DEB_ZSH/RPM_ZSH).
const GENERATED: &[&str] = &[
    "usr/share/bash-completion/completions/edgeplane",
    "usr/share/fish/vendor_completions.d/edgeplane.fish",
    "usr/share/man/man1/edgeplane.1.gz",
];

/// The completions and the man page are in the unpacked package at `root`,
/// non-empty, for the right shell, and equal to what the packaged binary
/// prints (when `exec` can run it).
fn assert_completions_and_man_page(root: &Path, zsh: &str, exec: &Exec) {
    let bin = root.join("usr/bin/edgeplane");
    for (path, shell, marker) in [
        (GENERATED[0], "bash", "complete -F _edgeplane"),
        (zsh, "zsh", "#compdef edgeplane"),
        (GENERATED[1], "fish", "complete -c edgeplane"),
    ] {
        let packaged = read(&root.join(path));
        let text = String::from_utf8_lossy(&packaged);
        assert!(text.contains(marker), "{path}: no {marker:?} in:\n{text}");
        assert!(text.contains("conntrack") && text.contains("--config-dir"), "{path} lacks the CLI:\n{text}");
        if let Some(mut cmd) = exec.command(&bin) {
            let printed = run(cmd.args(["completions", shell]));
            assert_eq!(text, printed, "{path} differs from `edgeplane completions {shell}`");
        }
    }
    let gz = root.join(GENERATED[2]);
    assert!(!read(&gz).is_empty(), "empty {}", gz.display());
    let man = run(Command::new("gzip").arg("-dc").arg(&gz));
    assert!(man.contains(".TH edgeplane 1") && man.contains("\\-\\-config\\-dir"), "man page:\n{man}");
    if let Some(mut cmd) = exec.command(&bin) {
        assert_eq!(man, run(cmd.arg("man")), "packaged man page differs from `edgeplane man`");
    }
}

/// Unpacks a .deb (data, and control as DEBIAN/) into a new directory.
fn unpack_deb(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()));
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(dir.path().join("DEBIAN")));
    dir
}

/// Unpacks an .rpm's payload into a new directory.
fn unpack_rpm(rpm: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    run(Command::new("sh")
        .arg("-c")
        .arg("rpm2cpio \"$1\" | cpio -idm --quiet")
        .arg("sh")
        .arg(rpm)
        .current_dir(dir.path()));
    dir
}

/// `dpkg-deb -c` as (mode, size, path) per entry; the size is left out for
/// the binary, the one file that differs between architectures.
fn deb_entries(deb: &Path) -> Vec<String> {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "unexpected dpkg-deb -c line {l:?}");
            let path = f[5..].join(" ");
            let size = if path == "./usr/bin/edgeplane" { "-" } else { f[2] };
            format!("{} {size} {path}", f[0])
        })
        .collect()
}

/// The arm64 packages: the amd64 ones with an aarch64 static binary. Same
/// files, modes, control data, dependencies, conffiles and maintainer
/// scripts; architecture arm64 (.deb) and aarch64 (.rpm); the binary is an
/// ARM aarch64 static executable (run under qemu-aarch64-static when
/// installed) and the completions and man page (generated on the build
/// machine) are byte for byte the amd64 package's.
#[test]
fn arm64_deb_and_rpm_match_the_amd64_ones_with_an_aarch64_static_binary() {
    let Some(built) = build_packages(&["x86_64", "aarch64"]) else { return };
    let (amd64, arm64) = (&built.arches[0], &built.arches[1]);
    let exec = Exec::for_arch("aarch64");

    // ---- .deb ----
    let field = |deb: &Path, name: &str| run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name)).trim().to_string();
    assert_eq!(field(&arm64.deb, "Architecture"), "arm64");
    assert_eq!(field(&amd64.deb, "Architecture"), "amd64");
    assert!(arm64.deb.to_string_lossy().ends_with("_arm64.deb"), "{}", arm64.deb.display());
    for name in ["Package", "Version", "Depends", "Section", "Priority", "Maintainer", "Description"] {
        assert_eq!(field(&arm64.deb, name), field(&amd64.deb, name), "control field {name} differs");
    }
    assert_eq!(deb_entries(&arm64.deb), deb_entries(&amd64.deb), "the arm64 .deb's files differ from the amd64 one's");

    let (a, x) = (unpack_deb(&arm64.deb), unpack_deb(&amd64.deb));
    for control in ["conffiles", "postinst", "prerm", "postrm"] {
        let path = format!("DEBIAN/{control}");
        if x.path().join(&path).exists() || a.path().join(&path).exists() {
            assert_eq!(read(&a.path().join(&path)), read(&x.path().join(&path)), "{control} differs");
        }
    }
    let arm_bin = a.path().join("usr/bin/edgeplane");
    assert_static_and_runs(&arm_bin, "ARM aarch64", &exec);
    assert_ne!(read(&arm_bin), read(&x.path().join("usr/bin/edgeplane")), "the same binary for both architectures");
    for path in GENERATED.iter().chain([&DEB_ZSH]) {
        assert_eq!(read(&a.path().join(path)), read(&x.path().join(path)), "{path} differs from the amd64 .deb's");
    }
    assert_completions_and_man_page(a.path(), DEB_ZSH, &exec);

    // ---- .rpm ----
    let query = |rpm: &Path, args: &[&str]| run(Command::new("rpm").arg("-qp").args(args).arg(rpm));
    assert_eq!(query(&arm64.rpm, &["--qf", "%{ARCH}"]), "aarch64");
    assert!(arm64.rpm.to_string_lossy().ends_with(".aarch64.rpm"), "{}", arm64.rpm.display());
    for args in [
        &["--qf", "%{NAME} %{VERSION} %{RELEASE} %{LICENSE} %{SUMMARY}"][..],
        &["--qf", "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags}\n]"],
        &["--configfiles"],
        &["--requires"],
        &["--scripts"],
    ] {
        assert_eq!(query(&arm64.rpm, args), query(&amd64.rpm, args), "rpm -qp {args:?} differs between architectures");
    }
    let (ra, rx) = (unpack_rpm(&arm64.rpm), unpack_rpm(&amd64.rpm));
    assert_eq!(
        read(&ra.path().join("usr/bin/edgeplane")),
        read(&arm_bin),
        "the arm64 .deb and .rpm ship different binaries"
    );
    for path in GENERATED.iter().chain([&RPM_ZSH]) {
        assert_eq!(read(&ra.path().join(path)), read(&rx.path().join(path)), "{path} differs from the x86_64 .rpm's");
    }
    assert_completions_and_man_page(ra.path(), RPM_ZSH, &exec);
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    assert!(have("systemd-analyze"), "systemd-analyze missing: apt-get install systemd (scripts/test.sh does)");
    let script = repo().join("scripts/verify-unit.sh");
    run(Command::new(&script).current_dir(repo()));

    // The checker is not vacuous: a unit with a bad directive value is refused.
    let unit = std::fs::read_to_string(repo().join("systemd/edgeplane.service")).expect("read unit");
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("edgeplane.service");
    std::fs::write(&broken, unit.replace("Restart=on-failure", "Restart=sometimes")).expect("write");
    let status = Command::new(&script).arg(&broken).current_dir(repo()).output().expect("run verify-unit.sh");
    assert!(!status.status.success(), "verify-unit.sh accepted Restart=sometimes");
}

#[test]
fn unit_runs_the_daemon_with_reload_restart_bpffs_and_only_the_needed_capabilities() {
    let unit = std::fs::read_to_string(repo().join("systemd/edgeplane.service")).expect("read unit");
    let values = |key: &str| -> Vec<String> {
        unit.lines().filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).map(str::to_string).collect()
    };
    assert_eq!(values("ExecStart"), ["/usr/bin/edgeplane run"]);
    // Readiness and liveness through sd_notify: READY=1 after the first pass,
    // WATCHDOG=1 from the event loop (tests/e2e_notify.rs).
    assert_eq!(values("Type"), ["notify"]);
    assert_eq!(values("NotifyAccess"), ["main"]);
    assert_eq!(values("WatchdogSec").len(), 1, "no WatchdogSec");
    // The shell's kill builtin: /bin/kill is procps, absent on minimal systems.
    assert_eq!(values("ExecReload"), ["/bin/sh -c 'kill -HUP ${MAINPID}'"]);
    assert_eq!(values("Restart"), ["on-failure"]);
    assert!(values("After").iter().any(|v| v.split_whitespace().any(|u| u == "sys-fs-bpf.mount")));
    assert_eq!(values("ReadWritePaths"), ["/sys/fs/bpf"]);
    assert_eq!(values("ProtectSystem"), ["strict"]);
    assert_eq!(values("NoNewPrivileges"), ["yes"]);
    let mut caps: Vec<String> =
        values("CapabilityBoundingSet").iter().flat_map(|v| v.split_whitespace().map(str::to_string)).collect();
    caps.sort();
    assert_eq!(caps, ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_ADMIN"]);
    // setns() into --netns must stay possible under the namespace restriction.
    assert_eq!(values("RestrictNamespaces"), ["net"]);
    assert!(values("PrivateNetwork").is_empty(), "the data plane must see the host's interfaces");
    // bpffs mounted by the unit is root-only (the kernel's default is 1777).
    let pre = values("ExecStartPre");
    assert!(pre.iter().any(|v| v.contains("mount -t bpf -o mode=0700 bpf /sys/fs/bpf")), "{pre:?}");
}

/// The packaged /etc/edgeplane/edgeplane.yaml is valid as shipped, names no
/// uplink (there is no safe default), and every commented-out setting is
/// valid too and documents the value the code really uses by default.
#[test]
fn shipped_settings_file_is_valid_and_documents_the_real_defaults() {
    let path = repo().join("packaging/edgeplane.yaml");
    let text = std::fs::read_to_string(&path).expect("read packaging/edgeplane.yaml");
    let mut shipped = Settings::default();
    config::apply_file(&mut shipped, "edgeplane.yaml", &text).unwrap_or_else(|errs| {
        panic!("shipped settings invalid:\n{}", errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    });
    assert!(shipped.host_interfaces.is_empty(), "uplinks must be named by the admin, not shipped");
    assert_eq!(shipped, Settings::default(), "the uncommented settings are the defaults");

    // "# key: value" and the "#   map: N" lines under "# maps:" uncommented.
    let uncommented: String = text
        .lines()
        .map(|l| {
            let setting =
                l.strip_prefix("# ").filter(|r| r.split_once(':').is_some_and(|(k, _)| SETTINGS.contains(&k)));
            let map_entry = l.strip_prefix("#   ").filter(|r| {
                r.split_once(": ").is_some_and(|(k, v)| is_key(k) && v.bytes().all(|b| b.is_ascii_digit()))
            });
            match (setting, map_entry) {
                (Some(s), _) => s.to_string(),
                (None, Some(m)) => format!("  {m}"),
                (None, None) => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut documented = Settings::default();
    config::apply_file(&mut documented, "edgeplane.yaml (uncommented)", &uncommented).unwrap_or_else(|errs| {
        panic!(
            "commented-out settings are invalid:\n{}\n{uncommented}",
            errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        )
    });
    let defaults = Settings::default();
    assert_eq!(documented.node_name.as_deref(), Some("node-1"), "node-name example not picked up");
    assert!(documented.cgroup.is_some(), "cgroup example not picked up");
    assert_eq!(documented.state_dir, defaults.state_dir);
    assert_eq!(documented.hairpin_address, defaults.hairpin_address);
    assert_eq!(documented.max_file_size, defaults.max_file_size);
    assert_eq!(documented.resync_interval, defaults.resync_interval);
    assert_eq!(documented.maps, defaults.maps, "documented map capacities differ from the defaults");
    assert_eq!(documented.conntrack_timeouts, defaults.conntrack_timeouts, "documented conntrack timeouts differ");
    assert_eq!(documented.conntrack_gc_interval, defaults.conntrack_gc_interval);
    assert_eq!(documented.metrics_address, defaults.metrics_address);
}

/// The keys config.rs accepts (its "unknown setting" message lists the same).
const SETTINGS: &[&str] = &[
    "config-dir",
    "state-dir",
    "node-name",
    "workload-interfaces",
    "host-interfaces",
    "cgroup",
    "hairpin-address",
    "max-file-size",
    "resync-interval-seconds",
    "maps",
    "conntrack-timeouts",
    "conntrack-gc-interval-seconds",
    "metrics-address",
];

fn is_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
}

/// README's quick start is exactly two commands, and CI runs the second one
/// and nothing else.
#[test]
fn readme_quick_start_is_two_commands_and_ci_runs_the_test_one() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let section = readme.split("## Quick start").nth(1).expect("README has a Quick start section");
    let block = section.split("```sh").nth(1).and_then(|b| b.split("```").next()).expect("a sh code block");
    let commands: Vec<&str> =
        block.lines().map(|l| l.split('#').next().unwrap_or_default().trim()).filter(|l| !l.is_empty()).collect();
    assert_eq!(commands, ["./scripts/demo.sh", "./scripts/test.sh"]);
    for script in commands {
        let path = repo().join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).expect("script").permissions());
        assert!(mode & 0o111 != 0, "{script} is not executable");
    }
    let ci = std::fs::read_to_string(repo().join(".ci/run")).expect("read .ci/run");
    let ci_commands: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("set ") && !l.starts_with("cd "))
        .collect();
    assert_eq!(ci_commands, ["exec ./scripts/test.sh"]);
}

/// procps (sysctl, ps, pgrep, pkill, pidof, /bin/kill, …) is not in a minimal
/// Debian 12 (debootstrap --variant=minbase; scripts/fresh-debian.sh), and
/// the Quick start does not install it: no script, maintainer script, unit,
/// test or source file may run one of its tools. (`kill` itself is fine: the
/// shell builtin; sysctls are written to /proc/sys from inside the namespace.)
#[test]
fn quick_start_scripts_and_tests_run_no_procps_tool() {
    let mut files: Vec<PathBuf> = vec![repo().join(".ci/run"), repo().join("systemd/edgeplane.service")];
    for dir in ["scripts", "packaging/debian", "packaging/rpm", "tests", "src"] {
        collect_files(&repo().join(dir), &mut files);
    }
    let mut found = Vec::new();
    let mut scanned = 0;
    for file in &files {
        let name = file.strip_prefix(repo()).unwrap_or(file).display().to_string();
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        scanned += 1;
        let rust = file.extension().is_some_and(|e| e == "rs");
        // (Lines that call the checkers are this test's own samples below.)
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.contains("procps_in_")) {
            let hit = if rust { procps_in_rust(line) } else { procps_in_shell(line) };
            if let Some(tool) = hit {
                found.push(format!("{name}:{}: runs {tool}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(scanned > 20, "only {scanned} files scanned");
    assert!(found.is_empty(), "procps tools used (a minimal Debian has none):\n{}", found.join("\n"));

    // The checks are not vacuous: what the Quick start used to run is caught.
    assert_eq!(procps_in_shell(r#"in_ns "$NS_NODE" sysctl -qw net.ipv4.ip_forward=1"#), Some("sysctl"));
    assert_eq!(procps_in_shell("ExecReload=/bin/kill -HUP $MAINPID"), Some("/bin/kill"));
    assert_eq!(procps_in_shell("n=$(pgrep -c edgeplane)"), Some("pgrep"));
    assert_eq!(procps_in_shell("ps -o rss= -p \"$pid\" | tail -1"), Some("ps"));
    assert_eq!(procps_in_shell("kill -TERM \"$pid\"  # the builtin; mentions sysctl"), None);
    assert_eq!(procps_in_shell("timeout --signal=TERM --kill-after=60 75m cargo nextest run"), None);
    assert_eq!(procps_in_rust(r#"        self.run("sysctl", &["-q", "-w", &kv]);"#), Some("sysctl"));
    assert_eq!(procps_in_rust(r#"    let out = Command::new("pidof").arg("edgeplane").output();"#), Some("pidof"));
    assert_eq!(procps_in_rust(r#"    Command::new("/bin/kill").args(["-HUP", &pid])"#), Some("/bin/kill"));
    assert_eq!(procps_in_rust(r#"            .expect("watch")"#), None);
}

const PROCPS: &[&str] = &[
    "sysctl", "ps", "pgrep", "pkill", "pidof", "pwait", "pmap", "pwdx", "top", "free", "vmstat", "watch", "uptime",
    "slabtop", "skill", "snice", "tload",
];

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A procps tool run by this shell (or unit, or maintainer script) line: a
/// word, outside a comment, that is one of the tools or a path to one, or a
/// path to the procps `kill`.
fn procps_in_shell(line: &str) -> Option<&'static str> {
    let code = line.trim_start();
    if code.starts_with('#') {
        return None;
    }
    let code = code.split(" #").next().unwrap_or_default();
    code.split(|c: char| c.is_whitespace() || ";|&()`=".contains(c)).find_map(|word| {
        let word = word.trim_matches(|c| c == '"' || c == '\'' || c == '\\' || c == '$');
        let base = word.rsplit('/').next().unwrap_or(word);
        if word.contains('/') && base == "kill" {
            return Some("/bin/kill");
        }
        PROCPS.iter().copied().find(|t| *t == base && (word == base || word.starts_with('/')))
    })
}

/// A procps tool run from Rust: `Command::new("T")` or the harness's
/// `.run("T", …)`/`.cmd("T")`, T one of the tools or a path to one (or to
/// the procps `kill`).
fn procps_in_rust(line: &str) -> Option<&'static str> {
    if line.trim_start().starts_with("//") {
        return None;
    }
    ["Command::new(\"", ".run(\"", ".cmd(\""].iter().find_map(|call| {
        line.split(call).skip(1).find_map(|rest| {
            let program = rest.split('"').next().unwrap_or_default();
            let base = program.rsplit('/').next().unwrap_or(program);
            if program.contains('/') && base == "kill" {
                return Some("/bin/kill");
            }
            PROCPS.iter().copied().find(|t| *t == base)
        })
    })
}

/// Every shell script parses: a script sourced by the Quick start (lib.sh) that
/// does not parse loses the functions after the error, and the commands that
/// call them fail only on a machine that lacks what they would install.
#[test]
fn every_shell_script_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("scripts"))
        .expect("scripts/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.push(root.join(".ci/run"));
    for s in [root.join("packaging/debian/postinst"), root.join("packaging/rpm/post_install.sh")] {
        if s.exists() {
            scripts.push(s);
        }
    }
    assert!(scripts.len() > 5, "{scripts:?}");
    for s in &scripts {
        let out = Command::new("bash").arg("-n").arg(s).output().expect("run bash -n");
        assert!(out.status.success(), "{} does not parse: {}", s.display(), String::from_utf8_lossy(&out.stderr));
    }
}
