//! `lse`: `primal(x) = log Σ exp(xᵢ)` (shifted by the maximum) and its gradient.

use super::{GbError, Task, Value, infallible, list, scalar, unknown_function};
use crate::{DType, GraphBuilder};

/// Prepares `primal` or `gradient` on `{x: number[]}`.
///
/// # Errors
/// An unknown function, or a missing or empty `x`.
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let grad = match function {
        "primal" => false,
        "gradient" => true,
        f => return Err(unknown_function("lse", f, &["primal", "gradient"])),
    };
    let x = input.list_field("x")?;
    let n = x.len();
    if n == 0 {
        return Err(GbError::Input("lse: `x` is empty".into()));
    }
    Ok(Task {
        key: format!("lse/{function}/n={n}"),
        inputs: vec![x],
        build: Box::new(move || {
            let b = GraphBuilder::new("lse");
            let x = b.input("x", DType::F64, &[n]);
            // The LogSumExp trick from primitives: the maximum is a constant shift, so its
            // gradient contributions cancel; stop_gradient drops them from the adjoint.
            let a = x.max_axes(&[0], false).stop_gradient();
            let y = (x - a).exp().sum().log() + a;
            let out = if grad { b.grad(y, &[x])?[0] } else { y };
            Ok(b.finish(&[("out", out)]).map_err(crate::Error::from)?)
        }),
        decode: infallible(move |outs| if grad { list(outs) } else { scalar(&outs) }),
    })
}
