//! Checkpointing (JAX's `jax.checkpoint`, also called rematerialization): a region of the
//! forward graph whose intermediate values the backward pass recomputes instead of keeping
//! alive from the forward pass.
//!
//! [`GraphBuilder::checkpoint`](crate::GraphBuilder::checkpoint) records a
//! [`CheckpointRegion`] in the graph's side table ([`Checkpoints`]): the nodes its closure
//! appended, the values it returned, and a [`CheckpointPolicy`] saying which intermediates are
//! still *saved* (read from the forward pass). When the reverse driver reaches a node of the
//! region, it emits *recomputed copies* of the non-saved region values that node's VJP rule
//! reads (and, transitively, of the non-saved values those copies need), just before the rule's
//! own nodes, and calls the rule on the copies. So each copy is placed just before its first
//! backward use, and a region is recomputed at most once per differentiation.
//!
//! Always saved, whatever the policy: the region's outputs (the closure's returned values,
//! needed after the region anyway, usually the next region's input), leaves (constants,
//! `iota`s: nothing to recompute) and loops (`scan`, which checkpoints by its own snapshot
//! count). Values from outside the region are never copied.
//!
//! **The copies are never merged with their originals.** A copy reads every value that is not
//! itself a copy (an outside value, a saved value) through an `optimization_barrier` node, an
//! identity that CSE never merges and constant folding never folds. Without the barrier, CSE
//! would find each copy identical to its original and merge them, which keeps the originals
//! alive until the backward pass and undoes the memory saving. Nothing else in the pipeline
//! reorders nodes (the JIT runs groups in id order), so the copies also stay where they were
//! placed. Recomputation is exact: a copy is the same op on bitwise the same operands.
//!
//! Nested regions: the outermost region decides (its policy and its outputs). Forward mode
//! ignores checkpoints (it needs no tape). The copies are ordinary nodes, so a second
//! differentiation (grad of grad, Hessian-vector products) differentiates through them, and
//! the original region, reached again by a second reverse pass, is recomputed again.
//!
//! Deliberately absent: a `.gir` spelling of regions (a printed graph shows the copies and
//! barriers of a differentiated graph, not the region), and keeping the side table through
//! passes that renumber nodes (the optimizer drops it, like the custom-derivative table):
//! differentiate before optimizing.

use crate::ir::{Graph, GraphBuilder, Node, NodeId, Op, Var};
use std::collections::HashMap;

/// Which intermediate values of a checkpoint region the backward pass reads from the forward
/// pass instead of recomputing (JAX's `jax.checkpoint_policies`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointPolicy {
    /// Recompute every intermediate (`nothing_saveable`, JAX's default).
    #[default]
    SaveNothing,
    /// Save the results of `matmul`s, recompute the rest (`dots_saveable`): the cheap
    /// elementwise work is redone, the expensive products are not.
    SaveDots,
    /// Save the values tagged with one of these names by [`Var::checkpoint_name`] (or whose
    /// value name is one of them), recompute the rest (`save_only_these_names`).
    ///
    /// [`Var::checkpoint_name`]: crate::Var::checkpoint_name
    SaveNames(Vec<String>),
}

impl CheckpointPolicy {
    /// [`CheckpointPolicy::SaveNames`] for `names`.
    pub fn save_only_these_names(names: &[&str]) -> CheckpointPolicy {
        CheckpointPolicy::SaveNames(names.iter().map(ToString::to_string).collect())
    }
}

/// One application of [`GraphBuilder::checkpoint`](crate::GraphBuilder::checkpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRegion {
    /// The first node the closure appended.
    pub first: NodeId,
    /// One past the last node the closure appended.
    pub end: NodeId,
    /// The values the closure returned (always saved).
    pub outputs: Vec<NodeId>,
    /// What else is saved.
    pub policy: CheckpointPolicy,
}

