//! Quick start: build y = x1² + x2, differentiate it, and evaluate it.
use gradlift::{DType, GraphBuilder, interp};

fn main() -> Result<(), gradlift::Error> {
    let b = GraphBuilder::new("seed");
    let x1 = b.input("x1", DType::F64, &[]);
    let x2 = b.input("x2", DType::F64, &[]);
    let y = x1 * x1 + x2;
    let g = b.grad(y, &[x1, x2])?;
    let graph = b.finish(&[("y", y), ("dx1", g[0]), ("dx2", g[1])])?;
    let out = interp::run(&graph, &[3.0.into(), 4.0.into()])?;
    assert_eq!(out[0].scalar_value(), Some(13.0));
    assert_eq!(out[1].scalar_value(), Some(6.0));
    assert_eq!(out[2].scalar_value(), Some(1.0));
    Ok(())
}
