//! Reverse mode: appends the adjoint graph to the same graph.
//!
//! Phases:
//! 1. Mark the *active* nodes: reachable forward from a `wrt` node and backward from an output
//!    (through custom-region edges too). Only these get adjoints.
//! 2. Seed each output's adjoint with its cotangent (ȳ = 1 for [`grad`]; any cotangent for
//!    [`vjp`]; a batch of `k` cotangents stacked along a leading axis for [`vjp_batched`]) and
//!    visit the nodes in reverse topological (id) order. Each active node with an adjoint calls
//!    its op's VJP rule — or, at a custom region's output, the user's rule instead of descending
//!    into the region — which appends nodes computing the cotangent of each operand; the driver
//!    un-broadcasts each contribution to its operand's shape (keeping the batch axis) and
//!    accumulates it into the operand's adjoint with `add`.
//!    In a checkpoint region ([`super::checkpoint`]) the rule reads recomputed copies of the
//!    region's non-saved values, emitted just before the rule's nodes.
//! 3. Return the adjoint of each `wrt` node (zeros if the outputs do not depend on it).
//!
//! The result is an ordinary graph: it can be printed, optimized, compiled, and differentiated
//! again. Everything is a loop over ids, so a million-node chain is fine. Adjoint nodes record
//! `Origin::Adjoint(forward node)`.
//!
//! Not done here: simplification of the appended nodes (the optimizer does that).

use super::checkpoint::{Remat, vjp_reads};
use super::regions::{LoopIndex, Regions, active_nodes, unbroadcast};
use super::{GradError, check_float_outputs, check_ids, check_seeds, check_wrt, on_graph};
use crate::ir::{Graph, GraphBuilder, NodeId, Origin, Var};
use crate::ops::{self, custom::CustomCall};

/// Appends the adjoint of `y` to `g` and returns `∂y/∂w` for each `w` in `wrt`.
///
/// ```
/// use gradlift::{Graph, Op, Attrs, TensorType, DType, autodiff::grad, interp};
/// let mut g = Graph::new("sq");
/// let x = g.add_input("x", TensorType::scalar(DType::F64)).unwrap();
/// let y = g.push(Op::Mul, vec![x, x], Attrs::None).unwrap();
/// let dx = grad(&mut g, y, &[x]).unwrap();
/// g.set_outputs(vec![y, dx[0]]);
/// let out = interp::run(&g, &[3.0.into()]).unwrap();
/// assert_eq!(out[1].scalar_value(), Some(6.0));
/// ```
///
/// # Errors
/// [`GradError`] if `y` is not a float scalar or a `wrt` value is not a float tensor.
pub fn grad(g: &mut Graph, y: NodeId, wrt: &[NodeId]) -> Result<Vec<NodeId>, crate::Error> {
    on_graph(g, |b| append_grad(b, y, wrt))
}

/// [`grad`] on a builder (what [`GraphBuilder::grad`] calls).
///
/// # Errors
/// As [`grad`].
pub(crate) fn append_grad(
    b: &GraphBuilder,
    y: NodeId,
    wrt: &[NodeId],
) -> Result<Vec<NodeId>, GradError> {
    check_ids(b, &[&[y], wrt])?;
    let yty = b.ty(y);
    if !yty.is_scalar() || !yty.dtype.is_float() {
        return Err(GradError::NotScalar {
            name: b.graph().describe_value(y),
            ty: yty.to_string(),
        });
    }
    b.set_origin(Origin::Adjoint(y));
    let one = b.var(y).scalar_like(1.0).id();
    b.clear_origin();
    append_vjp(b, &[y], wrt, &[one], None)
}

/// Appends the adjoint graph for explicit seed cotangents: returns `Σⱼ ȳⱼ·∂yⱼ/∂w` for each `w`
/// in `wrt` (the vector-Jacobian product), where `cotangents[j]` has `outputs[j]`'s type.
///
/// # Errors
/// [`GradError`] if an output or `wrt` value is not float, or a cotangent's type is wrong.
pub fn vjp(
    g: &mut Graph,
    outputs: &[NodeId],
    wrt: &[NodeId],
    cotangents: &[NodeId],
) -> Result<Vec<NodeId>, crate::Error> {
    on_graph(g, |b| append_vjp(b, outputs, wrt, cotangents, None))
}

