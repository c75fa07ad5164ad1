//! Conntrack garbage collection: removes flows of ep_ct4_v2 that have been
//! idle longer than the timeout of their protocol and state, as the kernel's
//! conntrack and Cilium's CT GC do. The map is a plain hash (never evicts), so
//! this pass is the only way idle flows leave; closed flows (TCP RST, FIN in
//! both directions, SCTP ABORT / SHUTDOWN COMPLETE) leave after the short
//! closing timeout, which lets the last ACK and retransmissions through.
//!
//! A flow is two entries (FORWARD and REPLY, see bpf/lib/ct.h); each refreshes
//! its own `last_seen_ns` and accumulates its own state flags, so a flow is
//! judged on both together: idle = since the later of the two, state = the
//! union of the flags (CLOSED on either, or CLOSING on both, means closed).
//! An entry whose partner is missing or belongs to another flow (its reply
//! tuple was reused) is an orphan: it expires after its protocol's closing
//! timeout.
//!
//! The pass reads the map in batches and keeps only candidates (entries idle
//! longer than the shortest timeout of their protocol), so memory follows the
//! number of expired entries, not the map size. Before deleting, each entry
//! is read again: if a packet refreshed it meanwhile, the flow is kept.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::mapio;
use crate::drop_reason::StatId;
use crate::maps::layout::{
    CT_DIR_FORWARD, CT_DIR_REPLY, CT_F_CLOSED, CT_F_CLOSING, CT_F_ESTABLISHED, CT_F_SERVICE, CT_F_SOURCE_NATED, CtKey,
    CtValue, PROTO_ICMP, PROTO_SCTP, PROTO_TCP,
};

/// Idle timeouts in seconds (`conntrack-timeouts:` in the settings file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtTimeouts {
    /// TCP before a reply was seen.
    pub tcp_syn: u64,
    pub tcp_established: u64,
    /// TCP after RST, or FIN in both directions.
    pub tcp_closing: u64,
    /// UDP seen in one direction only.
    pub udp: u64,
    /// UDP seen in both directions.
    pub udp_stream: u64,
    pub sctp_init: u64,
    pub sctp_established: u64,
    pub sctp_closing: u64,
    pub icmp: u64,
}

impl Default for CtTimeouts {
    /// The kernel's and Cilium's orders of magnitude: 6 h established TCP
    /// (Cilium), 30 s / 120 s UDP (nf_conntrack), short closing timeouts.
    fn default() -> Self {
        CtTimeouts {
            tcp_syn: 60,
            tcp_established: 21_600,
            tcp_closing: 10,
            udp: 30,
            udp_stream: 120,
            sctp_init: 30,
            sctp_established: 210,
            sctp_closing: 10,
            icmp: 30,
        }
    }
}

impl CtTimeouts {
    /// Settings keys, in documentation order.
    pub const KEYS: [&'static str; 9] = [
        "tcp-syn",
        "tcp-established",
        "tcp-closing",
        "udp",
        "udp-stream",
        "sctp-init",
        "sctp-established",
        "sctp-closing",
        "icmp",
    ];

    /// The field behind a settings key.
    pub fn field_mut(&mut self, key: &str) -> Option<&mut u64> {
        Some(match key {
            "tcp-syn" => &mut self.tcp_syn,
            "tcp-established" => &mut self.tcp_established,
            "tcp-closing" => &mut self.tcp_closing,
            "udp" => &mut self.udp,
            "udp-stream" => &mut self.udp_stream,
            "sctp-init" => &mut self.sctp_init,
            "sctp-established" => &mut self.sctp_established,
            "sctp-closing" => &mut self.sctp_closing,
            "icmp" => &mut self.icmp,
            _ => return None,
        })
    }

    /// The shortest timeout any entry of `proto` can have (orphans included).
    fn min_for(&self, proto: u8) -> u64 {
        match proto {
            PROTO_TCP => self.tcp_syn.min(self.tcp_established).min(self.tcp_closing),
            PROTO_SCTP => self.sctp_init.min(self.sctp_established).min(self.sctp_closing),
            PROTO_ICMP => self.icmp,
            _ => self.udp.min(self.udp_stream),
        }
    }

