//! Forward mode, mixed modes and nested derivatives on random graphs: the JIT agrees with the
//! interpreter, and Jacobians by forward and reverse mode agree with each other.

use crate::random::{Rng, agree, random_graph, random_inputs};
use gradlift::autodiff::{self, Mode};
use gradlift::{DType, Graph, NodeId, Tensor, interp, ir::text, jit, opt};
use proptest::prelude::*;

fn tolerance(g: &Graph) -> f64 {
    let f32 = g.nodes().iter().any(|n| n.ty.dtype == DType::F32);
    if f32 { 1e-5 } else { 1e-12 }
}

/// The graph's float outputs and float inputs.
fn float_outputs_and_inputs(g: &Graph) -> (Vec<NodeId>, Vec<NodeId>) {
    let is_float = |&i: &NodeId| g.ty(i).dtype.is_float();
    let outs = g.outputs().iter().copied().filter(is_float).collect();
    let ins = g.inputs().into_iter().filter(is_float).collect();
    (outs, ins)
}

/// A random constant tangent of `id`'s type (with a leading batch axis of `k` if given).
fn tangent_for(g: &mut Graph, id: NodeId, k: Option<usize>, rng: &mut Rng) -> NodeId {
    let mut ty = g.ty(id).clone();
    if let Some(k) = k {
        ty.shape.insert(0, k);
    }
    g.add_const(Tensor::from_fn(&ty, |_| rng.uniform(-1.0, 1.0)))
}

/// Appends `extra` to the outputs under fresh names.
fn add_outputs(g: &mut Graph, extra: &[NodeId]) {
    let mut named: Vec<(String, NodeId)> =
        g.outputs().iter().map(|&o| (g.value_name(o), o)).collect();
    named.extend(extra.iter().enumerate().map(|(k, &d)| (format!("d{k}"), d)));
    let refs: Vec<(&str, NodeId)> = named.iter().map(|(n, i)| (n.as_str(), *i)).collect();
    g.set_named_outputs(&refs).unwrap();
}

