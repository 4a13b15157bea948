//! Phase 3b: GEMM epilogues. The `gemm` crate computes `dst = alpha·dst + beta·(x·y)`, so a
//! product whose only reader adds it to a value of its own type (`u·μ + Xᵀ·G`, the momentum
//! update of SGD; `W − X·Y`) can be one GEMM call that updates that value where it lies
//! ([`Accumulate`]), instead of a GEMM into a buffer of its own and a pass reading the buffer
//! back: the product's buffer, and a write and a read of it, disappear. Only done where the
//! value can be updated in place, so that it saves memory traffic: an input donated to the
//! sum's output (`JitConfig::donate`: the optimizer state of a training step), or a computed
//! value whose only reader is the sum (the sum takes over its workspace). Into any other home
//! the value would first have to be copied, a pass as large as the one saved.
//!
//! Matched, with `P` the product (a rank-2 `matmul` computed by the GEMM whose only reader is
//! the sum and which is not an output) and `I` that value (of the sum's type, read whole, not
//! one of the product's operands): `add(P, I)`, `add(I, P)`, `sub(I, P)`, `sub(P, I)`, where
//! `I` may be `mul(J, c)` or `mul(c, J)` with `c` a constant whose elements are all one value
//! and the `mul` read only by the sum (then `J` is updated, with factor `c`).
//!
//! Not matched: a bias broadcast along rows (`x·W + b`): the crate has no row epilogue, so
//! filling the destination with the bias rows would be a pass as large as the addition saved.
//!
//! Numerics: the crate updates the destination once per `k` block of the product (`k` up to
//! 512 is one block): `dst ← alpha·dst + beta·acc₁`, then `dst ← dst + beta·accᵢ`. With one
//! block that is the separate computation's value bit for bit (`alpha·init` rounded, then
//! added to the product, rounded: the `add` of the graph, or the `sub` with `beta = −1`, a
//! fused multiply-add by ±1 rounding once); with several blocks the sum is
//! `(alpha·init + P₁) + P₂ + …` instead of `alpha·init + (P₁ + P₂ + …)`: a different rounding
//! of the same sum, within the GEMM's own tolerance (`jit::gemm`). Exact mode (no GEMM) and
//! checked mode (every node its own group) have no epilogues.

use super::fuse::Fusion;
use super::live::Live;
use super::memory::const_of;
use super::{Accumulate, PlanConfig, Role, View};
use crate::ir::{Graph, NodeId, Op};
use crate::tensor::Data;

/// Finds the epilogues of `f`'s GEMM calls and moves each sum into its product's group (and
/// drops an absorbed `mul`). Returns, per group, its epilogue.
pub(super) fn absorb(
    g: &Graph,
    live: &Live,
    f: &mut Fusion,
    cfg: &PlanConfig,
    donated: &[(usize, usize)],
) -> Vec<Option<Accumulate>> {
    let mut out = vec![None; f.members.len()];
    if cfg.exact || cfg.checked {
        return out;
    }
    let readers = only_readers(g, live);
    let (inputs, outputs) = (g.inputs(), g.outputs());
    let donated: Vec<(NodeId, NodeId)> = donated
        .iter()
        .map(|&(i, o)| (inputs[i], outputs[o]))
        .collect();
    let cx = Cx {
        g,
        live,
        readers: &readers,
        donated: &donated,
        exact: cfg.exact,
    };
    for i in 0..g.len() {
        let id = NodeId(i as u32);
        let Some((gm, acc)) = cx.matched(f, id) else {
            continue;
        };
        for n in std::iter::once(acc.out).chain(acc.scaled) {
            if let Role::Member(grp) = f.roles[n.index()] {
                f.members[grp as usize].retain(|&m| m != n);
            }
        }
        f.roles[acc.out.index()] = Role::Single(gm);
        f.members[gm as usize].push(acc.out);
        if let Some(s) = acc.scaled {
            f.roles[s.index()] = Role::Dead;
        }
        out[gm as usize] = Some(acc);
    }
    out
}

/// Per node: its one live reader, if it has exactly one (read once).
fn only_readers(g: &Graph, live: &Live) -> Vec<Option<NodeId>> {
    let mut count = vec![0u32; g.len()];
    let mut reader = vec![None; g.len()];
    for (i, node) in g.nodes().iter().enumerate() {
        if !live.live[i] {
            continue;
        }
        for &x in &node.inputs {
            count[x.index()] += 1;
            reader[x.index()] = Some(NodeId(i as u32));
        }
    }
    reader
        .into_iter()
        .zip(count)
        .map(|(r, c)| if c == 1 { r } else { None })
        .collect()
}

/// What the matching reads.
struct Cx<'a> {
    g: &'a Graph,
    live: &'a Live,
    /// Per node: its only live reader.
    readers: &'a [Option<NodeId>],
    /// Donated (input, output) node pairs.
    donated: &'a [(NodeId, NodeId)],
    exact: bool,
}

