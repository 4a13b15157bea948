//! Unit tests of the builder.

use super::*;

#[test]
fn shape_error_names_op_shapes_and_caller_line() {
    let b = GraphBuilder::new("t");
    let x = b.input("x", DType::F64, &[3]);
    let y = b.input("y", DType::F64, &[4]);
    let line = line!() + 1;
    let z = x + y;
    let w = z.exp(); // skipped: depends on a failed value
    assert_eq!(w.id(), POISON);
    let err = b.finish(&[("w", w)]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("add"), "{msg}");
    // Operands by name and type.
    assert!(msg.contains("%x: f64[3], %y: f64[4]"), "{msg}");
    assert!(msg.contains(&format!("builder/tests.rs:{line}")), "{msg}");
}

#[test]
fn values_of_two_builders_do_not_mix() {
    let b1 = GraphBuilder::new("one");
    let b2 = GraphBuilder::new("two");
    // Same node id (0) in both builders: without the check, `x * y` would silently be
    // `x * x`.
    let x = b1.input("x", DType::F64, &[]);
    let y = b2.input("y", DType::F64, &[]);
    let line = line!() + 1;
    let z = x * y;
    let err = b1.finish(&[("z", z)]).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err.error, BuildErrorKind::ForeignValue { .. }),
        "{msg}"
    );
    assert!(msg.contains(&format!("builder/tests.rs:{line}")), "{msg}");
    assert!(
        msg.contains("mul") && msg.contains("%y") && msg.contains("@two"),
        "{msg}"
    );

    // Every entry point that takes values checks them.
    let c1 = GraphBuilder::new("c1");
    let x1 = c1.input("x", DType::F64, &[]);
    let e = c1.grad(x1 * x1, &[y]).unwrap_err();
    assert!(e.to_string().contains("grad: %y belongs to another"), "{e}");
    let f1 = GraphBuilder::new("f1");
    let _ = f1.input("x", DType::F64, &[]);
    let e = f1.finish(&[("y", y)]).unwrap_err();
    assert!(e.to_string().contains("finish: %y"), "{e}");
    let n1 = GraphBuilder::new("n1");
    n1.name(y, "w");
    assert!(n1.check().is_err());
    assert_eq!(
        b2.graph().node(y.id()).name.as_deref(),
        Some("y"),
        "not renamed"
    );
    let j1 = GraphBuilder::new("j1");
    let x1 = j1.input("x", DType::F64, &[]);
    assert!(j1.jvp(&[x1], &[y], &[x1]).is_err());
}

#[test]
fn derivative_errors_name_the_callers_line_and_the_value() {
    let b = GraphBuilder::new("t");
    let x = b.input("x", DType::F64, &[]);
    let y = b.input("y", DType::F64, &[]);
    let built = line!() + 1;
    let c = x.lt(y);
    let line = line!() + 1;
    let err = b.grad(c, &[x]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("src/ir/builder/tests.rs:{line}:")),
        "{err}"
    );
    // The unnamed value is described by its statement and where it was built.
    assert!(err.contains("%2 = lt %x, %y"), "{err}");
    assert!(err.contains(&format!("builder/tests.rs:{built}:")), "{err}");
    assert!(err.contains("bool[]"), "{err}");
    let err = b.grad(x, &[c]).unwrap_err().to_string();
    assert!(err.contains("with respect to %2 (%2 = lt"), "{err}");
}

#[test]
fn a_bad_output_name_is_reported_at_the_callers_line() {
    let b = GraphBuilder::new("t");
    let x = b.input("x", DType::F64, &[]);
    let line = line!() + 2;
    let err = b
        .finish(&[("not a name", x.exp())])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("src/ir/builder/tests.rs:{line}:")),
        "{err}"
    );
}

#[test]
fn dtype_mixing_is_an_error() {
    let b = GraphBuilder::new("t");
    let x = b.input("x", DType::F64, &[]);
    let y = b.input("y", DType::F32, &[]);
    let _ = x * y;
    assert!(b.check().unwrap_err().to_string().contains("same dtype"));
}

#[test]
fn absurd_input_shape_is_an_error_not_an_allocation() {
    let b = GraphBuilder::new("t");
    let _ = b.input("x", DType::F32, &[1_000_000_000, 1_000_000_000]);
    assert!(b.check().is_err());
}

/// Names are looked up through the graph's name index: many named inputs and values build in
/// linear time (a scan per name would make 50,000 inputs take billions of comparisons), clashes
/// are still found, and lookups stay right after a pass rewrites the nodes.
#[test]
fn many_names_are_checked_through_the_index() {
    const N: usize = 50_000;
    let b = GraphBuilder::new("names");
    let xs: Vec<Var<'_>> = (0..N)
        .map(|i| b.input(&format!("x{i}"), DType::F64, &[]))
        .collect();
    let mut acc = xs[0];
    for (i, &x) in xs.iter().enumerate().skip(1) {
        acc = (acc + x).named(&format!("s{i}"));
    }
    assert!(b.check().is_ok());
    // A taken name is refused, by `name` and by `input`.
    let _ = b.input("x7", DType::F64, &[]);
    assert!(
        b.check()
            .unwrap_err()
            .to_string()
            .contains("duplicate value name %x7")
    );
    let b2 = GraphBuilder::new("clash");
    let a = b2.input("a", DType::F64, &[]);
    let _ = (a * a).named("a");
    assert!(b2.check().is_err());
    // Renaming frees the old name.
    let b3 = GraphBuilder::new("rename");
    let a = b3.input("a", DType::F64, &[]);
    let t = (a * a).named("t");
    b3.name(t, "u");
    let _ = (a + a).named("t");
    assert!(b3.check().is_ok(), "{:?}", b3.error());
    let mut g = b3.finish(&[("u", t)]).unwrap();
    // After a pass that compacts the nodes (the unused `t` goes), lookups are rebuilt.
    crate::opt::dce::eliminate_dead_nodes(&mut g);
    assert_eq!(g.node_named("t"), None);
    assert_eq!(g.input_named("a"), Some(NodeId(0)));
    let u = g.node_named("u").unwrap();
    assert_eq!(g.outputs(), &[u]);
    assert!(g.add_input("u", TensorType::scalar(DType::F64)).is_err());
    assert!(g.add_input("t", TensorType::scalar(DType::F64)).is_ok());
}