/// The graph's side table of checkpoint regions and checkpoint names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoints {
    /// The regions, in the order their closures returned (inner before outer).
    pub regions: Vec<CheckpointRegion>,
    /// Names given by [`Var::checkpoint_name`](crate::Var::checkpoint_name), for
    /// [`CheckpointPolicy::SaveNames`]; one name may tag many values.
    pub names: Vec<(NodeId, String)>,
}

/// What the reverse driver knows about the checkpoint regions of one graph, and the copies it
/// has emitted so far.
pub(super) struct Remat {
    /// For each node in a region: whether it is saved (by the outermost region).
    member: Vec<Option<bool>>,
    /// The recomputed copy of each node, once emitted.
    copy: HashMap<NodeId, NodeId>,
    /// The barrier through which copies read each outside or saved value.
    barrier: HashMap<NodeId, NodeId>,
}

impl Remat {
    pub(super) fn new(g: &Graph) -> Remat {
        let t = g.checkpoints();
        let mut member = vec![None; if t.regions.is_empty() { 0 } else { g.len() }];
        let mut tags: HashMap<NodeId, Vec<&str>> = HashMap::new();
        for (v, name) in &t.names {
            tags.entry(*v).or_default().push(name);
        }
        for r in &t.regions {
            let end = r.end.index().min(member.len());
            let outputs: std::collections::HashSet<NodeId> = r.outputs.iter().copied().collect();
            for (i, slot) in member
                .iter_mut()
                .enumerate()
                .take(end)
                .skip(r.first.index())
            {
                let id = NodeId(i as u32);
                let node = g.node(id);
                // A loop inside a region is saved: it trades memory for time by its own
                // snapshot count, and its VJP reads its operands as they are.
                let saved = node.inputs.is_empty()
                    || node.op == Op::Scan
                    || outputs.contains(&id)
                    || match &r.policy {
                        CheckpointPolicy::SaveNothing => false,
                        CheckpointPolicy::SaveDots => node.op == Op::Matmul,
                        CheckpointPolicy::SaveNames(names) => {
                            let named = |s: &str| names.iter().any(|n| n == s);
                            node.name.as_deref().is_some_and(named)
                                || tags.get(&id).is_some_and(|ts| ts.iter().any(|s| named(s)))
                        }
                    };
                // Later regions enclose earlier ones: the outermost wins.
                *slot = Some(saved);
            }
        }
        Remat {
            member,
            copy: HashMap::new(),
            barrier: HashMap::new(),
        }
    }

    /// True if `id` belongs to some checkpoint region.
    pub(super) fn covers(&self, id: NodeId) -> bool {
        self.member.get(id.index()).copied().flatten().is_some()
    }

    fn recomputed(&self, id: NodeId) -> bool {
        matches!(self.member.get(id.index()), Some(Some(false)))
    }

    /// The value the backward pass reads for `id`: its recomputed copy (emitted now, with the
    /// copies it needs, if not yet) if `id` is a non-saved region value, else `id` itself.
    pub(super) fn value(&mut self, b: &GraphBuilder, id: NodeId) -> NodeId {
        if !self.recomputed(id) {
            return id;
        }
        if let Some(&c) = self.copy.get(&id) {
            return c;
        }
        // The non-saved values without a copy that `id` transitively needs, emitted in id
        // (topological) order. An explicit stack: regions can be long chains.
        let mut need = std::collections::BTreeSet::from([id]);
        let mut stack = vec![id];
        while let Some(v) = stack.pop() {
            for &x in &b.graph().node(v).inputs {
                if self.recomputed(x) && !self.copy.contains_key(&x) && need.insert(x) {
                    stack.push(x);
                }
            }
        }
        for v in need {
            let node = b.graph().node(v).clone();
            let inputs: Vec<_> = (node.inputs.iter())
                .map(|&x| {
                    b.var(
                        self.copy
                            .get(&x)
                            .copied()
                            .unwrap_or_else(|| self.barrier(b, x)),
                    )
                })
                .collect();
            let c = b.push(node.op, &inputs, node.attrs).id();
            self.copy.insert(v, c);
        }
        self.copy[&id]
    }

