//! The only module that calls bpf(2) (through libbpf-rs): loads the programs
//! built from `bpf/`, reuses or pins their maps under the state directory,
//! attaches the tc program to interfaces (TCX, clsact fallback) and the
//! socket hooks to a cgroup, all pinned so that forwarding continues when
//! the process exits. Also: the `MapBackend` over the live maps, status,
//! drop events and reset.
//!
//! Pinned layout under `state_dir` (bpffs):
//! `ep_*_vN` maps; `links/tcx_<ifname>` TCX links; `links/tc_<ifname>` the
//! program pinned as a marker for a clsact/cls_bpf fallback filter;
//! `links/cg_<program>` cgroup links.

mod access;
mod attach;
pub mod ct_gc;
pub mod events;
mod inspect;
mod mapio;
mod netlink;
pub mod routes;
mod status;
mod trust;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use libbpf_rs::{MapCore, MapHandle, Object, ObjectBuilder, OpenObject, Program};

use crate::maps::layout::{self, Config, IFACE_F_WORKLOAD, NodeConfig};
use crate::maps::{Entries, MapBackend, MapError, MapId};

pub use access::{ROOT_HINT, ensure_pinned, explain, nothing_pinned, require_privileges, route_libbpf_output};
pub use attach::{TcMode, glob_match, interfaces};
pub use inspect::{read_conntrack, read_service_maps};
pub use mapio::{PinnedMaps, errno_name};
pub use netlink::LinkEvents;
pub use status::{
    ConntrackStatus, DropCount, DropEvent, LinkStatus, MapStatus, ProgramStats, StatCount, Status,
    conntrack_insert_failed, monotonic_ns, read_status, recent_drops, reset,
};
pub use trust::{DEFAULT_LOCK_WAIT, LockWait};

/// Generated skeletons; the `types` modules are the BTF-derived Rust layouts
/// of every struct in bpf/edgeplane.h (tests compare them with maps::layout).
// Generated code (libbpf-cargo): its internal panics/unwraps are on "cannot
// happen" paths of the embedded object, not on daemon inputs.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod skel {
    pub mod tc {
        include!(concat!(env!("OUT_DIR"), "/tc.skel.rs"));
    }
    pub mod sock {
        include!(concat!(env!("OUT_DIR"), "/sock.skel.rs"));
    }
}

/// The compiled BPF objects.
pub const TC_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tc.bpf.o"));
pub const SOCK_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sock.bpf.o"));

/// The tc program of workload (pod) interfaces.
pub const TC_PROG: &str = "ep_tc_ingress";
/// The tc program of host (uplink) interfaces: external frontends, DSR from other nodes.
pub const TC_HOST_PROG: &str = "ep_tc_host";
pub const SOCK_PROGS: [&str; 4] = ["ep_sock_connect4", "ep_sock_sendmsg4", "ep_sock_recvmsg4", "ep_sock_getpeername4"];

/// Pinned map names (bpf/edgeplane.h EP_MAP_*).
pub use crate::maps::layout::{
    MAP_AFF, MAP_CFG, MAP_CT, MAP_CT_V1, MAP_DROPEV, MAP_DROPS, MAP_IFACES, MAP_NODE, MAP_SKNAT, MAP_STATS,
};

/// Map sizes (max_entries), from the config file; defaults = EP_DEFAULT_* in edgeplane.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacities {
    /// ep_svc_v1: one entry per service frontend plus one per backend slot.
    pub services: u32,
    pub backends: u32,
    pub conntrack: u32,
    pub affinity: u32,
    pub sknat: u32,
    /// ep_pol_v1 allow entries.
    pub policy_rules: u32,
    /// ep_ident_v1 prefixes (pod addresses and ipBlock prefixes).
    pub identities: u32,
    /// ep_lep_v1: local pods that a policy isolates.
    pub policy_endpoints: u32,
    /// ep_lbsrc_v1: (LoadBalancer frontend, allowed client prefix) pairs.
    pub lb_source_ranges: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Capacities {
            services: layout::DEFAULT_SVC_ENTRIES,
            backends: layout::DEFAULT_BE_ENTRIES,
            conntrack: layout::DEFAULT_CT_ENTRIES,
            affinity: layout::DEFAULT_AFF_ENTRIES,
            sknat: layout::DEFAULT_SKNAT_ENTRIES,
            policy_rules: layout::DEFAULT_POL_ENTRIES,
            identities: layout::DEFAULT_IDENT_ENTRIES,
            policy_endpoints: layout::DEFAULT_LEP_ENTRIES,
            lb_source_ranges: layout::DEFAULT_LBSRC_ENTRIES,
        }
    }
}

