//! Desired map contents vs live map contents → an ordered list of writes.
//!
//! BPF maps have no multi-key transactions, so order is the transaction
//! (make-before-break): every upsert runs before every deletion; upserts go
//! in `MapId` declaration order (backends before the service slots that name
//! them), deletions in reverse; within ep_svc_v1 a service's slot 0 (which
//! holds the slot count) is written after its backend slots and deleted
//! before them. So a reader never follows a slot or backend that is missing.

use std::collections::BTreeMap;
use std::fmt;

use crate::maps::layout::SvcKey;
use crate::maps::{Entries, MapBackend, MapError, MapId, render_key, render_value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Insert (`prev` None) or overwrite (`prev` Some).
    Upsert {
        map: MapId,
        key: Vec<u8>,
        value: Vec<u8>,
        prev: Option<Vec<u8>>,
    },
    Delete {
        map: MapId,
        key: Vec<u8>,
        prev: Vec<u8>,
    },
}

impl Step {
    pub fn map(&self) -> MapId {
        match self {
            Step::Upsert { map, .. } | Step::Delete { map, .. } => *map,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Upsert { map, key, value, prev: None } => {
                write!(f, "add    {map} {} = {}", render_key(*map, key), render_value(*map, value))
            }
            Step::Upsert { map, key, value, prev: Some(prev) } => write!(
                f,
                "update {map} {} = {} (was {})",
                render_key(*map, key),
                render_value(*map, value),
                render_value(*map, prev)
            ),
            Step::Delete { map, key, prev } => {
                write!(f, "delete {map} {} (was {})", render_key(*map, key), render_value(*map, prev))
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

/// Per-map counts of a plan, for the one-line apply log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn counts(&self) -> BTreeMap<MapId, Counts> {
        let mut out: BTreeMap<MapId, Counts> = BTreeMap::new();
        for step in &self.steps {
            let c = out.entry(step.map()).or_default();
            match step {
                Step::Upsert { prev: None, .. } => c.added += 1,
                Step::Upsert { prev: Some(_), .. } => c.updated += 1,
                Step::Delete { .. } => c.removed += 1,
            }
        }
        out
    }

    /// `ep_svc_v1 +3 ~1 -0, ep_be_v1 +2 ~0 -0`
    pub fn summary(&self) -> String {
        let counts = self.counts();
        if counts.is_empty() {
            return "no changes".into();
        }
        counts
            .iter()
            .map(|(m, c)| format!("{m} +{} ~{} -{}", c.added, c.updated, c.removed))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Within-map ordering rank: lower ranks are written first and deleted last.
fn rank(map: MapId, key: &[u8]) -> u8 {
    match map {
        // slot 0 (the count) after the backend slots
        MapId::Services => u8::from(SvcKey::from_bytes(key).is_some_and(|k| k.slot == 0)),
        _ => 0,
    }
}

/// The writes that turn `live` into `desired`. Maps absent from `desired` are
/// left alone (not managed by this plan).
pub fn plan(desired: &BTreeMap<MapId, Entries>, live: &BTreeMap<MapId, Entries>) -> Plan {
    let empty = Entries::new();
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for (map, want) in desired {
        let have = live.get(map).unwrap_or(&empty);
        for (key, value) in want {
            match have.get(key) {
                Some(v) if v == value => {}
                prev => upserts.push((
                    (*map, rank(*map, key)),
                    Step::Upsert { map: *map, key: key.clone(), value: value.clone(), prev: prev.cloned() },
                )),
            }
        }
        for (key, prev) in have {
            if !want.contains_key(key) {
                deletes.push((
                    std::cmp::Reverse((*map, rank(*map, key))),
                    Step::Delete { map: *map, key: key.clone(), prev: prev.clone() },
                ));
            }
        }
    }
    // Stable sorts keep key order inside each (map, rank) group.
    upserts.sort_by_key(|(order, _)| *order);
    deletes.sort_by_key(|(order, _)| *order);
    Plan { steps: upserts.into_iter().map(|(_, s)| s).chain(deletes.into_iter().map(|(_, s)| s)).collect() }
}

/// A desired state that does not fit is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{map}: desired state needs {needed} entries (peak during the change), capacity is {capacity}; nothing was applied (raise maps.{setting} in the config file)"
)]
pub struct CapacityError {
    pub map: MapId,
    pub needed: usize,
    pub capacity: usize,
    pub setting: &'static str,
}

/// Checks every map's peak size while the plan runs (live entries plus the
/// new keys, since upserts precede deletions) against its capacity.
pub fn check_capacity(
    desired: &BTreeMap<MapId, Entries>,
    live: &BTreeMap<MapId, Entries>,
    capacity: impl Fn(MapId) -> usize,
) -> Result<(), Vec<CapacityError>> {
    let empty = Entries::new();
    let mut errors = Vec::new();
    for (map, want) in desired {
        let have = live.get(map).unwrap_or(&empty);
        let new_keys = want.keys().filter(|k| !have.contains_key(*k)).count();
        let needed = have.len() + new_keys;
        let cap = capacity(*map);
        if needed > cap {
            errors.push(CapacityError { map: *map, needed, capacity: cap, setting: setting_name(*map) });
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn setting_name(map: MapId) -> &'static str {
    match map {
        MapId::Services => "services",
        MapId::Backends => "backends",
        MapId::SourceRanges => "lb-source-ranges",
        MapId::PolicyAllow => "policy-rules",
        MapId::Identities => "identities",
        MapId::LocalEndpoints => "policy-endpoints",
    }
}

/// Reads every map `desired` manages from the backend.
pub fn dump_live(
    backend: &dyn MapBackend,
    maps: impl IntoIterator<Item = MapId>,
) -> Result<BTreeMap<MapId, Entries>, MapError> {
    maps.into_iter().map(|m| Ok((m, backend.dump(m)?))).collect()
}

/// What the maps hold after `plan` ran successfully on `live` (no kernel
/// round trip needed to know it).
pub fn applied(mut live: BTreeMap<MapId, Entries>, plan: &Plan) -> BTreeMap<MapId, Entries> {
    for step in &plan.steps {
        match step {
            Step::Upsert { map, key, value, .. } => {
                live.entry(*map).or_default().insert(key.clone(), value.clone());
            }
            Step::Delete { map, key, .. } => {
                live.entry(*map).or_default().remove(key);
            }
        }
    }
    live
}
