//! `scan`: a loop whose body is a graph (JAX's `lax.scan`), and every rule about it.
//!
//! The data ([`crate::ir::loops::Loop`], result groups) is described in [`crate::ir::loops`].
//! Here: the shape rule (operands against the body's inputs, the result's type), the
//! interpreter (the body run by [`crate::interp`] once per step), and the derivative rules.
//!
//! A loop's derivatives are loops. They are rules of a whole result group, not of one node
//! (one backward loop serves every result's cotangent), so `OpRules::vjp`/`jvp` are `None` and
//! the AD drivers call `vjp::scan_vjp` and `jvp::scan_jvp` at a group instead:
//! - **JVP**: one loop carrying `(carry, tangent of carry)` whose body is the body's JVP.
//! - **VJP**: a *tape* loop (the body with the carries entering each step as extra ys: by
//!   default every step's carries are stored), then a loop in the opposite direction whose
//!   body is the body's VJP: it carries the carries' cotangent and the consts' accumulated
//!   cotangent, and stacks the xs' cotangents.
//!
//! - A loop that stops early ([`crate::ir::loops::Exit`]): its JVP loop stops at the same step
//!   (it carries the condition along), its backward loop reverses only the steps that ran.
//!
//! Both are built with builder primitives on a fresh body builder, so they can be
//! differentiated again (grad of grad and HVPs through loops).

pub mod jvp;
mod recomputed;
pub mod revolve;
pub mod vjp;

use super::{Arity, AttrKind, OpProps, OpRules};
use crate::ir::loops::{Exit, Loop, flags_count, scan_attrs};
use crate::ir::{Attrs, DType, Node, TensorType};
use crate::tensor::{Data, Tensor};

fn infer_scan(tys: &[&TensorType], attrs: &Attrs) -> Result<TensorType, String> {
    let Some((lp, result)) = scan_attrs(attrs) else {
        unreachable!("attribute kind checked")
    };
    let ins = lp.body.inputs();
    if tys.len() != ins.len() {
        return Err(format!(
            "the body takes {} inputs ({} carries, {} xs, {} consts), found {} operands",
            ins.len(),
            lp.n_carry,
            lp.n_xs,
            lp.n_consts(),
            tys.len()
        ));
    }
    if lp.n_carry + lp.n_xs > ins.len() || lp.body.outputs().len() < lp.n_carry {
        return Err("the body has fewer inputs or outputs than carries and xs".into());
    }
    for (k, (&t, &i)) in tys.iter().zip(&ins).enumerate() {
        let want = lp.body.ty(i);
        let role = if k < lp.n_carry {
            "carry"
        } else if k < lp.n_carry + lp.n_xs {
            "xs"
        } else {
            "const"
        };
        let recomputed = role == "xs" && k - lp.n_carry < lp.n_recomputed();
        let role = if recomputed { "recomputed carry" } else { role };
        let ok = if role == "xs" {
            t.dtype == want.dtype
                && t.shape.first() == Some(&lp.length)
                && t.shape[1..] == want.shape
        } else {
            t == want
        };
        if !ok {
            let need = if role == "xs" {
                let mut s = vec![lp.length];
                s.extend(&want.shape);
                TensorType::new(want.dtype, s)
            } else {
                want.clone()
            };
            return Err(format!("{role} operand {k} is {t}, the body needs {need}"));
        }
    }
    for (k, (&o, &i)) in lp
        .body
        .outputs()
        .iter()
        .zip(&ins)
        .take(lp.n_carry)
        .enumerate()
    {
        if lp.body.ty(o) != lp.body.ty(i) {
            return Err(format!(
                "carry {k} enters the body as {} but leaves it as {}",
                lp.body.ty(i),
                lp.body.ty(o)
            ));
        }
    }
    if let Some(n) = (lp.body.nodes().iter()).find(|n| super::collective::is_collective(n.op)) {
        // A loop runs its body without the call's communicator.
        return Err(format!(
            "a loop body cannot hold `{}`: collectives run outside loops",
            n.op
        ));
    }
    if lp.length == 0 && (lp.n_xs > 0 || lp.n_ys() > 0) {
        return Err(format!(
            "a loop of length 0 can have no xs and no ys ({})",
            crate::ir::EMPTY_TENSOR_REASON
        ));
    }
    check_exit(lp)?;
    lp.result_type(result).ok_or_else(|| {
        format!(
            "result {result} is out of range: the body has {} outputs",
            lp.body.outputs().len()
        )
    })
}

/// An [`Exit`]'s conditions: the output or xs it names is a `bool` per step, and a `While` loop
/// runs forward without xs (so the steps it skips would all compute what its last one did).
fn check_exit(lp: &Loop) -> Result<(), String> {
    let is_flag = |t: &TensorType| t.dtype == DType::Bool && t.rank() == 0;
    match lp.exit {
        None => Ok(()),
        Some(Exit::While(k)) => {
            let Some(&o) = lp.body.outputs().get(k).filter(|_| k >= lp.n_carry) else {
                return Err(format!(
                    "`while={k}` names no y: the body has {} carries and {} ys",
                    lp.n_carry,
                    lp.n_ys()
                ));
            };
            if !is_flag(lp.body.ty(o)) {
                return Err(format!(
                    "the `while` output {k} (the loop's condition) must be bool[], found {}",
                    lp.body.ty(o)
                ));
            }
            if lp.reverse || lp.n_xs > 0 || lp.recompute.is_some() {
                return Err("a loop with `while` runs forward and has no xs".into());
            }
            Ok(())
        }
        Some(Exit::Flags(k)) => {
            let ok = k < lp.n_xs && is_flag(lp.body.ty(lp.body.inputs()[lp.n_carry + k]));
            if ok {
                Ok(())
            } else {
                Err(format!("`while_xs={k}` must name an xs of bool[] rows"))
            }
        }
    }
}

