//! The gradient-descent solver of `particle` and `saddle`, as a bounded `while` loop in the
//! graph: GradBench's `multivariate_argmin` (its C++ `gd.hpp`, Futhark `solver.fut`) step for
//! step, so the iterates equal the reference tools' ones.
//!
//! From `x` with `f(x)`, `∇f(x)`, step size `η = 10⁻⁵` and a success counter `i = 0`, one
//! iteration does the first that applies of: stop if `‖∇f(x)‖ ≤ 10⁻⁵`; double `η` and reset `i`
//! after ten successes; stop if the step `x' = x − η∇f(x)` moves less than `10⁻⁵`; accept `x'`
//! if `f(x') < f(x)` (`i += 1`); else halve `η` and reset `i`. In the graph every iteration
//! evaluates `f(x')` and `∇f(x')` and `select`s what the branch keeps.

use crate::{DType, GraphBuilder, Var};
use std::cell::RefCell;

/// An objective's value, gradient and whether every loop inside it exited (`1.0`) or one ran
/// into its `max_steps` (`0.0`), at one point.
pub(super) struct Eval<'s> {
    pub f: Var<'s>,
    pub g: Var<'s>,
    pub ok: Var<'s>,
}

/// A function the solver minimizes, built on whichever builder evaluates it.
pub(super) trait Objective {
    /// `f`, `∇f` and the convergence flag at `x` (`[n]`). `consts` are the values passed to
    /// [`argmin`] (a loop body sees the outer builder's values only as its consts).
    fn eval<'s>(
        &self,
        b: &'s GraphBuilder,
        x: Var<'s>,
        consts: &[Var<'s>],
    ) -> Result<Eval<'s>, crate::Error>;
}

/// The minimizer found from `x0` and whether the descent stopped by its own rule within
/// `max_steps` iterations with every inner loop exiting too (`1.0`, else `0.0`).
pub(super) struct Solved<'b> {
    pub x: Var<'b>,
    pub ok: Var<'b>,
}

/// `multivariate_argmin(obj, x0)`, at most `max_steps` iterations (a bounded `while`: the
/// iterations after the stop keep the state).
pub(super) fn argmin<'b, O: Objective>(
    b: &'b GraphBuilder,
    obj: &O,
    x0: Var<'b>,
    consts: &[Var<'b>],
    max_steps: usize,
) -> Result<Solved<'b>, crate::Error> {
    let first = obj.eval(b, x0, consts)?;
    let f64s = |x: f64| b.scalar(DType::F64, x);
    // Carries: x, f(x), ∇f(x), η, i, go, ok.
    let init = [
        x0,
        first.f,
        first.g,
        f64s(1e-5),
        f64s(0.0),
        f64s(1.0),
        first.ok,
    ];
    let failure: RefCell<Option<crate::Error>> = RefCell::new(None);
    let out = b.while_loop(
        max_steps,
        &init,
        consts,
        |s, st| st.carry[5].gt(s.scalar(DType::F64, 0.5)),
        |s, step| match iterate(s, obj, step) {
            Ok(next) => next,
            Err(e) => {
                *failure.borrow_mut() = Some(e);
                step.carry.clone()
            }
        },
    );
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    b.check().map_err(crate::Error::from)?;
    // Stopped by the rule (go = 0) and every objective evaluation's loops exited.
    let stopped = out[5].lt(f64s(0.5));
    let ok = b.select(stopped, out[6], f64s(0.0));
    Ok(Solved { x: out[0], ok })
}

/// One iteration on the carries of [`argmin`].
fn iterate<'s, O: Objective>(
    s: &'s GraphBuilder,
    obj: &O,
    step: &crate::ScanStep<'s>,
) -> Result<Vec<Var<'s>>, crate::Error> {
    let [x, fx, gx, eta, i, go, ok] = step.carry[..] else {
        unreachable!("argmin has seven carries")
    };
    let tol = s.scalar(DType::F64, 1e-5);
    // The stopping tests only compare: no derivative flows through them (and none through
    // the square roots at 0).
    let small_g = (gx.stop_gradient() * gx.stop_gradient())
        .sum()
        .sqrt()
        .le(tol);
    let at10 = i.equal(s.scalar(DType::F64, 10.0));
    let xp = x - eta * gx;
    let dx = x.stop_gradient() - xp.stop_gradient();
    let small_step = (dx * dx).sum().sqrt().le(tol);
    let e = obj.eval(s, xp, &step.consts)?;
    let better = e.f.lt(fx);
    // The branches in the reference's order: small gradient, ten successes, small step,
    // better, worse.
    let case = |sg: Var<'s>, ten: Var<'s>, ss: Var<'s>, up: Var<'s>, down: Var<'s>| {
        let tail = s.select(small_step, ss, s.select(better, up, down));
        s.select(small_g, sg, s.select(at10, ten, tail))
    };
    let zero = s.scalar(DType::F64, 0.0);
    let one = s.scalar(DType::F64, 1.0);
    Ok(vec![
        case(x, x, x, xp, x),
        case(fx, fx, fx, e.f, fx),
        case(gx, gx, gx, e.g, gx),
        case(eta, eta * 2.0, eta, eta, eta * 0.5),
        case(i, zero, i, i + 1.0, zero),
        case(zero, go, zero, go, go),
        // An evaluation whose inner loops did not exit poisons the result whichever branch
        // is taken: the reference would not have returned from it.
        ok.min(s.select(
            small_g,
            one,
            s.select(at10, one, s.select(small_step, one, e.ok)),
        )),
    ])
}

/// `∇f(x)` of a scalar `f` by forward mode: the `jvp`s along the unit directions of `x` (a
/// scalar or a vector).
pub(super) fn grad_forward<'s>(f: Var<'s>, x: Var<'s>) -> Result<Var<'s>, crate::Error> {
    let b = f.builder();
    let shape = x.shape();
    if shape.is_empty() {
        let one = b.scalar(DType::F64, 1.0);
        return Ok(b.jvp(&[f], &[x], &[one])?[0]);
    }
    // All unit directions at once: one tangent pass (through a loop: one loop) carrying `n`
    // tangents, rather than `n` passes.
    let n = shape[0];
    let eye: Vec<f64> = (0..n * n)
        .map(|e| if e / n == e % n { 1.0 } else { 0.0 })
        .collect();
    let eye = b.constant(crate::Tensor::from_f64(vec![n, n], eye));
    Ok(b.jvp_batched(&[f], &[x], &[eye], n)?[0])
}

/// `∇f(x)` by forward or reverse mode.
pub(super) fn gradient<'s>(f: Var<'s>, x: Var<'s>, forward: bool) -> Result<Var<'s>, crate::Error> {
    if forward {
        grad_forward(f, x)
    } else {
        Ok(f.builder().grad(f, &[x])?[0])
    }
}