/// [`vjp`] for a batch of `k` seeds at once: `cotangents[j]` has shape `[k, ...outputs[j].shape]`
/// and each result `[k, ...w.shape]` (row `r` is the VJP of seed row `r`). One adjoint pass
/// serves all `k` seeds, e.g. all rows of a Jacobian.
///
/// # Errors
/// As [`vjp`].
pub fn vjp_batched(
    g: &mut Graph,
    outputs: &[NodeId],
    wrt: &[NodeId],
    cotangents: &[NodeId],
    k: usize,
) -> Result<Vec<NodeId>, crate::Error> {
    on_graph(g, |b| append_vjp(b, outputs, wrt, cotangents, Some(k)))
}

/// The reverse driver on a builder: [`vjp`] (`batch = None`) or [`vjp_batched`]
/// (`batch = Some(k)`).
///
/// # Errors
/// As [`vjp`]; also a custom op on the path without a VJP rule
/// ([`GradError::MissingCustomRule`]) or whose rule returns unusable results.
pub(crate) fn append_vjp(
    b: &GraphBuilder,
    outputs: &[NodeId],
    wrt: &[NodeId],
    cotangents: &[NodeId],
    batch: Option<usize>,
) -> Result<Vec<NodeId>, GradError> {
    check_ids(b, &[outputs, cotangents, wrt])?;
    check_float_outputs(b, outputs)?;
    check_wrt(b, wrt)?;
    check_seeds(b, "cotangent", outputs, cotangents, batch)?;
    let res = adjoints(b, outputs, cotangents, wrt, batch);
    b.clear_origin();
    res
}

fn adjoints(
    b: &GraphBuilder,
    outputs: &[NodeId],
    cotangents: &[NodeId],
    wrt: &[NodeId],
    batch: Option<usize>,
) -> Result<Vec<NodeId>, GradError> {
    let n = b.graph().len();
    let regions = Regions::new(&b.graph());
    let active = active_nodes(&b.graph(), &regions, wrt, outputs);
    let mut remat = Remat::new(&b.graph());
    let lead = usize::from(batch.is_some());
    let full = |id: NodeId| -> Vec<usize> { batch.iter().copied().chain(b.ty(id).shape).collect() };

    let mut adjoint: Vec<Option<NodeId>> = vec![None; n];
    for (&o, &c) in outputs.iter().zip(cotangents) {
        adjoint[o.index()] = Some(match adjoint[o.index()] {
            Some(prev) => {
                b.set_origin(Origin::Adjoint(o));
                (b.var(prev) + b.var(c)).id()
            }
            None => c,
        });
    }
    let top = outputs.iter().map(|o| o.index()).max().unwrap_or(0);
    let loops = LoopIndex::new(&b.graph());
    let fit = Fit {
        active: &active,
        lead,
        full: &full,
    };
    for i in (0..=top.min(n.saturating_sub(1))).rev() {
        let id = NodeId(i as u32);
        if loops.is_later_member(i) {
            continue; // a loop's group is handled at its first node
        }
        if let Some(members) = loops.group_at(i) {
            let res_cts = loop_cotangents(b, &adjoint, &active, members);
            if res_cts.iter().all(Option::is_none) {
                continue;
            }
            b.set_origin(Origin::Adjoint(id));
            let cs = ops::loops::vjp::scan_vjp(b, id, &res_cts, batch)?;
            let operands = b.graph().node(id).inputs.clone();
            accumulate(b, &mut adjoint, &fit, id, &operands, cs, None)?;
            continue;
        }
        let Some(ct) = adjoint[i] else { continue };
        if !active[i] {
            continue;
        }
        b.set_origin(Origin::Adjoint(id));
        let (operands, contribs, custom) = if let Some(r) = regions.at(id) {
            let Some(rule) = r.op.vjp() else {
                return Err(GradError::MissingCustomRule {
                    name: r.op.name().to_string(),
                    rule: "vjp",
                    mode: "reverse",
                });
            };
            let call = CustomCall {
                inputs: r.inputs.iter().map(|&x| b.var(remat.value(b, x))).collect(),
                output: b.var(remat.value(b, id)),
            };
            let cs = rule(b, &call, b.var(ct));
            if cs.len() != r.inputs.len() {
                return Err(GradError::CustomRule {
                    name: r.op.name().to_string(),
                    message: format!(
                        "the vjp rule returned {} cotangents for {} inputs",
                        cs.len(),
                        r.inputs.len()
                    ),
                });
            }
            (r.inputs.clone(), cs, Some(r.op.name().to_string()))
        } else {
            let node = b.graph().nodes()[i].clone();
            let Some(vjp) = ops::rules(node.op).vjp else {
                continue;
            };
            // In a checkpoint region the rule reads recomputed copies (see `checkpoint`).
            let cs = if remat.covers(id) {
                let uses = vjp_reads(&b.graph(), id, &b.ty(ct));
                let (copy, remapped) = remat.remap(b, id, &uses);
                vjp(b, copy, &remapped, b.var(ct))
            } else {
                vjp(b, id, &node, b.var(ct))
            };
            (node.inputs, cs, None)
        };
        accumulate(b, &mut adjoint, &fit, id, &operands, contribs, custom)?;
    }
    let grads = wrt
        .iter()
        .map(|&w| match adjoint[w.index()] {
            Some(a) if active[w.index()] => a,
            _ => {
                b.set_origin(Origin::Adjoint(w));
                b.zeros(b.ty(w).dtype, &full(w)).id()
            }
        })
        .collect();
    Ok(grads)
}

