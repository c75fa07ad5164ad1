//! Read-only views of a pinned data plane (no programs loaded): map fill,
//! drop counters per reason, event counters, conntrack pressure, links and
//! the recent drop events; and `reset`, which detaches and unpins it all.

use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{Context, Result, bail};
use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::{Link, MapCore, MapHandle, MapType};
use serde::Serialize;

use super::attach::{CGROUP_PREFIX, CLSACT_PREFIX, TCX_PREFIX, detach_clsact, unpin_link};
use super::mapio::{for_each, percpu_sum};
use super::trust::{self, DEFAULT_LOCK_WAIT, LockWait};
use super::{MAP_CT, MAP_DROPEV, MAP_DROPS, MAP_STATS};
use crate::drop_reason::{DropReason, StatId};
use crate::maps::proto_name;

#[derive(Debug, Clone, Serialize)]
pub struct MapStatus {
    pub name: String,
    pub kind: String,
    /// Live entries (None for arrays, whose every slot always exists).
    pub entries: Option<u64>,
    pub capacity: u32,
    pub fill_percent: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DropCount {
    pub reason: DropReason,
    pub count: u64,
    pub description: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatCount {
    pub name: &'static str,
    pub value: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConntrackStatus {
    /// Tracked flows (each has a forward and a reply entry).
    pub entries: u64,
    pub capacity: u32,
    pub fill_percent: f64,
    pub flows_created: u64,
    /// Flows the datapath removed (endpoint gone, tuple reused after close).
    pub flows_deleted: u64,
    /// Garbage-collection passes, and the flows they removed: idle longer
    /// than their timeout, or closed (TCP RST / FIN both ways, SCTP end).
    pub gc_runs: u64,
    pub gc_deleted_expired: u64,
    pub gc_deleted_closed: u64,
    /// New flows refused because the table was full (never an eviction: the
    /// map does not evict; service flows are dropped as `conntrack-full`).
    pub insert_failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    pub pin: String,
    pub kind: &'static str,
    pub target: String,
    /// False when the pinned link no longer reaches its interface (deleted).
    pub attached: bool,
    pub prog_id: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state_dir: String,
    pub maps: Vec<MapStatus>,
    pub drops: Vec<DropCount>,
    pub stats: Vec<StatCount>,
    pub conntrack: Option<ConntrackStatus>,
    pub links: Vec<LinkStatus>,
    /// The programs behind the links, with the kernel's run statistics.
    pub programs: Vec<ProgramStats>,
    /// kernel.bpf_stats_enabled: run counts and times only grow while it is 1.
    pub bpf_stats_enabled: bool,
}

/// A program's runs as the kernel counts them (kernel.bpf_stats_enabled=1).
#[derive(Debug, Clone, Serialize)]
pub struct ProgramStats {
    pub id: u32,
    pub name: String,
    /// Links running it (one per interface or socket hook).
    pub links: usize,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Run statistics of the programs the links run (best effort: an id that
/// vanished meanwhile is left out).
fn read_programs(links: &[LinkStatus]) -> Vec<ProgramStats> {
    let mut by_id: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
    for id in links.iter().filter_map(|l| l.prog_id) {
        *by_id.entry(id).or_default() += 1;
    }
    if by_id.is_empty() {
        return Vec::new();
    }
    libbpf_rs::query::ProgInfoIter::default()
        .filter_map(|p| {
            let links = *by_id.get(&p.id)?;
            Some(ProgramStats {
                id: p.id,
                name: p.name.to_string_lossy().into_owned(),
                links,
                run_count: p.run_cnt,
                run_time_ns: p.run_time_ns,
            })
        })
        .collect()
}

fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
}

fn kind_name(t: MapType) -> String {
    match t {
        MapType::Hash => "hash".into(),
        MapType::LruHash => "lru_hash".into(),
        MapType::Array => "array".into(),
        MapType::PercpuArray => "percpu_array".into(),
        MapType::LpmTrie => "lpm_trie".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Maps without a count of entries: arrays (every slot exists) and ring
/// buffers (capacity is bytes).
fn has_no_entries(t: MapType) -> bool {
    matches!(t, MapType::Array | MapType::PercpuArray | MapType::RingBuf)
}

fn open_ro(path: &Path) -> Result<MapHandle> {
    MapHandle::from_pinned_path_with_file_flags(path, libbpf_sys::BPF_F_RDONLY)
        .with_context(|| format!("opening {} read-only", path.display()))
}

fn count_entries(h: &MapHandle) -> Result<u64> {
    let mut n = 0u64;
    for_each(h.as_fd(), h.key_size() as usize, h.value_size() as usize, |_, _| n += 1)
        .with_context(|| format!("counting entries of {}", h.name().to_string_lossy()))?;
    Ok(n)
}

/// Status of the data plane pinned under `state_dir`, read without loading programs.
pub fn read_status(state_dir: &Path) -> Result<Status> {
    super::ensure_pinned(state_dir)?;
    let rd = std::fs::read_dir(state_dir).with_context(|| format!("reading {}", state_dir.display()))?;
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ep_"))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(super::nothing_pinned(state_dir));
    }
    let mut maps = Vec::new();
    for name in &names {
        let h = open_ro(&state_dir.join(name))?;
        let t = h.map_type();
        let capacity = h.max_entries();
        let entries = if has_no_entries(t) { None } else { Some(count_entries(&h)?) };
        let fill_percent = entries.map(|e| if capacity == 0 { 0.0 } else { e as f64 * 100.0 / capacity as f64 });
        maps.push(MapStatus { name: name.clone(), kind: kind_name(t), entries, capacity, fill_percent });
    }

    let mut drops = Vec::new();
    if names.iter().any(|n| n == MAP_DROPS) {
        let h = open_ro(&state_dir.join(MAP_DROPS))?;
        for r in DropReason::ALL {
            if *r == DropReason::None {
                continue;
            }
            drops.push(DropCount { reason: *r, count: percpu_sum(&h, *r as u32)?, description: r.description() });
        }
    }
    let mut stats = Vec::new();
    if names.iter().any(|n| n == MAP_STATS) {
        let h = open_ro(&state_dir.join(MAP_STATS))?;
        for s in StatId::ALL {
            stats.push(StatCount { name: s.label(), value: percpu_sum(&h, *s as u32)? });
        }
    }
    let stat = |id: StatId| stats.iter().find(|s| s.name == id.label()).map_or(0, |s| s.value);
    let conntrack = maps.iter().find(|m| m.name == MAP_CT).map(|m| {
        let entries = m.entries.unwrap_or(0);
        let created = stat(StatId::CtCreated);
        let deleted = stat(StatId::CtDeleted);
        ConntrackStatus {
            entries: entries / 2,
            capacity: m.capacity / 2,
            fill_percent: m.fill_percent.unwrap_or(0.0),
            flows_created: created,
            flows_deleted: deleted,
            gc_runs: stat(StatId::CtGcRuns),
            gc_deleted_expired: stat(StatId::CtGcExpired),
            gc_deleted_closed: stat(StatId::CtGcClosed),
            insert_failed: stat(StatId::CtInsertFailed),
        }
    });
    let links = read_links(state_dir);
    Ok(Status {
        state_dir: state_dir.display().to_string(),
        maps,
        drops,
        stats,
        conntrack,
        programs: read_programs(&links),
        links,
        bpf_stats_enabled: bpf_stats_enabled(),
    })
}

fn read_links(state_dir: &Path) -> Vec<LinkStatus> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(state_dir.join("links")) else { return out };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let pin = e.file_name().to_string_lossy().into_owned();
        let (kind, target) = if let Some(n) = pin.strip_prefix(TCX_PREFIX) {
            ("tcx", n.to_string())
        } else if let Some(n) = pin.strip_prefix(CLSACT_PREFIX) {
            ("clsact", n.to_string())
        } else if let Some(n) = pin.strip_prefix(CGROUP_PREFIX) {
            ("cgroup", n.to_string())
        } else {
            ("other", pin.clone())
        };
        let (attached, prog_id) = if kind == "clsact" {
            (super::attach::ifindex(&target).is_some(), None)
        } else {
            match Link::open(e.path()).and_then(|l| l.info()) {
                Ok(info) => {
                    let attached = match info.info {
                        LinkTypeInfo::Tcx(t) => t.ifindex != 0,
                        LinkTypeInfo::Cgroup(c) => c.cgroup_id != 0,
                        _ => true,
                    };
                    (attached, Some(info.prog_id))
                }
                Err(_) => (false, None),
            }
        };
        out.push(LinkStatus { pin, kind, target, attached, prog_id });
    }
    out
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "state: {}", self.state_dir)?;
        writeln!(f, "\nmaps:")?;
        writeln!(f, "  {:<16} {:<13} {:>10} {:>10} {:>7}", "name", "kind", "entries", "capacity", "fill")?;
        for m in &self.maps {
            let entries = m.entries.map_or("-".to_string(), |e| e.to_string());
            let fill = m.fill_percent.map_or("-".to_string(), |p| format!("{p:.1}%"));
            writeln!(f, "  {:<16} {:<13} {:>10} {:>10} {:>7}", m.name, m.kind, entries, m.capacity, fill)?;
        }
        if let Some(ct) = &self.conntrack {
            writeln!(
                f,
                "\nconntrack: {} flows of {} ({:.1}%), {} created, {} deleted by the datapath",
                ct.entries, ct.capacity, ct.fill_percent, ct.flows_created, ct.flows_deleted
            )?;
            writeln!(
                f,
                "  gc: {} runs, {} expired and {} closed flows removed; insert_failed (table full): {}",
                ct.gc_runs, ct.gc_deleted_expired, ct.gc_deleted_closed, ct.insert_failed
            )?;
        }
        writeln!(f, "\ndrops:")?;
        for d in &self.drops {
            writeln!(f, "  {:<24} {:>12}  {}", d.reason.label(), d.count, d.description)?;
        }
        writeln!(f, "\ncounters:")?;
        for s in &self.stats {
            writeln!(f, "  {:<28} {:>12}", s.name, s.value)?;
        }
        writeln!(f, "\nlinks:")?;
        if self.links.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for l in &self.links {
            let prog = l.prog_id.map_or("-".to_string(), |p| p.to_string());
            let state = if l.attached { "attached" } else { "DETACHED" };
            writeln!(f, "  {:<7} {:<20} {:<9} prog {}", l.kind, l.target, state, prog)?;
        }
        if !self.programs.is_empty() {
            let note = if self.bpf_stats_enabled { "" } else { " (counting only while kernel.bpf_stats_enabled=1)" };
            writeln!(
                f,
                "
programs{note}:"
            )?;
            for p in &self.programs {
                let avg = p.run_time_ns.checked_div(p.run_count).map_or("-".to_string(), |ns| format!("{ns} ns/run"));
                writeln!(f, "  {:<6} {:<22} {:>3} link(s) {:>14} runs  {}", p.id, p.name, p.links, p.run_count, avg)?;
            }
        }
        Ok(())
    }
}

/// One recorded drop (ep_dropev_v1).
#[derive(Debug, Clone, Serialize)]
pub struct DropEvent {
    /// bpf_ktime_get_ns() of the drop (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Seconds between the drop and the read.
    pub age_s: f64,
    pub reason: String,
    pub proto: String,
    pub saddr: Ipv4Addr,
    pub sport: u16,
    pub daddr: Ipv4Addr,
    pub dport: u16,
    pub direction: &'static str,
    pub ifindex: u32,
    pub endpoint: u32,
    /// `namespace/name` of the endpoint's pod, when the caller could resolve it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl fmt::Display for DropEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>9.3}s ago  {:<22} {:<5} {}:{} -> {}:{}  if {}",
            self.age_s, self.reason, self.proto, self.saddr, self.sport, self.daddr, self.dport, self.ifindex
        )?;
        if self.reason.starts_with("policy") {
            write!(f, "  {} endpoint {}", self.direction, self.endpoint)?;
            if let Some(pod) = &self.pod {
                write!(f, " ({pod})")?;
            }
        }
        Ok(())
    }
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns().
pub fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime into a zeroed timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Conntrack inserts refused because the table was full (`drops` shows it
/// next to the events: a refused plain flow records no drop event).
pub fn conntrack_insert_failed(state_dir: &Path) -> Result<u64> {
    let h = open_ro(&state_dir.join(MAP_STATS))?;
    percpu_sum(&h, StatId::CtInsertFailed as u32)
}

/// The `n` most recent drop events, newest first.
pub fn recent_drops(state_dir: &Path, n: usize) -> Result<Vec<DropEvent>> {
    super::ensure_pinned(state_dir)?;
    let h = open_ro(&state_dir.join(MAP_DROPEV))?;
    let now = monotonic_ns();
    let mut out = Vec::new();
    for slot in 0..h.max_entries() {
        let Some(v) = h.lookup(&slot.to_ne_bytes(), libbpf_rs::MapFlags::ANY)? else { continue };
        if v.len() < 32 {
            continue;
        }
        let ts = u64::from_ne_bytes(v[0..8].try_into().unwrap_or_default());
        if ts == 0 {
            continue;
        }
        let reason = u32::from(v[21]);
        out.push(DropEvent {
            ts_ns: ts,
            age_s: now.saturating_sub(ts) as f64 / 1e9,
            reason: DropReason::from_u32(reason).map_or(format!("reason-{reason}"), |r| r.label().to_string()),
            proto: proto_name(v[20]),
            saddr: Ipv4Addr::new(v[8], v[9], v[10], v[11]),
            daddr: Ipv4Addr::new(v[12], v[13], v[14], v[15]),
            sport: u16::from_be_bytes([v[16], v[17]]),
            dport: u16::from_be_bytes([v[18], v[19]]),
            direction: if v[22] == 1 { "egress" } else { "ingress" },
            ifindex: u32::from_ne_bytes(v[24..28].try_into().unwrap_or_default()),
            endpoint: u32::from_ne_bytes(v[28..32].try_into().unwrap_or_default()),
            pod: None,
        });
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.ts_ns));
    out.truncate(n);
    Ok(out)
}

