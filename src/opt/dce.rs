//! Dead-code elimination: removes every node that no output depends on, then compacts and
//! renumbers the survivors (keeping their order, so ids stay topological).
//!
//! Inputs are never removed: they are the graph's signature.

use crate::ir::{Graph, NodeId, Op};
use std::fmt;

/// Counters of one DCE run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DceStats {
    /// Nodes removed.
    pub nodes_removed: u64,
}

impl fmt::Display for DceStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nodes_removed={}", self.nodes_removed)
    }
}

/// Removes nodes that are neither inputs nor needed by an output.
pub fn eliminate_dead_nodes(g: &mut Graph) -> DceStats {
    let n = g.len();
    let mut live = vec![false; n];
    for o in g.outputs() {
        live[o.index()] = true;
    }
    // A live custom region keeps its whole interior (it stays one contiguous range).
    let mut region_first: Vec<Option<usize>> = vec![None; n];
    for r in g.custom_regions() {
        let slot = &mut region_first[r.output.index()];
        *slot = Some(slot.map_or(r.first.index(), |f| f.min(r.first.index())));
    }
    for i in (0..n).rev() {
        if g.nodes()[i].op == Op::Input {
            live[i] = true;
        }
        if live[i]
            && let Some(first) = region_first[i]
        {
            live[first..i].iter_mut().for_each(|l| *l = true);
        }
        if live[i] {
            for x in &g.nodes()[i].inputs {
                live[x.index()] = true;
            }
        }
    }
    let removed = live.iter().filter(|&&l| !l).count() as u64;
    if removed == 0 {
        return DceStats::default();
    }
    retain_nodes(g, &live);
    DceStats {
        nodes_removed: removed,
    }
}

/// Keeps the nodes whose `live` is true, renumbering them in order: operands, provenance,
/// outputs and the custom-rule regions whose output survives follow the renumbering. A live
/// node must not read a removed one.
pub(super) fn retain_nodes(g: &mut Graph, live: &[bool]) {
    let mut map = vec![NodeId(u32::MAX); g.len()];
    let mut next = 0u32;
    for (i, &l) in live.iter().enumerate() {
        if l {
            map[i] = NodeId(next);
            next += 1;
        }
    }
    let outputs: Vec<NodeId> = g.outputs().iter().map(|o| map[o.index()]).collect();
    let regions = g.take_custom_regions();
    let nodes = g.nodes_mut();
    let mut i = 0;
    nodes.retain(|_| {
        i += 1;
        live[i - 1]
    });
    for node in nodes.iter_mut() {
        for x in &mut node.inputs {
            *x = map[x.index()];
        }
        // Provenance follows the renumbering; the forward node of a removed one is gone.
        node.origin = node
            .origin
            .renumbered(|f| map.get(f.index()).copied().filter(|m| m.0 != u32::MAX));
    }
    g.set_outputs(outputs);
    for mut r in regions.into_iter().filter(|r| live[r.output.index()]) {
        r.inputs.iter_mut().for_each(|x| *x = map[x.index()]);
        (r.first, r.output) = (map[r.first.index()], map[r.output.index()]);
        g.add_custom_region(r);
    }
}
