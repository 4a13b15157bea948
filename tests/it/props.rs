//! Property tests on random graphs: JIT == interpreter, `parse(print(g)) == g`, and optimized
//! == unoptimized.

use crate::random::{agree, random_graph, random_inputs};
use gradlift::{interp, ir::text, jit, opt};
use proptest::prelude::*;

/// The JIT with `exact_math`, which must equal the interpreter bitwise (the default fast math
/// is checked node by node in `simd.rs`: errors of a few ULP can be amplified without bound
/// by ill-conditioned random graphs).
fn exact() -> jit::JitConfig {
    jit::JitConfig {
        exact_math: true,
        ..jit::JitConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn jit_agrees_with_the_interpreter(seed in any::<u64>(), steps in 1usize..25, grad in any::<bool>()) {
        let g = random_graph(seed, steps, grad);
        let ins = random_inputs(&g, seed ^ 1);
        let want = interp::run(&g, &ins).unwrap();
        let k = jit::compile_with(&g, &exact()).unwrap();
        let got = k.run(&ins).unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            prop_assert!(agree(a, b, 0.0), "output {i}: jit {:?} vs interp {:?}\n{}", a, b, text::print(&g));
        }
    }

    #[test]
    fn print_then_parse_is_the_identity(seed in any::<u64>(), steps in 1usize..25, grad in any::<bool>()) {
        let g = random_graph(seed, steps, grad);
        let printed = text::print(&g);
        let back = text::parse(&printed).unwrap();
        prop_assert!(back.same(&g), "{printed}");
        prop_assert_eq!(text::print(&back), printed);
    }

    #[test]
    fn optimizing_preserves_values(seed in any::<u64>(), steps in 1usize..25, grad in any::<bool>()) {
        let g = random_graph(seed, steps, grad);
        let ins = random_inputs(&g, seed ^ 2);
        let want = interp::run(&g, &ins).unwrap();
        let mut o = g.clone();
        let report = opt::optimize(&mut o, &opt::OptConfig { verify: true, ..Default::default() });
        // The rewriting passes never grow a graph (bucketing all-reduces, after them, adds its
        // flatten/concat/slice nodes).
        let before_bucket = report.passes.iter().rfind(|p| p.pass == "bucket").map_or(o.len(), |p| p.nodes_before);
        prop_assert!(before_bucket <= g.len());
        let got = interp::run(&o, &ins).unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            // Exact: the optimizer does not reassociate (x + 0 may only flip the sign of zero).
            prop_assert!(agree(a, b, 0.0), "output {i}: {:?} vs {:?}\n{}", a, b, text::print(&g));
        }
        // And the optimized graph compiles to the same values.
        let k = jit::compile_with(&o, &exact()).unwrap();
        let jit_out = k.run(&ins).unwrap();
        for (a, b) in jit_out.iter().zip(&want) {
            prop_assert!(agree(a, b, 0.0));
        }
    }
}

/// The generator is only useful if it reaches every op and builds graphs of some size.
#[test]
fn generator_covers_every_op() {
    let mut seen = std::collections::HashSet::new();
    let mut nodes = 0;
    for seed in 0..300 {
        let g = random_graph(seed, 24, seed % 2 == 0);
        nodes += g.len();
        seen.extend(g.nodes().iter().map(|n| n.op));
    }
    let missing: Vec<_> = gradlift::Op::ALL
        .iter()
        .filter(|op| !seen.contains(op))
        .collect();
    assert!(missing.is_empty(), "ops never generated: {missing:?}");
    assert!(
        nodes / 300 >= 15,
        "average graph has only {} nodes",
        nodes / 300
    );
}