impl Capacities {
    /// The configured size of a planned map.
    pub fn of(&self, map: MapId) -> usize {
        self.for_map(map.pin_name()).map_or(usize::MAX, |n| n as usize)
    }

    fn for_map(&self, name: &str) -> Option<u32> {
        match name {
            layout::MAP_SVC => Some(self.services),
            layout::MAP_BE => Some(self.backends),
            MAP_CT => Some(self.conntrack),
            MAP_AFF => Some(self.affinity),
            MAP_SKNAT => Some(self.sknat),
            layout::MAP_POL => Some(self.policy_rules),
            layout::MAP_IDENT => Some(self.identities),
            layout::MAP_LEP => Some(self.policy_endpoints),
            layout::MAP_LBSRC => Some(self.lb_source_ranges),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathSettings {
    /// bpffs directory holding the pins.
    pub state_dir: PathBuf,
    /// Globs of pod-facing interfaces.
    pub workload_interfaces: Vec<String>,
    /// Globs of uplinks (replies from remote backends arrive there).
    pub host_interfaces: Vec<String>,
    /// cgroup v2 directory for the socket hooks; None: no socket hooks.
    pub cgroup: Option<PathBuf>,
    pub capacities: Capacities,
    /// Source address for hairpin flows (a pod reaching itself via a service).
    pub hairpin_addr: Ipv4Addr,
}

impl Default for DatapathSettings {
    fn default() -> Self {
        DatapathSettings {
            state_dir: PathBuf::from("/sys/fs/bpf/edgeplane"),
            workload_interfaces: vec!["veth*".into()],
            host_interfaces: Vec::new(),
            cgroup: None,
            capacities: Capacities::default(),
            hairpin_addr: Ipv4Addr::new(169, 254, 42, 1),
        }
    }
}

/// Whether a map of the object is one of ours (not .rodata/.bss/...).
fn is_shared_map(name: &str) -> bool {
    !name.contains('.')
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs on a NUL-terminated path into a zeroed struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Mount bpffs at /sys/fs/bpf when the state dir lives there and it is missing,
/// mode 0700 (the kernel's default is 1777: any user could create the state
/// directory first).
pub fn ensure_bpffs(state_dir: &Path) -> Result<()> {
    let mut probe = state_dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    if is_bpffs(probe) {
        return Ok(());
    }
    let root = Path::new("/sys/fs/bpf");
    if state_dir.starts_with(root) {
        std::fs::create_dir_all(root).ok();
        let src = c"bpf";
        let target = c"/sys/fs/bpf";
        let data = c"mode=0700";
        // SAFETY: static NUL-terminated strings; bpffs takes a text option string.
        let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, data.as_ptr().cast()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("mounting bpffs at /sys/fs/bpf");
        }
        log::info!("mounted bpffs at /sys/fs/bpf (mode 0700)");
        return Ok(());
    }
    bail!("state directory {} is not on a bpf filesystem (mount -t bpf bpf DIR)", state_dir.display())
}

/// Refuse a pinned map whose layout or size differs from what this build expects.
fn check_compatible(
    name: &str,
    pin: &Path,
    want: (libbpf_rs::MapType, u32, u32, u32, u32),
    have: &MapHandle,
) -> Result<()> {
    let info = libbpf_rs::MapInfo::new(have.as_fd()).with_context(|| format!("reading info of {}", pin.display()))?;
    let i = &info.info;
    let (ty, key, value, max, flags) = want;
    let mut diffs = Vec::new();
    if info.map_type() != ty {
        diffs.push(format!("type {:?} pinned, {:?} expected", info.map_type(), ty));
    }
    if i.key_size != key {
        diffs.push(format!("key size {} pinned, {key} expected", i.key_size));
    }
    if i.value_size != value {
        diffs.push(format!("value size {} pinned, {value} expected", i.value_size));
    }
    if i.max_entries != max {
        diffs.push(format!("max_entries {} pinned, {max} configured", i.max_entries));
    }
    if i.map_flags != flags {
        diffs.push(format!("flags {:#x} pinned, {flags:#x} expected", i.map_flags));
    }
    if diffs.is_empty() {
        return Ok(());
    }
    bail!(
        "pinned map {name} ({}) is incompatible with this edgeplane: {}. It is not recreated under live \
         traffic: keep the old setting, or run `edgeplane reset` (drops all state, including conntrack) and start again",
        pin.display(),
        diffs.join("; ")
    )
}

/// Open an object, reuse compatible pinned maps (or maps of `share`), load it.
fn load_object(bytes: &[u8], state_dir: &Path, caps: &Capacities, share: Option<&Object>) -> Result<Object> {
    let mut open: OpenObject = ObjectBuilder::default().open_memory(bytes).context("opening BPF object")?;
    for mut m in open.maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        if !is_shared_map(&name) {
            continue;
        }
        if let Some(cap) = caps.for_map(&name) {
            m.set_max_entries(cap).with_context(|| format!("sizing {name}"))?;
        }
        if let Some(obj) = share {
            let other = obj
                .maps()
                .find(|o| o.name().to_string_lossy() == name)
                .ok_or_else(|| anyhow!("map {name} missing from the tc object"))?;
            m.reuse_fd(other.as_fd()).with_context(|| format!("sharing {name}"))?;
            continue;
        }
        let pin = state_dir.join(&name);
        if trust::pin_present(&pin)? {
            let pinned = MapHandle::from_pinned_path(&pin).with_context(|| format!("opening {}", pin.display()))?;
            let want = (m.map_type(), m.key_size(), m.value_size(), m.max_entries(), m.map_flags());
            check_compatible(&name, &pin, want, &pinned)?;
            m.reuse_fd(pinned.as_fd()).with_context(|| format!("reusing {}", pin.display()))?;
        }
    }
    // Typed, not flattened: EPERM here gets the needs-root hint (access::explain).
    open.load().context("loading BPF programs (verifier; RUST_LOG=debug shows libbpf's log)")
}

/// Copy the entries of the pinned LRU conntrack map `v1` into `v2`, with
/// `last_seen_ns` = now (the LRU kept no usable idle time) and marked
/// established. `only_new`: keep
/// what v2 already has. Refuses a v1 whose layout is not the one this code
/// knows, rather than guessing. Returns the number of entries copied.
fn migrate_ct_v1(v1: &Path, v2: &MapHandle, only_new: bool) -> Result<u64> {
    use crate::maps::layout::{CtKey, CtValue};
    let old = MapHandle::from_pinned_path(v1).with_context(|| format!("opening {}", v1.display()))?;
    let info = libbpf_rs::MapInfo::new(old.as_fd()).with_context(|| format!("reading info of {}", v1.display()))?;
    if info.map_type() != libbpf_rs::MapType::LruHash
        || info.info.key_size as usize != CtKey::SIZE
        || info.info.value_size as usize != CtValue::SIZE
    {
        bail!(
            "pinned {} has an unexpected layout (type {:?}, key {} B, value {} B; expected lru_hash, {} B, {} B): \
             not migrating it into {MAP_CT}. Run `edgeplane reset` (drops all state, including conntrack) and start again",
            v1.display(),
            info.map_type(),
            info.info.key_size,
            info.info.value_size,
            CtKey::SIZE,
            CtValue::SIZE
        );
    }
    let now = status::monotonic_ns();
    let (mut copied, mut full) = (0u64, 0u64);
    let mut failure = None;
    mapio::for_each(old.as_fd(), CtKey::SIZE, CtValue::SIZE, |k, v| {
        let Some(mut val) = CtValue::from_bytes(v) else { return };
        if only_new && v2.lookup(k, libbpf_rs::MapFlags::ANY).ok().flatten().is_some() {
            return;
        }
        val.last_seen_ns = now;
        // v1 did not record whether a reply was seen: assume it was, so an idle
        // established connection gets its long timeout rather than tcp-syn's.
        val.flags |= crate::maps::layout::CT_F_ESTABLISHED;
        match mapio::update(v2.as_fd(), k, &val.to_bytes()) {
            Ok(()) => copied += 1,
            Err(libc::E2BIG) | Err(libc::ENOMEM) => full += 1,
            Err(e) => failure = Some(e),
        }
    })
    .with_context(|| format!("reading {}", v1.display()))?;
    if let Some(e) = failure {
        bail!("copying {} into {MAP_CT}: {}", v1.display(), errno_name(e));
    }
    if full > 0 {
        log::warn!("conntrack migration: {full} entries of {MAP_CT_V1} did not fit in {MAP_CT} (maps.conntrack)");
    }
    Ok(copied)
}

/// Load the tc object with fresh, unpinned maps (tests: BPF_PROG_TEST_RUN).
pub fn load_unpinned(caps: &Capacities) -> Result<Object> {
    load_object(TC_OBJECT, Path::new("/nonexistent"), caps, None)
}

/// Load the socket object sharing the maps of `tc` (tests and loader).
pub fn load_sock_sharing(tc: &Object, caps: &Capacities) -> Result<Object> {
    load_object(SOCK_OBJECT, Path::new("/nonexistent"), caps, Some(tc))
}

/// A map of a loaded object, by name, as an owned handle.
pub fn object_map(obj: &Object, name: &str) -> Result<MapHandle> {
    let m = obj.maps().find(|m| m.name().to_string_lossy() == name).ok_or_else(|| anyhow!("no map {name}"))?;
    MapHandle::try_from(&m).with_context(|| format!("duplicating handle of {name}"))
}

pub fn object_prog<'a>(obj: &'a Object, name: &str) -> Result<Program<'a>> {
    obj.progs().find(|p| p.name().to_string_lossy() == name).ok_or_else(|| anyhow!("no program {name}"))
}

