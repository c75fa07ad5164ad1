//! Live maps + desired policy → the entries to write.
//!
//! Every policy value has two halves: before and from its `switch_epoch`.
//! The entries written here answer with the live (old) policy in the first
//! half and with the desired (new) one in the second, switching at the epoch
//! after the live one. So while the plan runs, in any order and if it stops
//! half-way, the data plane still enforces exactly the old policy; the one
//! write of ep_cfg_v1 that advances the epoch switches everything at once;
//! a second compile then only deletes what the old policy alone needed.
//!
//! LPM detail: the longest present prefix answers alone, so an entry carries,
//! for each half, whether its range is allowed in that half (by itself or by
//! a shorter entry it shadows), and an entry is left out only when its
//! nearest written ancestor answers the same in both halves.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::{Desired, Prefix, mask};
use crate::maps::layout::{
    IDENT_WORLD, IdentKey, IdentValue, LepValue, POL_F_ALLOW, POL_F_PREV_ALLOW, POL_PREFIX_ALL_PORTS,
    POL_PREFIX_ALL_PROTO, POL_PREFIX_FULL, PolKey, PolValue, epoch_new, lep_addr_from_key, lep_key,
};
use crate::maps::{Entries, MapId, layout::IDENT_ANY};

/// The live policy maps, decoded.
pub(crate) struct Live {
    pub ident: BTreeMap<Prefix, IdentValue>,
    /// Identity of each live prefix at `epoch`.
    pub ident_now: BTreeMap<Prefix, u32>,
    pub pol: BTreeMap<PolKey, PolValue>,
    pub lep: BTreeMap<Ipv4Addr, LepValue>,
    /// Every identity number the live maps mention, in either half.
    pub numbers: BTreeSet<u32>,
    pub endpoints: BTreeMap<Ipv4Addr, u32>,
}

impl Live {
    pub fn decode(live: &BTreeMap<MapId, Entries>, epoch: u32) -> Live {
        let empty = Entries::new();
        let get = |m| live.get(&m).unwrap_or(&empty);
        let mut numbers = BTreeSet::new();
        let mut ident = BTreeMap::new();
        for (k, v) in get(MapId::Identities) {
            let (Some(k), Some(v)) = (IdentKey::from_bytes(k), IdentValue::from_bytes(v)) else { continue };
            let Ok(len) = u8::try_from(k.prefixlen) else { continue };
            if len > 32 {
                continue;
            }
            numbers.extend([v.identity, v.prev_identity]);
            ident.insert(Prefix::new(k.addr(), len), v);
        }
        let ident_now = ident.iter().map(|(p, v)| (*p, v.at(epoch))).collect();
        let mut pol = BTreeMap::new();
        for (k, v) in get(MapId::PolicyAllow) {
            let (Some(k), Some(v)) = (PolKey::from_bytes(k), PolValue::from_bytes(v)) else { continue };
            numbers.extend([k.subject, k.peer]);
            pol.insert(k, v);
        }
        let mut lep = BTreeMap::new();
        let mut endpoints = BTreeMap::new();
        for (k, v) in get(MapId::LocalEndpoints) {
            let (Some(a), Some(v)) = (lep_addr_from_key(k), LepValue::from_bytes(v)) else { continue };
            numbers.extend([v.identity, v.prev_identity]);
            endpoints.insert(a, v.endpoint_id);
            lep.insert(a, v);
        }
        numbers.remove(&IDENT_ANY);
        Live { ident, ident_now, pol, lep, numbers, endpoints }
    }
}

fn prefix_at(p: Prefix, len: u8) -> Prefix {
    Prefix { net: mask(p.net, len), len }
}

/// Longest prefix of `map` containing `p` (itself included).
fn lpm<V: Copy>(map: &BTreeMap<Prefix, V>, p: Prefix) -> Option<V> {
    (0..=p.len).rev().find_map(|len| map.get(&prefix_at(p, len)).copied())
}

/// Nearest strict ancestor of `p` in `map`.
fn ancestor<V: Copy>(map: &BTreeMap<Prefix, V>, p: Prefix) -> Option<V> {
    (0..p.len).rev().find_map(|len| map.get(&prefix_at(p, len)).copied())
}

/// `k` cut to a shorter prefix, with the bits past it cleared.
fn pol_at(k: &PolKey, len: u32) -> PolKey {
    let mut out = PolKey { prefixlen: len, ..*k };
    if len < POL_PREFIX_ALL_PORTS {
        out.proto = 0;
    }
    if len < POL_PREFIX_FULL {
        let m: u16 = if len <= POL_PREFIX_ALL_PORTS { 0 } else { u16::MAX << (POL_PREFIX_FULL - len) };
        out.dport = (k.dport() & m).to_be_bytes();
    }
    out
}

/// Prefix lengths an ep_pol_v1 entry can have that are shorter than `len`, longest first.
fn pol_shorter(len: u32) -> impl Iterator<Item = u32> {
    (POL_PREFIX_ALL_PORTS..len.min(POL_PREFIX_FULL + 1))
        .rev()
        .chain((len > POL_PREFIX_ALL_PROTO).then_some(POL_PREFIX_ALL_PROTO))
}

fn pol_valid_len(len: u32) -> bool {
    len == POL_PREFIX_ALL_PROTO || (POL_PREFIX_ALL_PORTS..=POL_PREFIX_FULL).contains(&len)
}

/// Live answer for lookups landing on `k`: the longest live entry covering it.
fn pol_live_answer(live: &BTreeMap<PolKey, PolValue>, k: &PolKey, epoch: u32) -> bool {
    std::iter::once(k.prefixlen)
        .chain(pol_shorter(k.prefixlen))
        .find_map(|len| live.get(&pol_at(k, len)))
        .is_some_and(|v| v.at(epoch))
}

