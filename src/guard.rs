//! The mass-deletion guard (pure): an input that would remove most of what
//! is live is far more often a file caught half-written (an editor, `kubectl
//! get > file`, a GitOps tool writing in place) than an intended teardown.
//! Such an input is held, not applied; the last applied state keeps forwarding
//! until the input recovers or the operator says the deletion is meant.

use crate::model::Cluster;

/// Below this many objects in the last applied input only an empty input is
/// held: in a tiny directory removing two of three objects is ordinary.
pub const MIN_OBJECTS_FOR_RATIO: u32 = 4;

/// Objects the guard counts: those that put entries into the data plane.
/// (Namespaces are left out: most are implied by other objects.)
pub fn object_count(cluster: &Cluster) -> u32 {
    let n = cluster.services.len() + cluster.endpoint_slices.len() + cluster.pods.len() + cluster.policies.len();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What the guard compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    /// Objects in the input about to be applied.
    pub objects: u32,
    /// Objects in the last applied input (0 when unknown: nothing applied yet).
    pub applied_objects: u32,
    /// Entries live in the service, backend and policy-endpoint maps.
    pub live_entries: usize,
    /// A one-shot `apply` (an empty input is refused even when nothing is live).
    pub one_shot: bool,
}

/// How to really remove everything, appended to every refusal.
pub const HOW_TO_CLEAR: &str = "to really remove the state, run `edgeplane reset` (detaches and unpins \
     everything), or set `allow-mass-delete: true` in the settings (or pass --allow-mass-delete) and apply again";

/// None when the input may be applied; otherwise why it is held.
pub fn check(input: Input) -> Option<String> {
    if input.objects == 0 && (input.live_entries > 0 || input.one_shot) {
        let live = if input.live_entries > 0 {
            format!("applying it would delete all {} live map entries", input.live_entries)
        } else {
            "there is nothing to apply".to_string()
        };
        return Some(format!(
            "the input holds no Service, EndpointSlice, Pod or NetworkPolicy: {live}; not applied, \
             the last applied state keeps forwarding; {HOW_TO_CLEAR}"
        ));
    }
    if input.live_entries > 0
        && input.applied_objects >= MIN_OBJECTS_FOR_RATIO
        && u64::from(input.objects) * 2 < u64::from(input.applied_objects)
    {
        return Some(format!(
            "the input holds {} objects, fewer than half of the {} last applied (a truncated or partly \
             written file?); not applied, the last applied state keeps forwarding; {HOW_TO_CLEAR}",
            input.objects, input.applied_objects
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(objects: u32, applied_objects: u32, live_entries: usize, one_shot: bool) -> Input {
        Input { objects, applied_objects, live_entries, one_shot }
    }

    #[test]
    fn empty_input_is_held_when_anything_is_live() {
        let why = check(input(0, 10, 25, false)).expect("held");
        assert!(why.contains("delete all 25 live map entries"), "{why}");
        assert!(why.contains("edgeplane reset") && why.contains("allow-mass-delete"), "{why}");
        // A fresh node with an empty directory and nothing live: nothing to protect.
        assert_eq!(check(input(0, 0, 0, false)), None);
    }

    #[test]
    fn one_shot_apply_of_an_empty_input_always_fails() {
        let why = check(input(0, 0, 0, true)).expect("refused");
        assert!(why.contains("nothing to apply") && why.contains("edgeplane reset"), "{why}");
    }

    #[test]
    fn losing_more_than_half_of_the_objects_is_held() {
        assert!(check(input(4, 10, 30, false)).is_some());
        assert!(check(input(1, 4, 5, true)).is_some());
        // Exactly half, or a small directory, is ordinary editing.
        assert_eq!(check(input(5, 10, 30, false)), None);
        assert_eq!(check(input(1, 3, 5, false)), None);
        // Growing or unknown history never holds.
        assert_eq!(check(input(10, 2, 30, false)), None);
        assert_eq!(check(input(3, 0, 30, false)), None);
        // Nothing live: nothing can be lost.
        assert_eq!(check(input(1, 100, 0, false)), None);
    }
}
