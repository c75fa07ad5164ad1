//! The policy stage of bpf/lib/policy.h, re-stated over map contents: the
//! same lookups in the same order, with the kernel's LPM semantics. Used by
//! the compile tests (compiled maps vs. the NetworkPolicy semantics) and by
//! tools that explain a verdict without a kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::maps::layout::{
    DIR_EGRESS, DIR_INGRESS, IDENT_ANY, IDENT_HOST, IDENT_WORLD, IdentKey, IdentValue, LEP_F_EGRESS_ISOLATED,
    LEP_F_INGRESS_ISOLATED, LepValue, POL_PREFIX_ALL_PORTS, POL_PREFIX_FULL, PolKey, lep_key,
};
use crate::maps::{Entries, MapId};

/// A flow as the policy stage sees it: after service translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub proto: u8,
    /// None when the packet carries no port: a non-first IP fragment, or a
    /// protocol without ports (ICMP). Only rules that allow every port of
    /// the protocol (or every protocol) can then match.
    pub dport: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Denied by the source pod's egress policy.
    DenyEgress { endpoint: u32 },
    /// Denied by the destination pod's ingress policy.
    DenyIngress { endpoint: u32 },
}

fn get<'a>(maps: &'a BTreeMap<MapId, Entries>, m: MapId) -> Option<&'a Entries> {
    maps.get(&m)
}

/// Longest-prefix identity of `addr`; `world` when nothing matches.
pub fn identity_of(maps: &BTreeMap<MapId, Entries>, addr: Ipv4Addr) -> u32 {
    let Some(ident) = get(maps, MapId::Identities) else { return IDENT_WORLD };
    for len in (0..=32u8).rev() {
        let key = IdentKey::new(super::Prefix::new(addr, len).addr(), len);
        if let Some(v) = ident.get(&key.to_bytes()).and_then(|v| IdentValue::from_bytes(v)) {
            return v.identity;
        }
    }
    IDENT_WORLD
}

fn lep(maps: &BTreeMap<MapId, Entries>, addr: Ipv4Addr) -> Option<LepValue> {
    get(maps, MapId::LocalEndpoints)?.get(&lep_key(addr)).and_then(|v| LepValue::from_bytes(v))
}

/// One LPM lookup in ep_pol_v1 with the key's prefixlen capped at `max_len`.
fn pol_lookup(pol: &Entries, subject: u32, peer: u32, dir: u8, proto: u8, dport: u16, max_len: u32) -> bool {
    (0..=max_len).rev().any(|len| {
        // Clear the bits past `len` in the 12 data bytes, as the trie compares.
        let mut k = PolKey { prefixlen: len, subject, peer, dir, proto, dport: dport.to_be_bytes() };
        if len < 72 {
            return false; // never written: a policy entry always names subject, peer, dir
        }
        if len < 80 {
            k.proto = 0;
        }
        if len < 96 {
            let m: u16 = if len <= 80 { 0 } else { u16::MAX << (96 - len) };
            k.dport = (dport & m).to_be_bytes();
        }
        pol.contains_key(&k.to_bytes())
    })
}

/// Two lookups: the specific peer identity, then the wildcard.
pub fn allowed(maps: &BTreeMap<MapId, Entries>, subject: u32, peer: u32, dir: u8, proto: u8, dport: Option<u16>) -> bool {
    let Some(pol) = get(maps, MapId::PolicyAllow) else { return false };
    let (port, max_len) = match dport {
        Some(p) => (p, POL_PREFIX_FULL),
        None => (0, POL_PREFIX_ALL_PORTS),
    };
    pol_lookup(pol, subject, peer, dir, proto, port, max_len)
        || pol_lookup(pol, subject, IDENT_ANY, dir, proto, port, max_len)
}

/// The verdict bpf/lib/policy.h reaches for a new flow.
pub fn evaluate(maps: &BTreeMap<MapId, Entries>, flow: &Flow) -> Verdict {
    // A pod cannot block traffic to itself.
    if flow.saddr == flow.daddr {
        return Verdict::Allow;
    }
    let src = lep(maps, flow.saddr);
    let dst = lep(maps, flow.daddr);
    if let Some(s) = src.filter(|s| s.flags & LEP_F_EGRESS_ISOLATED != 0) {
        let peer = dst.map_or_else(|| identity_of(maps, flow.daddr), |d| d.identity);
        if peer != IDENT_HOST && !allowed(maps, s.identity, peer, DIR_EGRESS, flow.proto, flow.dport) {
            return Verdict::DenyEgress { endpoint: s.endpoint_id };
        }
    }
    if let Some(d) = dst.filter(|d| d.flags & LEP_F_INGRESS_ISOLATED != 0) {
        let peer = src.map_or_else(|| identity_of(maps, flow.saddr), |s| s.identity);
        if peer != IDENT_HOST && !allowed(maps, d.identity, peer, DIR_INGRESS, flow.proto, flow.dport) {
            return Verdict::DenyIngress { endpoint: d.endpoint_id };
        }
    }
    Verdict::Allow
}
