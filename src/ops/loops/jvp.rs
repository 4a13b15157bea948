//! The JVP of a loop's result group: one loop carrying the carries and their tangents.

use super::vjp::{Roles, batched, swap01};
use crate::autodiff::GradError;
use crate::ir::loops::{Exit, Loop, scan_attrs};
use crate::ir::{GraphBuilder, NodeId, TensorType, Var};

/// The tangent of each result of the loop whose group starts at `first` (indexed by result),
/// given the tangent of each operand (`None`: zero; batched tangents lead with the batch axis).
///
/// # Errors
/// A body whose JVP cannot be formed (e.g. a custom op without a JVP rule).
pub(crate) fn scan_jvp<'b>(
    b: &'b GraphBuilder,
    first: NodeId,
    tangents: &[Option<Var<'b>>],
    batch: Option<usize>,
) -> Result<Vec<Option<Var<'b>>>, GradError> {
    let node = b.graph().node(first).clone();
    let (lp, _) = scan_attrs(&node.attrs).expect("a scan node");
    let lp = lp.clone();
    let n_res = lp.body.outputs().len();
    if tangents.iter().all(Option::is_none) {
        return Ok(vec![None; n_res]);
    }
    if let Some(rc) = &lp.recompute {
        // Through the desugared form: the tape loop's JVP gives the tape's tangents.
        let (taped, plain) = super::vjp::desugar(b, first);
        let (nc, nfc) = (lp.n_carry, rc.forward.n_carry);
        let x = nc + nfc..nc + nfc + rc.forward.n_xs;
        let fwd_t: Vec<Option<Var<'b>>> = (tangents[nc..nc + nfc].iter())
            .chain(&tangents[x])
            .chain(&tangents[nc + lp.n_xs..])
            .copied()
            .collect();
        let tape_t = scan_jvp(b, taped[0].id(), &fwd_t, batch)?;
        let mut plain_t = tangents.to_vec();
        plain_t.splice(nc..nc + nfc, tape_t[taped.len() - nfc..].iter().copied());
        return scan_jvp(b, plain[0].id(), &plain_t, batch);
    }
    let operands: Vec<Var<'b>> = node.inputs.iter().map(|&x| b.var(x)).collect();
    let roles = Roles::of(&lp);
    let (nc, nx) = (lp.n_carry, lp.n_xs);
    let xt: Vec<usize> = (roles.xf.iter().copied())
        .filter(|&k| tangents[nc + k].is_some())
        .collect();
    let kt: Vec<usize> = (roles.kf.iter().copied())
        .filter(|&k| tangents[nc + nx + k].is_some())
        .collect();
    let yf: Vec<usize> = (0..lp.n_ys())
        .filter(|&j| lp.body.ty(lp.body.outputs()[nc + j]).dtype.is_float())
        .collect();
    let body = tangent_body(b, &lp, &roles, (&xt, &kt, &yf), batch)?;
    let mut ops: Vec<Var<'b>> = operands[..nc].to_vec();
    for &k in &roles.cf {
        ops.push(tangents[k].unwrap_or_else(|| {
            let t = batched(&operands[k].ty(), batch);
            b.zeros(t.dtype, &t.shape)
        }));
    }
    ops.extend(&operands[nc..nc + nx]);
    for &k in &xt {
        let t = tangents[nc + k].expect("listed in xt");
        ops.push(if batch.is_some() { swap01(t) } else { t });
    }
    ops.extend(&operands[nc + nx..]);
    ops.extend(
        kt.iter()
            .map(|&k| tangents[nc + nx + k].expect("listed in kt")),
    );
    let n_carry = nc + roles.cf.len();
    // The tangent loop exits with the loop: its condition is its last output.
    let exit = lp.exit.map(|e| match e {
        Exit::While(_) => Exit::While(body.outputs().len() - 1),
        Exit::Flags(k) => Exit::Flags(k),
    });
    let fwd = Loop {
        length: lp.length,
        reverse: lp.reverse,
        n_carry,
        n_xs: nx + xt.len(),
        body,
        checkpoint: lp.checkpoint,
        recompute: None,
        exit,
    };
    let res = b.push_loop(fwd, &ops);
    let mut out = vec![None; n_res];
    for (i, &k) in roles.cf.iter().enumerate() {
        out[k] = Some(res[nc + i]);
    }
    for (i, &j) in yf.iter().enumerate() {
        let t = res[n_carry + i];
        out[nc + j] = Some(if batch.is_some() { swap01(t) } else { t });
    }
    Ok(out)
}