    /// Timeout of a flow given the flags of its forward and reply entries,
    /// and whether it counts as closed.
    pub fn for_flow(&self, proto: u8, fwd: u16, reply: u16) -> (u64, bool) {
        let union = fwd | reply;
        let closed = union & CT_F_CLOSED != 0 || (fwd & CT_F_CLOSING != 0 && reply & CT_F_CLOSING != 0);
        let established = union & CT_F_ESTABLISHED != 0;
        match proto {
            PROTO_TCP if closed => (self.tcp_closing, true),
            PROTO_TCP if established => (self.tcp_established, false),
            PROTO_TCP => (self.tcp_syn, false),
            PROTO_SCTP if closed => (self.sctp_closing, true),
            PROTO_SCTP if established => (self.sctp_established, false),
            PROTO_SCTP => (self.sctp_init, false),
            PROTO_ICMP => (self.icmp, false),
            _ if established => (self.udp_stream, false),
            _ => (self.udp, false),
        }
    }

    /// Timeout of an entry whose partner is gone or another flow's.
    fn for_orphan(&self, proto: u8) -> (u64, bool) {
        match proto {
            PROTO_TCP => (self.tcp_closing, true),
            PROTO_SCTP => (self.sctp_closing, true),
            PROTO_ICMP => (self.icmp, false),
            _ => (self.udp, false),
        }
    }
}

/// The reply key a forward entry expects (as `ep_ct_delete` derives it).
pub fn reply_key_of(fkey: &CtKey, fval: &CtValue) -> CtKey {
    let rdst = if fval.flags & CT_F_SOURCE_NATED != 0 { fval.hairpin_addr } else { fkey.saddr };
    let dport = if fval.alt_port != [0, 0] { fval.alt_port } else { fkey.sport };
    CtKey {
        saddr: fval.nat_addr,
        daddr: rdst,
        sport: fval.nat_port,
        dport,
        proto: fkey.proto,
        dir: CT_DIR_REPLY,
        _pad0: 0,
    }
}

/// The forward key a reply entry points back to.
pub fn forward_key_of(rkey: &CtKey, rval: &CtValue) -> CtKey {
    if rval.flags & CT_F_SERVICE != 0 {
        let sport = if rval.alt_port != [0, 0] { rval.alt_port } else { rkey.dport };
        CtKey {
            saddr: rval.hairpin_addr,
            daddr: rval.nat_addr,
            sport,
            dport: rval.nat_port,
            proto: rkey.proto,
            dir: CT_DIR_FORWARD,
            _pad0: 0,
        }
    } else {
        CtKey {
            saddr: rkey.daddr,
            daddr: rkey.saddr,
            sport: rkey.dport,
            dport: rkey.sport,
            proto: rkey.proto,
            dir: CT_DIR_FORWARD,
            _pad0: 0,
        }
    }
}

/// Whether (rkey, rval) is the reply entry of the flow (fkey, fval), and not
/// another flow that took over the tuple (`ep_ct_reply_state` in C).
pub fn is_pair(fkey: &CtKey, fval: &CtValue, rkey: &CtKey, rval: &CtValue) -> bool {
    if reply_key_of(fkey, fval) != *rkey || (fval.flags & CT_F_SERVICE) != (rval.flags & CT_F_SERVICE) {
        return false;
    }
    if fval.flags & CT_F_SERVICE != 0 {
        let alt = if fval.alt_port != [0, 0] { fkey.sport } else { [0, 0] };
        rval.nat_addr == fkey.daddr
            && rval.nat_port == fkey.dport
            && rval.hairpin_addr == fkey.saddr
            && rval.alt_port == alt
    } else {
        rval.nat_addr == fkey.saddr && rval.nat_port == fkey.sport
    }
}

/// One flow (or orphan entry) to remove: its entries with the `last_seen_ns`
/// they had when judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub entries: Vec<(CtKey, u64)>,
    pub closed: bool,
}

fn expired(now_ns: u64, last_seen_ns: u64, timeout_s: u64) -> bool {
    now_ns.saturating_sub(last_seen_ns) > timeout_s.saturating_mul(1_000_000_000)
}

/// Whether an entry may belong to an expired flow (cheap filter while scanning).
pub fn is_candidate(t: &CtTimeouts, now_ns: u64, key: &CtKey, val: &CtValue) -> bool {
    expired(now_ns, val.last_seen_ns, t.min_for(key.proto))
}

