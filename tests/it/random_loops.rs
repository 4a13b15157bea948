//! Loops for the random-graph generator ([`crate::random`]): a `scan` over random carries, xs
//! and consts of the graph, whose body is a small random graph built by the generator's own
//! step (so bodies hold every op, and loops inside bodies, up to [`MAX_DEPTH`] deep). Lengths
//! are 0 to 4 (0 only without xs and ys), a third of the loops run in reverse, a quarter carry a
//! checkpoint count, and some results are left without a node (as after dead-code elimination).
//! In safe mode each float carry leaves the body through `tanh`, so values stay moderate
//! however the body amplifies them.

use crate::random::{Ctx, MAX_RANK, Rng, maybe_name, pick_where, push, random_step, tanh};
use gradlift::ir::loops::Loop;
use gradlift::ir::{Attrs, Graph, NodeId, Op, TensorType};
use std::collections::HashSet;
use std::sync::Arc;

/// How deeply generated loops nest (a loop in the body of a loop).
pub const MAX_DEPTH: usize = 2;

/// Picks an operand of any dtype (floats only in smooth mode).
fn pick(r: &mut Rng, g: &Graph, ctx: &Ctx<'_>) -> Option<NodeId> {
    let smooth = ctx.cfg.smooth;
    pick_where(r, g, |t| !smooth || t.dtype.is_float())
}

/// An xs operand of leading axis `length`: an existing one, or a node broadcast to it.
fn xs_operand(r: &mut Rng, g: &mut Graph, ctx: &Ctx<'_>, length: usize) -> Option<NodeId> {
    let smooth = ctx.cfg.smooth;
    if let Some(x) = pick_where(r, g, |t| {
        t.shape.first() == Some(&length) && (!smooth || t.dtype.is_float())
    }) && !r.one_in(3)
    {
        return Some(x);
    }
    let a = pick(r, g, ctx)?;
    let ty = g.ty(a).clone();
    if ty.rank() >= MAX_RANK {
        return None;
    }
    let mut shape = vec![length];
    shape.extend(&ty.shape);
    push(g, Op::Broadcast, vec![a], Attrs::Shape { shape })
}

/// Appends a random loop to `g` (see the module docs), or nothing when the draw does not fit.
pub(crate) fn push_scan(r: &mut Rng, g: &mut Graph, ctx: &mut Ctx<'_>) {
    let length = if r.one_in(8) { 0 } else { 1 + r.below(4) };
    let mut operands = Vec::new();
    let n_carry = r.below(3) + usize::from(length == 0);
    for _ in 0..n_carry {
        let Some(c) = pick(r, g, ctx) else { return };
        operands.push(c);
    }
    let n_xs = if length == 0 { 0 } else { r.below(3) };
    for _ in 0..n_xs {
        let Some(x) = xs_operand(r, g, ctx, length) else {
            return;
        };
        operands.push(x);
    }
    for _ in 0..r.below(3) {
        let Some(k) = pick(r, g, ctx) else { return };
        operands.push(k);
    }
    if operands.is_empty() {
        return; // a scan has at least one operand
    }
    let Some(body) = random_body(r, g, ctx, &operands, length, n_carry, n_xs) else {
        return;
    };
    let lp = Arc::new(Loop {
        length,
        reverse: r.one_in(3),
        n_carry,
        n_xs,
        body,
        checkpoint: r.one_in(4).then(|| 1 + r.below(3)),
        recompute: None,
        exit: None,
    });
    let n_out = lp.body.outputs().len();
    let keep = r.below(n_out);
    for result in 0..n_out {
        if result != keep && r.one_in(4) {
            continue;
        }
        let attrs = Attrs::Scan {
            body: lp.clone(),
            result,
        };
        let Some(id) = push(g, Op::Scan, operands.clone(), attrs) else {
            return;
        };
        if ctx.cfg.syntax {
            maybe_name(r, g, &mut ctx.used, id);
        }
    }
}

/// The body of a loop over `operands` (carries, xs, consts): inputs of their types (a row of
/// each xs), a few random steps, the new carries (same types) and up to two ys.
fn random_body(
    r: &mut Rng,
    g: &Graph,
    ctx: &Ctx<'_>,
    operands: &[NodeId],
    length: usize,
    n_carry: usize,
    n_xs: usize,
) -> Option<Graph> {
    let mut body = Graph::new(format!("{}_body", g.name));
    let mut used = HashSet::new();
    for (k, &o) in operands.iter().enumerate() {
        let t = g.ty(o);
        let (name, ty) = if k < n_carry {
            (format!("c{k}"), t.clone())
        } else if k < n_carry + n_xs {
            let row = TensorType::new(t.dtype, t.shape[1..].to_vec());
            (format!("x{}", k - n_carry), row)
        } else {
            (format!("k{}", k - n_carry - n_xs), t.clone())
        };
        body.add_input(&name, ty).ok()?;
        used.insert(name);
    }
    let mut inner = Ctx {
        cfg: ctx.cfg,
        safe: ctx.safe,
        dtype: ctx.dtype,
        other: ctx.other,
        shapes: ctx.shapes,
        // Collectives run outside loops (scan's shape rule refuses them in a body).
        ops: (ctx.ops.iter().copied())
            .filter(|&op| !gradlift::ops::collective::is_collective(op))
            .collect(),
        used,
        depth: ctx.depth + 1,
    };
    for _ in 0..1 + r.below(5) {
        random_step(r, &mut body, &mut inner);
    }
    let mut outs: Vec<(String, NodeId)> = Vec::new();
    for k in 0..n_carry {
        let want = body.ty(body.inputs()[k]).clone();
        let mut c = pick_where(r, &body, |t| *t == want)?;
        if ctx.safe && want.dtype.is_float() {
            c = tanh(&mut body, c);
        }
        outs.push((format!("c{k}_out"), c));
    }
    let n_ys = if length == 0 {
        0
    } else {
        r.below(3) + usize::from(n_carry == 0)
    };
    for k in 0..n_ys {
        let smooth = ctx.cfg.smooth;
        let y = pick_where(r, &body, |t| !smooth || t.dtype.is_float())?;
        outs.push((format!("y{k}_out"), y));
    }
    let named: Vec<(&str, NodeId)> = outs.iter().map(|(n, id)| (n.as_str(), *id)).collect();
    body.set_named_outputs(&named).ok()?;
    Some(body)
}
