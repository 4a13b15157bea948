//! `particle`: the control `w` that makes a charged particle, pushed by two fixed charges at
//! `(10, 10 − w)` and `(10, 0)`, hit the origin: gradient descent (GradBench's
//! `multivariate_argmin`) on `w ↦ x₀(t_f)²`, where the trajectory comes from naive Euler
//! steps (`Δt = 0.1`, from `x = (0, 8)`, `ẋ = (0.75, 0)`, acceleration `−∇ₓp(x; w)` with the
//! potential `p = Σ 1/‖x − cᵢ‖`) until the next step would cross the x axis, and `t_f` is
//! where the last velocity line meets the axis.
//!
//! Nested AD in four variants, `ff`, `fr`, `rf`, `rr`: the first letter is the mode of the
//! descent's derivative `d x₀(t_f)² / dw` (through the whole Euler loop: `jvp` or `grad`), the
//! second the mode of `∇ₓp` inside every Euler step (one `jvp` batched over the two unit
//! directions, or one `grad`). Both loops are bounded `while`s: the Euler loop runs at most
//! [`MAX_EULER_STEPS`] steps, the descent at most [`MAX_DESCENT_STEPS`]; if either limit is
//! reached the evaluation fails with [`GbError::NotConverged`] (the reference tools would
//! loop on). A bounded `while` runs all its steps (those after the exit keep the state), so
//! every evaluation costs the limits in full.

use super::descent::{self, Eval, Objective};
use super::{GbError, Task, Value, unknown_function};
use crate::{DType, Graph, GraphBuilder, Tensor, Var};

/// The most Euler steps of one trajectory. GradBench's input (`w = 0`) needs at most 355 on
/// the way to the answer; a trajectory of more than 1000 steps of `0.1` means the particle
/// does not come down.
pub const MAX_EULER_STEPS: usize = 1000;

/// The most descent iterations. GradBench's input needs 92.
pub const MAX_DESCENT_STEPS: usize = 400;

/// The step limits of the two bounded loops. A limit only bounds: any limit at or above what
/// an input needs gives the same answer, bit for bit.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most Euler steps of one trajectory.
    pub euler_steps: usize,
    /// The most descent iterations.
    pub descent_steps: usize,
}

impl Limits {
    /// [`MAX_EULER_STEPS`] and [`MAX_DESCENT_STEPS`].
    pub const DEFAULT: Limits = Limits {
        euler_steps: MAX_EULER_STEPS,
        descent_steps: MAX_DESCENT_STEPS,
    };
}

/// Which AD mode each level uses.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// The descent's derivative by forward mode (`f?`), else reverse (`r?`).
    pub outer_forward: bool,
    /// `∇ₓp` in the Euler steps by forward mode (`?f`), else reverse (`?r`).
    pub inner_forward: bool,
}

impl Variant {
    /// The variant a GradBench function name (`ff`, `fr`, `rf`, `rr`) stands for.
    pub fn parse(name: &str) -> Option<Variant> {
        let mode = |c: u8| match c {
            b'f' => Some(true),
            b'r' => Some(false),
            _ => None,
        };
        match name.as_bytes() {
            &[o, i] => Some(Variant {
                outer_forward: mode(o)?,
                inner_forward: mode(i)?,
            }),
            _ => None,
        }
    }
}

/// Prepares `ff`, `fr`, `rf` or `rr` on `{w: number}`.
///
/// # Errors
/// An unknown function or a missing `w`.
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let variant = Variant::parse(function)
        .ok_or_else(|| unknown_function("particle", function, &["ff", "fr", "rf", "rr"]))?;
    let w = input.num("w")?;
    Ok(Task {
        key: format!("particle/{function}"),
        inputs: vec![vec![w]],
        build: Box::new(move || graph(variant, Limits::DEFAULT)),
        decode: Box::new(|outs| {
            let ok = outs.get(1).and_then(|o| o.first()) == Some(&1.0);
            if !ok {
                return Err(GbError::NotConverged(format!(
                    "particle: a trajectory took more than {MAX_EULER_STEPS} Euler steps or \
                     the descent more than {MAX_DESCENT_STEPS} iterations"
                )));
            }
            Ok(super::scalar(&outs))
        }),
    })
}

