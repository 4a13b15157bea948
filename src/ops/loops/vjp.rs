//! The VJP of a loop's result group: a tape loop, then the body's VJP run backward.
//!
//! A loop that stops early ([`Exit`]) has a backward loop that reverses only the steps that
//! ran: it counts the forward loop's stacked `while` conditions (`Exit::Flags`). A step that
//! did not run contributes nothing, which is its exact derivative. The step that stopped the
//! loop did run its body, on the final carries, and its ys fill the rows from there on: the
//! cotangents of those rows, summed, go back through one more run of that body's VJP to the
//! final carries and the consts (`stopping_step`). Running the skipped steps
//! with a `select` keeping the carries (what a bounded `while` was before) differs in two
//! places only: each skipped step differentiates the body at the final carry with a zero
//! cotangent and adds the result, a signed zero (so a `-0.0` cotangent becomes `+0.0`), or
//! NaN where the body's derivative there is infinite (`0·∞`, e.g. `sqrt` at 0); and each
//! step that ran adds the `select`'s `+0.0` for its unselected branch. Otherwise the
//! gradients are bitwise equal (tested in `tests/it/loops_exit.rs`), except that with float
//! ys the cotangents of the stopped rows are summed before the body's VJP rather than after
//! (equal up to rounding).

use crate::autodiff::GradError;
use crate::ir::Attrs;
use crate::ir::loops::{Exit, Loop, Recompute, group_member, scan_attrs};
use crate::ir::{GraphBuilder, NodeId, TensorType, Var};

/// Which body inputs and outputs take part in a derivative, by index.
pub(super) struct Roles {
    /// Float carries.
    pub cf: Vec<usize>,
    /// Float xs (index among the xs).
    pub xf: Vec<usize>,
    /// Float consts (index among the consts).
    pub kf: Vec<usize>,
}

impl Roles {
    pub(super) fn of(lp: &Loop) -> Roles {
        let ins = lp.body.inputs();
        let float = |k: usize| lp.body.ty(ins[k]).dtype.is_float();
        let (nc, nx) = (lp.n_carry, lp.n_xs);
        Roles {
            cf: (0..nc).filter(|&k| float(k)).collect(),
            xf: (0..nx).filter(|&k| float(nc + k)).collect(),
            kf: (0..lp.n_consts()).filter(|&k| float(nc + nx + k)).collect(),
        }
    }
}