/// The loaded and attached data plane.
pub struct Datapath {
    settings: DatapathSettings,
    tc: Object,
    sock: Option<Object>,
    planned: PinnedMaps,
    cfg: MapHandle,
    /// Interfaces we are attached to: name -> (ifindex, mode).
    attached: BTreeMap<String, (u32, TcMode)>,
    /// Whether each attached interface got the host program (a role change re-attaches).
    attached_host: BTreeMap<String, bool>,
    /// Attach and pin errors of the last interface sync.
    failures: Vec<String>,
    /// The configured cgroup did not exist at the last try: retried at each interface sync.
    cgroup_pending: bool,
    /// This network namespace's cookie (ep_node_v1.netns_cookie, socket-lb: host-only).
    netns_cookie: u64,
    /// The checked state directory, locked while this value lives.
    _lock: trust::StateDir,
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath").field("settings", &self.settings).field("attached", &self.attached).finish()
    }
}

impl Datapath {
    /// Load (or upgrade in place) the data plane under `settings.state_dir`,
    /// waiting up to DEFAULT_LOCK_WAIT for another instance using it.
    pub fn open(settings: &DatapathSettings) -> Result<Datapath> {
        Self::open_with(settings, LockWait::Upto(DEFAULT_LOCK_WAIT))
    }

