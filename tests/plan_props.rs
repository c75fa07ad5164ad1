//! Property tests of compile::resolve + plan + apply against the in-memory
//! FakeMaps backend, with injected failures.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use edgeplane::apply::{ApplyError, apply};
use edgeplane::compile::{BackendAddr, Frontend, LiveMaps, ServiceEntry, ServiceSet, resolve};
use edgeplane::maps::fake::FakeMaps;
use edgeplane::maps::layout::{SvcKey, SvcValue, backend_id_from_key};
use edgeplane::maps::{Entries, MapBackend, MapError, MapId};
use edgeplane::plan::{Step, check_capacity, plan};
use proptest::prelude::*;

fn service_set() -> impl Strategy<Value = ServiceSet> {
    // Small pools so that states overlap and changes are partial.
    let frontend = (0u8..6, prop_oneof![Just(80u16), Just(53u16)], prop_oneof![Just(6u8), Just(17u8)]);
    let backends = proptest::collection::btree_set((0u8..8, prop_oneof![Just(8080u16), Just(5353u16)]), 0..5);
    proptest::collection::btree_map(frontend, (backends.clone(), backends, any::<bool>()), 0..8).prop_map(|m| {
        ServiceSet {
            services: m
                .into_iter()
                .map(|((v, port, proto), (bes, draining, affinity))| {
                    let to_addr =
                        |(b, p): (u8, u16)| BackendAddr { addr: Ipv4Addr::new(198, 18, 1, b), port: p, proto };
                    (
                        Frontend { vip: Ipv4Addr::new(198, 19, 0, v), port, proto, scope: 0 },
                        ServiceEntry {
                            name: format!("ns/svc{v}:{port}"),
                            backends: bes.iter().copied().map(to_addr).collect(),
                            draining: draining.difference(&bes).copied().map(to_addr).collect(),
                            flags: u16::from(affinity),
                            affinity_timeout: if affinity { 10800 } else { 0 },
                        },
                    )
                })
                .collect(),
            ..ServiceSet::default()
        }
    })
}

/// The maps service load balancing writes.
const LB_MAPS: [MapId; 3] = [MapId::Backends, MapId::SourceRanges, MapId::Services];

fn live_of(fake: &FakeMaps) -> LiveMaps {
    LB_MAPS.iter().map(|m| (*m, fake.entries(*m))).collect()
}

fn fake_with(maps: &LiveMaps) -> FakeMaps {
    let mut f = FakeMaps::new();
    for (m, e) in maps {
        f.maps.insert(*m, e.clone());
    }
    f
}

/// A reader's view must always be whole: every slot a service's count covers
/// exists, and every backend a slot names exists.
fn consistency_violation(maps: &BTreeMap<MapId, Entries>) -> Option<String> {
    let empty = Entries::new();
    let svc = maps.get(&MapId::Services).unwrap_or(&empty);
    let be = maps.get(&MapId::Backends).unwrap_or(&empty);
    let be_ids: BTreeSet<u32> = be.keys().filter_map(|k| backend_id_from_key(k)).collect();
    for (k, v) in svc {
        let key = SvcKey::from_bytes(k)?;
        let val = SvcValue::from_bytes(v)?;
        if key.slot == 0 {
            for slot in 1..=val.count {
                let Some(slot_val) = svc.get(&key.with_slot(slot).to_bytes()) else {
                    return Some(format!("{}:{} count {} but slot {slot} missing", key.vip(), key.port(), val.count));
                };
                let id = SvcValue::from_bytes(slot_val)?.backend_id;
                if !be_ids.contains(&id) {
                    return Some(format!("{}:{} slot {slot} names missing backend {id}", key.vip(), key.port()));
                }
            }
        }
    }
    None
}

/// FakeMaps that checks consistency after every successful write.
struct Checking {
    inner: FakeMaps,
    violations: Vec<String>,
}

impl MapBackend for Checking {
    fn dump(&self, map: MapId) -> Result<Entries, MapError> {
        self.inner.dump(map)
    }
    fn update(&mut self, map: MapId, key: &[u8], value: &[u8]) -> Result<(), MapError> {
        self.inner.update(map, key, value)?;
        if let Some(v) = consistency_violation(&self.inner.maps) {
            self.violations.push(v);
        }
        Ok(())
    }
    fn delete(&mut self, map: MapId, key: &[u8]) -> Result<(), MapError> {
        self.inner.delete(map, key)?;
        if let Some(v) = consistency_violation(&self.inner.maps) {
            self.violations.push(v);
        }
        Ok(())
    }
    fn capacity(&self, map: MapId) -> usize {
        self.inner.capacity(map)
    }
}

