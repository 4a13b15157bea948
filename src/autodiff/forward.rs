//! Forward mode: appends the tangent graph to the same graph.
//!
//! Phases:
//! 1. Mark the *active* nodes: reachable forward from a `wrt` node and backward from an output
//!    (through custom-region edges too). Only these get tangents.
//! 2. Seed each `wrt` node's tangent and visit the nodes in topological (id) order. Each active
//!    float node whose operands have a tangent calls its op's JVP rule — or, at a custom
//!    region's output, the user's rule (the region's interior gets no tangents) — and the driver
//!    broadcasts the result to the node's tangent shape. A tangent of `None` is a symbolic zero:
//!    nodes whose operands all have zero tangents append nothing.
//! 3. Return the tangent of each output (zeros if it does not depend on `wrt`).
//!
//! There is no tape: each node's tangent is computed right after the node and only reads
//! tangents of its operands, so the compiled kernel computes values and tangents in one sweep
//! and can free a tangent after its last reader (memory O(1) per node, not O(graph)).
//!
//! **Batched tangents.** With `batch = Some(k)` every tangent carries a leading axis of size `k`
//! (`[k, ...shape]`): `k` directions pushed through one pass, so a Jacobian with `k` columns is
//! one kernel, not `k`. One set of rules serves both modes: before calling a rule the driver
//! lifts each operand tangent whose rank is below the output's to the output's rank (size-1
//! axes after the batch axis), so NumPy broadcasting against the primal operands lines up, and
//! rules that name axes shift them with [`crate::ops::Tangents`].
//!
//! Not done here: simplification of the appended nodes (the optimizer does that).

use super::regions::{LoopIndex, Regions, active_nodes, broadcast_up};
use super::{GradError, check_float_outputs, check_ids, check_seeds, check_wrt, on_graph};
use crate::ir::{Graph, GraphBuilder, NodeId, Origin, Var};
use crate::ops::{self, Tangents, add_opt, custom::CustomCall};

/// Appends the tangent graph and returns the tangent of each output: the Jacobian-vector
/// product `Σᵢ ∂y/∂wᵢ · tangents[i]`, where `tangents[i]` has `wrt[i]`'s type.
///
/// ```
/// use gradlift::{DType, GraphBuilder, autodiff::jvp, interp};
/// let b = GraphBuilder::new("f");
/// let x = b.input("x", DType::F64, &[]);
/// let t = b.scalar(DType::F64, 1.0);
/// let y = x * x.sin();
/// let mut g = b.into_graph(&[y.id()]).unwrap();
/// let (xi, yi, ti) = (x.id(), y.id(), t.id());
/// let dy = jvp(&mut g, &[yi], &[xi], &[ti]).unwrap();
/// g.set_outputs(vec![dy[0]]);
/// let out = interp::run(&g, &[2.0.into()]).unwrap();
/// assert!((out[0].scalar_value().unwrap() - (2f64.sin() + 2.0 * 2f64.cos())).abs() < 1e-15);
/// ```
///
/// # Errors
/// [`GradError`] if an output or `wrt` value is not float, or a tangent's type is wrong.
pub fn jvp(
    g: &mut Graph,
    outputs: &[NodeId],
    wrt: &[NodeId],
    tangents: &[NodeId],
) -> Result<Vec<NodeId>, crate::Error> {
    on_graph(g, |b| append_jvp(b, outputs, wrt, tangents, None))
}

/// [`jvp`] for a batch of `k` directions at once: `tangents[i]` has shape `[k, ...wrt[i].shape]`
/// and each result `[k, ...output.shape]` (row `r` is the JVP along direction `r`).
///
/// # Errors
/// As [`jvp`].
pub fn jvp_batched(
    g: &mut Graph,
    outputs: &[NodeId],
    wrt: &[NodeId],
    tangents: &[NodeId],
    k: usize,
) -> Result<Vec<NodeId>, crate::Error> {
    on_graph(g, |b| append_jvp(b, outputs, wrt, tangents, Some(k)))
}

/// The forward driver on a builder: [`jvp`] (`batch = None`) or [`jvp_batched`]
/// (`batch = Some(k)`).
///
/// # Errors
/// As [`jvp`]; also a custom op on the path without a JVP rule
/// ([`GradError::MissingCustomRule`]) or whose rule returns an unusable tangent.
pub(crate) fn append_jvp(
    b: &GraphBuilder,
    outputs: &[NodeId],
    wrt: &[NodeId],
    tangents: &[NodeId],
    batch: Option<usize>,
) -> Result<Vec<NodeId>, GradError> {
    check_ids(b, &[outputs, wrt, tangents])?;
    check_float_outputs(b, outputs)?;
    check_wrt(b, wrt)?;
    check_seeds(b, "tangent", wrt, tangents, batch)?;
    let res = push_tangents(b, outputs, wrt, tangents, batch);
    b.clear_origin();
    res
}

