//! The worked example y = x1² + x2: ∂y/∂x1 = 2·x1 and ∂y/∂x2 = 1 at several points, through the
//! builder and through the `.gir` file, on both backends. (The CLI is covered in `cli.rs`.)

use gradlift::{DType, Graph, GraphBuilder, Tensor, autodiff, interp, ir::text, jit, opt};

const POINTS: [(f64, f64); 5] = [
    (3.0, 4.0),
    (0.0, 0.0),
    (-1.5, 2.25),
    (1e3, -7.0),
    (0.1, 0.2),
];

fn check(g: &Graph) {
    let k = jit::compile(g).unwrap();
    for (x1, x2) in POINTS {
        let ins: [Tensor; 2] = [x1.into(), x2.into()];
        for out in [interp::run(g, &ins).unwrap(), k.run(&ins).unwrap()] {
            let v: Vec<f64> = out.iter().map(|t| t.scalar_value().unwrap()).collect();
            assert_eq!(v, vec![x1 * x1 + x2, 2.0 * x1, 1.0], "at ({x1}, {x2})");
        }
    }
}

#[test]
fn through_the_builder() {
    let b = GraphBuilder::new("seed");
    let x1 = b.input("x1", DType::F64, &[]);
    let x2 = b.input("x2", DType::F64, &[]);
    let y = x1 * x1 + x2;
    let d = b.grad(y, &[x1, x2]).unwrap();
    let mut g = b.finish(&[("y", y), ("dx1", d[0]), ("dx2", d[1])]).unwrap();
    check(&g);
    opt::optimize(&mut g, &opt::OptConfig::default());
    check(&g);
}

#[test]
fn through_the_gir_file() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ir/seed.gir")).unwrap();
    let mut g = text::parse(&src).unwrap();
    let (y, ins) = (g.outputs()[0], g.inputs());
    let d = autodiff::grad(&mut g, y, &ins).unwrap();
    g.set_named_outputs(&[("y", y), ("dx1", d[0]), ("dx2", d[1])])
        .unwrap();
    check(&g);
    // The adjoint graph is an ordinary graph: it prints and parses back.
    let back = text::parse(&text::print(&g)).unwrap();
    check(&back);
}
