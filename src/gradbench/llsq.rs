//! `llsq`: `y(x) = ½ Σᵢ (sᵢ − Σⱼ xⱼ tᵢʲ)²` with `tᵢ = −1 + 2i/(n−1)`, `sᵢ = sign(tᵢ)`, and its
//! gradient.
//!
//! The residual is one matrix-vector product with the Vandermonde matrix `V = [tᵢʲ]`, which
//! the graph itself builds from `t` by doubling (columns `0..2k` are columns `0..k` and those
//! times `tᵏ`), so no `n × m` constant is stored and no `pow` is called.

use super::{GbError, Task, Value, infallible, list, scalar, unknown_function};
use crate::{DType, GraphBuilder, Tensor, Var};

/// Prepares `primal` or `gradient` on `{x: number[], n: int}`.
///
/// # Errors
/// An unknown function, an empty `x`, or `n < 2` (the grid `t` needs two points).
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let grad = match function {
        "primal" => false,
        "gradient" => true,
        f => return Err(unknown_function("llsq", f, &["primal", "gradient"])),
    };
    let x = input.list_field("x")?;
    let n = input.count("n")?;
    let m = x.len();
    if m == 0 || n < 2 {
        return Err(GbError::Input(format!(
            "llsq: need a non-empty `x` and `n` >= 2, got {m} coefficients and n = {n}"
        )));
    }
    Ok(Task {
        key: format!("llsq/{function}/n={n},m={m}"),
        inputs: vec![x],
        build: Box::new(move || {
            let b = GraphBuilder::new("llsq");
            let x = b.input("x", DType::F64, &[m, 1]);
            let (t, s) = grid(n);
            let t = b.constant(Tensor::from_f64(vec![n, 1], t));
            let s = b.constant(Tensor::from_f64(vec![n, 1], s));
            let r = s - vandermonde(t, m).matmul(x);
            let y = (r * r).sum() * 0.5;
            let out = if grad { b.grad(y, &[x])?[0] } else { y };
            Ok(b.finish(&[("out", out)]).map_err(crate::Error::from)?)
        }),
        decode: infallible(move |outs| if grad { list(outs) } else { scalar(&outs) }),
    })
}

/// `tᵢ = −1 + 2i/(n−1)` and `sᵢ = sign(tᵢ)` (0 at 0), as the eval defines them.
pub fn grid(n: usize) -> (Vec<f64>, Vec<f64>) {
    let t: Vec<f64> = (0..n)
        .map(|i| -1.0 + i as f64 * 2.0 / (n as f64 - 1.0))
        .collect();
    let s = t
        .iter()
        .map(|&v| f64::from(u8::from(v > 0.0)) - f64::from(u8::from(v < 0.0)))
        .collect();
    (t, s)
}

/// `[n, m]` with columns `tʲ`, `j < m`, from the column `t` (`[n, 1]`).
fn vandermonde(t: Var<'_>, m: usize) -> Var<'_> {
    let n = t.shape()[0];
    let mut v = t.scalar_like(1.0).broadcast_to(&[n, 1]);
    let mut p = t; // t^(columns of v)
    while v.shape()[1] < m {
        let k = v.shape()[1];
        let take = k.min(m - k);
        let head = if take == k {
            v
        } else {
            v.slice(&[0, 0], &[n, take])
        };
        v = v.builder().concat(&[v, head * p], 1);
        if v.shape()[1] < m {
            p = p * p;
        }
    }
    v
}