fn pol_covered(set: &BTreeSet<PolKey>, k: &PolKey) -> bool {
    std::iter::once(k.prefixlen).chain(pol_shorter(k.prefixlen)).any(|len| set.contains(&pol_at(k, len)))
}

pub(crate) fn merge(live: &Live, want: &Desired, epoch: u32) -> (BTreeMap<MapId, Entries>, Option<u32>) {
    let next = epoch.wrapping_add(1);
    let mut transition = false;

    // ep_ident_v1, ancestors first.
    let mut prefixes: Vec<Prefix> = live.ident.keys().chain(want.ident.keys()).copied().collect();
    prefixes.sort_by_key(|p| (p.len, p.net));
    prefixes.dedup();
    let mut written: BTreeMap<Prefix, (u32, u32)> = BTreeMap::new();
    let mut ident = Entries::new();
    for p in prefixes {
        let old = lpm(&live.ident_now, p).unwrap_or(IDENT_WORLD);
        let new = lpm(&want.ident, p).unwrap_or(IDENT_WORLD);
        if !want.ident.contains_key(&p) && ancestor(&written, p).unwrap_or((IDENT_WORLD, IDENT_WORLD)) == (old, new) {
            continue;
        }
        written.insert(p, (old, new));
        let value = match live.ident.get(&p) {
            Some(v)
                if old == new
                    && v.at(epoch) == old
                    && (v.identity == v.prev_identity || epoch_new(epoch, v.switch_epoch)) =>
            {
                *v
            }
            _ if old == new => IdentValue::steady(new),
            _ => {
                transition = true;
                IdentValue { identity: new, prev_identity: old, switch_epoch: next, _pad0: 0 }
            }
        };
        ident.insert(IdentKey::new(p.addr(), p.len).to_bytes(), value.to_bytes());
    }

    // ep_pol_v1: PolKey orders by prefixlen first, so ancestors come first.
    let keys: BTreeSet<PolKey> =
        live.pol.keys().copied().filter(|k| pol_valid_len(k.prefixlen)).chain(want.pol.iter().copied()).collect();
    let mut written: BTreeMap<PolKey, (bool, bool)> = BTreeMap::new();
    let mut pol = Entries::new();
    for k in keys {
        let old = pol_live_answer(&live.pol, &k, epoch);
        let new = pol_covered(&want.pol, &k);
        if !want.pol.contains(&k) {
            let anc = pol_shorter(k.prefixlen).find_map(|len| written.get(&pol_at(&k, len)).copied());
            if anc.unwrap_or((false, false)) == (old, new) {
                continue;
            }
        }
        written.insert(k, (old, new));
        let value = match live.pol.get(&k) {
            Some(v)
                if old == new
                    && v.at(epoch) == old
                    && (v.flags & POL_F_ALLOW != 0) == (v.flags & POL_F_PREV_ALLOW != 0)
                    && v.flags & !(POL_F_ALLOW | POL_F_PREV_ALLOW) == 0 =>
            {
                *v
            }
            Some(v) if old == new && v.at(epoch) == old && epoch_new(epoch, v.switch_epoch) => *v,
            _ if old == new => {
                PolValue { flags: if new { POL_F_ALLOW | POL_F_PREV_ALLOW } else { 0 }, _pad0: 0, switch_epoch: 0 }
            }
            _ => {
                transition = true;
                let flags = if new { POL_F_ALLOW } else { 0 } | if old { POL_F_PREV_ALLOW } else { 0 };
                PolValue { flags, _pad0: 0, switch_epoch: next }
            }
        };
        pol.insert(k.to_bytes(), value.to_bytes());
    }

    // ep_lep_v1: exact keys.
    let addrs: BTreeSet<Ipv4Addr> = live.lep.keys().chain(want.lep.keys()).copied().collect();
    let mut lep = Entries::new();
    for a in addrs {
        let lv = live.lep.get(&a);
        let (mut oid, oflags) = lv.map_or((0, 0), |v| v.at(epoch));
        let (endpoint_id, mut nid, nflags) = match want.lep.get(&a) {
            Some(w) => *w,
            None => (lv.map_or(0, |v| v.endpoint_id), 0, 0),
        };
        if nflags == 0 && oflags == 0 {
            continue;
        }
        // A half without isolation never uses its identity.
        if oflags == 0 {
            oid = nid;
        }
        if nflags == 0 {
            nid = oid;
        }
        let value = match lv {
            Some(v)
                if (oid, oflags) == (nid, nflags)
                    && v.endpoint_id == endpoint_id
                    && v.at(epoch) == (nid, nflags)
                    && ((v.identity, v.flags) == (v.prev_identity, v.prev_flags)
                        || epoch_new(epoch, v.switch_epoch)) =>
            {
                *v
            }
            _ if (oid, oflags) == (nid, nflags) => LepValue {
                endpoint_id,
                identity: nid,
                prev_identity: nid,
                flags: nflags,
                prev_flags: nflags,
                switch_epoch: 0,
                _pad0: 0,
            },
            _ => {
                transition = true;
                LepValue {
                    endpoint_id,
                    identity: nid,
                    prev_identity: oid,
                    flags: nflags,
                    prev_flags: oflags,
                    switch_epoch: next,
                    _pad0: 0,
                }
            }
        };
        lep.insert(lep_key(a), value.to_bytes());
    }

    let maps = BTreeMap::from([(MapId::PolicyAllow, pol), (MapId::Identities, ident), (MapId::LocalEndpoints, lep)]);
    (maps, transition.then_some(next))
}
