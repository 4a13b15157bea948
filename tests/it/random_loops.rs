//! Loops for the random-graph generator ([`crate::random`]): a `scan` over random carries, xs
//! and consts of the graph, whose body is a small random graph built by the generator's own
//! step (so bodies hold every op, and loops inside bodies, up to [`MAX_DEPTH`] deep). Lengths
//! are 0 to 4 (0 only without xs and ys), a third of the scans run in reverse, a quarter carry a
//! checkpoint count, and some results are left without a node (as after dead-code elimination).
//! In safe mode each float carry leaves the body through `tanh`, so values stay moderate
//! however the body amplifies them.
//!
//! Half the loops of positive length are bounded `while` loops that exit early
//! ([`Exit::While`]: forward, no xs, up to 6 steps, the condition a `bool` y of the body placed
//! among the other ys). Each has a step counter, an extra last carry `i` (from 0, `i' = i + 1`,
//! no `tanh`), and one of two conditions:
//! - `i < k` for a drawn `k`: exit at step 0 (`k = 0`), mid-way, after exactly `length` steps,
//!   or never (`k` past the bound). The trip count does not depend on the inputs.
//! - `v₀ + i < θ` for the first element `v₀` of a float node of the body (half the time a carry
//!   entering the step) and a drawn `θ` in `[0, length)`: the trip count depends on the inputs.
//!   In smooth graphs (whose derivatives are checked against finite differences) only loops of
//!   the generated graph itself get one, and they always keep the node of their stacked
//!   conditions (see [`while_conditions`]): a difference step that flips a condition crosses a
//!   discontinuity of the loss, and the differential test skips such steps by comparing those
//!   nodes. Loops inside bodies use counters there.
//!
//! A sixth of the other scans of positive length stop early on constant flags ([`Exit::Flags`],
//! an extra bool xs: the steps before the first false flag run; later ys rows are zero).
//!
//! While loops' bodies are random like a scan's, so they hold scans and while loops (up to
//! [`MAX_DEPTH`]), and scans' bodies hold them.

