//! `edgeplane services` and `edgeplane conntrack`: what the pinned maps hold,
//! decoded (layouts from `maps::layout`, mirrors of bpf/edgeplane.h) and
//! formatted as a text table or JSON. Decoding and formatting are pure; the
//! two command functions at the end do the reading (through `datapath`, the
//! only bpf(2) caller, and `model` for names).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::compile::{self, Frontend, NodeContext, ServiceEntry};
use crate::datapath::ct_gc::{forward_key_of, is_pair, reply_key_of};
use crate::maps::layout::{
    Backend, CT_DIR_FORWARD, CT_F_CLOSED, CT_F_CLOSING, CT_F_ESTABLISHED, CT_F_SERVICE, CT_F_SOURCE_NATED, CtKey,
    CtValue, SCOPE_CLUSTER, SCOPE_EXTERNAL, SVC_F_AFFINITY, SVC_F_DROP_EMPTY, SVC_F_DSR_OK, SVC_F_NODE_ADDR,
    SVC_F_SOURCE_RANGES, SVC_F_TERMINATING, SvcKey, SvcValue, backend_id_from_key,
};
use crate::maps::{Entries, proto_name};

// ---- services -------------------------------------------------------------

/// One backend of a frontend as programmed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendView {
    /// Id in ep_be_v1.
    pub id: u32,
    /// None when a slot points at an id missing from ep_be_v1 (inconsistent).
    pub addr: Option<Ipv4Addr>,
    pub port: Option<u16>,
    /// Slots (1..=count) holding this backend; empty for a draining one.
    pub slots: Vec<u16>,
    /// Share of new flows: the number of slots.
    pub weight: usize,
    /// Still listed (not ready, terminating) and kept in ep_be_v1 so its
    /// established flows finish, but given no new flows.
    pub draining: bool,
}

/// One frontend (ep_svc_v1 slot 0) and its backends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceView {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: String,
    pub scope: &'static str,
    pub svc_id: u32,
    /// `namespace/name:port` from the config dir; None when not resolvable.
    pub name: Option<String>,
    pub flags: Vec<&'static str>,
    /// Seconds of ClientIP affinity (0 without affinity).
    pub affinity_timeout: u32,
    /// Backend slots (slot 0's count); 0 rejects new flows.
    pub backend_count: u16,
    pub backends: Vec<BackendView>,
}

fn scope_name(scope: u8) -> &'static str {
    match scope {
        SCOPE_CLUSTER => "cluster",
        SCOPE_EXTERNAL => "external",
        _ => "unknown",
    }
}

fn svc_flag_names(flags: u16) -> Vec<&'static str> {
    const NAMES: [(u16, &str); 6] = [
        (SVC_F_AFFINITY, "affinity"),
        (SVC_F_TERMINATING, "terminating"),
        (SVC_F_DROP_EMPTY, "drop-if-empty"),
        (SVC_F_SOURCE_RANGES, "source-ranges"),
        (SVC_F_NODE_ADDR, "node-address"),
        (SVC_F_DSR_OK, "dsr-ok"),
    ];
    NAMES.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, name)| *name).collect()
}

/// Names of the frontends the config dir defines, and their draining backends.
pub type ServiceNames = BTreeMap<Frontend, ServiceEntry>;