fn differing(a: &LiveMaps, b: &LiveMaps) -> usize {
    let empty = Entries::new();
    LB_MAPS
        .iter()
        .map(|m| {
            let (x, y) = (a.get(m).unwrap_or(&empty), b.get(m).unwrap_or(&empty));
            let keys: BTreeSet<&Vec<u8>> = x.keys().chain(y.keys()).collect();
            keys.into_iter().filter(|k| x.get(*k) != y.get(*k)).count()
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn apply_of_plan_reaches_desired_and_is_minimal(a in service_set(), b in service_set()) {
        let live_a = resolve(&a, &LiveMaps::new());
        let desired_b = resolve(&b, &live_a);
        let p = plan(&desired_b, &live_a);
        prop_assert_eq!(p.steps.len(), differing(&live_a, &desired_b));
        let mut backend = Checking { inner: fake_with(&live_a), violations: vec![] };
        apply(&p, &mut backend).expect("no faults injected");
        prop_assert!(backend.violations.is_empty(), "{:?}", backend.violations);
        prop_assert_eq!(live_of(&backend.inner), desired_b.clone());
        // Unchanged input after apply (also: after a restart, from the live maps) plans nothing.
        prop_assert!(plan(&resolve(&b, &desired_b), &desired_b).is_empty());
        prop_assert!(plan(&desired_b, &desired_b).is_empty());
    }

    #[test]
    fn failure_part_way_rolls_back_to_the_previous_state(a in service_set(), b in service_set(), k in 0usize..40) {
        let live_a = resolve(&a, &LiveMaps::new());
        let desired_b = resolve(&b, &live_a);
        let p = plan(&desired_b, &live_a);
        prop_assume!(k < p.steps.len());
        let mut backend = Checking { inner: fake_with(&live_a), violations: vec![] };
        backend.inner.fail_after = Some(k);
        let res = apply(&p, &mut backend);
        backend.inner.fail_after = None;
        // The fault also blocks the rollback's first write only if it counts writes; our
        // FakeMaps fails every write from the k-th on, so rollback may fail: both outcomes
        // must keep readers consistent, and a re-plan must converge.
        match res {
            Err(ApplyError::RolledBack { .. }) => prop_assert_eq!(live_of(&backend.inner), live_a.clone()),
            Err(ApplyError::RollbackFailed { .. }) => {}
            Ok(_) => prop_assert!(false, "fault at step {} not reported", k),
        }
        prop_assert!(backend.violations.is_empty(), "{:?}", backend.violations);
        let live_now = live_of(&backend.inner);
        let again = plan(&resolve(&b, &live_now), &live_now);
        apply(&again, &mut backend).expect("no faults");
        prop_assert!(backend.violations.is_empty(), "{:?}", backend.violations);
        prop_assert!(plan(&resolve(&b, &live_of(&backend.inner)), &live_of(&backend.inner)).is_empty());
    }

    #[test]
    fn single_fault_is_rolled_back_exactly(a in service_set(), b in service_set(), k in 0usize..40) {
        let live_a = resolve(&a, &LiveMaps::new());
        let desired_b = resolve(&b, &live_a);
        let p = plan(&desired_b, &live_a);
        prop_assume!(k < p.steps.len());
        let (map, key) = match &p.steps[k] {
            Step::Upsert { map, key, .. } | Step::Delete { map, key, .. } => (*map, key.clone()),
        };
        let mut backend = Checking { inner: fake_with(&live_a), violations: vec![] };
        backend.inner.fail_on = Some((map, key));
        let res = apply(&p, &mut backend);
        prop_assert!(matches!(res, Err(ApplyError::RolledBack { .. })), "{:?}", res);
        prop_assert_eq!(live_of(&backend.inner), live_a);
        prop_assert!(backend.violations.is_empty(), "{:?}", backend.violations);
    }

    #[test]
    fn crash_part_way_then_replan_converges(a in service_set(), b in service_set(), k in 0usize..40) {
        // SIGKILL in the middle: the first k writes happened, nothing was rolled back.
        let live_a = resolve(&a, &LiveMaps::new());
        let desired_b = resolve(&b, &live_a);
        let p = plan(&desired_b, &live_a);
        let mut backend = Checking { inner: fake_with(&live_a), violations: vec![] };
        for step in p.steps.iter().take(k) {
            match step {
                Step::Upsert { map, key, value, .. } => backend.update(*map, key, value).expect("write"),
                Step::Delete { map, key, .. } => backend.delete(*map, key).expect("write"),
            }
        }
        let live_mid = live_of(&backend.inner);
        let p2 = plan(&resolve(&b, &live_mid), &live_mid);
        apply(&p2, &mut backend).expect("no faults");
        prop_assert!(backend.violations.is_empty(), "{:?}", backend.violations);
        let end = live_of(&backend.inner);
        prop_assert!(plan(&resolve(&b, &end), &end).is_empty());
        // Same services, same backends as a clean apply (ids may differ after a crash).
        prop_assert_eq!(end[&MapId::Services].len(), desired_b[&MapId::Services].len());
        prop_assert_eq!(end[&MapId::Backends].len(), desired_b[&MapId::Backends].len());
    }
}

#[test]
fn over_capacity_is_refused_naming_map_capacity_and_need() {
    let set = ServiceSet {
        services: (0..10u8)
            .map(|v| {
                (
                    Frontend { vip: Ipv4Addr::new(198, 19, 0, v), port: 80, proto: 6, scope: 0 },
                    ServiceEntry {
                        name: format!("ns/s{v}:80"),
                        backends: vec![BackendAddr { addr: Ipv4Addr::new(198, 18, 1, v), port: 8080, proto: 6 }],
                        draining: vec![],
                        flags: 0,
                        affinity_timeout: 0,
                    },
                )
            })
            .collect(),
        ..ServiceSet::default()
    };
    let desired = resolve(&set, &LiveMaps::new());
    let fake = FakeMaps::new().with_capacity(MapId::Services, 15);
    let errs = check_capacity(&desired, &LiveMaps::new(), |m| fake.capacity(m)).expect_err("20 entries > 15");
    assert_eq!(errs.len(), 1);
    let msg = errs[0].to_string();
    assert!(msg.contains("ep_svc_v1") && msg.contains("20") && msg.contains("15"), "{msg}");
}