/// `[a, b, ...]` → `[b, a, ...]`: a batch axis and the step axis trade places.
pub(super) fn swap01(v: Var<'_>) -> Var<'_> {
    let mut perm: Vec<usize> = (0..v.ty().rank()).collect();
    perm.swap(0, 1);
    v.transpose(&perm)
}

/// `ty` with the batch axis in front.
pub(super) fn batched(ty: &TensorType, batch: Option<usize>) -> TensorType {
    let shape: Vec<usize> = batch
        .iter()
        .copied()
        .chain(ty.shape.iter().copied())
        .collect();
    TensorType::new(ty.dtype, shape)
}

/// The cotangent of each operand of the loop whose group starts at `first`, given the
/// cotangent of each of its results (`None`: zero).
///
/// # Errors
/// A body whose VJP cannot be formed (e.g. a custom op without a VJP rule).
pub(crate) fn scan_vjp<'b>(
    b: &'b GraphBuilder,
    first: NodeId,
    result_cts: &[Option<Var<'b>>],
    batch: Option<usize>,
) -> Result<Vec<Option<Var<'b>>>, GradError> {
    let node = b.graph().node(first).clone();
    let (lp, _) = scan_attrs(&node.attrs).expect("a scan node");
    let lp = lp.clone();
    if lp.recompute.is_some() {
        return vjp_recomputed(b, first, result_cts, batch);
    }
    let operands: Vec<Var<'b>> = node.inputs.iter().map(|&x| b.var(x)).collect();
    let roles = Roles::of(&lp);
    let (nc, nx) = (lp.n_carry, lp.n_xs);
    let mut contribs: Vec<Option<Var<'b>>> = vec![None; operands.len()];
    if lp.length == 0 {
        for &k in &roles.cf {
            contribs[k] = result_cts[k];
        }
        return Ok(contribs);
    }
    let yf: Vec<usize> = (0..lp.n_ys())
        .filter(|&j| result_cts[nc + j].is_some())
        .collect();
    // The backward loop reverses the steps that ran: its trip count comes from the forward
    // loop's stacked conditions (the forward group's member holding them) or its own flags.
    let (flags, exit) = match lp.exit {
        None => (None, None),
        Some(Exit::While(k)) => (
            Some(loop_result(b, first, &operands, k)),
            Some(Exit::Flags(nc + nx + yf.len())),
        ),
        Some(Exit::Flags(k)) => (None, Some(Exit::Flags(nc + k))),
    };
    let body = backward_body(b, &lp, &roles, &yf, flags.is_some(), batch)?;
    let zeros = |v: Var<'b>| {
        let t = batched(&v.ty(), batch);
        b.zeros(t.dtype, &t.shape)
    };
    let mut ops: Vec<Var<'b>> = Vec::new();
    ops.extend(
        roles
            .cf
            .iter()
            .map(|&k| result_cts[k].unwrap_or_else(|| zeros(operands[k]))),
    );
    ops.extend(roles.kf.iter().map(|&k| zeros(operands[nc + nx + k])));
    if let Some(go) = flags.filter(|_| !yf.is_empty()) {
        let seeds = &mut ops[..];
        stopping_step(b, first, &operands, result_cts, &yf, go, seeds, batch)?;
    }
    ops.extend(&operands[..nc]); // the initial carries: the backward loop recomputes the rest
    ops.extend(&operands[nc..nc + nx]);
    for &j in &yf {
        let ct = result_cts[nc + j].expect("listed in yf");
        ops.push(if batch.is_some() { swap01(ct) } else { ct });
    }
    ops.extend(flags);
    ops.extend(&operands[nc + nx..]);
    let n_carry = roles.cf.len() + roles.kf.len();
    let bwd = Loop {
        length: lp.length,
        reverse: !lp.reverse,
        n_carry,
        n_xs: nc + nx + yf.len() + usize::from(flags.is_some()),
        body,
        checkpoint: None,
        exit,
        recompute: Some(Recompute {
            snapshots: lp.checkpoint.unwrap_or(lp.length),
            forward: lp.clone(),
        }),
    };
    let res = b.push_loop(bwd, &ops);
    for (i, &k) in roles.cf.iter().enumerate() {
        contribs[k] = Some(res[i]);
    }
    for (i, &k) in roles.kf.iter().enumerate() {
        contribs[nc + nx + k] = Some(res[roles.cf.len() + i]);
    }
    for (i, &k) in roles.xf.iter().enumerate() {
        let xb = res[n_carry + i];
        contribs[nc + k] = Some(if batch.is_some() { swap01(xb) } else { xb });
    }
    Ok(contribs)
}