/// Decide what to remove. `candidates` are the entries that passed
/// `is_candidate`; `lookup` reads any other entry (the live map, or a test's).
/// Pure apart from `lookup`.
pub fn plan(
    t: &CtTimeouts,
    now_ns: u64,
    candidates: &HashMap<CtKey, CtValue>,
    lookup: impl Fn(&CtKey) -> Option<CtValue>,
) -> Vec<Removal> {
    let mut out = Vec::new();
    let mut claimed: std::collections::HashSet<CtKey> = std::collections::HashSet::new();
    // Forward entries first: each finds its reply entry.
    for (fkey, fval) in candidates.iter().filter(|(k, _)| k.dir == CT_DIR_FORWARD) {
        let rkey = reply_key_of(fkey, fval);
        let partner = candidates.get(&rkey).copied().map(|v| (v, true)).or_else(|| lookup(&rkey).map(|v| (v, false)));
        match partner {
            Some((rval, is_cand)) if is_pair(fkey, fval, &rkey, &rval) => {
                claimed.insert(rkey);
                if !is_cand {
                    continue; // the reply side is recent: the flow is alive
                }
                let last = fval.last_seen_ns.max(rval.last_seen_ns);
                let (timeout, closed) = t.for_flow(fkey.proto, fval.flags, rval.flags);
                if expired(now_ns, last, timeout) {
                    out.push(Removal { entries: vec![(*fkey, fval.last_seen_ns), (rkey, rval.last_seen_ns)], closed });
                }
            }
            _ => {
                let (timeout, closed) = t.for_orphan(fkey.proto);
                if expired(now_ns, fval.last_seen_ns, timeout) {
                    out.push(Removal { entries: vec![(*fkey, fval.last_seen_ns)], closed });
                }
            }
        }
    }
    // Reply entries no candidate forward entry claimed.
    for (rkey, rval) in candidates.iter().filter(|(k, _)| k.dir == CT_DIR_REPLY && !claimed.contains(*k)) {
        let fkey = forward_key_of(rkey, rval);
        if !candidates.contains_key(&fkey)
            && let Some(fval) = lookup(&fkey)
            && is_pair(&fkey, &fval, rkey, rval)
        {
            continue; // owned by a recent forward entry: alive
        }
        let (timeout, closed) = t.for_orphan(rkey.proto);
        if expired(now_ns, rval.last_seen_ns, timeout) {
            out.push(Removal { entries: vec![(*rkey, rval.last_seen_ns)], closed });
        }
    }
    out
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub scanned: u64,
    pub deleted_expired: u64,
    pub deleted_closed: u64,
    /// Flows judged expired but refreshed by a packet before the delete: kept.
    pub kept_refreshed: u64,
    pub elapsed: Duration,
}

/// One garbage-collection pass over the conntrack map; adds its counts to
/// ep_stats_v1 (`stats`) so that `status` shows them.
pub fn run(ct: &MapHandle, stats: &MapHandle, t: &CtTimeouts, now_ns: u64) -> Result<GcReport> {
    let started = Instant::now();
    let mut report = GcReport::default();
    let mut candidates = HashMap::new();
    mapio::for_each(ct.as_fd(), CtKey::SIZE, CtValue::SIZE, |k, v| {
        report.scanned += 1;
        if let (Some(k), Some(v)) = (CtKey::from_bytes(k), CtValue::from_bytes(v))
            && is_candidate(t, now_ns, &k, &v)
        {
            candidates.insert(k, v);
        }
    })
    .context("reading the conntrack map")?;
    let lookup =
        |k: &CtKey| ct.lookup(&k.to_bytes(), MapFlags::ANY).ok().flatten().and_then(|b| CtValue::from_bytes(&b));
    let removals = plan(t, now_ns, &candidates, lookup);
    drop(candidates);
    // A packet since the scan refreshed the flow: keep it. The rest goes in
    // batched deletes.
    let mut doomed = Vec::new();
    'flows: for r in removals {
        for (k, seen) in &r.entries {
            if lookup(k).is_some_and(|v| v.last_seen_ns != *seen) {
                report.kept_refreshed += 1;
                continue 'flows;
            }
        }
        for (k, _) in &r.entries {
            doomed.extend_from_slice(&k.to_bytes());
        }
        if r.closed {
            report.deleted_closed += 1;
        } else {
            report.deleted_expired += 1;
        }
    }
    // Keys the datapath removed meanwhile are skipped.
    mapio::delete_many(ct.as_fd(), CtKey::SIZE, &doomed).context("deleting expired conntrack entries")?;
    add_stat(stats, StatId::CtGcRuns, 1)?;
    add_stat(stats, StatId::CtGcExpired, report.deleted_expired)?;
    add_stat(stats, StatId::CtGcClosed, report.deleted_closed)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Add `n` to CPU 0's slot of a per-CPU counter the programs never write.
