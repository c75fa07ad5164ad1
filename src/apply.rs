//! Runs a [`Plan`] against a [`MapBackend`]: all of it, or none of it.
//!
//! If a write fails part-way, the writes already made are undone in reverse
//! order (each step carries the previous value), which walks back through the
//! same consistent intermediate states. If the rollback itself fails, the
//! error says so; re-planning from the live maps converges either way, since
//! plans are computed from what is live, never from memory.

use crate::maps::{MapBackend, MapError};
use crate::plan::{Plan, Step};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "step {index} of {total} failed: {source}; the {index} earlier steps were rolled back, previous state intact"
    )]
    RolledBack { index: usize, total: usize, source: MapError },
    #[error(
        "step {index} of {total} failed: {source}; rollback also failed: {rollback}; the next pass re-plans from the live maps"
    )]
    RollbackFailed { index: usize, total: usize, source: MapError, rollback: Box<MapError> },
}

fn run(step: &Step, backend: &mut dyn MapBackend) -> Result<(), MapError> {
    match step {
        Step::Upsert { map, key, value, .. } => backend.update(*map, key, value),
        Step::Delete { map, key, .. } => backend.delete(*map, key),
    }
}

fn undo(step: &Step, backend: &mut dyn MapBackend) -> Result<(), MapError> {
    match step {
        Step::Upsert { map, key, prev: None, .. } => backend.delete(*map, key),
        Step::Upsert { map, key, prev: Some(prev), .. } | Step::Delete { map, key, prev } => {
            backend.update(*map, key, prev)
        }
    }
}

/// Applies every step in order; on failure rolls back and returns the error.
pub fn apply(plan: &Plan, backend: &mut dyn MapBackend) -> Result<usize, ApplyError> {
    let total = plan.steps.len();
    for (index, step) in plan.steps.iter().enumerate() {
        if let Err(source) = run(step, backend) {
            for done in plan.steps[..index].iter().rev() {
                if let Err(rollback) = undo(done, backend) {
                    return Err(ApplyError::RollbackFailed { index, total, source, rollback: Box::new(rollback) });
                }
            }
            return Err(ApplyError::RolledBack { index, total, source });
        }
    }
    Ok(total)
}