fn push_tangents(
    b: &GraphBuilder,
    outputs: &[NodeId],
    wrt: &[NodeId],
    tangents: &[NodeId],
    batch: Option<usize>,
) -> Result<Vec<NodeId>, GradError> {
    let n = b.graph().len();
    let regions = Regions::new(&b.graph());
    let active = active_nodes(&b.graph(), &regions, wrt, outputs);
    let full = |id: NodeId| -> Vec<usize> { batch.iter().copied().chain(b.ty(id).shape).collect() };

    // Seeds are added to whatever flows in, so a `wrt` value downstream of another one gets the
    // total derivative, matching reverse mode.
    let mut tangent: Vec<Option<NodeId>> = vec![None; n];
    for (&w, &t) in wrt.iter().zip(tangents) {
        b.set_origin(Origin::Tangent(w));
        tangent[w.index()] =
            add_opt(tangent[w.index()].map(|p| b.var(p)), Some(b.var(t))).map(|v| v.id());
    }
    let lo = wrt.iter().map(|w| w.index()).min().unwrap_or(n);
    let hi = outputs.iter().map(|o| o.index() + 1).max().unwrap_or(0);
    let loops = LoopIndex::new(&b.graph());
    for i in lo..hi {
        let id = NodeId(i as u32);
        if loops.is_later_member(i) {
            continue; // a loop's group is handled at its first node
        }
        if let Some(members) = loops.group_at(i) {
            if members.iter().any(|&(m, _)| active[m.index()]) {
                b.set_origin(Origin::Tangent(id));
                let inputs = b.graph().node(id).inputs.clone();
                let ts: Vec<Option<Var<'_>>> = inputs
                    .iter()
                    .map(|x| tangent[x.index()].map(|t| b.var(t)))
                    .collect();
                let out = ops::loops::jvp::scan_jvp(b, id, &ts, batch)?;
                for &(m, r) in members {
                    tangent[m.index()] = out[r].map(|v| v.id());
                }
            }
            continue;
        }
        if !active[i] || regions.is_interior(id) || !b.ty(id).dtype.is_float() {
            continue;
        }
        b.set_origin(Origin::Tangent(id));
        let region = regions.at(id);
        let operands: Vec<NodeId> = match region {
            Some(r) => r.inputs.clone(),
            None => b.graph().node(id).inputs.clone(),
        };
        if operands.iter().all(|x| tangent[x.index()].is_none()) {
            continue;
        }
        let out_rank = b.ty(id).rank();
        let ts = operands
            .iter()
            .map(|&x| {
                let t = b.var(tangent[x.index()]?);
                Some(match batch {
                    Some(k) if b.ty(x).rank() < out_rank => lift(t, k, out_rank),
                    _ => t,
                })
            })
            .collect();
        let tg = Tangents::new(ts, batch);
        let (result, custom) = match region {
            Some(r) => {
                let Some(rule) = r.op.jvp() else {
                    return Err(GradError::MissingCustomRule {
                        name: r.op.name().to_string(),
                        rule: "jvp",
                        mode: "forward",
                    });
                };
                let call = CustomCall {
                    inputs: r.inputs.iter().map(|&x| b.var(x)).collect(),
                    output: b.var(id),
                };
                (rule(b, &call, &tg), Some(r.op.name().to_string()))
            }
            None => {
                let node = b.graph().nodes()[i].clone();
                match ops::rules(node.op).jvp {
                    Some(jvp) => (jvp(b, id, &node, &tg), None),
                    None => (None, None),
                }
            }
        };
        let Some(r) = result else { continue };
        if b.error().is_some() {
            continue;
        }
        let want = full(id);
        let fitted = broadcast_up(r, &want).filter(|t| t.dtype() == b.ty(id).dtype);
        let t = match (fitted, custom) {
            (Some(t), _) => t,
            (None, Some(name)) => {
                return Err(GradError::CustomRule {
                    name,
                    message: format!(
                        "the jvp rule returned a {} tangent, which needs {}",
                        r.ty(),
                        crate::ir::TensorType::new(b.ty(id).dtype, want)
                    ),
                });
            }
            (None, None) => panic!(
                "invariant jvp_shape: the {} rule's tangent {} does not fit {:?}",
                b.graph().node(id).op,
                r.ty(),
                want
            ),
        };
        tangent[i] = add_opt(Some(t), tangent[i].map(|p| b.var(p))).map(|v| v.id());
    }
    let outs = outputs
        .iter()
        .map(|&o| match tangent[o.index()] {
            Some(t) => t,
            None => {
                b.set_origin(Origin::Tangent(o));
                b.zeros(b.ty(o).dtype, &full(o)).id()
            }
        })
        .collect();
    Ok(outs)
}

/// `[k, ...s]` → `[k, 1, ..., 1, ...s]` of rank `rank + 1`.
fn lift(t: Var<'_>, k: usize, rank: usize) -> Var<'_> {
    let s = t.shape();
    let mut shape = vec![k];
    shape.resize(1 + rank - (s.len() - 1), 1);
    shape.extend(&s[1..]);
    t.reshape(&shape)
}
