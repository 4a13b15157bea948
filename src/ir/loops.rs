//! Loops as data: the body of a `scan` and the grouping of its result nodes.
//!
//! A `scan` runs a body graph `length` times. Its operands are, in order, the initial
//! *carries* (loop-carried values), the *xs* (per-step inputs, sliced from a leading axis of
//! size `length`) and the *consts* (the same value at every step). The body's inputs are one
//! carry, one x slice and one const each, in that order; its outputs are the new carries (same
//! types as the carries) followed by the *ys* (per-step outputs, stacked along a new leading
//! axis). With `reverse`, step `t` runs from `length - 1` down to `0` and still reads `xs[t]`
//! and writes `ys[t]`.
//!
//! Each node produces one value, so a scan is a *group* of nodes: one `scan` node per result
//! it exposes (attribute `result`: index into the body's outputs), all sharing one
//! [`Loop`] (`Arc`) and one operand list. Builders and the parser make a group's nodes
//! consecutive; passes may drop unused ones. Each node alone has a full meaning (run the loop,
//! take result `k`), so nothing is wrong when a group is split; consumers (the interpreter,
//! the AD drivers, the JIT) run a group of consecutive siblings once, see [`loop_groups`].
//!
//! A loop may stop early ([`Exit`]): it then runs `n ≤ length` steps and the remaining steps
//! are the identity on the carries. Two forms, one meaning "a dynamic trip count":
//! - [`Exit::While`] (a bounded `while`): a body output is the loop's condition. At each step
//!   the body runs; at the first step `t` whose condition is false the loop stops (`n = t`): the
//!   carries stay those entering step `t`, and every y row from `t` to `length - 1` is row `t`
//!   (what that step's body computed). Such a loop has no xs and runs forward, so every later
//!   step would see the same inputs and compute the same outputs: the results are bitwise those
//!   of running all `length` steps with a body that keeps the carries once the condition is
//!   false (a `select`), and the stacked conditions read `n` trues, then falses.
//! - [`Exit::Flags`] (the derivative loops of such a loop): an xs of `bool` flags, one per step,
//!   gives `n` = the number of leading true flags (`length` if none is false). Steps `t < n` run
//!   (in a reverse loop from `n - 1` down to `0`); y rows `t ≥ n` are zero. A backward loop
//!   reads its forward loop's stacked conditions this way, so it reverses only the steps that
//!   ran, and a skipped step contributes nothing to a cotangent (see [`crate::ops::loops::vjp`]).

use super::{Attrs, Graph, NodeId, Op, TensorType};
use std::sync::Arc;

/// The body and trip count of a `scan`.
#[derive(Clone, Debug)]
pub struct Loop {
    /// Number of steps (0 allowed when there are no xs and no ys: the results are the initial
    /// carries).
    pub length: usize,
    /// Run the steps from last to first.
    pub reverse: bool,
    /// Number of carries (the first body inputs and the first body outputs).
    pub n_carry: usize,
    /// Number of per-step inputs (the next body inputs). The rest of the inputs are consts.
    pub n_xs: usize,
    /// The body: inputs `carries, x slices, consts`; outputs `new carries, ys`.
    pub body: Graph,
    /// How many carries the backward loop of this loop's VJP may keep at once (binomial
    /// checkpointing, see [`Recompute`]); `None`: all of them (a full tape), unless a memory
    /// budget lowers it.
    pub checkpoint: Option<usize>,
    /// Set on a backward loop that recomputes the carries of the forward loop it reverses
    /// instead of reading them from a tape.
    pub recompute: Option<Recompute>,
    /// A dynamic trip count (see the module docs); `None`: all `length` steps run.
    pub exit: Option<Exit>,
}

/// How a loop that may stop early finds its trip count (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Body output `k` (a `bool` scalar y) is the condition: the loop stops when it is false.
    While(usize),
    /// Xs `k` (`bool`, one flag per step): the steps before the first false flag run.
    Flags(usize),
}

/// The trip count of an [`Exit::Flags`] loop: the number of leading true flags.
pub fn flags_count(flags: impl IntoIterator<Item = bool>) -> usize {
    flags.into_iter().take_while(|&f| f).count()
}

/// A backward loop's recomputation of its forward loop's carries.
///
/// The loop's first `forward.n_carry` xs are the forward loop's carries entering each step.
/// They are not stored: their operands are the forward loop's *initial* carries (no leading
/// axis), and the runtime recomputes each step's carries with the forward body, keeping at most
/// `snapshots` of them at once (the schedule of [`crate::ops::loops::revolve`]). The next
/// `forward.n_xs` xs are the forward loop's xs and the consts end with the forward loop's
/// consts, so the forward body finds its inputs there. The loop runs in the direction opposite
/// to the forward loop. Results are bitwise the same for every `snapshots`: only the order of
/// work changes.
#[derive(Clone, Debug)]
pub struct Recompute {
    /// The forward loop.
    pub forward: std::sync::Arc<Loop>,
    /// Carries kept at once (at least 1; `length` or more keeps all: the full tape).
    pub snapshots: usize,
}