    /// `open`, with the state directory checked (trust.rs) and locked for the
    /// lifetime of the returned value. Attach errors do not fail the open (the
    /// other interfaces must keep forwarding): see `failures`.
    pub fn open_with(settings: &DatapathSettings, wait: LockWait) -> Result<Datapath> {
        let dir = &settings.state_dir;
        ensure_bpffs(dir)?;
        let lock = trust::lock_state_dir(dir, true, wait)?
            .ok_or_else(|| anyhow!("state directory {} vanished", dir.display()))?;
        trust::open_checked_dir(&dir.join("links"), true)?;
        let tc = load_object(TC_OBJECT, dir, &settings.capacities, None)?;
        for m in tc.maps() {
            let name = m.name().to_string_lossy().into_owned();
            let pin = dir.join(&name);
            if is_shared_map(&name) && !trust::pin_present(&pin)? {
                attach::obj_pin(m.as_fd().as_raw_fd(), &pin)?;
            }
        }
        let sock = match &settings.cgroup {
            Some(_) => Some(load_object(SOCK_OBJECT, dir, &settings.capacities, Some(&tc))?),
            None => None,
        };
        // Flows of an earlier release's LRU map: copied before the new programs
        // attach (so established flows keep their backend), again after (flows the
        // old programs created meanwhile), then the old map is unpinned.
        let v1 = dir.join(MAP_CT_V1);
        let migrating = if v1.exists() { Some(migrate_ct_v1(&v1, &object_map(&tc, MAP_CT)?, false)?) } else { None };
        let mut handles = BTreeMap::new();
        for id in MapId::ALL {
            handles.insert(id, object_map(&tc, id.pin_name())?);
        }
        let planned = PinnedMaps::new(handles);
        let cfg = object_map(&tc, MAP_CFG)?;
        let mut dp = Datapath {
            settings: settings.clone(),
            tc,
            sock,
            planned,
            cfg,
            attached: BTreeMap::new(),
            attached_host: BTreeMap::new(),
            failures: Vec::new(),
            cgroup_pending: false,
            netns_cookie: netns_cookie()?,
            _lock: lock,
        };
        dp.init_config()?;
        // One interface that cannot be attached (vanishing veth, odd driver)
        // must not keep the others from forwarding: log it, keep going, and
        // let the command fail at its end (`failures`).
        if let Err(e) = dp.sync_interfaces_inner(true) {
            log::error!("{e:#}");
            dp.failures.push(format!("{e:#}"));
        }
        // The socket hooks have one cgroup, named in the settings. One that
        // does not exist yet (kubepods.slice before the kubelet starts) is
        // waited for: attached at the first interface sync that finds it.
        // Any other failure there is a configuration error: the open fails.
        if let Err(e) = dp.cgroup_present() {
            dp.failures.push(format!("{e:#}"));
        } else {
            dp.sync_cgroup()?;
        }
        if let Some(first) = migrating {
            let late = migrate_ct_v1(&v1, &dp.map(MAP_CT)?, true)?;
            std::fs::remove_file(&v1).with_context(|| format!("unpinning {}", v1.display()))?;
            log::info!(
                "conntrack migrated from {MAP_CT_V1} (LRU) to {MAP_CT} (hash with timeouts): {} flows entries copied, \
                 {} more created during the upgrade; {MAP_CT_V1} unpinned",
                first,
                late
            );
        }
        Ok(dp)
    }

