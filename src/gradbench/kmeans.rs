//! `kmeans`: `cost(P, C) = Σᵢ minⱼ |Cⱼ − Pᵢ|²` and the Newton direction `dir = J·H⁻¹`.
//!
//! Squared distances for all pairs are one matmul (`|P|² − 2PCᵀ + |C|²`, `[n, k]`), the
//! minimum a reduction over the centroid axis. The Hessian of the cost in `C` is diagonal, so
//! its diagonal is the Hessian-vector product with the all-ones direction: the gradient `J`
//! by reverse mode, then `H·1` as a forward-mode tangent of that gradient graph. No Hessian
//! is formed.

use super::{GbError, Task, Value, infallible, scalar, unknown_function};
use crate::{DType, GraphBuilder};

/// Prepares `cost` or `dir` on `{points: number[][], centroids: number[][]}`.
///
/// # Errors
/// An unknown function, missing or ragged matrices, no points or centroids, or points and
/// centroids of different dimension.
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let dir = match function {
        "cost" => false,
        "dir" => true,
        f => return Err(unknown_function("kmeans", f, &["cost", "dir"])),
    };
    let (n, d, points) = input.matrix_field("points")?;
    let (k, dc, centroids) = input.matrix_field("centroids")?;
    if n == 0 || k == 0 || d == 0 || dc != d {
        return Err(GbError::Input(format!(
            "kmeans: need non-empty points and centroids of one dimension; got {n} points of \
             dimension {d} and {k} centroids of dimension {dc}"
        )));
    }
    Ok(Task {
        key: format!("kmeans/{function}/k={k},n={n},d={d}"),
        inputs: vec![points, centroids],
        build: Box::new(move || {
            let b = GraphBuilder::new("kmeans");
            let p = b.input("points", DType::F64, &[n, d]);
            let c = b.input("centroids", DType::F64, &[k, d]);
            let pp = (p * p).sum_axes_keepdims(&[1]); // [n, 1]
            let cc = (c * c).sum_axes(&[1]).reshape(&[1, k]); // [1, k]
            let dist = pp - p.matmul(c.mt()) * 2.0 + cc; // [n, k]
            let cost = dist.min_axes(&[1], false).sum();
            if !dir {
                return Ok(b.finish(&[("cost", cost)]).map_err(crate::Error::from)?);
            }
            let j = b.grad(cost, &[c])?[0];
            let ones = b.scalar(DType::F64, 1.0).broadcast_to(&[k, d]);
            let h = b.jvp(&[j], &[c], &[ones])?[0];
            Ok(b.finish(&[("dir", j / h)]).map_err(crate::Error::from)?)
        }),
        decode: infallible(move |outs| {
            if dir {
                Value::rows(outs.first().map_or(&[][..], |o| &o[..]), d)
            } else {
                scalar(&outs)
            }
        }),
    })
}
