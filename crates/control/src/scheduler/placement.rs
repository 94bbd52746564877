//! Where a task goes: the pure placement rule of the scheduler (no IO, no
//! clock). A node qualifies when its free slots cover the task's
//! `requiredSlots`; `pack` prefers the fullest qualifying node (filling one
//! node before the next), `spread` the emptiest. Ties go to the lowest id,
//! so decisions are deterministic.

/// A node that can take work now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub free: u32,
    pub used: u32,
}

/// The pool's `taskSchedulingPolicy.nodeFillType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    Pack,
    Spread,
}

/// The node for a task needing `slots`, if any has room. A task's affinity
/// (`affinityInfo.affinityId`, the node id it names) wins when that node
/// has room; otherwise the task goes where the fill type says.
pub fn place(nodes: &[Candidate], slots: u32, fill: Fill, affinity: Option<&str>) -> Option<String> {
    if let Some(n) = affinity.and_then(|a| nodes.iter().find(|n| n.id == a && n.free >= slots)) {
        return Some(n.id.clone());
    }
    nodes
        .iter()
        .filter(|n| n.free >= slots)
        .min_by(|a, b| {
            let by_load = match fill {
                Fill::Pack => b.used.cmp(&a.used),
                Fill::Spread => a.used.cmp(&b.used),
            };
            by_load.then_with(|| a.id.cmp(&b.id))
        })
        .map(|n| n.id.clone())
}

/// Distinct nodes for the `n` instances of a multi-instance task (one slot
/// on each), the primary first (where [`place`] puts a one-slot task), the
/// others in fill order; None while fewer than `n` nodes have a free slot.
pub fn place_instances(nodes: &[Candidate], n: usize, fill: Fill, affinity: Option<&str>) -> Option<Vec<String>> {
    let primary = place(nodes, 1, fill, affinity)?;
    let mut chosen = vec![primary];
    let mut rest: Vec<Candidate> = nodes.iter().filter(|c| c.free >= 1 && c.id != chosen[0]).cloned().collect();
    while chosen.len() < n {
        let next = place(&rest, 1, fill, None)?;
        rest.retain(|c| c.id != next);
        chosen.push(next);
    }
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, free: u32, used: u32) -> Candidate {
        Candidate { id: id.into(), free, used }
    }

    #[test]
    fn spread_and_pack() {
        let nodes = [c("a", 1, 3), c("b", 4, 0), c("c", 2, 2)];
        assert_eq!(place(&nodes, 1, Fill::Spread, None).as_deref(), Some("b"));
        assert_eq!(place(&nodes, 1, Fill::Pack, None).as_deref(), Some("a"));
        assert_eq!(place(&nodes, 2, Fill::Pack, None).as_deref(), Some("c"), "a has too few free slots");
    }

    #[test]
    fn affinity_is_preferred_while_its_node_has_room() {
        let nodes = [c("a", 1, 3), c("b", 4, 0)];
        assert_eq!(place(&nodes, 1, Fill::Spread, Some("a")).as_deref(), Some("a"));
        assert_eq!(place(&nodes, 2, Fill::Spread, Some("a")).as_deref(), Some("b"), "a is full: elsewhere");
        assert_eq!(place(&nodes, 1, Fill::Pack, Some("gone")).as_deref(), Some("a"), "an unknown node is ignored");
    }

    #[test]
    fn instances_go_to_distinct_nodes() {
        let nodes = [c("a", 1, 0), c("b", 0, 1), c("c", 2, 0), c("d", 1, 0)];
        assert_eq!(place_instances(&nodes, 3, Fill::Spread, None), Some(vec!["a".into(), "c".into(), "d".into()]));
        assert_eq!(place_instances(&nodes, 2, Fill::Spread, Some("d")), Some(vec!["d".into(), "a".into()]));
        assert_eq!(place_instances(&nodes, 4, Fill::Spread, None), None, "b has no free slot");
        assert_eq!(place_instances(&nodes, 1, Fill::Pack, None).map(|v| v.len()), Some(1));
    }

    #[test]
    fn slots_are_never_exceeded() {
        let nodes = [c("a", 1, 1), c("b", 0, 2)];
        assert_eq!(place(&nodes, 2, Fill::Spread, None), None);
        assert_eq!(place(&[], 1, Fill::Pack, None), None);
    }

    #[test]
    fn simulated_pool_fills_exactly() {
        // Two nodes of 4 slots; tasks of 1..3 slots placed until nothing fits.
        let mut nodes = vec![c("a", 4, 0), c("b", 4, 0)];
        let mut placed = 0;
        for want in [3, 1, 2, 2, 1, 3, 1] {
            if let Some(id) = place(&nodes, want, Fill::Pack, None) {
                let n = nodes.iter_mut().find(|n| n.id == id).unwrap();
                n.free -= want;
                n.used += want;
                placed += want;
            }
        }
        assert!(nodes.iter().all(|n| n.free + n.used == 4));
        assert_eq!(placed, 8);
    }
}