/// Result `k` of the loop whose group starts at `first`: its group member, or a new one.
fn loop_result<'b>(b: &'b GraphBuilder, first: NodeId, operands: &[Var<'b>], k: usize) -> Var<'b> {
    let found = group_member(&b.graph(), first, k);
    found.map_or_else(
        || {
            let body = scan_attrs(&b.graph().node(first).attrs)
                .expect("a scan node")
                .0
                .clone();
            let attrs = Attrs::Scan { body, result: k };
            b.push(crate::ir::Op::Scan, operands, attrs)
        },
        |id| b.var(id),
    )
}

/// The step that stopped a `while` loop: it ran the body on the final carries, and its ys fill
/// rows `n..length` (rows `t` whose condition `go[t]` is false). Adds the VJP of that body run
/// (its ys' cotangents summed over those rows, zero for the carries it dropped) to `seeds`,
/// the backward loop's initial carries (the carries' cotangents, then the consts' sums). When
/// the loop never stopped, `select` keeps the seeds as they were, bit for bit.
#[allow(clippy::too_many_arguments)]
fn stopping_step<'b>(
    b: &'b GraphBuilder,
    first: NodeId,
    operands: &[Var<'b>],
    result_cts: &[Option<Var<'b>>],
    yf: &[usize],
    go: Var<'b>,
    seeds: &mut [Var<'b>],
    batch: Option<usize>,
) -> Result<(), GradError> {
    let lp = scan_attrs(&b.graph().node(first).attrs)
        .expect("a scan node")
        .0
        .clone();
    let roles = Roles::of(&lp);
    let (nc, len) = (lp.n_carry, lp.length);
    let mut ops: Vec<Var<'b>> = seeds
        .iter()
        .map(|&s| s.ty())
        .map(|t| b.zeros(t.dtype, &t.shape))
        .collect();
    let one_row = |v: Var<'b>| {
        let shape: Vec<usize> = std::iter::once(1).chain(v.ty().shape).collect();
        v.reshape(&shape)
    };
    ops.extend((0..nc).map(|k| one_row(loop_result(b, first, operands, k))));
    for &j in yf {
        let ct = result_cts[nc + j].expect("listed in yf");
        let ct = if batch.is_some() { swap01(ct) } else { ct };
        let shape = ct.ty().shape;
        let mut col = vec![1; shape.len()];
        col[0] = len;
        let ran = go.reshape(&col).broadcast_to(&shape);
        let stopped = ran.select(b.zeros(ct.ty().dtype, &shape), ct);
        ops.push(stopped.sum_axes_keepdims(&[0]));
    }
    ops.extend(&operands[nc + lp.n_xs..]);
    let step = Loop {
        length: 1,
        reverse: false,
        n_carry: seeds.len(),
        n_xs: nc + yf.len(),
        body: backward_body(b, &lp, &roles, yf, false, batch)?,
        checkpoint: None,
        exit: None,
        recompute: None,
    };
    let res = b.push_loop(step, &ops);
    let never_stopped = go.slice(&[len - 1], &[len]).reshape(&[]);
    for (s, d) in seeds.iter_mut().zip(res) {
        *s = never_stopped.select(*s, *s + d);
    }
    Ok(())
}

/// The loop again, with the carries entering each step stacked as extra ys (a tape). Returns
/// all its results; the last `n_carry` are the stacked carries.
pub(super) fn tape<'b>(b: &'b GraphBuilder, lp: &Loop, operands: &[Var<'b>]) -> Vec<Var<'b>> {
    b.push_loop(lp.with_tape(), operands)
}

/// A recomputing backward loop written out as what it means: a tape loop of its forward loop
/// and the same backward loop reading that tape. Returns both loops' results (tape first),
/// so the derivative rules can differentiate the two plain loops.
pub(super) fn desugar<'b>(b: &'b GraphBuilder, first: NodeId) -> (Vec<Var<'b>>, Vec<Var<'b>>) {
    let node = b.graph().node(first).clone();
    let lp = scan_attrs(&node.attrs).expect("a scan node").0.clone();
    let rc = lp.recompute.clone().expect("a recomputing loop");
    let fwd = &rc.forward;
    let ops: Vec<Var<'b>> = node.inputs.iter().map(|&x| b.var(x)).collect();
    let nc = lp.n_carry;
    let (c0, x) = (
        nc..nc + fwd.n_carry,
        nc + fwd.n_carry..nc + fwd.n_carry + fwd.n_xs,
    );
    let consts = nc + lp.n_xs..ops.len();
    let fwd_ops: Vec<Var<'b>> = (ops[c0.clone()].iter().chain(&ops[x]).chain(&ops[consts]))
        .copied()
        .collect();
    let taped = tape(b, fwd, &fwd_ops);
    let stacked = &taped[taped.len() - fwd.n_carry..];
    let mut plain_ops = ops.clone();
    plain_ops.splice(c0, stacked.iter().copied());
    let plain = Loop {
        recompute: None,
        ..(*lp).clone()
    };
    let plain_res = b.push_loop(plain, &plain_ops);
    (taped, plain_res)
}

/// [`scan_vjp`] of a recomputing loop: through its desugared form.
fn vjp_recomputed<'b>(
    b: &'b GraphBuilder,
    first: NodeId,
    result_cts: &[Option<Var<'b>>],
    batch: Option<usize>,
) -> Result<Vec<Option<Var<'b>>>, GradError> {
    let lp = scan_attrs(&b.graph().node(first).attrs)
        .expect("a scan node")
        .0
        .clone();
    let fwd = lp.recompute.as_ref().expect("recomputing").forward.clone();
    let (taped, plain) = desugar(b, first);
    let (nc, nfc) = (lp.n_carry, fwd.n_carry);
    let mut cts = scan_vjp(b, plain[0].id(), result_cts, batch)?;
    let mut tape_cts = vec![None; taped.len()];
    tape_cts[taped.len() - nfc..].clone_from_slice(&cts[nc..nc + nfc]);
    let fwd_cts = scan_vjp(b, taped[0].id(), &tape_cts, batch)?;
    // The recomputing loop's operands: the tape slots become the initial carries.
    for (k, c) in fwd_cts[..nfc].iter().enumerate() {
        cts[nc + k] = *c;
    }
    let add = |a: Option<Var<'b>>, c: Option<Var<'b>>| match (a, c) {
        (Some(a), Some(c)) => Some(a + c),
        (a, c) => a.or(c),
    };
    for k in 0..fwd.n_xs {
        cts[nc + nfc + k] = add(cts[nc + nfc + k], fwd_cts[nfc + k]);
    }
    let kc = nc + lp.n_xs;
    for (k, c) in fwd_cts[nfc + fwd.n_xs..].iter().enumerate() {
        cts[kc + k] = add(cts[kc + k], *c);
    }
    Ok(cts)
}

/// The backward body: inputs `carry cotangents (float carries), const cotangent sums (float
/// consts) | taped carries, xs, ys' cotangents (those given), the forward's condition (with
/// `flag`; unread: the runtime counts the flags) | consts`; outputs the new carry cotangents,
/// the new sums, then the float xs' cotangents.
fn backward_body(
    b: &GraphBuilder,
    lp: &Loop,
    roles: &Roles,
    yf: &[usize],
    flag: bool,
    batch: Option<usize>,
) -> Result<crate::ir::Graph, GradError> {
    let bb = GraphBuilder::new(&format!("{}_vjp", b.graph().name));
    let ins = lp.body.inputs();
    let outs = lp.body.outputs();
    let (nc, nx) = (lp.n_carry, lp.n_xs);
    let ty = |id: NodeId| lp.body.ty(id).clone();
    let input = |name: String, t: TensorType| bb.input(&name, t.dtype, &t.shape);
    let cbar: Vec<Var<'_>> = (roles.cf.iter())
        .map(|&k| input(format!("cbar{k}"), batched(&ty(ins[k]), batch)))
        .collect();
    let kbar: Vec<Var<'_>> = (roles.kf.iter())
        .map(|&k| input(format!("kbar{k}"), batched(&ty(ins[nc + nx + k]), batch)))
        .collect();
    let prim: Vec<Var<'_>> = (0..nc + nx)
        .map(|k| input(format!("p{k}"), ty(ins[k])))
        .collect();
    let ybar: Vec<Var<'_>> = (yf.iter())
        .map(|&j| input(format!("ybar{j}"), batched(&ty(outs[nc + j]), batch)))
        .collect();
    if flag {
        input("go".into(), TensorType::scalar(crate::ir::DType::Bool));
    }
    let consts: Vec<Var<'_>> = (0..lp.n_consts())
        .map(|k| input(format!("k{k}"), ty(ins[nc + nx + k])))
        .collect();
    let args: Vec<Var<'_>> = prim.iter().chain(&consts).copied().collect();
    let res = bb.inline(&lp.body, &args);
    let mut seeds_of: Vec<NodeId> = roles.cf.iter().map(|&k| res[k].id()).collect();
    seeds_of.extend(yf.iter().map(|&j| res[nc + j].id()));
    let seeds: Vec<NodeId> = cbar.iter().chain(&ybar).map(|v| v.id()).collect();
    let mut wrt: Vec<NodeId> = roles.cf.iter().map(|&k| prim[k].id()).collect();
    wrt.extend(roles.xf.iter().map(|&k| prim[nc + k].id()));
    wrt.extend(roles.kf.iter().map(|&k| consts[k].id()));
    bb.check().map_err(|e| GradError::Body(e.to_string()))?;
    let g = crate::autodiff::reverse::append_vjp(&bb, &seeds_of, &wrt, &seeds, batch)?;
    let (gc, rest) = g.split_at(roles.cf.len());
    let (gx, gk) = rest.split_at(roles.xf.len());
    let mut named: Vec<(String, Var<'_>)> = Vec::new();
    for (i, &v) in gc.iter().enumerate() {
        named.push((format!("cbar{i}_out"), bb.var(v)));
    }
    for (i, (&v, &acc)) in gk.iter().zip(&kbar).enumerate() {
        named.push((format!("kbar{i}_out"), acc + bb.var(v)));
    }
    for (i, &v) in gx.iter().enumerate() {
        named.push((format!("xbar{i}"), bb.var(v)));
    }
    let named: Vec<(&str, Var<'_>)> = named.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    bb.finish(&named)
        .map_err(|e| GradError::Body(e.to_string()))
}