/// Row `t` of `x` along its leading axis.
pub(crate) fn row(x: &Tensor, t: usize) -> Tensor {
    let shape = x.shape()[1..].to_vec();
    let m: usize = shape.iter().product();
    let r = t * m..(t + 1) * m;
    let data = match x.data() {
        Data::F64(v) => Data::F64(v[r].to_vec()),
        Data::F32(v) => Data::F32(v[r].to_vec()),
        Data::Bool(v) => Data::Bool(v[r].to_vec()),
        Data::I32(v) => Data::I32(v[r].to_vec()),
    };
    Tensor::new(shape, data)
}

/// Stacks equally typed rows along a new leading axis.
pub(crate) fn stack(rows: &[Tensor]) -> Tensor {
    let mut shape = vec![rows.len()];
    shape.extend(rows[0].shape());
    macro_rules! cat {
        ($v:ident) => {
            Data::$v(
                rows.iter()
                    .flat_map(|r| match r.data() {
                        Data::$v(v) => v.iter().copied(),
                        _ => unreachable!("rows share a dtype"),
                    })
                    .collect(),
            )
        };
    }
    let data = match rows[0].data() {
        Data::F64(_) => cat!(F64),
        Data::F32(_) => cat!(F32),
        Data::Bool(_) => cat!(Bool),
        Data::I32(_) => cat!(I32),
    };
    Tensor::new(shape, data)
}

/// Runs a loop on its operands (carries, xs, consts) and returns all its results (final
/// carries, then stacked ys). The reference semantics: the body is evaluated by the
/// interpreter, step by step, for the steps the loop's [`Exit`] lets run.
pub fn run_loop(lp: &Loop, args: &[&Tensor]) -> Vec<Tensor> {
    if lp.recompute.is_some() {
        return recomputed::run(lp, args);
    }
    let (nc, nx) = (lp.n_carry, lp.n_xs);
    let n = steps_of(lp, args);
    let mut carry: Vec<Tensor> = args[..nc].iter().map(|t| (*t).clone()).collect();
    let mut ys: Vec<Vec<Tensor>> = vec![Vec::with_capacity(lp.length); lp.n_ys()];
    let mut inputs: Vec<Tensor> = Vec::with_capacity(args.len());
    for s in 0..n {
        let t = if lp.reverse { n - 1 - s } else { s };
        inputs.clear();
        if matches!(lp.exit, Some(Exit::While(_))) {
            // A step that stops the loop keeps the carries it entered with.
            inputs.extend(carry.iter().cloned());
        } else {
            inputs.append(&mut carry);
        }
        inputs.extend(args[nc..nc + nx].iter().map(|x| row(x, t)));
        inputs.extend(args[nc + nx..].iter().map(|k| (*k).clone()));
        let mut out = crate::interp::run(&lp.body, &inputs)
            .expect("invariant: scan operands match the body's inputs (checked by infer)");
        let rest = out.split_off(nc);
        if let Some(Exit::While(k)) = lp.exit
            && matches!(rest[k - nc].data(), Data::Bool(v) if !v[0])
        {
            // Stopped: this step and the rest keep the carries; their rows repeat this one's.
            for (stacked, y) in ys.iter_mut().zip(rest) {
                stacked.resize(lp.length, y);
            }
            break;
        }
        carry = out;
        for (stacked, y) in ys.iter_mut().zip(rest) {
            stacked.push(y);
        }
    }
    if lp.reverse {
        for y in &mut ys {
            y.reverse();
        }
    }
    let zero_fill = |mut rows: Vec<Tensor>, k: usize| {
        let ty = lp.body.ty(lp.body.outputs()[nc + k]);
        rows.resize(lp.length, Tensor::splat(ty, 0.0));
        rows
    };
    let ys: Vec<Tensor> = (ys.into_iter().enumerate())
        .map(|(k, rows)| stack(&zero_fill(rows, k)))
        .collect();
    carry.into_iter().chain(ys).collect()
}

/// The number of steps a loop runs on `args`: `length`, or the trip count of an
/// [`Exit::Flags`] loop (an [`Exit::While`] loop finds its own while it runs).
pub(crate) fn steps_of(lp: &Loop, args: &[&Tensor]) -> usize {
    match lp.exit {
        Some(Exit::Flags(k)) => match args[lp.n_carry + k].data() {
            Data::Bool(v) => flags_count(v.iter().copied()),
            _ => unreachable!("infer checked the flags' dtype"),
        },
        _ => lp.length,
    }
}

fn eval_scan(node: &Node, args: &[&Tensor]) -> Tensor {
    let (lp, result) = scan_attrs(&node.attrs).expect("scan attrs");
    run_loop(lp, args).swap_remove(result)
}

/// `scan`: see the module docs. Derivatives are group rules ([`vjp`], [`jvp`]).
pub(super) const SCAN: OpRules = OpRules {
    name: "scan",
    arity: Arity::Variadic,
    attrs: AttrKind::Scan,
    props: OpProps {
        commutative: false,
        elementwise: false,
        differentiable: true,
    },
    infer: infer_scan,
    eval: eval_scan,
    jvp: None,
    vjp: None,
    math: None,
    lower: None,
};