fn add_stat(stats: &MapHandle, id: StatId, n: u64) -> Result<()> {
    if n == 0 && id != StatId::CtGcRuns {
        return Ok(());
    }
    let key = (id as u32).to_ne_bytes();
    let mut vals = stats
        .lookup_percpu(&key, MapFlags::ANY)
        .with_context(|| format!("reading counter {}", id.label()))?
        .unwrap_or_default();
    if let Some(first) = vals.first_mut()
        && first.len() >= 8
    {
        let cur = u64::from_ne_bytes(first[..8].try_into().unwrap_or_default());
        first[..8].copy_from_slice(&cur.wrapping_add(n).to_ne_bytes());
    }
    stats.update_percpu(&key, &vals, MapFlags::ANY).with_context(|| format!("updating counter {}", id.label()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::layout::{CT_F_HAIRPIN, CtValue};

    const S: u64 = 1_000_000_000;
    const PROTO_UDP: u8 = 17;

    fn k(s: [u8; 4], sp: u16, d: [u8; 4], dp: u16, proto: u8, dir: u8) -> CtKey {
        CtKey { saddr: s, daddr: d, sport: sp.to_be_bytes(), dport: dp.to_be_bytes(), proto, dir, _pad0: 0 }
    }

    const CLIENT: [u8; 4] = [198, 18, 0, 2];
    const VIP: [u8; 4] = [198, 19, 0, 10];
    const BE: [u8; 4] = [198, 18, 1, 10];

    /// A service flow client:sport -> VIP:80 -> BE:8080, both entries.
    fn service_flow(proto: u8, sport: u16, fflags: u16, rflags: u16, fseen: u64, rseen: u64) -> Vec<(CtKey, CtValue)> {
        let fkey = k(CLIENT, sport, VIP, 80, proto, CT_DIR_FORWARD);
        let fval = CtValue {
            nat_addr: BE,
            nat_port: 8080u16.to_be_bytes(),
            flags: CT_F_SERVICE | fflags,
            last_seen_ns: fseen,
            ..CtValue::default()
        };
        let rkey = reply_key_of(&fkey, &fval);
        let rval = CtValue {
            nat_addr: VIP,
            nat_port: 80u16.to_be_bytes(),
            hairpin_addr: CLIENT,
            flags: CT_F_SERVICE | rflags,
            last_seen_ns: rseen,
            ..CtValue::default()
        };
        vec![(fkey, fval), (rkey, rval)]
    }

    /// Run a pass over `entries` as the map's content; returns (expired, closed) flow counts.
    fn gc(t: &CtTimeouts, now: u64, entries: &[(CtKey, CtValue)]) -> (usize, usize) {
        let all: HashMap<CtKey, CtValue> = entries.iter().copied().collect();
        let cands: HashMap<CtKey, CtValue> =
            all.iter().filter(|(k, v)| is_candidate(t, now, k, v)).map(|(k, v)| (*k, *v)).collect();
        let r = plan(t, now, &cands, |k| all.get(k).copied());
        let mut seen = std::collections::HashSet::new();
        for rem in &r {
            for (k, _) in &rem.entries {
                assert!(seen.insert(*k), "entry {k:?} removed twice");
            }
        }
        (r.iter().filter(|r| !r.closed).count(), r.iter().filter(|r| r.closed).count())
    }

    #[test]
    fn established_tcp_lives_for_hours_syn_for_a_minute() {
        let t = CtTimeouts::default();
        let now = 100_000 * S;
        // Idle 2 h, established (reply seen): kept.
        let flow = service_flow(PROTO_TCP, 40000, 0, CT_F_ESTABLISHED, now - 7200 * S, now - 7200 * S);
        assert_eq!(gc(&t, now, &flow), (0, 0));
        // Idle 7 h: expired.
        let flow = service_flow(PROTO_TCP, 40000, 0, CT_F_ESTABLISHED, now - 25_200 * S, now - 25_200 * S);
        assert_eq!(gc(&t, now, &flow), (1, 0));
        // A SYN never answered: 61 s is too long, 59 s is fine.
        assert_eq!(gc(&t, now, &service_flow(PROTO_TCP, 1, 0, 0, now - 61 * S, now - 61 * S)), (1, 0));
        assert_eq!(gc(&t, now, &service_flow(PROTO_TCP, 1, 0, 0, now - 59 * S, now - 59 * S)), (0, 0));
    }

    #[test]
    fn the_later_direction_counts() {
        let t = CtTimeouts::default();
        let now = 100_000 * S;
        // Forward idle for a day, but the backend sent something 5 s ago.
        let flow = service_flow(PROTO_UDP, 5000, 0, CT_F_ESTABLISHED, now - 86_400 * S, now - 5 * S);
        assert_eq!(gc(&t, now, &flow), (0, 0));
    }

    #[test]
    fn closed_tcp_goes_after_the_closing_timeout() {
        let t = CtTimeouts::default();
        let now = 100_000 * S;
        // RST seen by the backend side, 11 s ago.
        let rst =
            service_flow(PROTO_TCP, 2, 0, CT_F_ESTABLISHED | CT_F_CLOSING | CT_F_CLOSED, now - 11 * S, now - 11 * S);
        assert_eq!(gc(&t, now, &rst), (0, 1));
        // FIN both ways, 11 s ago: closed.
        let fin = service_flow(PROTO_TCP, 3, CT_F_CLOSING, CT_F_ESTABLISHED | CT_F_CLOSING, now - 11 * S, now - 11 * S);
        assert_eq!(gc(&t, now, &fin), (0, 1));
        // FIN one way only (half-closed): still established.
        let half = service_flow(PROTO_TCP, 4, CT_F_CLOSING, CT_F_ESTABLISHED, now - 11 * S, now - 11 * S);
        assert_eq!(gc(&t, now, &half), (0, 0));
        // Closed 9 s ago: the last ACK may still come.
        let recent = service_flow(PROTO_TCP, 5, 0, CT_F_CLOSED | CT_F_CLOSING, now - 9 * S, now - 9 * S);
        assert_eq!(gc(&t, now, &recent), (0, 0));
    }

    #[test]
    fn udp_stream_icmp_and_sctp_timeouts() {
        let t = CtTimeouts::default();
        let now = 100_000 * S;
        // One-way UDP: 30 s; answered UDP: 120 s.
        assert_eq!(gc(&t, now, &service_flow(PROTO_UDP, 1, 0, 0, now - 31 * S, now - 31 * S)), (1, 0));
        assert_eq!(gc(&t, now, &service_flow(PROTO_UDP, 1, 0, CT_F_ESTABLISHED, now - 31 * S, now - 31 * S)), (0, 0));
        assert_eq!(gc(&t, now, &service_flow(PROTO_UDP, 1, 0, CT_F_ESTABLISHED, now - 121 * S, now - 121 * S)), (1, 0));
        assert_eq!(gc(&t, now, &service_flow(PROTO_ICMP, 7, 0, CT_F_ESTABLISHED, now - 31 * S, now - 31 * S)), (1, 0));
        assert_eq!(
            gc(&t, now, &service_flow(PROTO_SCTP, 1, 0, CT_F_ESTABLISHED, now - 200 * S, now - 200 * S)),
            (0, 0)
        );
        assert_eq!(gc(&t, now, &service_flow(PROTO_SCTP, 1, 0, 0, now - 31 * S, now - 31 * S)), (1, 0));
        let abort =
            service_flow(PROTO_SCTP, 1, CT_F_CLOSING | CT_F_CLOSED, CT_F_ESTABLISHED, now - 11 * S, now - 11 * S);
        assert_eq!(gc(&t, now, &abort), (0, 1));
    }

    #[test]
    fn configured_timeouts_apply() {
        let mut t = CtTimeouts::default();
        *t.field_mut("udp").expect("key") = 2;
        let now = 100_000 * S;
        assert_eq!(gc(&t, now, &service_flow(PROTO_UDP, 1, 0, 0, now - 3 * S, now - 3 * S)), (1, 0));
        assert!(t.field_mut("tcp-fin").is_none());
        for key in CtTimeouts::KEYS {
            assert!(t.field_mut(key).is_some(), "{key}");
        }
    }

    #[test]
    fn plain_flows_pair_by_swapped_tuple() {
        let t = CtTimeouts::default();
        let now = 100_000 * S;
        let fkey = k(CLIENT, 1234, BE, 8080, PROTO_TCP, CT_DIR_FORWARD);
        let fval = CtValue {
            nat_addr: BE,
            nat_port: 8080u16.to_be_bytes(),
            last_seen_ns: now - 7200 * S,
            ..Default::default()
        };
        let rkey = reply_key_of(&fkey, &fval);
        assert_eq!(rkey, k(BE, 8080, CLIENT, 1234, PROTO_TCP, CT_DIR_REPLY));
        let rval = CtValue {
            nat_addr: CLIENT,
            nat_port: 1234u16.to_be_bytes(),
            flags: CT_F_ESTABLISHED,
            last_seen_ns: now - 7200 * S,
            ..Default::default()
        };
        assert!(is_pair(&fkey, &fval, &rkey, &rval));
        assert_eq!(forward_key_of(&rkey, &rval), fkey);
        assert_eq!(gc(&t, now, &[(fkey, fval), (rkey, rval)]), (0, 0));
    }

    #[test]
    fn hairpin_and_alt_port_flows_pair() {
        let mut flow = service_flow(PROTO_TCP, 40000, 0, CT_F_ESTABLISHED, 0, 0);
        let (fkey, mut fval) = flow[0];
        fval.flags |= CT_F_HAIRPIN;
        fval.hairpin_addr = [169, 254, 42, 1];
        fval.alt_port = 33000u16.to_be_bytes();
        let rkey = reply_key_of(&fkey, &fval);
        assert_eq!(rkey.daddr, [169, 254, 42, 1]);
        assert_eq!(rkey.dport, 33000u16.to_be_bytes());
        let mut rval = flow[1].1;
        rval.alt_port = fkey.sport;
        flow = vec![(fkey, fval), (rkey, rval)];
        assert!(is_pair(&flow[0].0, &flow[0].1, &flow[1].0, &flow[1].1));
        assert_eq!(forward_key_of(&rkey, &rval), fkey);
    }

    #[test]
    fn reused_reply_tuple_leaves_an_orphan_that_expires_as_closed() {
        let t = CtTimeouts::default();
        let now = 100_000 * S;
        // Old flow from VIP port 80; its reply tuple now belongs to a flow to VIP2.
        let old = service_flow(PROTO_TCP, 40000, 0, 0, now - 20 * S, now - 20 * S);
        let (okey, oval) = old[0];
        let mut newer = old[1];
        newer.1.nat_addr = [198, 19, 0, 11];
        newer.1.last_seen_ns = now - S;
        // The orphan forward entry (idle 20 s > tcp-closing) goes; the live reply stays.
        let all = [(okey, oval), newer];
        let cands: HashMap<CtKey, CtValue> = all.iter().filter(|(k, v)| is_candidate(&t, now, k, v)).copied().collect();
        let map: HashMap<CtKey, CtValue> = all.iter().copied().collect();
        let r = plan(&t, now, &cands, |k| map.get(k).copied());
        assert_eq!(r, vec![Removal { entries: vec![(okey, oval.last_seen_ns)], closed: true }]);
    }

    #[test]
    fn orphan_reply_of_a_deleted_forward_expires() {
        let t = CtTimeouts::default();
        let now = 100_000 * S;
        let flow = service_flow(PROTO_UDP, 9, 0, 0, now - 40 * S, now - 40 * S);
        assert_eq!(gc(&t, now, &flow[1..]), (1, 0));
        // Recent: kept.
        let flow = service_flow(PROTO_UDP, 9, 0, 0, now - 4 * S, now - 4 * S);
        assert_eq!(gc(&t, now, &flow[1..]), (0, 0));
    }
}