    /// Attach and pin errors of the last interface sync (open, or `sync_interfaces`).
    /// The interfaces concerned keep whatever link they had before.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// One conntrack garbage-collection pass (see `ct_gc`).
    pub fn gc_conntrack(&self, timeouts: &ct_gc::CtTimeouts) -> Result<ct_gc::GcReport> {
        ct_gc::run(&self.map(MAP_CT)?, &self.map(MAP_STATS)?, timeouts, status::monotonic_ns())
    }

    pub fn settings(&self) -> &DatapathSettings {
        &self.settings
    }

    /// A fresh config entry gets the hairpin address; an existing one is kept
    /// (the daemon writes the full config right after open).
    fn init_config(&mut self) -> Result<()> {
        let cur = self.config()?;
        if cur == Config::default() {
            let cfg = Config { hairpin_addr: self.settings.hairpin_addr.octets(), ..Config::default() };
            self.set_config(cfg)?;
        }
        Ok(())
    }

    pub fn config(&self) -> Result<Config> {
        let v = self.cfg.lookup(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY).context("reading ep_cfg_v1")?;
        Ok(v.and_then(|b| Config::from_bytes(&b)).unwrap_or_default())
    }

    /// Write ep_cfg_v1[0].
    pub fn set_config(&mut self, cfg: Config) -> Result<()> {
        mapio::update(self.cfg.as_fd(), &0u32.to_ne_bytes(), &cfg.to_bytes())
            .map_err(|e| anyhow!("update ep_cfg_v1 key 0: {}", errno_name(e)))
    }

    /// Write ep_node_v1[0] (this node's SNAT address and DSR flag) if it changed.
    pub fn set_node(&mut self, node: NodeConfig) -> Result<()> {
        let node = NodeConfig { netns_cookie: self.netns_cookie, ..node };
        let map = self.map(MAP_NODE)?;
        let cur = map.lookup(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY).context("reading ep_node_v1")?;
        if cur.and_then(|b| NodeConfig::from_bytes(&b)) == Some(node) {
            return Ok(());
        }
        mapio::update(map.as_fd(), &0u32.to_ne_bytes(), &node.to_bytes())
            .map_err(|e| anyhow!("update ep_node_v1 key 0: {}", errno_name(e)))
    }

    /// New interface patterns (settings reloaded); `sync_interfaces` applies them.
    pub fn set_interfaces(&mut self, workload: Vec<String>, host: Vec<String>) {
        self.settings.workload_interfaces = workload;
        self.settings.host_interfaces = host;
    }

