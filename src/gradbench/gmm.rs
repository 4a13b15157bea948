//! `gmm`: the log posterior of a Gaussian mixture with a Wishart prior on the precision
//! matrices (`objective`), and its gradient with respect to `alpha`, `mu`, `q`, `l`
//! (`jacobian`).
//!
//! Structure, not scalars: the lower-triangular factors `Q_k` are assembled as one `[k, d, d]`
//! tensor, `Q_k xᵢ` for all points and components is one batched matmul (`[k, d, d]·Xᵀ`),
//! `Q_k μ_k` another, and the per-point mixture is a `logsumexp` over the component axis.

use super::{GbError, Task, Value, infallible, scalar, unknown_function};
use crate::{DType, GraphBuilder, Tensor, Var};

/// The sizes and prior parameters that fix the graph.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dims {
    d: usize,
    k: usize,
    n: usize,
    m: usize,
    gamma: f64,
}

/// Prepares `objective` or `jacobian` on the eval's input object.
///
/// # Errors
/// An unknown function, a missing field, `d < 2`, or array sizes that disagree with `d`, `k`,
/// `n`.
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let grad = match function {
        "objective" => false,
        "jacobian" => true,
        f => return Err(unknown_function("gmm", f, &["objective", "jacobian"])),
    };
    let dims = Dims {
        d: input.count("d")?,
        k: input.count("k")?,
        n: input.count("n")?,
        m: input.count("m")?,
        gamma: input.num("gamma")?,
    };
    let Dims { d, k, n, m, gamma } = dims;
    if d < 2 || k == 0 || n == 0 {
        return Err(GbError::Input(format!(
            "gmm: need d >= 2, k >= 1, n >= 1; got d = {d}, k = {k}, n = {n}"
        )));
    }
    let ld = d * (d - 1) / 2;
    let alpha = input.list_field("alpha")?;
    check_len("alpha", alpha.len(), k)?;
    let mut inputs = vec![alpha];
    for (name, rows, cols) in [("mu", k, d), ("q", k, d), ("l", k, ld), ("x", n, d)] {
        let (r, c, flat) = input.matrix_field(name)?;
        if r != rows || c != cols {
            return Err(GbError::Input(format!(
                "gmm: `{name}` is {r} x {c}, expected {rows} x {cols} (d = {d}, k = {k}, n = {n})"
            )));
        }
        inputs.push(flat);
    }
    Ok(Task {
        key: format!("gmm/{function}/d={d},k={k},n={n},m={m},gamma={gamma:e}"),
        inputs,
        build: Box::new(move || build(dims, grad)),
        decode: infallible(move |outs| {
            if !grad {
                return scalar(&outs);
            }
            let mut it = outs.into_iter();
            let mut next = || it.next().unwrap_or_default();
            let (a, mu, q, l) = (next(), next(), next(), next());
            Value::Object(vec![
                ("alpha".into(), Value::list(a)),
                ("mu".into(), Value::rows(&mu, d)),
                ("q".into(), Value::rows(&q, d)),
                ("l".into(), Value::rows(&l, ld)),
            ])
        }),
    })
}

fn check_len(name: &str, got: usize, want: usize) -> Result<(), GbError> {
    if got == want {
        Ok(())
    } else {
        Err(GbError::Input(format!(
            "gmm: `{name}` has {got} numbers, expected {want}"
        )))
    }
}

fn build(dims: Dims, grad: bool) -> Result<crate::Graph, GbError> {
    let Dims { d, k, n, m, gamma } = dims;
    let b = GraphBuilder::new("gmm");
    let alpha = b.input("alpha", DType::F64, &[k]);
    let mu = b.input("mu", DType::F64, &[k, d]);
    let q = b.input("q", DType::F64, &[k, d]);
    let l = b.input("l", DType::F64, &[k, d * (d - 1) / 2]);
    let x = b.input("x", DType::F64, &[n, d]);

    let qmat = factor(q, l); // [k, d, d]
    let qx = qmat.matmul(x.mt()); // [k, d, n]
    let qmu = qmat.matmul(mu.reshape(&[k, d, 1])); // [k, d, 1]
    let diff = qx - qmu;
    let sq = (diff * diff).sum_axes(&[1]); // [k, n]
    let sum_q = q.sum_axes(&[1]); // [k]
    let beta = (alpha + sum_q).reshape(&[k, 1]) - sq * 0.5;
    let per_point = lse0(beta); // [n]
    let nf = n as f64;
    let data = per_point.sum()
        - lse0(alpha.reshape(&[k, 1])).sum() * nf
        - nf * d as f64 * 0.5 * (2.0 * std::f64::consts::PI).ln();
    let eq = q.exp();
    let frob = (eq * eq).sum() + (l * l).sum();
    let prior = frob * (-0.5 * gamma * gamma)
        + sum_q.sum() * m as f64
        + k as f64 * prior_const(d, m, gamma);
    let y = data + prior;
    if grad {
        let g = b.grad(y, &[alpha, mu, q, l])?;
        let outs = [
            ("d_alpha", g[0]),
            ("d_mu", g[1]),
            ("d_q", g[2]),
            ("d_l", g[3]),
        ];
        Ok(b.finish(&outs).map_err(crate::Error::from)?)
    } else {
        Ok(b.finish(&[("objective", y)]).map_err(crate::Error::from)?)
    }
}

