//! What both AD drivers share: the custom-region lookup, activity analysis, and fitting a rule's
//! result to the shape its value's derivative must have.
//!
//! Everything is a loop over ids (no recursion), so million-node graphs are fine.

use crate::ir::loops::loop_groups;
use crate::ir::{Graph, NodeId, Var, broadcast_shapes};
use crate::ops::custom::CustomRegion;

/// The graph's custom regions, indexed by node.
pub(super) struct Regions {
    list: Vec<CustomRegion>,
    /// For each node: the region whose output it is (the outermost when regions nest).
    at: Vec<Option<usize>>,
    /// For each node: inside some region's interior (built by a forward function, before its
    /// output).
    interior: Vec<bool>,
}

impl Regions {
    pub(super) fn new(g: &Graph) -> Regions {
        let n = g.len();
        let list = g.custom_regions().to_vec();
        let mut at = vec![None; n];
        let mut interior = vec![false; n];
        for (k, r) in list.iter().enumerate() {
            let o = r.output.index();
            if o >= n {
                continue;
            }
            // Later regions enclose earlier ones that share their output: the later one wins.
            at[o] = Some(k);
            for flag in &mut interior[r.first.index()..o] {
                *flag = true;
            }
        }
        Regions { list, at, interior }
    }

    /// The region whose output is `id`, if any.
    pub(super) fn at(&self, id: NodeId) -> Option<&CustomRegion> {
        self.at
            .get(id.index())
            .copied()
            .flatten()
            .map(|k| &self.list[k])
    }

    /// True if `id` is inside a region (not its output).
    pub(super) fn is_interior(&self, id: NodeId) -> bool {
        self.interior.get(id.index()).copied().unwrap_or(false)
    }

    /// The values node `id` depends on: its operands, plus its region's inputs if it is a region
    /// output (a rule may use an input the forward function ignored).
    fn deps<'a>(&'a self, g: &'a Graph, id: NodeId) -> impl Iterator<Item = NodeId> + 'a {
        let region = self.at(id).map(|r| r.inputs.as_slice()).unwrap_or(&[]);
        g.node(id).inputs.iter().chain(region).copied()
    }
}

/// Nodes on a path from some `sources` node to some `sinks` node (through region edges too).
/// Only these get derivatives.
pub(super) fn active_nodes(
    g: &Graph,
    regions: &Regions,
    sources: &[NodeId],
    sinks: &[NodeId],
) -> Vec<bool> {
    let n = sinks.iter().map(|s| s.index() + 1).max().unwrap_or(0);
    let mut from = vec![false; n];
    for &s in sources {
        if s.index() < n {
            from[s.index()] = true;
        }
    }
    for i in 0..n {
        if !from[i] && regions.deps(g, NodeId(i as u32)).any(|x| from[x.index()]) {
            from[i] = true;
        }
    }
    let mut to = vec![false; n];
    for &s in sinks {
        to[s.index()] = true;
    }
    for i in (0..n).rev() {
        if to[i] {
            for x in regions.deps(g, NodeId(i as u32)) {
                to[x.index()] = true;
            }
        }
    }
    (0..g.len()).map(|i| i < n && from[i] && to[i]).collect()
}

/// Fits a cotangent contribution to shape `to`, whose first `lead` axes are batch axes kept as
/// they are: sums over the axes broadcasting added or stretched, and broadcasts axes where the
/// contribution is constant. `None` if the shapes are incompatible (a rule bug).
pub(super) fn unbroadcast<'b>(c: Var<'b>, to: &[usize], lead: usize) -> Option<Var<'b>> {
    let from = c.shape();
    if from == to {
        return Some(c);
    }
    if from.len() < to.len() {
        // Constant along the missing axes (a custom rule may return such a value).
        return (broadcast_shapes(&from, to).as_deref() == Some(to)).then(|| c.broadcast_to(to));
    }
    if from[..lead] != to[..lead] {
        return None;
    }
    let extra = from.len() - to.len();
    let mut axes: Vec<usize> = (lead..lead + extra).collect();
    let mut kept = to[..lead].to_vec();
    for (j, &t) in to.iter().enumerate().skip(lead) {
        let f = from[extra + j];
        if f == t {
            kept.push(t);
        } else if t == 1 {
            axes.push(extra + j);
            kept.push(1);
        } else if f == 1 {
            kept.push(1); // broadcast below
        } else {
            return None;
        }
    }
    let s = if axes.is_empty() {
        c
    } else {
        c.sum_axes(&axes)
    };
    let s = if s.shape() == kept {
        s
    } else {
        s.reshape(&kept)
    };
    Some(s.broadcast_to(to))
}

/// Fits a tangent to shape `to` by broadcasting (a rule's result may be constant along axes
/// where only a broadcast operand had a tangent). `None` if it does not broadcast.
pub(super) fn broadcast_up<'b>(t: Var<'b>, to: &[usize]) -> Option<Var<'b>> {
    let from = t.shape();
    if from == to {
        return Some(t);
    }
    (broadcast_shapes(&from, to).as_deref() == Some(to)).then(|| t.broadcast_to(to))
}

/// The graph's loop groups ([`crate::ir::loops::loop_groups`]), indexed by node: the AD
/// drivers differentiate a whole group at its first node.
pub(super) struct LoopIndex {
    /// For each node: the members of the group it starts, if it starts one.
    at: Vec<Option<Vec<(NodeId, usize)>>>,
    /// For each node: a member of a group other than its first.
    later: Vec<bool>,
}

impl LoopIndex {
    pub(super) fn new(g: &Graph) -> LoopIndex {
        let mut at = vec![None; g.len()];
        let mut later = vec![false; g.len()];
        for group in loop_groups(g) {
            for &(m, _) in &group.members[1..] {
                later[m.index()] = true;
            }
            at[group.first.index()] = Some(group.members);
        }
        LoopIndex { at, later }
    }

    /// The members of the group starting at node `i`, if one does.
    pub(super) fn group_at(&self, i: usize) -> Option<&[(NodeId, usize)]> {
        self.at.get(i)?.as_deref()
    }

    /// True if node `i` is a member of a loop group but not its first.
    pub(super) fn is_later_member(&self, i: usize) -> bool {
        self.later.get(i).copied().unwrap_or(false)
    }
}