/// The tangent body: inputs `carries, float carries' tangents | xs, tangents of xs (those
/// given) | consts, tangents of consts (those given)`; outputs `new carries, their tangents |
/// tangents of the float ys`, then the condition of a loop with [`Exit::While`].
fn tangent_body(
    b: &GraphBuilder,
    lp: &Loop,
    roles: &Roles,
    (xt, kt, yf): (&[usize], &[usize], &[usize]),
    batch: Option<usize>,
) -> Result<crate::ir::Graph, GradError> {
    let bb = GraphBuilder::new(&format!("{}_jvp", b.graph().name));
    let ins = lp.body.inputs();
    let (nc, nx) = (lp.n_carry, lp.n_xs);
    let ty = |k: usize| lp.body.ty(ins[k]).clone();
    let input = |name: String, t: TensorType| bb.input(&name, t.dtype, &t.shape);
    let c: Vec<Var<'_>> = (0..nc).map(|k| input(format!("c{k}"), ty(k))).collect();
    let dc: Vec<Var<'_>> = (roles.cf.iter())
        .map(|&k| input(format!("dc{k}"), batched(&ty(k), batch)))
        .collect();
    let x: Vec<Var<'_>> = (0..nx)
        .map(|k| input(format!("x{k}"), ty(nc + k)))
        .collect();
    let dx: Vec<Var<'_>> = (xt.iter())
        .map(|&k| input(format!("dx{k}"), batched(&ty(nc + k), batch)))
        .collect();
    let consts: Vec<Var<'_>> = (0..lp.n_consts())
        .map(|k| input(format!("k{k}"), ty(nc + nx + k)))
        .collect();
    let dk: Vec<Var<'_>> = (kt.iter())
        .map(|&k| input(format!("dk{k}"), batched(&ty(nc + nx + k), batch)))
        .collect();
    let args: Vec<Var<'_>> = c.iter().chain(&x).chain(&consts).copied().collect();
    let res = bb.inline(&lp.body, &args);
    let mut of: Vec<NodeId> = roles.cf.iter().map(|&k| res[k].id()).collect();
    of.extend(yf.iter().map(|&j| res[nc + j].id()));
    let mut wrt: Vec<NodeId> = roles.cf.iter().map(|&k| c[k].id()).collect();
    wrt.extend(xt.iter().map(|&k| x[k].id()));
    wrt.extend(kt.iter().map(|&k| consts[k].id()));
    let seeds: Vec<NodeId> = dc.iter().chain(&dx).chain(&dk).map(|v| v.id()).collect();
    bb.check().map_err(|e| GradError::Body(e.to_string()))?;
    let t = crate::autodiff::forward::append_jvp(&bb, &of, &wrt, &seeds, batch)?;
    let mut named: Vec<(String, Var<'_>)> = Vec::new();
    for (k, v) in res[..nc].iter().enumerate() {
        named.push((format!("c{k}_out"), *v));
    }
    for (i, &v) in t[..roles.cf.len()].iter().enumerate() {
        named.push((format!("dc{i}_out"), bb.var(v)));
    }
    for (i, &v) in t[roles.cf.len()..].iter().enumerate() {
        named.push((format!("dy{i}"), bb.var(v)));
    }
    if let Some(Exit::While(k)) = lp.exit {
        named.push(("go".into(), res[k]));
    }
    let named: Vec<(&str, Var<'_>)> = named.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    bb.finish(&named)
        .map_err(|e| GradError::Body(e.to_string()))
}