/// Detach everything (links, our clsact filters) and unpin everything under
/// `state_dir`. Forwarding through edgeplane stops. The directory is checked
/// and locked like for `apply` (never through a symlink: that could lead to
/// another instance's pins); entries that are not our pins (symlinks, another
/// user's files) are removed without being opened.
pub fn reset(state_dir: &Path) -> Result<()> {
    let Some(lock) = trust::lock_state_dir(state_dir, false, LockWait::Upto(DEFAULT_LOCK_WAIT))? else {
        return Ok(());
    };
    let links = state_dir.join("links");
    if trust::open_checked_dir(&links, false)?.is_some() {
        for e in std::fs::read_dir(&links).with_context(|| format!("reading {}", links.display()))?.flatten() {
            let path = e.path();
            if let Err(err) = trust::pin_present(&path) {
                log::warn!("{err:#}; removing it without detaching through it");
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                continue;
            }
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(ifname) = file.strip_prefix(CLSACT_PREFIX) {
                detach_clsact(&path, ifname);
            } else {
                unpin_link(&path)?;
            }
        }
        std::fs::remove_dir(&links).with_context(|| format!("removing {}", links.display()))?;
    }
    for e in std::fs::read_dir(state_dir).with_context(|| format!("reading {}", state_dir.display()))?.flatten() {
        let p = e.path();
        // file_type() of a directory entry does not follow symlinks.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            bail!("unexpected directory {} in the state dir; not removing it", p.display());
        }
        std::fs::remove_file(&p).with_context(|| format!("unpinning {}", p.display()))?;
    }
    std::fs::remove_dir(state_dir).with_context(|| format!("removing {}", state_dir.display()))?;
    drop(lock);
    Ok(())
}
