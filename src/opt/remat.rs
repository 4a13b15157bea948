//! Rematerialization of a differentiated straight-line graph in checkpoint segments (Chen et
//! al. 2016, "Training deep nets with sublinear memory cost"): forward values the backward pass
//! reads are recomputed from a few stored ones just before the backward pass needs them, instead
//! of being kept alive from the forward pass.
//!
//! The *backward part* is every node that records an [`Origin::Adjoint`] or depends on one (so
//! an optimizer step after the gradient belongs to it); the rest is the *forward part*. The
//! forward part's non-leaf nodes, in id order, are cut into `segments` runs of about equal
//! bytes. A forward value is *stored* if it is a leaf, a graph output, or read by a forward node
//! of another segment (a segment boundary); every other forward value that a backward node reads
//! is *recomputed*: a copy of it (and of the non-stored values it needs, back to stored ones) is
//! placed just before its first backward reader, and every backward reader reads the copy. So a
//! segment is recomputed once, when the backward pass reaches it, and memory holds the stored
//! values plus one segment's working set: about `√n` each for `√n` segments.
//!
//! Exact: a copy is the same op on bitwise the same operands, so results do not change.
//!
//! Not done here: choosing `segments` (the JIT's budget planner does, from the memory plan's
//! peak), and any merging of copies (run this after the optimizer, whose CSE would merge the
//! copies with their originals). A graph with no adjoint nodes (or one differentiated in
//! another process and parsed back, whose nodes have no [`Origin::Adjoint`]) has no backward
//! part and is returned unchanged. The side tables (custom regions, checkpoints) are dropped,
//! as by every pass that renumbers.

use crate::ir::{Graph, Node, NodeId, Op, Origin};
use std::collections::BTreeSet;
use std::fmt;

/// What one rematerialization did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RematStats {
    /// Copies of forward nodes inserted into the backward part.
    pub nodes_recomputed: u64,
    /// Their floating-point work (a `matmul` counts `2·m·n·k`, other ops one per element
    /// produced, reductions one per element read).
    pub flops_recomputed: u64,
}

impl fmt::Display for RematStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes_recomputed={} flops_recomputed={}",
            self.nodes_recomputed, self.flops_recomputed
        )
    }
}

/// Which nodes are in the backward part (see the module docs).
pub fn backward_part(g: &Graph) -> Vec<bool> {
    let mut back = vec![false; g.len()];
    for (i, n) in g.nodes().iter().enumerate() {
        back[i] =
            matches!(n.origin, Origin::Adjoint(_)) || n.inputs.iter().any(|x| back[x.index()]);
    }
    back
}

/// The floating-point work of node `id` (see [`RematStats::flops_recomputed`]).
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    let n = g.node(id);
    let out = n.ty.numel() as u64;
    match n.op {
        Op::Matmul => {
            let k = g.ty(n.inputs[0]).shape.last().copied().unwrap_or(1) as u64;
            2 * out * k
        }
        Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin => {
            g.ty(n.inputs[0]).numel() as u64
        }
        _ => out,
    }
}

/// Rewrites `g` so that the backward part recomputes forward values in `segments` checkpoint
/// segments (see the module docs). `segments == 0` changes nothing.
pub fn rematerialize(g: &mut Graph, segments: usize) -> RematStats {
    let back = backward_part(g);
    if segments == 0 || !back.contains(&true) {
        return RematStats::default();
    }
    let stored = stored_values(g, &back, segments);
    let old = std::mem::take(g);
    let mut new = Graph::new(old.name.clone());
    let mut map: Vec<NodeId> = Vec::with_capacity(old.len());
    let mut copy: Vec<Option<NodeId>> = vec![None; old.len()];
    let mut stats = RematStats::default();
    let recomputed = |x: NodeId| !back[x.index()] && !stored[x.index()];
    for (i, node) in old.nodes().iter().enumerate() {
        let mut n = node.clone();
        if back[i] {
            for x in &mut n.inputs {
                if recomputed(*x) {
                    *x = ensure_copy(&old, &mut new, *x, &map, &mut copy, &recomputed, &mut stats);
                } else {
                    *x = map[x.index()];
                }
            }
        } else {
            n.inputs.iter_mut().for_each(|x| *x = map[x.index()]);
        }
        map.push(new.append(n));
    }
    new.set_outputs(old.outputs().iter().map(|o| map[o.index()]).collect());
    *g = new;
    stats
}

/// The recomputed copy of old node `v` in `new`, appended now (with the copies it needs, in id
/// order) if it does not exist yet.
fn ensure_copy(
    old: &Graph,
    new: &mut Graph,
    v: NodeId,
    map: &[NodeId],
    copy: &mut [Option<NodeId>],
    recomputed: &impl Fn(NodeId) -> bool,
    stats: &mut RematStats,
) -> NodeId {
    if let Some(c) = copy[v.index()] {
        return c;
    }
    // An explicit stack: a segment can be a long chain.
    let mut need = BTreeSet::from([v]);
    let mut stack = vec![v];
    while let Some(u) = stack.pop() {
        for &x in &old.node(u).inputs {
            if recomputed(x) && copy[x.index()].is_none() && need.insert(x) {
                stack.push(x);
            }
        }
    }
    for u in need {
        let src = old.node(u);
        let inputs = (src.inputs.iter())
            .map(|&x| copy[x.index()].unwrap_or(map[x.index()]))
            .collect();
        // A copy keeps the forward class (no adjoint origin): with
        // `keep_backward_apart` the JIT then keeps the backward work that reads it (`1 - h²`)
        // out of its loop, which would store a second value per recomputed layer.
        let c = new.append(Node {
            inputs,
            name: None,
            origin: Origin::None,
            ..src.clone()
        });
        copy[u.index()] = Some(c);
        stats.nodes_recomputed += 1;
        stats.flops_recomputed += flops(old, u);
    }
    copy[v.index()].expect("just copied")
}

/// Which values are stored: leaves, loop results, outputs, the backward part, and forward values read by a
/// forward node of another segment.
fn stored_values(g: &Graph, back: &[bool], segments: usize) -> Vec<bool> {
    let nodes = g.nodes();
    let leaf = |n: &Node| n.inputs.is_empty();
    let total: u128 = (nodes.iter().zip(back))
        .filter(|(n, b)| !**b && !leaf(n))
        .map(|(n, _)| n.ty.numel() as u128 * n.ty.dtype.size_bytes() as u128)
        .sum();
    let mut seg = vec![0usize; g.len()];
    let mut before = 0u128;
    for (i, n) in nodes.iter().enumerate() {
        if back[i] || leaf(n) {
            continue;
        }
        seg[i] = (before * segments as u128 / total.max(1)) as usize;
        before += n.ty.numel() as u128 * n.ty.dtype.size_bytes() as u128;
    }
    // A loop's results are stored: recomputing one reruns the whole loop (a loop trades memory
    // for time through its own snapshot count instead).
    let mut stored: Vec<bool> = (nodes.iter().zip(back))
        .map(|(n, &b)| b || leaf(n) || n.op == crate::ir::Op::Scan)
        .collect();
    for o in g.outputs() {
        stored[o.index()] = true;
    }
    for (i, n) in nodes.iter().enumerate() {
        if back[i] {
            continue;
        }
        for x in &n.inputs {
            if seg[x.index()] != seg[i] {
                stored[x.index()] = true;
            }
        }
    }
    stored
}
