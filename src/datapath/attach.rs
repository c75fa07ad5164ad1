//! Attaching the programs: TCX links on interface ingress (clsact/cls_bpf
//! when TCX is unavailable), cgroup links for the socket hooks, all pinned
//! under `<state_dir>/links/` so they outlive the process. An existing pin is
//! updated in place (`BPF_LINK_UPDATE`), so forwarding never stops during an
//! upgrade.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::{AsRawLibbpf, Link, Program, TC_INGRESS, TcHookBuilder};

use super::mapio::errno_name;
use super::trust::pin_present;

/// Pin-name prefixes under links/.
pub const TCX_PREFIX: &str = "tcx_";
pub const CLSACT_PREFIX: &str = "tc_";
pub const CGROUP_PREFIX: &str = "cg_";

/// tc handle/priority of our cls_bpf filter (fallback path).
const TC_HANDLE: u32 = 0xe9;
const TC_PRIORITY: u32 = 1;

/// Shell-style glob: `*`, `?` and `[abc]`/`[a-z]`/`[!a]` classes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, chars consumed incl. ']').
        let mut i = 0;
        let negate = matches!(p.first(), Some('!') | Some('^'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                if p[i] <= c && c <= p[i + 2] {
                    matched = true;
                }
                i += 3;
            } else {
                if p[i] == c {
                    matched = true;
                }
                i += 1;
            }
        }
        None
    }
    fn rec(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| rec(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && rec(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(&p[1..], n.first().copied().unwrap_or('\0'))) {
                (Some(_), Some((true, used))) => rec(&p[1 + used..], &n[1..]),
                (Some(c), None) => *c == '[' && rec(&p[1..], &n[1..]),
                _ => false,
            },
            Some(c) => n.first() == Some(c) && rec(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    rec(&p, &n)
}

/// Interfaces of the current network namespace: (name, ifindex).
pub fn interfaces() -> Result<Vec<(String, u32)>> {
    // SAFETY: if_nameindex returns a heap array terminated by a zero entry,
    // freed below with if_freenameindex.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Err(std::io::Error::last_os_error()).context("listing network interfaces");
    }
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: within the array up to and including its terminator.
        let entry = unsafe { &*list.add(i) };
        if entry.if_index == 0 || entry.if_name.is_null() {
            break;
        }
        // SAFETY: if_name is a NUL-terminated string owned by the array.
        let name = unsafe { CStr::from_ptr(entry.if_name) }.to_string_lossy().into_owned();
        out.push((name, entry.if_index));
        i += 1;
    }
    // SAFETY: list came from if_nameindex.
    unsafe { libc::if_freenameindex(list) };
    Ok(out)
}

pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// How a program ended up on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcMode {
    Tcx,
    Clsact,
}

/// Attach (or atomically replace) the tc program on `ifname`'s ingress.
pub fn attach_tc(prog: &Program<'_>, links_dir: &Path, ifname: &str, ifidx: u32) -> Result<TcMode> {
    let pin = links_dir.join(format!("{TCX_PREFIX}{ifname}"));
    if pin_present(&pin)? {
        match Link::open(&pin) {
            Ok(mut link) => {
                let attached_to = match link.info() {
                    Ok(info) => match info.info {
                        LinkTypeInfo::Tcx(t) => Some(t.ifindex),
                        _ => None,
                    },
                    Err(_) => None,
                };
                if attached_to == Some(ifidx) {
                    link.update_prog(prog)
                        .with_context(|| format!("replacing the program of TCX link {}", pin.display()))?;
                    return Ok(TcMode::Tcx);
                }
                // The interface was re-created (same name, new device): the old
                // link is defunct. Drop its pin and attach afresh.
            }
            Err(e) => log::warn!("pinned link {} unusable ({e}); re-attaching", pin.display()),
        }
        unpin_link(&pin)?;
    }
    // EDGEPLANE_FORCE_CLSACT=1 exercises the fallback on kernels that have TCX (tests).
    let ptr = if std::env::var_os("EDGEPLANE_FORCE_CLSACT").is_some_and(|v| v == "1") {
        std::ptr::null_mut()
    } else {
        // SAFETY: the program pointer is valid while `prog` is borrowed; a NULL
        // opts pointer is allowed by libbpf.
        unsafe { libbpf_sys::bpf_program__attach_tcx(prog.as_libbpf_object().as_ptr(), ifidx as i32, std::ptr::null()) }
    };
    match std::ptr::NonNull::new(ptr) {
        Some(p) => {
            // SAFETY: a non-NULL link returned by libbpf, owned from here on.
            let mut link = unsafe { Link::from_ptr(p) };
            link.pin(&pin).with_context(|| format!("pinning TCX link {}", pin.display()))?;
            // Another tool (or an older version) may have left a clsact filter.
            let marker = links_dir.join(format!("{CLSACT_PREFIX}{ifname}"));
            if pin_present(&marker)? {
                detach_clsact(&marker, ifname);
            }
            Ok(TcMode::Tcx)
        }
        None => {
            let tcx_err = std::io::Error::last_os_error();
            log::warn!("TCX attach to {ifname} failed ({tcx_err}); falling back to clsact + cls_bpf");
            attach_clsact(prog, links_dir, ifname, ifidx)
                .with_context(|| format!("attaching to {ifname} (TCX failed: {tcx_err})"))?;
            Ok(TcMode::Clsact)
        }
    }
}

