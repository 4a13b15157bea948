//! `ode`: `s` classic Runge-Kutta steps on `[0, 2]` for `y₀' = x₀`, `yᵢ' = xᵢ yᵢ₋₁`,
//! `y(0) = 0` (`primal`, the final `y`), and the gradient of the last element of the final `y`
//! with respect to `x` (`gradient`).
//!
//! The right-hand side is linear in `y`, so each Runge-Kutta step is one fixed banded linear
//! map (see `solve`), computed once from `x`; the first step from `y = 0` is a constant and the
//! other `s − 1` are a `scan` whose body (about 14 nodes) is built once, whatever `s` is.

use super::{GbError, Task, Value, infallible, list, unknown_function};
use crate::{DType, GraphBuilder, Var};

/// The most values on the gradient's tape (`y` of every step, `n·s` of them, 8 bytes each):
/// 1 GiB.
pub const MAX_TAPE: usize = 1 << 27;

/// Prepares `primal` or `gradient` on `{x: number[], s: int}`.
///
/// # Errors
/// An unknown function, an empty `x`, `s = 0`, or for `gradient` `n·s >` [`MAX_TAPE`].
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
    if grad && n.saturating_mul(s) > MAX_TAPE {
        return Err(GbError::TooLarge(format!(
            "ode: the gradient's tape would hold n·s = {n}·{s} values; at most {MAX_TAPE} are \
             supported"
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
        decode: infallible(list),
    })
}

/// `s` Runge-Kutta steps from `y = 0` to `t = 2`.
///
/// The right-hand side is linear, `y' = Ay + b` with `(Ay)ᵢ = xᵢyᵢ₋₁` and `b = x₀e₀`, so one
/// RK4 step is exactly `y ← T(hA)y + hS(hA)b` with `T(z) = 1 + z + z²/2 + z³/6 + z⁴/24` and
/// `S(z) = 1 + z/2 + z²/6 + z³/24`. `A` shifts by one, so `(Aᵏy)ᵢ = πₖ[i]·yᵢ₋ₖ` with
/// `πₖ[i] = xᵢxᵢ₋₁⋯xᵢ₋ₖ₊₁`: a step is five products with shifted views of `y` (kept behind
/// four zeros, so a shift is a slice) and a constant vector, computed once. `b` has one
/// nonzero entry and `A` is nilpotent of order `n`, so `c = hS(hA)b` is zero beyond its first
/// four entries, which need only `x₀, …, x₃`; steps add `c` as those entries and zeros.
fn solve<'g>(x: Var<'g>, s: usize) -> Var<'g> {
    let b = x.builder();
    let n = x.shape()[0];
    let h = 2.0 / s as f64;
    let fact = [1.0, 1.0, 2.0, 6.0, 24.0];
    // c = hS(hA)b: entry k < 4 is h^(k+1)/(k+1)! · πₖ₊₁[k] = h^(k+1)/(k+1)! · xₖxₖ₋₁⋯x₀
    // (multiplied in that order, as πₖ₊₁ is built below).
    let m = n.min(4);
    let xi = |i: usize| x.slice(&[i], &[i + 1]);
    let head: Vec<Var<'g>> = (0..m)
        .map(|k| {
            let pi = (0..k).rev().fold(xi(k), |p, j| p * xi(j));
            pi * (h.powi(k as i32 + 1) / fact[k + 1])
        })
        .collect();
    let c4 = if m == 1 { head[0] } else { b.concat(&head, 0) };
    // The first step from y = 0 is `c`; the others are the loop (none when s = 1).
    if s == 1 {
        return spread(c4, n);
    }
    let zeros4 = b.zeros(DType::F64, &[4]);
    let xp = b.concat(&[zeros4, x], 0); // x behind four zeros
    let shifted = |v: Var<'g>, k: usize| -> Var<'g> { v.slice(&[4 - k], &[4 - k + n]) };
    // π₁ = x, πₖ = πₖ₋₁ · (x shifted by k − 1); a_k = hᵏ/k! · πₖ.
    let mut pis = vec![x];
    for k in 2..=4 {
        let prev = pis[k - 2];
        pis.push(prev * shifted(xp, k - 1));
    }
    let coef: Vec<Var<'g>> = (1..=4)
        .map(|k| pis[k - 1] * (h.powi(k as i32) / fact[k]))
        .collect();
    let mut consts = vec![c4];
    consts.extend(&coef);
    let out = b.scan(s - 1, &[spread(c4, n)], &[], &consts, |sb, st| {
        let y = st.carry[0];
        let zeros4 = sb.zeros(DType::F64, &[4]);
        let yp = sb.concat(&[zeros4, y], 0); // y behind four zeros
        let mut next = y + spread(st.consts[0], n);
        for (k, a) in st.consts[1..].iter().enumerate() {
            next = next + *a * yp.slice(&[3 - k], &[3 - k + n]);
        }
        (vec![next], Vec::new())
    });
    out.carry[0]
}

/// `c`'s first entries `head`, then zeros up to `n` entries.
fn spread(head: Var<'_>, n: usize) -> Var<'_> {
    let m = head.shape()[0];
    if n > m {
        let zeros = head.builder().zeros(DType::F64, &[n - m]);
        head.builder().concat(&[head, zeros], 0)
    } else {
        head
    }
}
