//! Privileges and "nothing pinned": the two answers every command must give
//! the same way. libbpf's own stderr output is routed into our log (debug
//! level: the verifier log stays available with RUST_LOG=debug).

use std::path::Path;

use anyhow::{Result, anyhow};

/// The hint added to any error caused by missing privileges.
pub const ROOT_HINT: &str =
    "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run as root or via the edgeplane.service unit";

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// libbpf's messages (warnings, the verifier log on a failed load) go to the
/// log at debug level, its debug chatter at trace level: nothing on stderr by
/// default, every failure still reported through our own error.
pub fn route_libbpf_output() {
    fn print(level: libbpf_rs::PrintLevel, msg: String) {
        let msg = msg.trim_end();
        match level {
            libbpf_rs::PrintLevel::Debug => log::trace!(target: "libbpf", "{msg}"),
            _ => log::debug!(target: "libbpf", "{msg}"),
        }
    }
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, print)));
}

/// Whether `e` (or anything in its chain) is EPERM/EACCES.
pub fn is_permission_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::PermissionDenied;
        }
        if let Some(b) = c.downcast_ref::<libbpf_rs::Error>() {
            return b.kind() == libbpf_rs::ErrorKind::PermissionDenied;
        }
        false
    })
}

/// `e` on one line, with [`ROOT_HINT`] when missing privileges caused it.
pub fn explain(e: &anyhow::Error) -> String {
    if is_permission_error(e) { format!("{e:#}: {ROOT_HINT}") } else { format!("{e:#}") }
}

/// The capabilities `apply`, `run` and `reset` cannot do without that this
/// process lacks in its effective set: bpf(2) beyond the unprivileged subset
/// (CAP_BPF, or CAP_SYS_ADMIN which stands in for it) and tc/netlink
/// (CAP_NET_ADMIN). What else fails (mounting bpffs without CAP_SYS_ADMIN)
/// is reported by the syscall, with the same hint.
pub fn missing_capabilities() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(eff) =
        status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    else {
        return Vec::new(); // cannot tell: let the syscalls answer
    };
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

/// Fails with one line naming the missing capabilities and [`ROOT_HINT`]
/// before `command` touches anything.
pub fn require_privileges(command: &str) -> Result<()> {
    let missing = missing_capabilities();
    if missing.is_empty() {
        return Ok(());
    }
    Err(anyhow!("{command}: not permitted (this process lacks {}): {ROOT_HINT}", missing.join(", ")))
}

/// The error of every read-only command when `state_dir` holds no data plane.
pub fn nothing_pinned(state_dir: &Path) -> anyhow::Error {
    anyhow!(
        "no data plane state under {} (nothing pinned: run `edgeplane apply` or start the service)",
        state_dir.display()
    )
}

/// Ok when `state_dir` holds pins of ours; [`nothing_pinned`] when it is
/// missing or empty; the I/O error (EACCES: see [`explain`]) otherwise.
pub fn ensure_pinned(state_dir: &Path) -> Result<()> {
    let rd = match std::fs::read_dir(state_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(nothing_pinned(state_dir)),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", state_dir.display()))),
    };
    if rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with("ep_")) {
        Ok(())
    } else {
        Err(nothing_pinned(state_dir))
    }
}