impl Loop {
    /// Number of consts.
    pub fn n_consts(&self) -> usize {
        self.body.inputs().len() - self.n_carry - self.n_xs
    }

    /// Number of per-step outputs.
    pub fn n_ys(&self) -> usize {
        self.body.outputs().len() - self.n_carry
    }

    /// The type of result `k` of the loop: a carry's type, or a y's type with the leading
    /// `length` axis.
    pub fn result_type(&self, k: usize) -> Option<TensorType> {
        let o = *self.body.outputs().get(k)?;
        let t = self.body.ty(o).clone();
        if k < self.n_carry {
            return Some(t);
        }
        let mut shape = vec![self.length];
        shape.extend(t.shape);
        Some(TensorType::new(t.dtype, shape))
    }

    /// Structural equality: bodies compared with [`Graph::same`], except for the body graph's
    /// own name, which nothing reads (the `.gir` text does not spell it).
    pub fn same(&self, other: &Loop) -> bool {
        self.length == other.length
            && self.reverse == other.reverse
            && self.n_carry == other.n_carry
            && self.n_xs == other.n_xs
            && self.checkpoint == other.checkpoint
            && self.exit == other.exit
            && match (&self.recompute, &other.recompute) {
                (None, None) => true,
                (Some(a), Some(b)) => a.snapshots == b.snapshots && a.forward.same(&b.forward),
                _ => false,
            }
            && self.body.outputs == other.body.outputs
            && self.body.nodes.len() == other.body.nodes.len()
            && (self.body.nodes.iter().zip(&other.body.nodes)).all(|(a, b)| a.same(b))
    }

    /// This loop with the carries entering each step added as ys (identity copies, so the
    /// body's outputs stay distinct nodes): its results end with the stacked carries, a tape.
    pub fn with_tape(&self) -> Loop {
        let mut body = self.body.clone();
        let mut outs = body.outputs().to_vec();
        for &c in &body.inputs()[..self.n_carry] {
            let shape = body.ty(c).shape.clone();
            let copy = (body.push(Op::Reshape, vec![c], Attrs::Shape { shape }))
                .expect("an identity reshape");
            outs.push(copy);
        }
        body.set_outputs(outs);
        Loop {
            body,
            ..self.clone()
        }
    }

    /// Number of xs whose operands are recomputed carries (0 unless [`Loop::recompute`]).
    pub fn n_recomputed(&self) -> usize {
        self.recompute.as_ref().map_or(0, |r| r.forward.n_carry)
    }
}

impl PartialEq for Loop {
    fn eq(&self, other: &Loop) -> bool {
        self.same(other)
    }
}

/// The loop and result index of a `scan` node's attributes.
pub fn scan_attrs(attrs: &Attrs) -> Option<(&Arc<Loop>, usize)> {
    match attrs {
        Attrs::Scan { body, result } => Some((body, *result)),
        _ => None,
    }
}

/// A run of consecutive `scan` nodes of one loop (same `Arc`, same operands): run once.
#[derive(Clone, Debug)]
pub struct LoopGroup {
    /// The first node of the run.
    pub first: NodeId,
    /// The nodes of the run and the loop result each holds.
    pub members: Vec<(NodeId, usize)>,
}

/// Every group of the graph, in id order. Linear in the graph's size.
pub fn loop_groups(g: &Graph) -> Vec<LoopGroup> {
    let mut groups: Vec<LoopGroup> = Vec::new();
    let mut prev: Option<usize> = None;
    for (i, n) in g.nodes().iter().enumerate() {
        let Some((_, result)) = scan_attrs(&n.attrs) else {
            prev = None;
            continue;
        };
        let id = NodeId(i as u32);
        let joins = prev.is_some_and(|p| same_loop(g, NodeId(p as u32), id));
        match groups.last_mut() {
            Some(last) if joins => last.members.push((id, result)),
            _ => groups.push(LoopGroup {
                first: id,
                members: vec![(id, result)],
            }),
        }
        prev = Some(i);
    }
    groups
}

/// True if nodes `a` and `b` are results of the same loop run (same `Arc` body, same operands).
pub fn same_loop(g: &Graph, a: NodeId, b: NodeId) -> bool {
    let (na, nb) = (g.node(a), g.node(b));
    match (scan_attrs(&na.attrs), scan_attrs(&nb.attrs)) {
        (Some((la, _)), Some((lb, _))) => {
            na.op == Op::Scan && Arc::ptr_eq(la, lb) && na.inputs == nb.inputs
        }
        _ => false,
    }
}

/// The node of `first`'s group (the consecutive run of its loop's nodes from `first`) that holds
/// loop result `result`, if the group has one.
pub fn group_member(g: &Graph, first: NodeId, result: usize) -> Option<NodeId> {
    (first.index()..g.len())
        .map(|i| NodeId(i as u32))
        .take_while(|&id| same_loop(g, first, id))
        .find(|&id| scan_attrs(&g.node(id).attrs).is_some_and(|(_, r)| r == result))
}