/// ep_svc_v1 + ep_be_v1 (+ what the config dir compiles to, for names and
/// draining backends) → one view per frontend, sorted by VIP, port, proto.
pub fn services_from_maps(svc: &Entries, be: &Entries, names: &ServiceNames) -> Vec<ServiceView> {
    let backends: BTreeMap<u32, Backend> =
        be.iter().filter_map(|(k, v)| Some((backend_id_from_key(k)?, Backend::from_bytes(v)?))).collect();
    let mut heads: BTreeMap<Frontend, SvcValue> = BTreeMap::new();
    let mut slots: BTreeMap<Frontend, BTreeMap<u16, u32>> = BTreeMap::new();
    for (k, v) in svc {
        let (Some(key), Some(val)) = (SvcKey::from_bytes(k), SvcValue::from_bytes(v)) else { continue };
        let fe = Frontend { vip: key.vip(), port: key.port(), proto: key.proto, scope: key.scope };
        if key.slot == 0 {
            heads.insert(fe, val);
        } else {
            slots.entry(fe).or_default().insert(key.slot, val.backend_id);
        }
    }
    let mut out = Vec::new();
    for (fe, head) in &heads {
        let mut by_id: BTreeMap<u32, Vec<u16>> = BTreeMap::new();
        // Only slots 1..=count are reachable; stray ones (mid-apply) are not shown.
        for (slot, id) in slots.get(fe).into_iter().flatten() {
            if *slot <= head.count {
                by_id.entry(*id).or_default().push(*slot);
            }
        }
        let mut views: Vec<BackendView> = by_id
            .into_iter()
            .map(|(id, slots)| {
                let b = backends.get(&id);
                BackendView {
                    id,
                    addr: b.map(Backend::addr),
                    port: b.map(Backend::port),
                    weight: slots.len(),
                    slots,
                    draining: false,
                }
            })
            .collect();
        let entry = names.get(fe);
        if let Some(entry) = entry {
            for d in &entry.draining {
                let found = backends
                    .iter()
                    .find(|(_, b)| b.addr() == d.addr && b.port() == d.port && b.proto == d.proto)
                    .map(|(id, _)| *id);
                if let Some(id) = found
                    && !views.iter().any(|v| v.id == id)
                {
                    views.push(BackendView {
                        id,
                        addr: Some(d.addr),
                        port: Some(d.port),
                        slots: vec![],
                        weight: 0,
                        draining: true,
                    });
                }
            }
        }
        views.sort_by_key(|v| (v.draining, v.slots.first().copied(), v.addr, v.port));
        out.push(ServiceView {
            vip: fe.vip,
            port: fe.port,
            proto: proto_name(fe.proto),
            scope: scope_name(fe.scope),
            svc_id: head.svc_id,
            name: entry.map(|e| e.name.clone()),
            flags: svc_flag_names(head.flags),
            affinity_timeout: head.affinity_timeout,
            backend_count: head.count,
            backends: views,
        });
    }
    out
}

fn addr_port(addr: Option<Ipv4Addr>, port: Option<u16>) -> String {
    match (addr, port) {
        (Some(a), Some(p)) => format!("{a}:{p}"),
        _ => "(missing)".into(),
    }
}

/// The `services` text table: one line per frontend, one indented line per backend.
pub struct ServicesTable<'a>(pub &'a [ServiceView]);

impl fmt::Display for ServicesTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<22} {:<5} {:<8} {:<32} {:<20} {:>8}",
            "FRONTEND", "PROTO", "ID", "SERVICE", "FLAGS", "BACKENDS"
        )?;
        if self.0.is_empty() {
            writeln!(f, "(no services programmed)")?;
        }
        for s in self.0 {
            let flags = if s.flags.is_empty() {
                "-".to_string()
            } else if s.flags.contains(&"affinity") {
                s.flags.join(",").replace("affinity", &format!("affinity={}s", s.affinity_timeout))
            } else {
                s.flags.join(",")
            };
            let count = if s.backend_count == 0 { "0 (reject)".to_string() } else { s.backend_count.to_string() };
            writeln!(
                f,
                "{:<22} {:<5} {:<8} {:<32} {:<20} {:>8}",
                format!("{}:{}", s.vip, s.port),
                s.proto,
                s.svc_id,
                s.name.as_deref().unwrap_or("-"),
                flags,
                count
            )?;
            for b in &s.backends {
                let at = if b.draining {
                    "draining (no new flows)".to_string()
                } else {
                    let slots: Vec<String> = b.slots.iter().map(u16::to_string).collect();
                    format!("slot {} weight {}", slots.join(","), b.weight)
                };
                writeln!(f, "  -> {:<22} id {:<6} {at}", addr_port(b.addr, b.port), b.id)?;
            }
        }
        Ok(())
    }
}

// ---- conntrack ------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    /// TCP/SCTP: no reply seen yet.
    Syn,
    /// UDP/ICMP: no reply seen yet.
    New,
    Established,
    /// FIN (SCTP SHUTDOWN) seen in one direction.
    Closing,
    /// RST, or FIN both ways: removed after the closing timeout.
    Closed,
}

