//! Constant folding: a node whose operands are all constants becomes a constant.
//!
//! Uses the interpreter kernels ([`crate::ops::eval`]), so folding is exact by construction.
//! Does not fold `broadcast` (a broadcast constant costs no memory, folding it would), `scan`
//! (running a loop at compile time could cost any amount of time), collectives (their value
//! depends on the other ranks), `optimization_barrier` (see [`crate::opt::cse`]), results
//! larger than the configured element limit, or leaves. Does not remove the now-unused operand
//! constants (DCE does).

use super::{Rewrite, rebuild};
use crate::ir::{Graph, Node, Op, Origin};
use crate::ops;
use std::fmt;
use std::sync::Arc;

/// Counters of one folding run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldStats {
    /// Nodes replaced by constants.
    pub consts_folded: u64,
}

impl fmt::Display for FoldStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "consts_folded={}", self.consts_folded)
    }
}

/// Folds every node whose operands are all constants and whose result has at most
/// `max_elements` elements.
pub fn fold_constants(g: &mut Graph, max_elements: usize) -> FoldStats {
    let foldable = |g: &Graph, n: &Node| {
        !matches!(
            n.op,
            Op::Input | Op::Const | Op::Broadcast | Op::Barrier | Op::Scan
        ) && !ops::collective::is_collective(n.op)
            && n.ty.numel() <= max_elements
            && n.inputs.iter().all(|&x| g.node(x).op == Op::Const)
    };
    // Most rounds fold nothing: finding that out needs no rebuilt graph. (Folding only turns
    // nodes into constants, so a graph with no foldable node keeps none after a rebuild.)
    let opaque = g.custom_interior();
    if !g
        .nodes()
        .iter()
        .enumerate()
        .any(|(i, n)| !opaque[i] && foldable(g, n))
    {
        return FoldStats::default();
    }
    let folded = rebuild(g, |new, n| {
        if !foldable(new, n) {
            return Rewrite::Keep;
        }
        let args: Vec<&crate::Tensor> = n
            .inputs
            .iter()
            .map(|&x| new.node(x).attrs.as_const().expect("const operand"))
            .collect();
        let value = ops::eval(n, &args);
        Rewrite::Replace(Node {
            op: Op::Const,
            inputs: Vec::new(),
            attrs: crate::ir::Attrs::Const(Arc::new(value)),
            ty: n.ty.clone(),
            name: None,
            origin: if n.origin == Origin::None {
                Origin::None
            } else {
                n.origin
            },
        })
    });
    FoldStats {
        consts_folded: folded,
    }
}
