//! `det`: the determinant of an `ℓ × ℓ` matrix by expansion by minors (`primal`) and its
//! gradient (`gradient`).
//!
//! Expansion by minors recomputes each minor many times (`O(ℓ!)` work). Here every minor is
//! computed once, bottom-up over column subsets: `V_r[S]`, the determinant of rows `r..ℓ` and
//! the columns in `S`, is `Σ_{c∈S} (−1)^{#(S below c)} A[r, c] V_{r+1}[S∖c]`, the same
//! division-free polynomial as the expansion (so exact in the same sense, with no pivoting and
//! no trouble with singular matrices), in `O(ℓ² 2^ℓ)` operations. `V_r` is one vector over
//! all `2^ℓ` subsets (bit `c` of the index is column `c`); viewed as `[2^(ℓ−1−c), 2, 2^c]`,
//! the subsets containing `c` and the same subsets without `c` are the two halves of the middle
//! axis, so `S ↦ S∖c` is a reshape and a slice, and the sign `(−1)^{popcount(low bits)}` is a
//! constant over the last axis. Entries for subsets of the wrong size stay exactly zero.

use super::{GbError, Task, Value, infallible, list, scalar, unknown_function};
use crate::{DType, GraphBuilder, Tensor, Var};

/// The largest edge: the vectors have `2^ℓ` entries and the graph about `8ℓ²` nodes.
pub const MAX_ELL: usize = 20;

/// Prepares `primal` or `gradient` on `{A: number[], ell: int}`.
///
/// # Errors
/// An unknown function, `ell = 0`, `ell >` [`MAX_ELL`], or `A` not of length `ell²`.
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let grad = match function {
        "primal" => false,
        "gradient" => true,
        f => return Err(unknown_function("det", f, &["primal", "gradient"])),
    };
    let a = input.list_field("A")?;
    let ell = input.count("ell")?;
    if ell == 0 || a.len() != ell * ell {
        return Err(GbError::Input(format!(
            "det: `A` must hold ell² = {} numbers for ell = {ell}, got {}",
            ell * ell,
            a.len()
        )));
    }
    if ell > MAX_ELL {
        return Err(GbError::TooLarge(format!(
            "det: ell = {ell} needs vectors of 2^{ell} minors; at most ell = {MAX_ELL} is supported"
        )));
    }
    Ok(Task {
        key: format!("det/{function}/ell={ell}"),
        inputs: vec![a],
        build: Box::new(move || {
            let b = GraphBuilder::new("det");
            let a = b.input("A", DType::F64, &[ell, ell]);
            let det = minors(a);
            let out = if grad { b.grad(det, &[a])?[0] } else { det };
            Ok(b.finish(&[("out", out)]).map_err(crate::Error::from)?)
        }),
        decode: infallible(move |outs| if grad { list(outs) } else { scalar(&outs) }),
    })
}

/// `(−1)^{popcount(i)}` for `i < 2^c`, shaped `[1, 1, 2^c]`.
fn signs(c: usize) -> Tensor {
    let v = (0..1usize << c)
        .map(|i| if i.count_ones() % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    Tensor::from_f64(vec![1, 1, 1 << c], v)
}

/// The determinant of the `[ℓ, ℓ]` matrix `a` (see the module docs).
fn minors(a: Var<'_>) -> Var<'_> {
    let b = a.builder();
    let ell = a.shape()[0];
    let full = 1usize << ell;
    // V_ℓ: the empty minor is 1.
    let mut e = vec![0.0; full];
    e[0] = 1.0;
    let mut v = b.constant(Tensor::from_f64(vec![full], e));
    let sgn: Vec<Var<'_>> = (0..ell).map(|c| b.constant(signs(c))).collect();
    for r in (0..ell).rev() {
        let mut acc: Option<Var<'_>> = None;
        for (c, &sg) in sgn.iter().enumerate() {
            let (hi, lo) = (full >> (c + 1), 1usize << c);
            let without = v.reshape(&[hi, 2, lo]).slice(&[0, 0, 0], &[hi, 1, lo]);
            let arc = a.slice(&[r, c], &[r + 1, c + 1]).reshape(&[1, 1, 1]);
            let term = without * (sg * arc);
            let zeros = b.zeros(DType::F64, &[hi, 1, lo]);
            let placed = b.concat(&[zeros, term], 1).reshape(&[full]);
            acc = Some(match acc {
                None => placed,
                Some(s) => s + placed,
            });
        }
        v = acc.unwrap_or(v);
    }
    v.slice(&[full - 1], &[full]).sum()
}