/// State of a flow from the flags of its forward and reply entries (as the
/// garbage collector judges it, `ct_gc::CtTimeouts::for_flow`).
pub fn ct_state(proto: u8, fwd: u16, reply: u16) -> CtState {
    let union = fwd | reply;
    if union & CT_F_CLOSED != 0 || (fwd & CT_F_CLOSING != 0 && reply & CT_F_CLOSING != 0) {
        CtState::Closed
    } else if union & CT_F_CLOSING != 0 {
        CtState::Closing
    } else if union & CT_F_ESTABLISHED != 0 {
        CtState::Established
    } else if matches!(proto, 6 | 132) {
        CtState::Syn
    } else {
        CtState::New
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub addr: Ipv4Addr,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

/// The translation of a load-balanced flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Translation {
    /// Backend the flow was sent to.
    pub backend: Endpoint,
    pub backend_id: u32,
    pub svc_id: u32,
    /// Source the backend sees when the client is the backend itself (hairpin SNAT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hairpin_source: Option<Ipv4Addr>,
    /// Client source port remapped to avoid a reply-tuple clash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_port: Option<u16>,
}

/// One tracked flow: its forward entry with the matching reply entry, or an
/// entry whose partner is missing (direction says which one it is).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtFlow {
    pub proto: String,
    pub state: CtState,
    /// Seconds since the last packet of either direction (the datapath
    /// refreshes last_seen_ns at most once a second, EP_CT_TOUCH_NS).
    pub age_s: f64,
    /// Seconds since the flow was created.
    pub lifetime_s: f64,
    /// "forward" (both entries, or the forward one only) or "reply" (an orphan reply entry).
    pub direction: &'static str,
    /// Whether the entry of the other direction is present.
    pub paired: bool,
    /// The tuple as its first packet had it (client → VIP or pod).
    pub src: Endpoint,
    pub dst: Endpoint,
    /// Set for load-balanced flows.
    pub translation: Option<Translation>,
}

/// Filters of `edgeplane conntrack`: an address or port on either side
/// (original tuple or translated backend).
#[derive(Debug, Clone, Copy, Default)]
pub struct CtFilter {
    pub addr: Option<Ipv4Addr>,
    pub port: Option<u16>,
}

impl CtFilter {
    fn matches(&self, f: &CtFlow) -> bool {
        let t = f.translation.as_ref();
        let addr_ok = self.addr.is_none_or(|a| {
            f.src.addr == a || f.dst.addr == a || t.is_some_and(|t| t.backend.addr == a || t.hairpin_source == Some(a))
        });
        let port_ok = self.port.is_none_or(|p| {
            f.src.port == p || f.dst.port == p || t.is_some_and(|t| t.backend.port == p || t.client_port == Some(p))
        });
        addr_ok && port_ok
    }
}

fn ep(addr: [u8; 4], port: [u8; 2]) -> Endpoint {
    Endpoint { addr: Ipv4Addr::from(addr), port: u16::from_be_bytes(port) }
}

fn secs(now_ns: u64, then_ns: u64) -> f64 {
    now_ns.saturating_sub(then_ns) as f64 / 1e9
}

/// Order of the listing: protocol, then the tuple as the flow's first packet had it.
fn tuple_order(k: &CtKey) -> (u8, [u8; 4], [u8; 2], [u8; 4], [u8; 2], u8) {
    (k.proto, k.saddr, k.sport, k.daddr, k.dport, k.dir)
}

fn lookup<'a>(sorted: &'a [(CtKey, CtValue)], key: &CtKey) -> Option<&'a CtValue> {
    let order = tuple_order(key);
    sorted.binary_search_by(|(k, _)| tuple_order(k).cmp(&order)).ok().map(|i| &sorted[i].1)
}