/// The JIT (on the graph as built and after the optimizer) agrees with the interpreter.
fn jit_agrees(g: &Graph, seed: u64) -> Result<(), TestCaseError> {
    let ins = random_inputs(g, seed);
    let want = interp::run(g, &ins).unwrap();
    let tol = tolerance(g);
    let mut o = g.clone();
    opt::optimize(&mut o, &opt::OptConfig::default());
    for graph in [g, &o] {
        let got = jit::compile(graph).unwrap().run(&ins).unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            prop_assert!(
                agree(a, b, tol),
                "output {i}: jit {:?} vs interp {:?}\n{}",
                a,
                b,
                text::print(g)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn forward_mode_jit_agrees_with_the_interpreter(seed in any::<u64>(), steps in 1usize..25) {
        let mut g = random_graph(seed, steps, false);
        let (outs, wrt) = float_outputs_and_inputs(&g);
        prop_assume!(!outs.is_empty() && !wrt.is_empty());
        let mut rng = Rng(seed ^ 3);
        let ts: Vec<NodeId> = wrt.iter().map(|&w| tangent_for(&mut g, w, None, &mut rng)).collect();
        let dys = autodiff::jvp(&mut g, &outs, &wrt, &ts).unwrap();
        add_outputs(&mut g, &dys);
        jit_agrees(&g, seed ^ 5)?;
    }

    #[test]
    fn batched_jacobians_jit_agree_with_the_interpreter(seed in any::<u64>(), steps in 1usize..25) {
        let mut g = random_graph(seed, steps, false);
        let (outs, wrt) = float_outputs_and_inputs(&g);
        prop_assume!(!outs.is_empty() && !wrt.is_empty());
        let mut blocks = Vec::new();
        for mode in [Mode::Forward, Mode::Reverse] {
            let j = autodiff::jacobian(&mut g, &outs, &wrt, mode).unwrap();
            blocks.extend(j.into_iter().flatten());
        }
        add_outputs(&mut g, &blocks);
        jit_agrees(&g, seed ^ 7)?;
    }

    #[test]
    fn mixed_and_nested_derivatives_jit_agree_with_the_interpreter(
        seed in any::<u64>(),
        steps in 1usize..20,
    ) {
        // random_graph(.., true) already ends in a reverse-mode gradient; on top of it:
        // forward over reverse (JVP of the gradient = HVP), reverse over forward (gradient of
        // a JVP), and reverse over reverse (gradient of the gradient's sum).
        let mut g = random_graph(seed, steps, true);
        let (outs, wrt) = float_outputs_and_inputs(&g);
        prop_assume!(!outs.is_empty() && !wrt.is_empty());
        let mut rng = Rng(seed ^ 11);
        let ts: Vec<NodeId> = wrt.iter().map(|&w| tangent_for(&mut g, w, None, &mut rng)).collect();
        let mut extra = autodiff::jvp(&mut g, &outs, &wrt, &ts).unwrap();
        let last = *extra.last().unwrap();
        let s = sum_all(&mut g, last);
        extra.extend(autodiff::grad(&mut g, s, &wrt).unwrap());
        let s2 = sum_all(&mut g, *extra.last().unwrap());
        extra.extend(autodiff::grad(&mut g, s2, &wrt).unwrap());
        add_outputs(&mut g, &extra);
        jit_agrees(&g, seed ^ 13)?;
    }
}

fn sum_all(g: &mut Graph, x: NodeId) -> NodeId {
    let axes = (0..g.ty(x).rank()).collect();
    g.push(
        gradlift::Op::ReduceSum,
        vec![x],
        gradlift::Attrs::Reduce {
            axes,
            keepdims: false,
        },
    )
    .unwrap()
}

/// Forward-mode and reverse-mode Jacobians of random f64 graphs agree (fixed seeds, so this is
/// deterministic; values are compared where both are finite, relative to the block's scale).
#[test]
fn forward_and_reverse_jacobians_agree_on_random_graphs() {
    let mut compared = 0;
    for seed in 0..300u64 {
        let mut g = random_graph(seed, 20, false);
        if g.nodes().iter().any(|n| n.ty.dtype == DType::F32) {
            continue;
        }
        let (outs, wrt) = float_outputs_and_inputs(&g);
        if outs.is_empty() || wrt.is_empty() {
            continue;
        }
        let jf = autodiff::jacobian(&mut g, &outs, &wrt, Mode::Forward).unwrap();
        let jr = autodiff::jacobian(&mut g, &outs, &wrt, Mode::Reverse).unwrap();
        let (jf, jr): (Vec<NodeId>, Vec<NodeId>) = (
            jf.into_iter().flatten().collect(),
            jr.into_iter().flatten().collect(),
        );
        let n = jf.len();
        g.set_outputs(jf.into_iter().chain(jr).collect());
        let out = interp::run(&g, &random_inputs(&g, seed)).unwrap();
        for (a, b) in out[..n].iter().zip(&out[n..]) {
            assert_eq!(a.shape(), b.shape(), "seed {seed}");
            let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
            let scale = a
                .iter()
                .chain(&b)
                .filter(|v| v.is_finite())
                .fold(1.0f64, |m, v| m.max(v.abs()));
            for (x, y) in a.iter().zip(&b) {
                if x.is_finite() && y.is_finite() {
                    assert!(
                        (x - y).abs() <= 1e-9 * scale,
                        "seed {seed}: forward {x} vs reverse {y}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 1000, "only {compared} entries compared");
}

/// The forward-mode kernel computes values and tangents in one call, and compiles once.
#[test]
fn values_and_tangents_in_one_kernel() {
    let b = gradlift::GraphBuilder::new("one");
    let x = b.input("x", DType::F64, &[3]);
    let v = b.input("v", DType::F64, &[3]);
    let y = (x * x).sin().sum();
    let t = b.jvp(&[y], &[x], &[v]).unwrap()[0];
    let g = b.finish(&[("y", y), ("t", t)]).unwrap();
    let k = jit::compile(&g).unwrap();
    let xs = [0.1, -0.4, 1.3];
    let vs = [1.0, 2.0, -0.5];
    let out = k
        .run(&[
            Tensor::from_f64(vec![3], xs.to_vec()),
            Tensor::from_f64(vec![3], vs.to_vec()),
        ])
        .unwrap();
    let want_y: f64 = xs.iter().map(|a| (a * a).sin()).sum();
    let want_t: f64 = xs
        .iter()
        .zip(vs)
        .map(|(a, d)| 2.0 * a * (a * a).cos() * d)
        .sum();
    assert!((out[0].scalar_value().unwrap() - want_y).abs() < 1e-15);
    assert!((out[1].scalar_value().unwrap() - want_t).abs() < 1e-15);
}

/// Hessian, Hessian-vector product, `grad(grad(f))` and a third derivative of Rosenbrock compile
/// into one kernel that agrees with the interpreter.
#[test]
fn higher_order_derivatives_compile_to_one_kernel() {
    let n = 7;
    let b = gradlift::GraphBuilder::new("rosenbrock");
    let x = b.input("x", DType::F64, &[n]);
    let v = b.input("v", DType::F64, &[n]);
    let head = x.slice(&[0], &[n - 1]);
    let tail = x.slice(&[1], &[n]);
    let y = (100.0 * (tail - head * head).powi(2) + (1.0 - head).powi(2)).sum();
    let h = b.hessian(y, &[x]).unwrap()[0][0];
    let hv = b.hvp(y, &[x], &[v]).unwrap()[0];
    let g = b.grad(y, &[x]).unwrap()[0];
    let gg = b.grad((g * g).sum(), &[x]).unwrap()[0];
    let d3 = b.jvp(&[h], &[x], &[v]).unwrap()[0]; // Σₖ ∂³y/∂xᵢ∂xⱼ∂xₖ·vₖ
    let graph = b
        .finish(&[("y", y), ("h", h), ("hv", hv), ("gg", gg), ("d3", d3)])
        .unwrap();
    let ins = random_inputs(&graph, 99);
    let want = interp::run(&graph, &ins).unwrap();
    let k = jit::compile(&graph).unwrap();
    let got = k.run(&ins).unwrap();
    for (i, (a, w)) in got.iter().zip(&want).enumerate() {
        assert!(agree(a, w, 1e-12), "output {i}: {a:?} vs {w:?}");
    }
    // d3 by hand: only ∂³/∂xᵢ³ = 2400xᵢ (i < n-1) and ∂³/∂xᵢ²∂xᵢ₊₁ = -400 are nonzero, so
    // d3[i][i] = 2400xᵢvᵢ - 400vᵢ₊₁, d3[i][i+1] = d3[i+1][i] = -400vᵢ.
    let (xs, vs) = (ins[0].to_f64_vec(), ins[1].to_f64_vec());
    let d3 = got[4].to_f64_vec();
    for i in 0..n {
        for j in 0..n {
            let mut w = 0.0;
            if i == j && i + 1 < n {
                w = 2400.0 * xs[i] * vs[i] - 400.0 * vs[i + 1];
            }
            if j == i + 1 {
                w = -400.0 * vs[i];
            }
            if i == j + 1 {
                w = -400.0 * vs[j];
            }
            assert!(
                (d3[i * n + j] - w).abs() < 1e-9,
                "d3[{i}][{j}] = {} vs {w}",
                d3[i * n + j]
            );
        }
    }
}
