use gradlift::{DType, GraphBuilder, jit};

#[test]
fn smoke() {
    let b = GraphBuilder::new("seed");
    let x1 = b.input("x1", DType::F64, &[]);
    let x2 = b.input("x2", DType::F64, &[]);
    let y = x1 * x1 + x2;
    let d = b.grad(y, &[x1, x2]).unwrap();
    let outs = [y.id(), d[0].id(), d[1].id()];
    let g = b.into_graph(&outs).unwrap();
    let k = jit::compile(&g).unwrap();
    let out = k.run(&[3.0.into(), 4.0.into()]).unwrap();
    assert_eq!(out[0].scalar_value(), Some(13.0));
    assert_eq!(out[1].scalar_value(), Some(6.0));
    assert_eq!(out[2].scalar_value(), Some(1.0));
}
