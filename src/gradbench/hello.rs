//! `hello`: `square(x) = x²` and `double(x) = d(x²)/dx`, on a bare number (no runs fields).

use super::{GbError, Task, Value, infallible, scalar, unknown_function};
use crate::{DType, GraphBuilder};

/// Prepares `square` or `double` on the number `input`.
///
/// # Errors
/// An unknown function, or an input that is not a number.
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let grad = match function {
        "square" => false,
        "double" => true,
        f => return Err(unknown_function("hello", f, &["square", "double"])),
    };
    let &Value::Num(x) = input else {
        return Err(GbError::Input("hello: the input must be a number".into()));
    };
    Ok(Task {
        key: format!("hello/{function}"),
        inputs: vec![vec![x]],
        build: Box::new(move || {
            let b = GraphBuilder::new("hello");
            let x = b.input("x", DType::F64, &[]);
            let y = x * x;
            let out = if grad { b.grad(y, &[x])?[0] } else { y };
            Ok(b.finish(&[("out", out)]).map_err(crate::Error::from)?)
        }),
        decode: infallible(|outs| scalar(&outs)),
    })
}