    /// Attach to matching interfaces that appeared, detach from vanished
    /// ones. Returns the names newly attached.
    /// Also attaches the socket hooks once a missing cgroup appeared.
    pub fn sync_interfaces(&mut self) -> Result<Vec<String>> {
        let r = self.sync_interfaces_inner(false);
        self.failures = r.as_ref().err().map(|e| vec![format!("{e:#}")]).unwrap_or_default();
        if self.cgroup_pending {
            let attached = self.cgroup_present().and_then(|()| self.sync_cgroup());
            match attached {
                Ok(()) => {
                    self.cgroup_pending = false;
                    let cg = self.settings.cgroup.as_deref().unwrap_or(Path::new("")).display();
                    log::info!("cgroup {cg} appeared: socket hooks attached");
                }
                Err(e) => self.failures.push(format!("{e:#}")),
            }
        }
        r
    }

    /// Err (and pending) while the configured cgroup does not exist.
    fn cgroup_present(&mut self) -> Result<()> {
        if let (Some(_), Some(cg)) = (&self.sock, &self.settings.cgroup)
            && !cg.exists()
        {
            if !self.cgroup_pending {
                log::warn!(
                    "cgroup {} does not exist (yet): no socket-level translation for its processes until it \
                     does; attached when an interface sync (every resync, every interface change) finds it",
                    cg.display()
                );
            }
            self.cgroup_pending = true;
            bail!("cgroup {} does not exist", cg.display());
        }
        Ok(())
    }

    fn wanted(&self, name: &str) -> bool {
        name != "lo"
            && self
                .settings
                .workload_interfaces
                .iter()
                .chain(self.settings.host_interfaces.iter())
                .any(|g| glob_match(g, name))
    }

    /// Host interfaces get the host program (a name matching both lists is a host interface).
    fn is_host(&self, name: &str) -> bool {
        self.settings.host_interfaces.iter().any(|g| glob_match(g, name))
    }