/// The flow an entry stands for, or None for a reply entry that is shown
/// with its forward entry. `sorted` is every entry, sorted by [`tuple_order`].
fn flow_of(sorted: &[(CtKey, CtValue)], k: &CtKey, v: &CtValue, now_ns: u64) -> Option<CtFlow> {
    if k.dir == CT_DIR_FORWARD {
        let rkey = reply_key_of(k, v);
        let reply = lookup(sorted, &rkey).filter(|r| is_pair(k, v, &rkey, r));
        let rflags = reply.map_or(0, |r| r.flags);
        let last = reply.map_or(v.last_seen_ns, |r| r.last_seen_ns.max(v.last_seen_ns));
        let translation = (v.flags & CT_F_SERVICE != 0).then(|| Translation {
            backend: ep(v.nat_addr, v.nat_port),
            backend_id: v.backend_id,
            svc_id: v.svc_id,
            hairpin_source: (v.flags & CT_F_SOURCE_NATED != 0).then(|| Ipv4Addr::from(v.hairpin_addr)),
            client_port: (v.alt_port != [0, 0]).then(|| u16::from_be_bytes(v.alt_port)),
        });
        return Some(CtFlow {
            proto: proto_name(k.proto),
            state: ct_state(k.proto, v.flags, rflags),
            age_s: secs(now_ns, last),
            lifetime_s: secs(now_ns, v.created_ns),
            direction: "forward",
            paired: reply.is_some(),
            src: ep(k.saddr, k.sport),
            dst: ep(k.daddr, k.dport),
            translation,
        });
    }
    let fkey = forward_key_of(k, v);
    if lookup(sorted, &fkey).is_some_and(|f| is_pair(&fkey, f, k, v)) {
        return None;
    }
    // An orphan reply entry: shown as the reply packet's tuple, the backend
    // (for a load-balanced flow) being its source.
    let translation = (v.flags & CT_F_SERVICE != 0).then(|| Translation {
        backend: ep(k.saddr, k.sport),
        backend_id: v.backend_id,
        svc_id: v.svc_id,
        hairpin_source: None,
        client_port: None,
    });
    Some(CtFlow {
        proto: proto_name(k.proto),
        state: ct_state(k.proto, 0, v.flags),
        age_s: secs(now_ns, v.last_seen_ns),
        lifetime_s: secs(now_ns, v.created_ns),
        direction: "reply",
        paired: false,
        src: ep(k.saddr, k.sport),
        dst: ep(k.daddr, k.dport),
        translation,
    })
}

/// What `edgeplane conntrack` prints: the matching flows (at most `limit`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtListing {
    /// Flows matching the filters.
    pub matched: usize,
    /// Matching flows left out by the limit.
    pub more: usize,
    pub flows: Vec<CtFlow>,
}

/// Conntrack entries → the flows matching `filter` (forward entries joined
/// with their reply entry; partnerless entries on their own), sorted by
/// protocol and tuple, at most `limit` of them. Sorts `entries` in place and
/// builds only the flows it returns (a full table is ~1M entries).
pub fn conntrack_listing(entries: &mut [(CtKey, CtValue)], now_ns: u64, filter: &CtFilter, limit: usize) -> CtListing {
    entries.sort_unstable_by_key(|(k, _)| tuple_order(k));
    let sorted: &[(CtKey, CtValue)] = entries;
    let mut flows = Vec::new();
    let mut matched = 0;
    for (k, v) in sorted {
        let Some(flow) = flow_of(sorted, k, v, now_ns) else { continue };
        if filter.matches(&flow) {
            matched += 1;
            if flows.len() < limit {
                flows.push(flow);
            }
        }
    }
    CtListing { matched, more: matched - flows.len(), flows }
}

/// Every flow of `entries` (no filter, no limit).
pub fn flows_from_entries(entries: &[(CtKey, CtValue)], now_ns: u64) -> Vec<CtFlow> {
    conntrack_listing(&mut entries.to_vec(), now_ns, &CtFilter::default(), usize::MAX).flows
}

fn state_name(s: CtState) -> &'static str {
    match s {
        CtState::Syn => "syn",
        CtState::New => "new",
        CtState::Established => "established",
        CtState::Closing => "closing",
        CtState::Closed => "closed",
    }
}