    /// `x` read through an `optimization_barrier` (one per value), so that a copy reading it is
    /// not identical to the original. Non-float values are read directly (barriers are float
    /// ops); a copy reading only such values may be merged with its original by CSE, which
    /// costs memory, never correctness.
    fn barrier(&mut self, b: &GraphBuilder, x: NodeId) -> NodeId {
        if !b.ty(x).dtype.is_float() {
            return x;
        }
        *self.barrier.entry(x).or_insert_with(|| {
            b.push(Op::Barrier, &[b.var(x)], crate::ir::Attrs::None)
                .id()
        })
    }

    /// The id and node a region node's VJP rule should read: copies in place of the non-saved
    /// values it reads (its output, its operands), emitted now if needed. Only the values the
    /// rule actually reads are recomputed: `uses` says which (output first, then operands).
    pub(super) fn remap(&mut self, b: &GraphBuilder, id: NodeId, uses: &[bool]) -> (NodeId, Node) {
        let mut node = b.graph().node(id).clone();
        for (k, x) in node.inputs.iter_mut().enumerate() {
            if uses.get(k + 1).copied().unwrap_or(true) {
                *x = self.value(b, *x);
            }
        }
        let out = if uses.first().copied().unwrap_or(true) {
            self.value(b, id)
        } else {
            id
        };
        (out, node)
    }
}

/// Which of its output and operands a node's VJP rule reads (output first, then operands),
/// found by applying the rule to a copy of the node in a scratch graph. Rules read few values
/// and some none (`add`), so recomputing only what is read saves dead copies.
pub(super) fn vjp_reads(g: &Graph, id: NodeId, ct: &crate::ir::TensorType) -> Vec<bool> {
    let node = g.node(id);
    let Some(vjp) = crate::ops::rules(node.op).vjp else {
        return vec![false; node.inputs.len() + 1];
    };
    let s = GraphBuilder::new("probe");
    let args: Vec<_> = (node.inputs.iter().enumerate())
        .map(|(k, &x)| {
            let ty = g.ty(x);
            s.input(&format!("x{k}"), ty.dtype, &ty.shape)
        })
        .collect();
    let y = s.push(node.op, &args, node.attrs.clone());
    let c = s.input("ct", ct.dtype, &ct.shape);
    if s.error().is_some() {
        return vec![true; node.inputs.len() + 1];
    }
    let mark = s.graph().len();
    let probe = Node {
        inputs: args.iter().map(|a| a.id()).collect(),
        ..s.graph().node(y.id()).clone()
    };
    let returned: Vec<NodeId> = (vjp(&s, y.id(), &probe, c).into_iter().flatten())
        .map(|v| v.id())
        .collect();
    let sg = s.graph();
    let read = |v: NodeId| {
        returned.contains(&v) || sg.nodes()[mark..].iter().any(|n| n.inputs.contains(&v))
    };
    std::iter::once(y.id())
        .chain(args.iter().map(|a| a.id()))
        .map(read)
        .collect()
}

/// What a checkpointed closure may return: one value or several. The returned values are the
/// region's outputs (always saved).
pub trait CheckpointResult<'b> {
    /// The returned values' ids.
    fn values(&self) -> Vec<NodeId>;
}

impl<'b> CheckpointResult<'b> for Var<'b> {
    fn values(&self) -> Vec<NodeId> {
        vec![self.id()]
    }
}

impl<'b> CheckpointResult<'b> for Vec<Var<'b>> {
    fn values(&self) -> Vec<NodeId> {
        self.iter().map(|v| v.id()).collect()
    }
}

impl<'b, const N: usize> CheckpointResult<'b> for [Var<'b>; N] {
    fn values(&self) -> Vec<NodeId> {
        self.iter().map(|v| v.id()).collect()
    }
}

impl<'b> CheckpointResult<'b> for (Var<'b>, Var<'b>) {
    fn values(&self) -> Vec<NodeId> {
        vec![self.0.id(), self.1.id()]
    }
}
