//! `ode`: `s` classic Runge-Kutta steps on `[0, 2]` for `y₀' = x₀`, `yᵢ' = xᵢ yᵢ₋₁`,
//! `y(0) = 0` (`primal`, the final `y`), and the gradient of the last element of the final `y`
//! with respect to `x` (`gradient`).
//!
//! The right-hand side is one vector expression (`x` times `y` shifted by one), and the time
//! loop is unrolled into the graph: about 25 nodes per step before differentiation.

use super::{GbError, Task, Value, list, unknown_function};
use crate::{DType, GraphBuilder, Var};

/// The most steps unrolled into one graph: 10 000 steps are about 250 000 forward nodes,
/// beyond which building and compiling the unrolled graph takes longer than is reasonable.
pub const MAX_STEPS: usize = 10_000;

/// Prepares `primal` or `gradient` on `{x: number[], s: int}`.
///
/// # Errors
/// An unknown function, an empty `x`, `s = 0`, or `s >` [`MAX_STEPS`].
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let grad = match function {
        "primal" => false,
        "gradient" => true,
        f => return Err(unknown_function("ode", f, &["primal", "gradient"])),
    };
    let x = input.list_field("x")?;
    let s = input.count("s")?;
    let n = x.len();
    if n == 0 || s == 0 {
        return Err(GbError::Input(format!(
            "ode: need a non-empty `x` and s >= 1, got {n} values and s = {s}"
        )));
    }
    if s > MAX_STEPS {
        return Err(GbError::TooLarge(format!(
            "ode: s = {s} steps would be unrolled into one graph; at most {MAX_STEPS} are \
             supported until graphs have loops"
        )));
    }
    Ok(Task {
        key: format!("ode/{function}/n={n},s={s}"),
        inputs: vec![x],
        build: Box::new(move || {
            let b = GraphBuilder::new("ode");
            let x = b.input("x", DType::F64, &[n]);
            let y = solve(x, s);
            if grad {
                let last = y.slice(&[n - 1], &[n]).sum();
                let g = b.grad(last, &[x])?[0];
                Ok(b.finish(&[("gradient", g)]).map_err(crate::Error::from)?)
            } else {
                Ok(b.finish(&[("y", y)]).map_err(crate::Error::from)?)
            }
        }),
        decode: Box::new(list),
    })
}

/// The right-hand side: `[x₀, x₁y₀, …, x_{n−1}y_{n−2}]`.
fn rhs<'b>(x: Var<'b>, y: Var<'b>) -> Var<'b> {
    let n = x.shape()[0];
    let head = x.slice(&[0], &[1]);
    if n == 1 {
        return head;
    }
    let tail = x.slice(&[1], &[n]) * y.slice(&[0], &[n - 1]);
    x.builder().concat(&[head, tail], 0)
}

/// `s` Runge-Kutta steps from `y = 0` to `t = 2`, in the reference's operation order.
fn solve(x: Var<'_>, s: usize) -> Var<'_> {
    let n = x.shape()[0];
    let h = 2.0 / s as f64;
    let mut y = x.builder().zeros(DType::F64, &[n]);
    for _ in 0..s {
        let k1 = rhs(x, y);
        let k2 = rhs(x, y + k1 * h / 2.0);
        let k3 = rhs(x, y + k2 * h / 2.0);
        let k4 = rhs(x, y + k3 * h);
        y = y + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * h / 6.0;
    }
    y
}