fn attach_clsact(prog: &Program<'_>, links_dir: &Path, ifname: &str, ifidx: u32) -> Result<()> {
    let mut hook = TcHookBuilder::new(prog.as_fd())
        .ifindex(ifidx as i32)
        .replace(true)
        .handle(TC_HANDLE)
        .priority(TC_PRIORITY)
        .hook(TC_INGRESS);
    // EEXIST when the clsact qdisc is already there: fine.
    let _ = hook.create();
    hook.attach().context("attaching cls_bpf filter")?;
    // bpffs holds only BPF objects: the program itself, pinned, marks the
    // interface as ours for `reset` (the qdisc keeps the filter alive).
    let marker = links_dir.join(format!("{CLSACT_PREFIX}{ifname}"));
    if pin_present(&marker)? {
        // Re-pin the program now attached, so the replaced one can be freed.
        std::fs::remove_file(&marker).with_context(|| format!("replacing {}", marker.display()))?;
    }
    prog.pin_fd(&marker)
}

/// Remove our cls_bpf filter from `ifname` (if it still exists) and the marker pin.
pub fn detach_clsact(marker: &Path, ifname: &str) {
    if let (Some(idx), Ok(fd)) = (ifindex(ifname), obj_get(marker)) {
        let mut hook =
            TcHookBuilder::new(fd.as_fd()).ifindex(idx as i32).handle(TC_HANDLE).priority(TC_PRIORITY).hook(TC_INGRESS);
        if let Err(e) = hook.detach() {
            log::warn!("removing cls_bpf filter from {ifname}: {e}");
        }
    }
    if let Err(e) = std::fs::remove_file(marker) {
        log::warn!("unpinning {}: {e}", marker.display());
    }
}

/// Detach a pinned link synchronously (BPF_LINK_DETACH), then remove its pin.
/// Removing the pin alone frees the link only after an RCU grace period and a
/// workqueue run, so traffic could still be translated right after `reset`.
pub fn unpin_link(pin: &Path) -> Result<()> {
    if let Ok(link) = Link::open(pin)
        && let Err(e) = link.detach()
    {
        log::debug!("detaching {}: {e}", pin.display());
    }
    std::fs::remove_file(pin).with_context(|| format!("unpinning {}", pin.display()))
}

/// Pin helper for programs (libbpf-rs only pins through `&mut` or skeleton types).
trait PinFd {
    fn pin_fd(&self, path: &Path) -> Result<()>;
}

impl PinFd for Program<'_> {
    fn pin_fd(&self, path: &Path) -> Result<()> {
        obj_pin(self.as_fd().as_raw_fd(), path)
    }
}

pub fn obj_pin(fd: i32, path: &Path) -> Result<()> {
    let c = path_cstring(path)?;
    // SAFETY: valid fd and NUL-terminated path.
    let ret = unsafe { libbpf_sys::bpf_obj_pin(fd, c.as_ptr()) };
    if ret < 0 {
        bail!("pinning {}: {}", path.display(), errno_name(-ret));
    }
    Ok(())
}

pub fn obj_get(path: &Path) -> Result<OwnedFd> {
    let c = path_cstring(path)?;
    // SAFETY: NUL-terminated path.
    let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
    if fd < 0 {
        bail!("opening pin {}: {}", path.display(), errno_name(-fd));
    }
    // SAFETY: a fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn path_cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| anyhow!("path {} contains NUL", path.display()))
}

/// Attach (or replace) a cgroup program, pinned as links/cg_<prog name>.
pub fn attach_cgroup(prog: &Program<'_>, links_dir: &Path, cgroup: &Path) -> Result<PathBuf> {
    let name = prog.name().to_string_lossy().into_owned();
    let pin = links_dir.join(format!("{CGROUP_PREFIX}{name}"));
    let cg_dir = std::fs::File::open(cgroup).with_context(|| format!("opening cgroup {}", cgroup.display()))?;
    let cg_id = cg_dir.metadata().with_context(|| format!("stat {}", cgroup.display()))?.ino();
    if cgroup == Path::new("/sys/fs/cgroup") || cgroup == Path::new("/sys/fs/cgroup/unified") {
        bail!("refusing to attach socket hooks to the root cgroup {}: name a child cgroup", cgroup.display());
    }
    if pin_present(&pin)? {
        if let Ok(mut link) = Link::open(&pin) {
            let same = matches!(link.info().map(|i| i.info), Ok(LinkTypeInfo::Cgroup(c)) if c.cgroup_id == cg_id);
            if same {
                link.update_prog(prog).with_context(|| format!("replacing the program of {}", pin.display()))?;
                return Ok(pin);
            }
        }
        // Another cgroup (the setting changed) or a broken pin: detach it.
        unpin_link(&pin)?;
    }
    // SAFETY: valid program pointer while borrowed; the cgroup fd is open.
    let ptr = unsafe { libbpf_sys::bpf_program__attach_cgroup(prog.as_libbpf_object().as_ptr(), cg_dir.as_raw_fd()) };
    let Some(ptr) = std::ptr::NonNull::new(ptr) else {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("attaching {name} to cgroup {}", cgroup.display()));
    };
    // SAFETY: a non-NULL link returned by libbpf, owned from here on.
    let mut link = unsafe { Link::from_ptr(ptr) };
    link.pin(&pin).with_context(|| format!("pinning {}", pin.display()))?;
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("veth*", "veth12ab"));
        assert!(glob_match("veth*", "veth"));
        assert!(!glob_match("veth*", "eth0"));
        assert!(glob_match("cl?", "cl1"));
        assert!(!glob_match("cl?", "cl12"));
        assert!(glob_match("eth[0-3]", "eth2"));
        assert!(!glob_match("eth[0-3]", "eth7"));
        assert!(glob_match("eth[!0]", "eth1"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("up*-x", "up12-x"));
    }
}