impl fmt::Display for CtListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<5} {:<12} {:>9} {:<8} {:<22} {:<22} TRANSLATION",
            "PROTO", "STATE", "AGE", "DIR", "SOURCE", "DESTINATION"
        )?;
        for c in &self.flows {
            let mut t = match &c.translation {
                Some(t) if c.direction == "reply" => format!("from backend {} (svc {})", t.backend, t.svc_id),
                Some(t) => format!("-> {} (backend {}, svc {})", t.backend, t.backend_id, t.svc_id),
                None => "-".into(),
            };
            if let Some(tr) = &c.translation {
                if let Some(h) = tr.hairpin_source {
                    t.push_str(&format!(" hairpin src {h}"));
                }
                if let Some(p) = tr.client_port {
                    t.push_str(&format!(" client port {p}"));
                }
            }
            let dir = if c.paired || c.direction == "reply" { c.direction.to_string() } else { "fwd-only".into() };
            writeln!(
                f,
                "{:<5} {:<12} {:>8.1}s {:<8} {:<22} {:<22} {t}",
                c.proto,
                state_name(c.state),
                c.age_s,
                dir,
                c.src.to_string(),
                c.dst.to_string()
            )?;
        }
        if self.flows.is_empty() {
            writeln!(f, "(no matching flows)")?;
        }
        if self.more > 0 {
            writeln!(f, "... {} more matching flows not shown (raise --limit)", self.more)?;
        }
        Ok(())
    }
}

// ---- the commands (I/O through datapath and model) ------------------------

/// `namespace/name:port` of every frontend the config dir compiles to (best
/// effort: an unreadable directory gives no names).
pub fn service_names(settings: &crate::config::Settings) -> ServiceNames {
    let limits = crate::daemon::limits(settings);
    let Ok(loaded) = crate::model::load_dirs(std::slice::from_ref(&settings.config_dir), &limits) else {
        return ServiceNames::new();
    };
    let node = NodeContext::from_settings(settings);
    compile::compile_services(&loaded.cluster, &node).0.services
}

/// Service names by (address, port, proto), whatever the frontend's scope.
pub fn names_by_frontend(names: ServiceNames) -> BTreeMap<(Ipv4Addr, u16, u8), String> {
    let mut out = BTreeMap::new();
    for (fe, entry) in names {
        out.entry((fe.vip, fe.port, fe.proto)).or_insert(entry.name);
    }
    out
}

/// Writes `v` as pretty JSON to stdout, streamed (a listing can be large):
/// 0, or 2 after saying why it could not.
pub(crate) fn print_json<T: Serialize>(v: &T) -> u8 {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, v).map_err(std::io::Error::from);
    match written.and_then(|()| writeln!(out)).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            2
        }
    }
}

/// `edgeplane services`
pub fn services(settings: &crate::config::Settings, json: bool) -> u8 {
    let (svc, be) = match crate::datapath::read_service_maps(&settings.state_dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {}", crate::datapath::explain(&e));
            return 2;
        }
    };
    let views = services_from_maps(&svc, &be, &service_names(settings));
    if json {
        return print_json(&views);
    }
    print!("{}", ServicesTable(&views));
    0
}

