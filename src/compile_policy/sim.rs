//! The policy stage of bpf/lib/policy.h, re-stated over map contents: the
//! same lookups in the same order, with the kernel's LPM semantics and the
//! epoch halves of each value. Used by the compile tests (compiled maps vs.
//! the NetworkPolicy semantics, at every step of a plan) and by tools that
//! explain a verdict without a kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::maps::layout::{
    DIR_EGRESS, DIR_INGRESS, IDENT_ANY, IDENT_HOST, IDENT_WORLD, IdentKey, IdentValue, LEP_F_EGRESS_ISOLATED,
    LEP_F_INGRESS_ISOLATED, LepValue, POL_PREFIX_ALL_PORTS, POL_PREFIX_ALL_PROTO, POL_PREFIX_FULL, PolKey, PolValue,
    lep_key,
};
use crate::maps::{Entries, MapId};

/// A flow as the policy stage sees it: after service translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub proto: u8,
    /// None when the packet carries no usable port: a non-first IP fragment
    /// whose head was not seen, or a protocol without ports (ICMP). Only
    /// rules that allow every port of the protocol (or every protocol) match.
    pub dport: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Denied by the source pod's egress policy.
    DenyEgress {
        endpoint: u32,
    },
    /// Denied by the destination pod's ingress policy.
    DenyIngress {
        endpoint: u32,
    },
}

/// Longest-prefix identity of `addr` at `epoch`; `world` when nothing matches.
pub fn identity_of(maps: &BTreeMap<MapId, Entries>, epoch: u32, addr: Ipv4Addr) -> u32 {
    let Some(ident) = maps.get(&MapId::Identities) else { return IDENT_WORLD };
    for len in (0..=32u8).rev() {
        let key = IdentKey::new(super::Prefix::new(addr, len).addr(), len);
        if let Some(v) = ident.get(&key.to_bytes()).and_then(|v| IdentValue::from_bytes(v)) {
            return v.at(epoch);
        }
    }
    IDENT_WORLD
}

fn lep(maps: &BTreeMap<MapId, Entries>, addr: Ipv4Addr) -> Option<LepValue> {
    maps.get(&MapId::LocalEndpoints)?.get(&lep_key(addr)).and_then(|v| LepValue::from_bytes(v))
}

/// One LPM lookup in ep_pol_v1 with the key's prefixlen capped at `max_len`:
/// the longest present entry answers, with its half for `epoch`.
fn pol_lookup(pol: &Entries, epoch: u32, key: PolKey, max_len: u32) -> bool {
    let lens = (POL_PREFIX_ALL_PORTS..=max_len).rev().chain(std::iter::once(POL_PREFIX_ALL_PROTO));
    for len in lens {
        let mut k = PolKey { prefixlen: len, ..key };
        if len < POL_PREFIX_ALL_PORTS {
            k.proto = 0;
        }
        if len < POL_PREFIX_FULL {
            let m: u16 = if len <= POL_PREFIX_ALL_PORTS { 0 } else { u16::MAX << (POL_PREFIX_FULL - len) };
            k.dport = (key.dport() & m).to_be_bytes();
        }
        if let Some(v) = pol.get(&k.to_bytes()).and_then(|v| PolValue::from_bytes(v)) {
            return v.at(epoch);
        }
    }
    false
}

/// Two lookups: the specific peer identity, then the wildcard.
pub fn allowed(
    maps: &BTreeMap<MapId, Entries>,
    epoch: u32,
    subject: u32,
    peer: u32,
    dir: u8,
    proto: u8,
    dport: Option<u16>,
) -> bool {
    let Some(pol) = maps.get(&MapId::PolicyAllow) else { return false };
    let (port, max_len) = match dport {
        Some(p) if matches!(proto, 6 | 17 | 132) => (p, POL_PREFIX_FULL),
        _ => (0, POL_PREFIX_ALL_PORTS),
    };
    let key = PolKey { prefixlen: max_len, subject, peer, dir, proto, dport: port.to_be_bytes() };
    pol_lookup(pol, epoch, key, max_len) || pol_lookup(pol, epoch, PolKey { peer: IDENT_ANY, ..key }, max_len)
}

/// The verdict bpf/lib/policy.h reaches for a new flow at `epoch`.
pub fn evaluate(maps: &BTreeMap<MapId, Entries>, epoch: u32, flow: &Flow) -> Verdict {
    // A pod cannot block traffic to itself.
    if flow.saddr == flow.daddr {
        return Verdict::Allow;
    }
    if let Some(s) = lep(maps, flow.saddr) {
        let (subject, flags) = s.at(epoch);
        if flags & LEP_F_EGRESS_ISOLATED != 0 {
            let peer = identity_of(maps, epoch, flow.daddr);
            if peer != IDENT_HOST && !allowed(maps, epoch, subject, peer, DIR_EGRESS, flow.proto, flow.dport) {
                return Verdict::DenyEgress { endpoint: s.endpoint_id };
            }
        }
    }
    if let Some(d) = lep(maps, flow.daddr) {
        let (subject, flags) = d.at(epoch);
        if flags & LEP_F_INGRESS_ISOLATED != 0 {
            let peer = identity_of(maps, epoch, flow.saddr);
            if peer != IDENT_HOST && !allowed(maps, epoch, subject, peer, DIR_INGRESS, flow.proto, flow.dport) {
                return Verdict::DenyIngress { endpoint: d.endpoint_id };
            }
        }
    }
    Verdict::Allow
}