/// What fitting a contribution to its operand needs.
struct Fit<'a> {
    active: &'a [bool],
    lead: usize,
    full: &'a dyn Fn(NodeId) -> Vec<usize>,
}

/// Un-broadcasts each contribution of node `id`'s rule to its operand's shape and adds it to
/// the operand's adjoint.
fn accumulate<'b>(
    b: &'b GraphBuilder,
    adjoint: &mut [Option<NodeId>],
    fit: &Fit<'_>,
    id: NodeId,
    operands: &[NodeId],
    contribs: Vec<Option<Var<'b>>>,
    custom: Option<String>,
) -> Result<(), GradError> {
    for (&x, c) in operands.iter().zip(contribs) {
        let Some(c) = c else { continue };
        // No cotangent flows to a bool value (a custom rule may still return one).
        if !fit.active[x.index()] || !b.ty(x).dtype.is_float() || b.error().is_some() {
            continue;
        }
        let want = (fit.full)(x);
        let fitted = unbroadcast(c, &want, fit.lead).filter(|c| c.dtype() == b.ty(x).dtype);
        let c = match (fitted, &custom) {
            (Some(c), _) => c,
            (None, Some(name)) => {
                return Err(GradError::CustomRule {
                    name: name.clone(),
                    message: format!(
                        "the vjp rule returned a {} cotangent for {}, which needs {}",
                        c.ty(),
                        b.graph().value_name(x),
                        crate::ir::TensorType::new(b.ty(x).dtype, want)
                    ),
                });
            }
            (None, None) => panic!(
                "invariant vjp_shape: the {} rule's cotangent {} does not fit {:?}",
                b.graph().node(id).op,
                c.ty(),
                want
            ),
        };
        adjoint[x.index()] = Some(match adjoint[x.index()] {
            Some(prev) => (b.var(prev) + c).id(),
            None => c.id(),
        });
    }
    Ok(())
}

/// The cotangent of each result of a loop group: the sum of its members' adjoints.
fn loop_cotangents<'b>(
    b: &'b GraphBuilder,
    adjoint: &[Option<NodeId>],
    active: &[bool],
    members: &[(NodeId, usize)],
) -> Vec<Option<Var<'b>>> {
    let (first, _) = members[0];
    let lp = crate::ir::loops::scan_attrs(&b.graph().node(first).attrs)
        .expect("a scan node")
        .0
        .clone();
    let mut cts: Vec<Option<Var<'b>>> = vec![None; lp.body.outputs().len()];
    for &(m, r) in members {
        if let (Some(a), true) = (adjoint[m.index()], active[m.index()]) {
            cts[r] = Some(match cts[r] {
                Some(prev) => prev + b.var(a),
                None => b.var(a),
            });
        }
    }
    cts
}