/// `log Σ exp` over axis 0 (shifted by a maximum that carries no gradient, as its
/// contributions cancel).
fn lse0(v: Var<'_>) -> Var<'_> {
    let mx = v.max_axes(&[0], true).stop_gradient();
    let s = (v - mx).exp().sum_axes_keepdims(&[0]).log() + mx;
    let shape = v.shape()[1..].to_vec();
    s.reshape(&shape)
}

/// The `[k, d, d]` lower-triangular factors: `exp(q)` on the diagonal, `l` below it filled
/// column by column (`Q[r, c] = l[c(d−1) − c(c−1)/2 + r − c − 1]` for `r > c`). One gather
/// from `[0, exp(q), l]` by a constant table places every entry, so the graph does not grow
/// with `d`.
fn factor<'b>(q: Var<'b>, l: Var<'b>) -> Var<'b> {
    let b = q.builder();
    let (k, d) = (q.shape()[0], q.shape()[1]);
    let source = b.concat(&[b.zeros(DType::F64, &[k, 1]), q.exp(), l], 1);
    let table = Tensor::from_i32(vec![d * d], placement(d));
    source.gather(b.constant(table), 1).reshape(&[k, d, d])
}

/// For each entry `(r, c)` of a `d × d` factor, row-major, its column in `[0, exp(q), l]`:
/// 0 above the diagonal, `1 + r` on it, `1 + d + (its index in l)` below it.
fn placement(d: usize) -> Vec<i32> {
    let mut table = vec![0usize; d * d];
    let mut next = 1 + d;
    for c in 0..d {
        table[c * d + c] = 1 + c;
        for r in c + 1..d {
            table[r * d + c] = next;
            next += 1;
        }
    }
    table
        .into_iter()
        .map(|i| i32::try_from(i).expect("d(d+1)/2 fits in i32 for every gmm input"))
        .collect()
}

/// `k`-independent part of the log Wishart prior per component:
/// `nD(log γ − ½ log 2) − log Γ_D(n/2)` with `n = D + m + 1`.
fn prior_const(d: usize, m: usize, gamma: f64) -> f64 {
    let nw = (d + m + 1) as f64;
    nw * d as f64 * (gamma.ln() - 0.5 * 2f64.ln()) - log_multigamma(d + m + 1, d)
}

/// `log Γ_p(a/2)` for the integer `a = D + m + 1 ≥ p + 1`, so every `lgamma` argument
/// `(a + 1 − j)/2` is a positive multiple of ½ and `lgamma` is an exact sum of logs.
pub fn log_multigamma(a: usize, p: usize) -> f64 {
    let pf = p as f64;
    let mut out = 0.25 * pf * (pf - 1.0) * std::f64::consts::PI.ln();
    for j in 1..=p {
        out += ln_gamma_half(a + 1 - j);
    }
    out
}

/// `ln Γ(h/2)` for an integer `h ≥ 1`.
pub fn ln_gamma_half(h: usize) -> f64 {
    if h.is_multiple_of(2) {
        // Γ(h/2) = (h/2 − 1)!
        (1..h / 2).map(|i| (i as f64).ln()).sum()
    } else {
        // Γ(h/2) = √π · Π_{i < (h−1)/2} (i + ½)
        0.5 * std::f64::consts::PI.ln()
            + (0..(h - 1) / 2).map(|i| (i as f64 + 0.5).ln()).sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_half_matches_known_values() {
        // Γ(1/2) = √π, Γ(1) = 1, Γ(3/2) = √π/2, Γ(5) = 24, Γ(7/2) = 15√π/8.
        let sp = std::f64::consts::PI.sqrt();
        let cases = [
            (1, sp),
            (2, 1.0),
            (3, sp / 2.0),
            (10, 24.0),
            (7, 15.0 * sp / 8.0),
        ];
        for (h, g) in cases {
            assert!((ln_gamma_half(h) - g.ln()).abs() < 1e-14, "h = {h}");
        }
    }
}