use crate::random::{Ctx, MAX_RANK, Rng, maybe_name, pick_where, push, random_step, tanh};
use gradlift::ir::loops::{Exit, Loop};
use gradlift::ir::{Attrs, Graph, NodeId, Op, TensorType};
use gradlift::{Data, Tensor};
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
    let mut length = if r.one_in(8) { 0 } else { 1 + r.below(4) };
    let exit = if length > 0 && r.one_in(2) {
        length += r.below(3); // up to 6 steps, so mid-way exits have room
        // Data conditions where finite differences can see their flips (see the module docs).
        let data = r.one_in(2) && (!ctx.cfg.smooth || ctx.depth == 0);
        Some(if data {
            Cond::Data(r.uniform(0.0, length as f64))
        } else {
            Cond::Counter(match r.below(4) {
                1 if length > 1 => 1 + r.below(length - 1),
                0 | 1 => 0,
                2 => length,
                _ => length + 1 + r.below(3),
            })
        })
    } else {
        None
    };
    let mut operands = Vec::new();
    let mut n_carry = r.below(3) + usize::from(length == 0 || exit.is_some());
    for _ in 0..n_carry {
        let Some(c) = pick(r, g, ctx) else { return };
        operands.push(c);
    }
    if exit.is_some() {
        operands.push(g.add_scalar(ctx.dtype, 0.0));
        n_carry += 1;
    }
    let mut n_xs = if length == 0 || exit.is_some() {
        0
    } else {
        r.below(3)
    };
    for _ in 0..n_xs {
        let Some(x) = xs_operand(r, g, ctx, length) else {
            return;
        };
        operands.push(x);
    }
    // A sixth of the scans take flags ([`Exit::Flags`]): constant, so their trip count does
    // not depend on the inputs (`n` leading trues, then anything after a false).
    let flags_at = (length > 0 && exit.is_none() && r.one_in(6)).then(|| {
        let n = r.below(length + 1);
        let flags: Vec<bool> = (0..length)
            .map(|t| t < n || (t > n && r.one_in(2)))
            .collect();
        operands.push(g.add_const(Tensor::new(vec![length], Data::Bool(flags))));
        n_xs += 1;
        n_xs - 1
    });
    for _ in 0..r.below(3) {
        let Some(k) = pick(r, g, ctx) else { return };
        operands.push(k);
    }
    if operands.is_empty() {
        return; // a scan has at least one operand
    }
    let shape = Shape {
        length,
        n_carry,
        n_xs,
        exit,
    };
    let Some((body, cond_at)) = random_body(r, g, ctx, &operands, &shape) else {
        return;
    };
    let lp = Arc::new(Loop {
        length,
        reverse: exit.is_none() && r.one_in(3),
        n_carry,
        n_xs,
        body,
        checkpoint: r.one_in(4).then(|| 1 + r.below(3)),
        recompute: None,
        exit: cond_at.map(Exit::While).or(flags_at.map(Exit::Flags)),
    });
    let n_out = lp.body.outputs().len();
    let keep = r.below(n_out);
    for result in 0..n_out {
        // A data condition's stacked values stay a node (the differential test reads them).
        let kept =
            result == keep || (matches!(exit, Some(Cond::Data(_))) && cond_at == Some(result));
        if !kept && r.one_in(4) {
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

/// The condition of a generated while loop (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cond {
    /// `i < k` on the step counter `i` (the last carry).
    Counter(usize),
    /// `v₀ + i < θ` for the first element `v₀` of a float node of the body and the step
    /// counter `i`.
    Data(f64),
}

/// The operand layout of a generated loop.
struct Shape {
    length: usize,
    n_carry: usize,
    n_xs: usize,
    exit: Option<Cond>,
}

/// The top-level nodes of `g` holding the stacked conditions of a while loop: bitwise equal on
/// two inputs exactly when every such loop ran the same steps on both.
pub fn while_conditions(g: &Graph) -> Vec<NodeId> {
    (0..g.len())
        .map(|i| NodeId(i as u32))
        .filter(|&id| {
            gradlift::ir::loops::scan_attrs(&g.node(id).attrs)
                .is_some_and(|(lp, k)| lp.exit == Some(Exit::While(k)))
        })
        .collect()
}

/// The condition of a while loop in `body` (see [`Cond`]), or `None` when it does not fit.
fn condition(r: &mut Rng, body: &mut Graph, cond: Cond, n_carry: usize) -> Option<NodeId> {
    let i = body.inputs()[n_carry - 1];
    let (v, theta) = match cond {
        Cond::Counter(k) => (i, k as f64),
        Cond::Data(theta) => {
            let float_carries: Vec<NodeId> = (body.inputs()[..n_carry - 1].iter().copied())
                .filter(|&c| body.ty(c).dtype.is_float())
                .collect();
            let v = if !float_carries.is_empty() && r.one_in(2) {
                float_carries[r.below(float_carries.len())]
            } else {
                pick_where(r, body, |t| t.dtype.is_float())?
            };
            // Its first element: one value, which varies more with the inputs than a mean.
            let rank = body.ty(v).rank();
            let (start, stop) = (vec![0; rank], vec![1; rank]);
            let v = push(body, Op::Slice, vec![v], Attrs::Slice { start, stop })?;
            let axes = (0..rank).collect();
            let reduce = Attrs::Reduce {
                axes,
                keepdims: false,
            };
            let mut s = push(body, Op::ReduceSum, vec![v], reduce)?;
            if body.ty(s).dtype != body.ty(i).dtype {
                let to = body.ty(i).dtype;
                s = push(body, Op::Cast, vec![s], Attrs::Cast { to })?;
            }
            (push(body, Op::Add, vec![s, i], Attrs::None)?, theta)
        }
    };
    let theta = body.add_scalar(body.ty(v).dtype, theta);
    push(body, Op::Lt, vec![v, theta], Attrs::None)
}

/// The body of a loop over `operands` (carries, xs, consts): inputs of their types (a row of
/// each xs), a few random steps, the new carries (same types) and up to two ys, one of them a
/// while loop's condition (its output index is returned too).
fn random_body(
    r: &mut Rng,
    g: &Graph,
    ctx: &Ctx<'_>,
    operands: &[NodeId],
    shape: &Shape,
) -> Option<(Graph, Option<usize>)> {
    let &Shape {
        length,
        n_carry,
        n_xs,
        exit,
    } = shape;
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
    // The counter's step `i + 1` (before the random steps, which may read it).
    let counter = if exit.is_some() {
        let i = body.inputs()[n_carry - 1];
        let one = body.add_scalar(body.ty(i).dtype, 1.0);
        push(&mut body, Op::Add, vec![i, one], Attrs::None)
    } else {
        None
    };
    for _ in 0..1 + r.below(5) {
        random_step(r, &mut body, &mut inner);
    }
    let cond = match exit {
        Some(c) => Some(condition(r, &mut body, c, n_carry)?),
        None => None,
    };
    let mut outs: Vec<(String, NodeId)> = Vec::new();
    for k in 0..n_carry {
        if k == n_carry - 1
            && let Some(next) = counter
        {
            outs.push((format!("c{k}_out"), next));
            continue;
        }
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
    // The condition: a y among the others.
    let cond_at = cond.map(|c| {
        let at = n_carry + r.below(n_ys + 1);
        outs.insert(at, ("go".to_string(), c));
        at
    });
    let named: Vec<(&str, NodeId)> = outs.iter().map(|(n, id)| (n.as_str(), *id)).collect();
    body.set_named_outputs(&named).ok()?;
    Some((body, cond_at))
}

/// The generator's while loops exit at step 0, mid-way and never (run to their bound; counted
/// on the stacked conditions the interpreter computes for the generated graphs' inputs), with
/// trip counts that depend on the inputs in smooth cases, inside scan bodies and around scans;
/// and some scans stop on flags.
#[test]
fn while_loops_exit_at_every_step_and_nest_both_ways() {
    use crate::random::{GenConfig, generate, input_values};
    use gradlift::interp;
    let is_while = |lp: &Loop| matches!(lp.exit, Some(Exit::While(_)));
    let loops_in = |g: &Graph| -> Vec<Arc<Loop>> {
        (g.nodes().iter())
            .filter_map(|n| gradlift::ir::loops::scan_attrs(&n.attrs).map(|(lp, _)| lp.clone()))
            .collect()
    };
    let (mut at_zero, mut mid, mut full, mut smooth_data) = (0, 0, 0, 0);
    let (mut while_in_scan, mut scan_in_while, mut flags) = (0, 0, 0);
    for seed in 0..2000u64 {
        let smooth = seed % 2 == 0;
        let cfg = GenConfig {
            steps: 16,
            safe: true,
            smooth,
            order: 0,
            syntax: false,
            loops: true,
        };
        let g = generate(seed, &cfg).forward;
        for lp in loops_in(&g) {
            flags += usize::from(matches!(lp.exit, Some(Exit::Flags(_))));
            let inner = loops_in(&lp.body);
            while_in_scan += usize::from(!is_while(&lp) && inner.iter().any(|l| is_while(l)));
            scan_in_while += usize::from(is_while(&lp) && inner.iter().any(|l| !is_while(l)));
        }
        let conds = while_conditions(&g);
        if conds.is_empty() {
            continue;
        }
        let mut h = g.clone();
        h.set_outputs(conds);
        gradlift::opt::dce::eliminate_dead_nodes(&mut h);
        let stacked = interp::run(&h, &input_values(&h, seed)).unwrap();
        for c in &stacked {
            let go = c.to_f64_vec();
            let n = go.iter().take_while(|&&f| f != 0.0).count();
            match n {
                0 => at_zero += 1,
                n if n == go.len() => full += 1,
                _ => mid += 1,
            }
        }
        // Trip counts that depend on the inputs (where finite differences can cross an exit).
        smooth_data += usize::from(
            smooth
                && (1..8).any(|k| {
                    let other = interp::run(&h, &input_values(&h, seed ^ (k << 20))).unwrap();
                    other != stacked
                }),
        );
    }
    // Seen: 68 exits at step 0, 113 mid-way, 76 never; 12 smooth input-dependent; 35 while
    // loops in scans, 43 scans in while loops, 105 flags loops.
    assert!(
        at_zero > 30 && mid > 50 && full > 30 && smooth_data > 5,
        "{at_zero} {mid} {full} {smooth_data}"
    );
    assert!(
        while_in_scan > 10 && scan_in_while > 20 && flags > 20,
        "{while_in_scan} {scan_in_while} {flags}"
    );
}