/// The graph from the start `w` (`f64[]`) to the final `w` and a flag `ok` (`1.0` when both
/// loops stopped by their rules within `limits`).
///
/// # Errors
/// Building or differentiating failed (a bug).
pub fn graph(v: Variant, limits: Limits) -> Result<Graph, GbError> {
    let b = GraphBuilder::new("particle");
    let w = b.input("w", DType::F64, &[]);
    let obj = Descent {
        v,
        euler_steps: limits.euler_steps,
    };
    let solved = descent::argmin(&b, &obj, w.reshape(&[1]), &[], limits.descent_steps)?;
    let w_final = solved.x.reshape(&[]);
    Ok(b.finish(&[("w_min", w_final), ("ok", solved.ok)])
        .map_err(crate::Error::from)?)
}

/// The descent's objective `w ↦ x₀(t_f)²` with its derivative in the variant's modes.
struct Descent {
    v: Variant,
    euler_steps: usize,
}

impl Objective for Descent {
    fn eval<'s>(
        &self,
        _: &'s GraphBuilder,
        x: Var<'s>,
        _: &[Var<'s>],
    ) -> Result<Eval<'s>, crate::Error> {
        let w = x.reshape(&[]);
        let (f, ok) = trajectory(w, self.v.inner_forward, self.euler_steps)?;
        let d = descent::gradient(f, w, self.v.outer_forward)?;
        Ok(Eval {
            f,
            g: d.reshape(&[1]),
            ok,
        })
    }
}

/// `x₀(t_f)²` for the control `w` (a scalar) and whether the Euler loop exited within
/// `max_steps` (`1.0`).
///
/// # Errors
/// Building or differentiating failed (a bug).
pub fn trajectory<'b>(
    w: Var<'b>,
    inner_forward: bool,
    max_steps: usize,
) -> Result<(Var<'b>, Var<'b>), crate::Error> {
    let b = w.builder();
    let dt = 0.1;
    let x0 = b.constant(Tensor::from_f64(vec![2], vec![0.0, 8.0]));
    let v0 = b.constant(Tensor::from_f64(vec![2], vec![0.75, 0.0]));
    let failure = std::cell::RefCell::new(None);
    let out = b.while_loop(
        max_steps,
        &[x0, v0],
        &[w],
        |s, st| lands(st.carry[0], st.carry[1]).gt(s.scalar(DType::F64, 0.0)),
        |_, st| {
            let (x, v) = (st.carry[0], st.carry[1]);
            match force_potential_gradient(x, st.consts[0], inner_forward) {
                Ok(dp) => vec![x + v * dt, v - dp * dt],
                Err(e) => {
                    *failure.borrow_mut() = Some(e);
                    st.carry.clone()
                }
            }
        },
    );
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    let (x, v) = (out[0], out[1]);
    let y = |p: Var<'b>| p.slice(&[1], &[2]).reshape(&[]);
    let first = |p: Var<'b>| p.slice(&[0], &[1]).reshape(&[]);
    let t_f = -y(x) / y(v);
    let x_f = first(x) + t_f * first(v);
    let exited = lands(x, v).le(b.scalar(DType::F64, 0.0));
    let one = b.scalar(DType::F64, 1.0);
    let ok = b.select(exited, one, one * 0.0);
    Ok((x_f * x_f, ok))
}

/// The height after one more step of `Δt = 0.1` from `x` at velocity `v`: the Euler loop
/// steps while it is positive.
fn lands<'s>(x: Var<'s>, v: Var<'s>) -> Var<'s> {
    (x + v * 0.1).slice(&[1], &[2]).reshape(&[])
}

/// `∇ₓp(x; w)` for `p(x) = 1/‖x − (10, 10 − w)‖ + 1/‖x − (10, 0)‖`, by forward or reverse mode.
fn force_potential_gradient<'s>(
    x: Var<'s>,
    w: Var<'s>,
    forward: bool,
) -> Result<Var<'s>, crate::Error> {
    let b = x.builder();
    let ten = b.scalar(DType::F64, 10.0);
    let c1 = b.concat(&[ten.reshape(&[1]), (ten - w).reshape(&[1])], 0);
    let c2 = b.constant(Tensor::from_f64(vec![2], vec![10.0, 0.0]));
    let inv_dist = |c: Var<'s>| {
        let d = x - c;
        (d * d).sum().sqrt().recip()
    };
    let p = inv_dist(c1) + inv_dist(c2);
    descent::gradient(p, x, forward)
}
