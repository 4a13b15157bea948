//! The memory budget (`JitConfig::memory_budget_bytes`): for budgets from generous down to the
//! smallest feasible one the kernel's workspace fits and its outputs are bitwise those of the
//! kernel without a budget (exact mode, oracle: that kernel, itself checked against the
//! interpreter, equal up to NaN payloads); below the minimum the error names it, and the
//! minimum it names does compile.

use crate::random::{input_values, random_graph_loops};
use gradlift::jit::{self, JitConfig, JitError, Kernel};
use gradlift::{DType, Graph, GraphBuilder, Tensor, Var, interp, opt};

fn exact() -> JitConfig {
    JitConfig {
        exact_math: true,
        ..JitConfig::default()
    }
}

fn budgeted(g: &Graph, bytes: u64) -> Result<Kernel, JitError> {
    jit::compile_with(g, &exact().with_memory_budget(bytes))
}

fn optimized(mut g: Graph) -> Graph {
    opt::optimize(&mut g, &opt::OptConfig::default());
    g
}

/// An MLP training step's gradients: `layers` tanh layers of width `width` with biases,
/// softmax cross-entropy over 4 classes.
fn mlp(layers: usize, width: usize, batch: usize) -> Graph {
    let b = GraphBuilder::new("mlp");
    let x = b.input("x", DType::F32, &[batch, width]);
    let labels = b.input("labels", DType::F32, &[batch, 4]);
    let mut params = Vec::new();
    let mut h = x;
    for i in 0..layers {
        let w = b.input(&format!("w{i}"), DType::F32, &[width, width]);
        let bias = b.input(&format!("b{i}"), DType::F32, &[width]);
        h = (h.matmul(w) + bias).tanh();
        params.extend([w, bias]);
    }
    let wo = b.input("wo", DType::F32, &[width, 4]);
    params.push(wo);
    let loss = h.matmul(wo).cross_entropy(labels);
    let g = b.grad(loss, &params).unwrap();
    let names: Vec<String> = (0..g.len()).map(|i| format!("d{i}")).collect();
    let mut outs: Vec<(&str, Var)> = vec![("loss", loss)];
    outs.extend(names.iter().map(String::as_str).zip(g));
    optimized(b.finish(&outs).unwrap())
}

/// Deterministic inputs in [-1, 1) (one-hot-ish labels do not matter for the bits).
fn inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = gradlift::testutil::Rng(seed);
    g.inputs()
        .iter()
        .map(|&i| Tensor::from_fn(g.ty(i), |_| rng.uniform(-1.0, 1.0)))
        .collect()
}

/// Checks the budget contract on `g`; returns (workspace without a budget, minimum).
fn check_budgets(g: &Graph, inputs: &[Tensor], what: &str) -> (u64, u64) {
    let k0 = jit::compile_with(g, &exact()).unwrap();
    let want = k0.run(inputs).unwrap();
    let oracle = interp::run(g, inputs).unwrap();
    for (a, b) in want.iter().zip(&oracle) {
        // Equal up to NaN payloads and the sign of zero (what exact mode promises).
        assert!(
            crate::random::agree(a, b, 0.0),
            "{what}: the unbudgeted JIT differs from the interpreter: {a:?} vs {b:?}"
        );
    }
    let full = k0.workspace_bytes() as u64;
    let minimum = match budgeted(g, 0) {
        Err(JitError::OverBudget { budget: 0, minimum }) => minimum,
        Ok(k) => {
            assert_eq!(k.workspace_bytes(), 0, "{what}");
            0
        }
        Err(e) => panic!("{what}: {e}"),
    };
    assert!(minimum <= full, "{what}: minimum {minimum} > full {full}");
    let mut budgets = vec![2 * full, full, minimum + (full - minimum) / 2, minimum];
    budgets.dedup();
    for budget in budgets {
        let k = budgeted(g, budget).unwrap_or_else(|e| panic!("{what}, budget {budget}: {e}"));
        assert!(
            k.workspace_bytes() as u64 <= budget,
            "{what}: over {budget}"
        );
        if budget >= full {
            assert_eq!(
                k.stats().nodes_recomputed,
                0,
                "{what}: fits without recomputing"
            );
        }
        let got = k.run(inputs).unwrap();
        for (j, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(a.bits_eq(b), "{what}, budget {budget}: output {j} differs");
        }
    }
    if minimum > 0 {
        match budgeted(g, minimum - 1) {
            Err(JitError::OverBudget { minimum: m, .. }) => assert_eq!(m, minimum, "{what}"),
            other => panic!("{what}: below the minimum: {:?}", other.map(|_| ())),
        }
    }
    (full, minimum)
}

#[test]
fn mlp_budgets_keep_the_bits_and_fit() {
    let g = mlp(16, 32, 16);
    let (full, minimum) = check_budgets(&g, &inputs(&g, 3), "mlp");
    // 16 layers of 2 KiB activations: the unbudgeted kernel keeps two values per layer
    // (`h` and `1 - h²`, computed in `h`'s fused loop) until the backward pass; segments of
    // about √16 layers keep about 4 boundary values and one segment's.
    assert!(
        minimum * 3 < full,
        "remat should cut the workspace at least 3×: {minimum} of {full}"
    );
}

#[test]
fn random_graph_budgets_keep_the_bits_and_fit() {
    for seed in 1..=24u64 {
        // With loops: a budget that the shared-tape kernel meets keeps it (`opt/tapes`); a
        // smaller one recomputes carries.
        let g = optimized(random_graph_loops(seed, 30, true, true));
        check_budgets(&g, &input_values(&g, seed), &format!("random graph {seed}"));
    }
}

#[test]
fn budget_without_a_backward_part_names_the_workspace() {
    let b = GraphBuilder::new("fwd");
    let x = b.input("x", DType::F32, &[64, 64]);
    let y = x.matmul(x).tanh().matmul(x);
    let g = b.finish(&[("y", y)]).unwrap();
    let full = jit::compile_with(&g, &exact()).unwrap().workspace_bytes() as u64;
    assert!(full > 0);
    let e = budgeted(&g, full - 1).expect_err("nothing to recompute");
    assert!(matches!(e, JitError::OverBudget { minimum, .. } if minimum == full));
    assert!(
        e.to_string()
            .contains(&format!("smallest feasible budget is {full} bytes"))
    );
}
