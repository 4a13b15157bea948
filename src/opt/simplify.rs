//! Algebraic simplification: local identities, each exact in IEEE arithmetic.
//!
//! | rewrite | exactness |
//! |---|---|
//! | `x + (-0.0) → x`, `x - 0.0 → x`, `x * 1 → x`, `x / 1 → x` | exact |
//! | `x + 0.0 → x` | exact except `-0.0 + 0.0 = +0.0` becomes `-0.0` (equal as numbers) |
//! | `x * -1 → -x`, `--x → x` | exact |
//! | `powi(x, 1) → x` | exact |
//! | `select(c, x, x) → x`, `select(all-true, a, b) → a` (and all-false) | exact |
//! | `cast` to the same dtype, `reshape`/`broadcast` to the same shape, identity `transpose`, `reduce_max`/`reduce_min` over no axes | exact (no-ops) |
//! | `reshape(reshape(x)) → reshape(x)`, `transpose(transpose(x)) → transpose(x)` (perms composed), `broadcast(broadcast(x)) → broadcast(x)` | exact (data movement) |
//!
//! A rewrite only applies when the result has exactly the node's type (`x + 0` with a broadcast
//! `0` that enlarges `x` is left alone). Not done: `x * 0 → 0` (wrong for inf/nan), `x - x → 0`
//! (wrong for inf/nan), reassociation.

use super::{Rewrite, rebuild};
use crate::ir::{Attrs, Graph, Node, NodeId, Op};
use std::fmt;

/// Counters of one simplification run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimplifyStats {
    /// Nodes replaced by a simpler equivalent.
    pub nodes_rewritten: u64,
}

impl fmt::Display for SimplifyStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nodes_rewritten={}", self.nodes_rewritten)
    }
}

/// If `id` is a constant (possibly broadcast or reshaped) whose elements are all bitwise
/// equal, their value.
fn splat(g: &Graph, mut id: NodeId) -> Option<f64> {
    loop {
        let n = g.node(id);
        match n.op {
            Op::Broadcast | Op::Reshape => id = n.inputs[0],
            Op::Const => {
                let t = n.attrs.as_const()?;
                let bytes = t.to_bytes();
                let w = t.dtype().size_bytes();
                let first = &bytes[..w];
                return bytes
                    .chunks_exact(w)
                    .all(|c| c == first)
                    .then(|| t.data().get_f64(0));
            }
            _ => return None,
        }
    }
}

fn is(g: &Graph, id: NodeId, v: f64) -> bool {
    splat(g, id).is_some_and(|x| x == v && x.is_sign_negative() == v.is_sign_negative())
}

/// Applies the identities in the table above.
pub fn simplify(g: &mut Graph) -> SimplifyStats {
    let rewritten = rebuild(g, rewrite);
    SimplifyStats {
        nodes_rewritten: rewritten,
    }
}

fn rewrite(g: &mut Graph, n: &Node) -> Rewrite {
    let same_ty = |g: &Graph, x: NodeId| *g.ty(x) == n.ty;
    let alias = |g: &Graph, x: NodeId| {
        if same_ty(g, x) {
            Rewrite::Alias(x)
        } else {
            Rewrite::Keep
        }
    };
    let a = n.inputs.first().copied();
    let b = n.inputs.get(1).copied();
    match n.op {
        Op::Add => {
            let (a, b) = (a.expect("binary"), b.expect("binary"));
            if is(g, b, 0.0) || is(g, b, -0.0) {
                return alias(g, a);
            }
            if is(g, a, 0.0) || is(g, a, -0.0) {
                return alias(g, b);
            }
        }
        Op::Sub if is(g, b.expect("binary"), 0.0) => return alias(g, a.expect("binary")),
        Op::Mul => {
            let (a, b) = (a.expect("binary"), b.expect("binary"));
            for (x, c) in [(a, b), (b, a)] {
                if is(g, c, 1.0) {
                    return alias(g, x);
                }
                if is(g, c, -1.0) && same_ty(g, x) {
                    return replace(n, Op::Neg, vec![x], Attrs::None);
                }
            }
        }
        Op::Div if is(g, b.expect("binary"), 1.0) => return alias(g, a.expect("binary")),
        Op::Neg => {
            let x = g.node(a.expect("unary"));
            if x.op == Op::Neg {
                return alias(g, x.inputs[0]);
            }
        }
        Op::Powi if n.attrs == (Attrs::Powi { n: 1 }) => return alias(g, a.expect("unary")),
        Op::Cast | Op::Reshape | Op::Broadcast => {
            let x = a.expect("unary");
            if same_ty(g, x) {
                return Rewrite::Alias(x);
            }
            let inner = g.node(x);
            if inner.op == n.op && n.op != Op::Cast {
                return replace(n, n.op, vec![inner.inputs[0]], n.attrs.clone());
            }
        }
        Op::Transpose => {
            let x = a.expect("unary");
            let Attrs::Perm { perm } = &n.attrs else {
                return Rewrite::Keep;
            };
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                return Rewrite::Alias(x);
            }
            let inner = g.node(x);
            if let (Op::Transpose, Attrs::Perm { perm: p0 }) = (inner.op, &inner.attrs) {
                // out[i] = mid[perm[i]] = in[p0[perm[i]]]
                let composed: Vec<usize> = perm.iter().map(|&p| p0[p]).collect();
                let src = inner.inputs[0];
                if composed.iter().enumerate().all(|(i, &p)| i == p) {
                    return alias(g, src);
                }
                return replace(n, Op::Transpose, vec![src], Attrs::Perm { perm: composed });
            }
        }
        // A sum over no axes is `0.0 + x`, which turns `-0.0` into `+0.0` (and `atan2` turns
        // that sign into π), so only max and min are no-ops there.
        Op::ReduceMax | Op::ReduceMin => {
            if let Attrs::Reduce { axes, .. } = &n.attrs
                && axes.is_empty()
            {
                return alias(g, a.expect("unary"));
            }
        }
        Op::Select => {
            let (c, x, y) = (n.inputs[0], n.inputs[1], n.inputs[2]);
            if x == y {
                return alias(g, x);
            }
            match splat(g, c) {
                Some(v) if v != 0.0 => return alias(g, x),
                Some(_) => return alias(g, y),
                None => {}
            }
        }
        _ => {}
    }
    Rewrite::Keep
}

fn replace(n: &Node, op: Op, inputs: Vec<NodeId>, attrs: Attrs) -> Rewrite {
    Rewrite::Replace(Node {
        op,
        inputs,
        attrs,
        ty: n.ty.clone(),
        name: None,
        origin: n.origin,
    })
}