    fn sync_interfaces_inner(&mut self, replace_all: bool) -> Result<Vec<String>> {
        let links = self.settings.state_dir.join("links");
        let present = interfaces()?;
        let workload_prog = object_prog(&self.tc, TC_PROG)?;
        let host_prog = object_prog(&self.tc, TC_HOST_PROG)?;
        let mut newly = Vec::new();
        let mut errors = Vec::new();
        // Wanted interfaces whose attach failed: their old link (if any) stays
        // pinned and forwarding.
        let mut failed = std::collections::BTreeSet::new();
        let mut now = BTreeMap::new();
        for (name, idx) in &present {
            if !self.wanted(name) {
                continue;
            }
            let host = self.is_host(name);
            let known =
                self.attached.get(name).is_some_and(|(i, _)| i == idx) && self.attached_host.get(name) == Some(&host);
            if known && !replace_all {
                now.insert(name.clone(), self.attached[name]);
                continue;
            }
            let prog = if host { &host_prog } else { &workload_prog };
            match attach::attach_tc(prog, &links, name, *idx) {
                Ok(mode) => {
                    if !known {
                        newly.push(name.clone());
                    }
                    now.insert(name.clone(), (*idx, mode));
                    self.attached_host.insert(name.clone(), host);
                }
                // One interface vanishing mid-attach must not stop the others.
                Err(e) => {
                    errors.push(format!("{name}: {e:#}"));
                    failed.insert(name.clone());
                }
            }
        }
        // Pins of interfaces that are gone or no longer named.
        if let Ok(rd) = std::fs::read_dir(&links) {
            for e in rd.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let (ifname, clsact) = if let Some(n) = file.strip_prefix(attach::TCX_PREFIX) {
                    (n.to_string(), false)
                } else if let Some(n) = file.strip_prefix(attach::CLSACT_PREFIX) {
                    (n.to_string(), true)
                } else {
                    continue;
                };
                if now.contains_key(&ifname) || failed.contains(&ifname) {
                    continue;
                }
                if let Err(err) = trust::pin_present(&e.path()) {
                    errors.push(format!("{err:#}"));
                    continue;
                }
                if clsact {
                    attach::detach_clsact(&e.path(), &ifname);
                } else if let Err(err) = attach::unpin_link(&e.path()) {
                    errors.push(format!("{err:#}"));
                }
                log::info!("detached from {ifname} (gone or no longer matching)");
            }
        }
        self.attached_host.retain(|name, _| now.contains_key(name) || failed.contains(name));
        self.attached = now;
        if let Err(e) = self.sync_iface_map() {
            errors.push(format!("{e:#}"));
        }
        if !errors.is_empty() {
            bail!("attaching the tc program: {}", errors.join("; "));
        }
        Ok(newly)
    }

    /// ep_ifaces_v1 = the attached workload interfaces (host routing's
    /// bpf_redirect_peer targets), by ifindex.
    fn sync_iface_map(&self) -> Result<()> {
        let map = self.map(MAP_IFACES)?;
        let want: BTreeMap<u32, u32> = self
            .attached
            .iter()
            .filter(|(name, _)| self.attached_host.get(*name) == Some(&false))
            .map(|(_, (idx, _))| (*idx, IFACE_F_WORKLOAD))
            .collect();
        let have = mapio::dump(map.as_fd(), 4, 4).with_context(|| format!("reading {MAP_IFACES}"))?;
        for (k, v) in &want {
            if have.get(&k.to_ne_bytes()[..]).map(Vec::as_slice) != Some(&v.to_ne_bytes()[..]) {
                map.update(&k.to_ne_bytes(), &v.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
                    .with_context(|| format!("writing {MAP_IFACES}"))?;
            }
        }
        for k in have.keys() {
            let idx = k.as_slice().try_into().map(u32::from_ne_bytes).unwrap_or(0);
            if !want.contains_key(&idx) {
                map.delete(k).with_context(|| format!("deleting from {MAP_IFACES}"))?;
            }
        }
        Ok(())
    }

    fn sync_cgroup(&mut self) -> Result<()> {
        let links = self.settings.state_dir.join("links");
        match (&self.sock, &self.settings.cgroup) {
            (Some(sock), Some(cg)) => {
                for name in SOCK_PROGS {
                    let prog = object_prog(sock, name)?;
                    attach::attach_cgroup(&prog, &links, cg)?;
                }
            }
            _ => {
                // No --cgroup: never leave socket hooks of an earlier run behind.
                for name in SOCK_PROGS {
                    let pin = links.join(format!("{}{name}", attach::CGROUP_PREFIX));
                    if trust::pin_present(&pin)? {
                        attach::unpin_link(&pin)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Interfaces currently attached, with how.
    pub fn attached(&self) -> Vec<(String, TcMode)> {
        self.attached.iter().map(|(n, (_, m))| (n.clone(), *m)).collect()
    }

    /// Handle to any shared map by pinned name (tests, daemon diagnostics).
    pub fn map(&self, name: &str) -> Result<MapHandle> {
        object_map(&self.tc, name)
    }
}

impl MapBackend for Datapath {
    fn dump(&self, map: MapId) -> Result<Entries, MapError> {
        self.planned.dump(map)
    }
    fn update(&mut self, map: MapId, key: &[u8], value: &[u8]) -> Result<(), MapError> {
        self.planned.update(map, key, value)
    }
    fn delete(&mut self, map: MapId, key: &[u8]) -> Result<(), MapError> {
        self.planned.delete(map, key)
    }
    fn capacity(&self, map: MapId) -> usize {
        self.planned.capacity(map)
    }
}

/// This process's network namespace cookie (what bpf_get_netns_cookie gives
/// the programs for sockets of this namespace), via SO_NETNS_COOKIE.
fn netns_cookie() -> Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain syscalls on a socket owned (and closed) here.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for SO_NETNS_COOKIE");
    }
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid fd and an 8-byte buffer with its length.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE, (&raw mut cookie).cast(), &mut len)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(SO_NETNS_COOKIE)");
    }
    Ok(cookie)
}

/// The planned maps of a data plane pinned under `state_dir`, without loading
/// programs (`edgeplane plan`); None when nothing is pinned there.
pub fn open_pinned_maps(state_dir: &Path) -> Result<Option<PinnedMaps>> {
    if !state_dir.join(MapId::Services.pin_name()).exists() {
        return Ok(None);
    }
    PinnedMaps::open(state_dir).map(Some)
}

/// ep_cfg_v1[0] of a pinned data plane, without loading anything; None when
/// nothing is pinned under `state_dir`.
pub fn read_pinned_config(state_dir: &Path) -> Result<Option<Config>> {
    let path = state_dir.join(MAP_CFG);
    if !path.exists() {
        return Ok(None);
    }
    let map = MapHandle::from_pinned_path(&path).with_context(|| format!("opening {}", path.display()))?;
    let v = map.lookup(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY).context("reading ep_cfg_v1")?;
    Ok(Some(v.and_then(|b| Config::from_bytes(&b)).unwrap_or_default()))
}