/// `edgeplane conntrack`
pub fn conntrack(settings: &crate::config::Settings, json: bool, filter: &CtFilter, limit: usize) -> u8 {
    let (mut entries, now) = match crate::datapath::read_conntrack(&settings.state_dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {}", crate::datapath::explain(&e));
            return 2;
        }
    };
    let listing = conntrack_listing(&mut entries, now, filter, limit);
    if json {
        return print_json(&listing);
    }
    print!("{listing}");
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{BackendAddr, ServiceSet, resolve};
    use crate::maps::MapId;
    use crate::maps::layout::CT_DIR_REPLY;

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);

    fn be(last: u8) -> BackendAddr {
        BackendAddr { addr: Ipv4Addr::new(198, 18, 1, last), port: 8080, proto: 6 }
    }

    fn names(backends: Vec<BackendAddr>, draining: Vec<BackendAddr>, flags: u16) -> ServiceNames {
        let fe = Frontend { vip: VIP, port: 80, proto: 6, scope: SCOPE_CLUSTER };
        ServiceNames::from([(
            fe,
            ServiceEntry { name: "demo/web:http".into(), backends, draining, flags, affinity_timeout: 30 },
        )])
    }

    #[test]
    fn services_decode_what_compile_programs() {
        let n = names(vec![be(10), be(11)], vec![be(12)], SVC_F_AFFINITY);
        let maps = resolve(&ServiceSet { services: n.clone(), ..ServiceSet::default() }, &Default::default());
        let views = services_from_maps(&maps[&MapId::Services], &maps[&MapId::Backends], &n);
        assert_eq!(views.len(), 1);
        let s = &views[0];
        assert_eq!((s.vip, s.port, s.proto.as_str(), s.backend_count), (VIP, 80, "tcp", 2));
        assert_eq!(s.name.as_deref(), Some("demo/web:http"));
        assert_eq!(s.flags, vec!["affinity"]);
        assert_eq!(s.affinity_timeout, 30);
        let shown: Vec<_> = s.backends.iter().map(|b| (b.addr, b.slots.clone(), b.weight, b.draining)).collect();
        assert_eq!(
            shown,
            vec![
                (Some(be(10).addr), vec![1], 1, false),
                (Some(be(11).addr), vec![2], 1, false),
                (Some(be(12).addr), vec![], 0, true),
            ]
        );
        let text = ServicesTable(&views).to_string();
        assert!(text.starts_with("FRONTEND"), "{text}");
        assert!(text.contains("198.19.0.10:80") && text.contains("demo/web:http") && text.contains("affinity=30s"));
        assert!(text.contains("198.18.1.12:8080") && text.contains("draining"), "{text}");
        let json = serde_json::to_value(&views).unwrap();
        assert_eq!(json[0]["backends"][0]["port"], 8080);
    }

    #[test]
    fn services_without_names_keep_ids() {
        let n = names(vec![be(10)], vec![], 0);
        let maps = resolve(&ServiceSet { services: n, ..ServiceSet::default() }, &Default::default());
        let views = services_from_maps(&maps[&MapId::Services], &maps[&MapId::Backends], &ServiceNames::new());
        assert_eq!(views[0].name, None);
        assert_eq!(views[0].svc_id, 1);
        assert!(ServicesTable(&views).to_string().contains(" - "));
    }

    #[test]
    fn a_slot_to_a_missing_backend_shows_as_missing() {
        let n = names(vec![be(10)], vec![], 0);
        let maps = resolve(&ServiceSet { services: n.clone(), ..ServiceSet::default() }, &Default::default());
        let views = services_from_maps(&maps[&MapId::Services], &Entries::new(), &n);
        assert_eq!(views[0].backends[0].addr, None);
        assert!(ServicesTable(&views).to_string().contains("(missing)"));
    }

    fn key(s: [u8; 4], sp: u16, d: [u8; 4], dp: u16, proto: u8, dir: u8) -> CtKey {
        CtKey { saddr: s, daddr: d, sport: sp.to_be_bytes(), dport: dp.to_be_bytes(), proto, dir, _pad0: 0 }
    }

    const CLIENT: [u8; 4] = [198, 18, 0, 2];
    const BACKEND: [u8; 4] = [198, 18, 10, 2];

    /// A load-balanced flow client:40000 -> VIP:80 -> backend:8080, as the datapath writes it.
    fn service_flow(proto: u8, fflags: u16, rflags: u16, seen: u64) -> Vec<(CtKey, CtValue)> {
        let fkey = key(CLIENT, 40000, VIP.octets(), 80, proto, CT_DIR_FORWARD);
        let fval = CtValue {
            nat_addr: BACKEND,
            nat_port: 8080u16.to_be_bytes(),
            backend_id: 3,
            svc_id: 1,
            flags: CT_F_SERVICE | fflags,
            created_ns: 1_000_000_000,
            last_seen_ns: seen,
            ..CtValue::default()
        };
        let rkey = reply_key_of(&fkey, &fval);
        let rval = CtValue {
            nat_addr: VIP.octets(),
            hairpin_addr: CLIENT,
            nat_port: 80u16.to_be_bytes(),
            svc_id: 1,
            flags: CT_F_SERVICE | rflags,
            created_ns: 1_000_000_000,
            last_seen_ns: seen,
            ..CtValue::default()
        };
        assert_eq!(rkey.dir, CT_DIR_REPLY);
        vec![(fkey, fval), (rkey, rval)]
    }

    #[test]
    fn flows_join_both_entries_with_state_and_age() {
        let entries = service_flow(6, 0, CT_F_ESTABLISHED, 9_000_000_000);
        let flows = flows_from_entries(&entries, 10_000_000_000);
        assert_eq!(flows.len(), 1);
        let f = &flows[0];
        assert_eq!((f.state, f.direction, f.paired), (CtState::Established, "forward", true));
        assert!((f.age_s - 1.0).abs() < 1e-9 && (f.lifetime_s - 9.0).abs() < 1e-9);
        assert_eq!(f.dst, Endpoint { addr: VIP, port: 80 });
        let t = f.translation.as_ref().unwrap();
        assert_eq!((t.backend.addr, t.backend.port, t.backend_id), (Ipv4Addr::from(BACKEND), 8080, 3));
        let json = serde_json::to_value(&flows).unwrap();
        assert_eq!(json[0]["state"], "established");
        assert_eq!(json[0]["translation"]["backend"]["addr"], "198.18.10.2");
    }

    #[test]
    fn states_follow_the_flags_of_both_directions() {
        assert_eq!(ct_state(6, 0, 0), CtState::Syn);
        assert_eq!(ct_state(17, 0, 0), CtState::New);
        assert_eq!(ct_state(17, 0, CT_F_ESTABLISHED), CtState::Established);
        assert_eq!(ct_state(6, CT_F_CLOSING, CT_F_ESTABLISHED), CtState::Closing);
        assert_eq!(ct_state(6, CT_F_CLOSING, CT_F_CLOSING | CT_F_ESTABLISHED), CtState::Closed);
        assert_eq!(ct_state(6, 0, CT_F_CLOSED), CtState::Closed);
    }

    #[test]
    fn orphans_plain_flows_filters_and_limit() {
        let mut entries = service_flow(6, 0, CT_F_ESTABLISHED, 5);
        // An orphan reply of another service flow (its forward entry is gone).
        let orphan = service_flow(17, 0, CT_F_ESTABLISHED, 5).remove(1);
        entries.push(orphan);
        // A plain (not load-balanced) flow between two pods, both entries.
        let fkey = key([198, 18, 0, 3], 5000, BACKEND, 9000, 17, CT_DIR_FORWARD);
        let fval =
            CtValue { nat_addr: BACKEND, nat_port: 9000u16.to_be_bytes(), last_seen_ns: 5, ..CtValue::default() };
        let rkey = reply_key_of(&fkey, &fval);
        let rval = CtValue { nat_addr: fkey.saddr, nat_port: fkey.sport, last_seen_ns: 5, ..CtValue::default() };
        entries.extend([(fkey, fval), (rkey, rval)]);

        let flows = flows_from_entries(&entries, 10);
        assert_eq!(flows.len(), 3, "{flows:#?}");
        let dirs: Vec<_> = flows.iter().map(|f| (f.proto.as_str(), f.direction, f.translation.is_some())).collect();
        assert_eq!(dirs, vec![("tcp", "forward", true), ("udp", "forward", false), ("udp", "reply", true)]);
        assert!(flows[1].paired && !flows[2].paired, "the plain flow pairs by its swapped tuple");

        let by_addr = conntrack_listing(&mut entries.clone(), 10, &CtFilter { addr: Some(VIP), port: None }, 1000);
        assert_eq!(by_addr.matched, 1);
        let by_port = conntrack_listing(&mut entries.clone(), 10, &CtFilter { addr: None, port: Some(8080) }, 1000);
        assert_eq!(by_port.matched, 2, "the backend port matches the translated side");
        let both = conntrack_listing(
            &mut entries.clone(),
            10,
            &CtFilter { addr: Some(BACKEND.into()), port: Some(9000) },
            1000,
        );
        assert_eq!(both.matched, 1);
        let limited = conntrack_listing(&mut entries, 10, &CtFilter::default(), 2);
        assert_eq!((limited.matched, limited.flows.len(), limited.more), (3, 2, 1));
        let text = limited.to_string();
        assert!(text.starts_with("PROTO"), "{text}");
        assert!(text.contains("1 more matching flows not shown"), "{text}");
        assert!(text.contains("-> 198.18.10.2:8080"), "{text}");
    }
}
