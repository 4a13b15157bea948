//! `det`: the determinant of an `ℓ × ℓ` matrix by expansion by minors (`primal`) and its
//! gradient (`gradient`).
//!
//! Expansion by minors recomputes each minor many times (`O(ℓ!)` work). Here every minor is
//! computed once, bottom-up over column subsets: `V_r[S]`, the determinant of rows `r..ℓ` and
//! the columns in `S` (`|S| = ℓ − r`), is `Σ_j (−1)^j A[r, c_j] V_{r+1}[S∖c_j]` over the
//! columns `c_0 < c_1 < …` of `S`: the same division-free polynomial as the expansion (so
//! exact in the same sense, with no pivoting and no trouble with singular matrices), in
//! `ℓ·2^(ℓ−1)` products. `V_r` is one vector over the `C(ℓ, ℓ−r)` subsets of its size, so a
//! row is five nodes: two gathers by constant index tables (the entries of `A`'s row and of
//! `V_{r+1}` each term needs), a product with the signs, and a sum over the terms. The graph
//! has `O(ℓ)` nodes, so it compiles in a few milliseconds at every supported size.

use super::{GbError, Task, Value, infallible, list, scalar, unknown_function};
use crate::{DType, GraphBuilder, Tensor, Var};

/// The largest edge: the recurrence's index tables hold `ℓ·2^(ℓ−1)` entries each.
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
            "det: ell = {ell} needs tables of ell·2^(ell−1) minors; at most ell = {MAX_ELL} is supported"
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

/// The subsets of `0..ℓ` with `k` elements as bit masks, in increasing order.
fn subsets(ell: usize, k: usize) -> Vec<usize> {
    (0..1usize << ell)
        .filter(|s| s.count_ones() as usize == k)
        .collect()
}

/// The index tables of one row `r` of the recurrence, over the subsets `sets` of size `k`:
/// for subset `i` and its `j`-th column `c_j`, the flat index `r·ℓ + c_j` of `A[r, c_j]` and
/// the position of `S∖c_j` in `smaller` (the subsets of size `k − 1`).
fn tables(ell: usize, r: usize, sets: &[usize], smaller: &[usize]) -> (Vec<i32>, Vec<i32>) {
    let mut pos = vec![0i32; 1 << ell];
    for (p, &s) in smaller.iter().enumerate() {
        pos[s] = i32::try_from(p).expect("at most C(20, 10) subsets");
    }
    let (mut entry, mut minor) = (Vec::new(), Vec::new());
    for &s in sets {
        for c in (0..ell).filter(|c| s >> c & 1 == 1) {
            entry.push(i32::try_from(r * ell + c).expect("ℓ ≤ 20"));
            minor.push(pos[s & !(1 << c)]);
        }
    }
    (entry, minor)
}

/// The determinant of the `[ℓ, ℓ]` matrix `a` (see the module docs).
fn minors(a: Var<'_>) -> Var<'_> {
    let b = a.builder();
    let ell = a.shape()[0];
    let flat = a.reshape(&[ell * ell]);
    // V_ℓ: the empty minor is 1.
    let mut v = b.constant(Tensor::from_f64(vec![1], vec![1.0]));
    let mut smaller = subsets(ell, 0);
    for r in (0..ell).rev() {
        let k = ell - r;
        let sets = subsets(ell, k);
        let (entry, minor) = tables(ell, r, &sets, &smaller);
        let shape = vec![sets.len(), k];
        let entry = b.constant(Tensor::from_i32(shape.clone(), entry));
        let minor = b.constant(Tensor::from_i32(shape, minor));
        let sign = (0..k)
            .map(|j| if j % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let sign = b.constant(Tensor::from_f64(vec![1, k], sign));
        let terms = (sign * flat.gather(entry, 0)) * v.gather(minor, 0);
        v = terms.sum_axes(&[1]);
        smaller = sets;
    }
    v.sum()
}