impl Cx<'_> {
    /// The epilogue that sum `id` makes of its product's group (and that group), if it
    /// matches.
    fn matched(&self, f: &Fusion, id: NodeId) -> Option<(u32, Accumulate)> {
        let g = self.g;
        let node = g.node(id);
        let sub = match node.op {
            Op::Add => false,
            Op::Sub => true,
            _ => return None,
        };
        if !self.live.live[id.index()] || !matches!(f.roles[id.index()], Role::Member(_)) {
            return None;
        }
        let ty = &node.ty;
        // Operands' views: a view node's, else the whole stored value (set later for all).
        let view_of = |x: NodeId| {
            f.views[x.index()]
                .clone()
                .unwrap_or_else(|| View::whole(x, &g.ty(x).shape))
        };
        for side in 0..2 {
            let (p, init) = (node.inputs[side], node.inputs[1 - side]);
            let pn = g.node(p);
            let Role::Single(gm) = f.roles[p.index()] else {
                continue;
            };
            let product = pn.op == Op::Matmul
                && pn.ty == *ty
                && ty.rank() == 2
                && !self.live.output[p.index()]
                && self.readers[p.index()] == Some(id)
                && super::nest::gemm(g, &view_of, p, self.exact);
            if !product || init == p || g.ty(init) != ty {
                continue;
            }
            let (init, alpha, scaled) = self.scaled(f, init, id);
            if !self.in_place(f, init, (id, scaled), p, gm) {
                continue;
            }
            // add: init·α + P; sub(init, P): init·α − P; sub(P, init): −(init·α) + P.
            let (alpha, beta) = match (sub, side) {
                (false, _) => (alpha, 1.0),
                (true, 1) => (alpha, -1.0),
                (true, _) => (-alpha, 1.0),
            };
            return Some((
                gm,
                Accumulate {
                    out: id,
                    init,
                    alpha,
                    beta,
                    scaled,
                },
            ));
        }
        None
    }

    /// `x` as (initial value, factor, absorbed `mul`): `mul(J, c)` or `mul(c, J)` read only
    /// by `sum` and not an output, with `c` a constant of one repeated value and `J` of `x`'s
    /// type, is `(J, c, mul)`; anything else `(x, 1, None)`.
    fn scaled(&self, f: &Fusion, x: NodeId, sum: NodeId) -> (NodeId, f64, Option<NodeId>) {
        let g = self.g;
        let node = g.node(x);
        if node.op != Op::Mul
            || self.readers[x.index()] != Some(sum)
            || self.live.output[x.index()]
            || !matches!(f.roles[x.index()], Role::Member(_))
        {
            return (x, 1.0, None);
        }
        for side in 0..2 {
            let (j, c) = (node.inputs[side], node.inputs[1 - side]);
            if g.ty(j) != &node.ty || g.node(c).op != Op::Const {
                continue;
            }
            if let Some(v) = const_splat(g, c) {
                return (j, v, Some(x));
            }
        }
        (x, 1.0, None)
    }

    /// True if product `p` (group `gm`) can update `init` in place as the value of `sum`
    /// (`readers`: the sum and the absorbed `mul`, if any): `init` is an input donated to
    /// `sum`, or a value computed by an earlier group whose only reader is one of `readers`,
    /// the sum not being an output (which has a home of its own); and `init` is not the memory
    /// of one of the product's operands.
    fn in_place(
        &self,
        f: &Fusion,
        init: NodeId,
        (sum, mul): (NodeId, Option<NodeId>),
        p: NodeId,
        gm: u32,
    ) -> bool {
        let g = self.g;
        let own = match f.roles[init.index()] {
            Role::Leaf => self.donated.contains(&(init, sum)),
            Role::Member(gi) | Role::Single(gi) => {
                let reader = self.readers[init.index()];
                gi < gm
                    && !self.live.output[init.index()]
                    && !self.live.output[sum.index()]
                    && (reader == Some(sum) || (reader.is_some() && reader == mul))
            }
            Role::View | Role::Pieces | Role::Dead => false,
        };
        let operand = g.node(p).inputs.iter().any(|&x| {
            let root = match &f.views[x.index()] {
                Some(v) if f.roles[x.index()] == Role::View => v.root,
                _ => x,
            };
            root == init
        });
        own && !operand
    }
}

/// The value of every element of float constant `c`, if they are all one value (bitwise).
fn const_splat(g: &Graph, c: NodeId) -> Option<f64> {
    match const_of(g, c).data() {
        Data::F32(v) => {
            let first = *v.first()?;
            v.iter()
                .all(|x| x.to_bits() == first.to_bits())
                .then_some(f64::from(first))
        }
        Data::F64(v) => {
            let first = *v.first()?;
            v.iter()
                .all(|x| x.to_bits() == first.to_bits())
                .then_some(first)
        }
        Data::Bool(_) | Data::I32(_) => None,
    }
}
