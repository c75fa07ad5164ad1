//! In-memory `MapBackend` with capacities (E2BIG when full) and injected
//! failures, for the plan/apply tests and for `edgeplane plan` without a
//! kernel.

use std::collections::BTreeMap;

use super::{Entries, MapBackend, MapError, MapId, render_key};

#[derive(Debug, Clone, Default)]
pub struct FakeMaps {
    pub maps: BTreeMap<MapId, Entries>,
    pub capacities: BTreeMap<MapId, usize>,
    /// Fail the write after this many successful writes (updates + deletes).
    pub fail_after: Option<usize>,
    /// Fail any write to this exact (map, key).
    pub fail_on: Option<(MapId, Vec<u8>)>,
    pub writes: usize,
}

impl FakeMaps {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(mut self, map: MapId, capacity: usize) -> Self {
        self.capacities.insert(map, capacity);
        self
    }

    pub fn entries(&self, map: MapId) -> Entries {
        self.maps.get(&map).cloned().unwrap_or_default()
    }

    fn check_fault(&mut self, op: &'static str, map: MapId, key: &[u8]) -> Result<(), MapError> {
        let injected = self.fail_after.is_some_and(|n| self.writes >= n)
            || self.fail_on.as_ref().is_some_and(|(m, k)| *m == map && k == key);
        if injected {
            return Err(MapError::Op { op, map, key: render_key(map, key), reason: "injected failure".into() });
        }
        Ok(())
    }
}

impl MapBackend for FakeMaps {
    fn dump(&self, map: MapId) -> Result<Entries, MapError> {
        Ok(self.entries(map))
    }

    fn update(&mut self, map: MapId, key: &[u8], value: &[u8]) -> Result<(), MapError> {
        self.check_fault("update", map, key)?;
        let capacity = self.capacity(map);
        let entries = self.maps.entry(map).or_default();
        if !entries.contains_key(key) && entries.len() >= capacity {
            return Err(MapError::Op {
                op: "update",
                map,
                key: render_key(map, key),
                reason: format!("E2BIG (max_entries {capacity})"),
            });
        }
        entries.insert(key.to_vec(), value.to_vec());
        self.writes += 1;
        Ok(())
    }

    fn delete(&mut self, map: MapId, key: &[u8]) -> Result<(), MapError> {
        self.check_fault("delete", map, key)?;
        let removed = self.maps.entry(map).or_default().remove(key);
        if removed.is_none() {
            return Err(MapError::Op { op: "delete", map, key: render_key(map, key), reason: "ENOENT".into() });
        }
        self.writes += 1;
        Ok(())
    }

    fn capacity(&self, map: MapId) -> usize {
        self.capacities.get(&map).copied().unwrap_or(usize::MAX)
    }
}
