//! `saddle`: the saddle point of `f(p₁, p₂) = ‖p₁‖² − ‖p₂‖²` (`p₁, p₂ ∈ ℝ²`) by nested
//! gradient descent (GradBench's `multivariate_argmin`) from the input `start`:
//! `r₁ = argmin_{p₁} max_{p₂} f(p₁, p₂)`, the inner maximum itself a descent on `−f` from
//! `start`, then `r₂ = argmax_{p₂} f(r₁, p₂)`; the output is `[r₁, r₂]`.
//!
//! Nested AD in four variants, `ff`, `fr`, `rf`, `rr`: the first letter is the mode of the
//! outer descent's gradient `∇_{p₁} max_{p₂} f` (differentiating through the whole inner
//! descent loop: one `jvp` batched over the two unit directions, or one `grad`) and of the
//! final argmax's gradient, the second the mode of the inner descent's gradient `∇_{p₂} f`. Every descent runs at most
//! [`MAX_DESCENT_STEPS`] iterations; if one reaches it the evaluation fails with
//! [`GbError::NotConverged`] (the reference tools would loop on).

use super::descent::{self, Eval, Objective};
use super::particle::Variant;
use super::{GbError, Task, Value, unknown_function};
use crate::{DType, Graph, GraphBuilder, Var};

/// The most iterations of each descent. GradBench's input (`start = [1, 1]`) needs 170 for
/// every one of them.
pub const MAX_DESCENT_STEPS: usize = 500;

/// Prepares `ff`, `fr`, `rf` or `rr` on `{start: [number, number]}`.
///
/// # Errors
/// An unknown function or a `start` that is not two numbers.
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let variant = Variant::parse(function)
        .ok_or_else(|| unknown_function("saddle", function, &["ff", "fr", "rf", "rr"]))?;
    let start = input.list_field("start")?;
    if start.len() != 2 {
        return Err(GbError::Input(format!(
            "saddle: `start` must be two numbers, got {}",
            start.len()
        )));
    }
    Ok(Task {
        key: format!("saddle/{function}"),
        inputs: vec![start],
        build: Box::new(move || graph(variant, MAX_DESCENT_STEPS)),
        decode: Box::new(|mut outs| {
            let ok = outs.get(1).and_then(|o| o.first()) == Some(&1.0);
            if !ok || outs.is_empty() {
                return Err(GbError::NotConverged(format!(
                    "saddle: a gradient descent took more than {MAX_DESCENT_STEPS} iterations"
                )));
            }
            Ok(Value::list(outs.swap_remove(0)))
        }),
    })
}

/// The graph from `start` (`f64[2]`) to `[r₁, r₂]` (`f64[4]`) and a flag `ok` (`1.0` when
/// every descent stopped by its rule within `max_steps` iterations). A limit only bounds: any
/// limit at or above what an input needs gives the same answer, bit for bit.
///
/// # Errors
/// Building or differentiating failed (a bug).
pub fn graph(v: Variant, max_steps: usize) -> Result<Graph, GbError> {
    let b = GraphBuilder::new("saddle");
    let start = b.input("start", DType::F64, &[2]);
    let outer = MaxOver { v, max_steps };
    let r1 = descent::argmin(&b, &outer, start, &[start], max_steps)?;
    let last = Negated {
        forward: v.outer_forward,
    };
    let r2 = descent::argmin(&b, &last, start, &[r1.x], max_steps)?;
    let both = b.concat(&[r1.x, r2.x], 0);
    let ok = r1.ok.min(r2.ok);
    Ok(b.finish(&[("points", both), ("ok", ok)])
        .map_err(crate::Error::from)?)
}

/// `f(p₁, p₂)`.
fn objective<'s>(p1: Var<'s>, p2: Var<'s>) -> Var<'s> {
    (p1 * p1).sum() - (p2 * p2).sum()
}

/// `p₂ ↦ −f(p₁, p₂)` (`p₁` its one const), whose argmin is the argmax of `f`.
struct Negated {
    forward: bool,
}

impl Objective for Negated {
    fn eval<'s>(
        &self,
        b: &'s GraphBuilder,
        p2: Var<'s>,
        consts: &[Var<'s>],
    ) -> Result<Eval<'s>, crate::Error> {
        let f = -objective(consts[0], p2);
        Ok(Eval {
            f,
            g: descent::gradient(f, p2, self.forward)?,
            ok: b.scalar(DType::F64, 1.0),
        })
    }
}

/// `p₁ ↦ max_{p₂} f(p₁, p₂)` by the inner descent from `start` (its one const), with its
/// gradient through that descent.
struct MaxOver {
    v: Variant,
    max_steps: usize,
}

impl Objective for MaxOver {
    fn eval<'s>(
        &self,
        _: &'s GraphBuilder,
        p1: Var<'s>,
        consts: &[Var<'s>],
    ) -> Result<Eval<'s>, crate::Error> {
        let inner = Negated {
            forward: self.v.inner_forward,
        };
        // The inner descent starts at `start`, a constant of p₁'s function (not p₁ itself,
        // which `start` also is at the outer descent's first point).
        let from = consts[0].stop_gradient();
        let p2 = descent::argmin(p1.builder(), &inner, from, &[p1], self.max_steps)?;
        let f = objective(p1, p2.x);
        Ok(Eval {
            f,
            g: descent::gradient(f, p1, self.v.outer_forward)?,
            ok: p2.ok,
        })
    }
}
