//! Checkpoint regions (`GraphBuilder::checkpoint`): each policy recomputes exactly the values
//! it should (counted in the optimized graph, against hand counts), the gradients equal the
//! uncheckpointed ones bitwise (interpreter, and JIT in exact mode) and central differences,
//! the copies survive the optimizer and cut the JIT's workspace, nested derivatives (grad of
//! grad, Hessian-vector products) through a checkpoint are right (analytic), custom rules and
//! `stop_gradient` inside a region still apply, and random graphs of every op through a region
//! give the stored derivatives.

use gradlift::autodiff::checkpoint::CheckpointPolicy;
use gradlift::jit::{self, JitConfig};
use gradlift::{DType, Graph, GraphBuilder, Op, Tensor, Var, interp, opt};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = gradlift::testutil::Rng(seed);
    (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn count(g: &Graph, op: Op) -> usize {
    g.nodes().iter().filter(|n| n.op == op).count()
}

fn optimized(mut g: Graph) -> Graph {
    opt::optimize(&mut g, &opt::OptConfig::default());
    g
}

/// `loss = Σ sin(tanh(x·W)·W)²` with the two layers in one region (or none), and its
/// gradients with respect to `x` and `W`.
fn two_layers(policy: Option<CheckpointPolicy>) -> Graph {
    let b = GraphBuilder::new("two_layers");
    let x = b.input("x", DType::F64, &[4, 3]);
    let w = b.input("w", DType::F64, &[3, 3]);
    let body = |_: &GraphBuilder| {
        let h = x.matmul(w).tanh().checkpoint_name("h");
        h.matmul(w).sin()
    };
    let y = match policy {
        Some(p) => b.checkpoint_with(p, body),
        None => body(&b),
    };
    let loss = (y * y).sum();
    let g = b.grad(loss, &[x, w]).unwrap();
    b.finish(&[("loss", loss), ("dx", g[0]), ("dw", g[1])])
        .unwrap()
}

fn two_layer_inputs() -> Vec<Tensor> {
    vec![
        Tensor::from_f64(vec![4, 3], values(12, 1)),
        Tensor::from_f64(vec![3, 3], values(9, 2)),
    ]
}

fn assert_bits_eq(a: &[Tensor], b: &[Tensor], what: &str) {
    assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.bits_eq(y), "{what}: output {k} differs: {x:?} vs {y:?}");
    }
}

#[test]
fn each_policy_recomputes_what_it_should() {
    // (policy, tanh nodes, matmul nodes, barriers) in the optimized graph, counted by hand:
    // without a checkpoint: 2 forward matmuls, 4 backward ones (cotangents of x and W at
    // both layers... W's two contributions and x's one: ct·Wᵀ twice, xᵀ·ct, hᵀ·ct), 1 tanh.
    // SaveNothing: sin's rule reads c = h·W and tanh's reads h, so h and c are recomputed
    // from x and W (2 barriers): +1 tanh, +2 matmuls. SaveDots: the matmul results are
    // saved, h = tanh(barrier(a)) is recomputed (+1 tanh, 1 barrier). save_only_these_names
    // ["h"]: h is saved, c = barrier(h)·barrier(W) is recomputed (+1 matmul, 2 barriers).
    let plain = optimized(two_layers(None));
    let (tanh0, mm0) = (count(&plain, Op::Tanh), count(&plain, Op::Matmul));
    assert_eq!((tanh0, mm0, count(&plain, Op::Barrier)), (1, 6, 0));
    let cases = [
        (CheckpointPolicy::SaveNothing, 2, 8, 2),
        (CheckpointPolicy::SaveDots, 2, 6, 1),
        (CheckpointPolicy::save_only_these_names(&["h"]), 1, 7, 2),
    ];
    let want = interp::run(&two_layers(None), &two_layer_inputs()).unwrap();
    for (policy, tanh, mm, barriers) in cases {
        let raw = two_layers(Some(policy.clone()));
        let got = interp::run(&raw, &two_layer_inputs()).unwrap();
        assert_bits_eq(&got, &want, &format!("{policy:?} (interpreter)"));
        let g = optimized(raw);
        let counts = (
            count(&g, Op::Tanh),
            count(&g, Op::Matmul),
            count(&g, Op::Barrier),
        );
        assert_eq!(counts, (tanh, mm, barriers), "{policy:?}");
        let got = interp::run(&g, &two_layer_inputs()).unwrap();
        assert_bits_eq(&got, &want, &format!("{policy:?} (optimized)"));
        let exact = JitConfig {
            exact_math: true,
            ..JitConfig::default()
        };
        let k = jit::compile_with(&g, &exact).unwrap();
        let got = k.run(&two_layer_inputs()).unwrap();
        assert_bits_eq(&got, &want, &format!("{policy:?} (JIT, exact)"));
    }
}

#[test]
fn checkpointed_gradient_matches_central_differences() {
    let g = two_layers(Some(CheckpointPolicy::SaveNothing));
    let inputs = two_layer_inputs();
    let out = interp::run(&g, &inputs).unwrap();
    let loss = |inp: &[Tensor]| interp::run(&g, inp).unwrap()[0].scalar_value().unwrap();
    for (k, grad) in [(0, &out[1]), (1, &out[2])] {
        for e in 0..inputs[k].numel() {
            let h = 1e-6;
            let at = |d: f64| {
                let mut v = inputs[k].to_f64_vec();
                v[e] += d;
                let mut inp = inputs.clone();
                inp[k] = Tensor::from_f64(inputs[k].shape().to_vec(), v);
                loss(&inp)
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            let ad = grad.to_f64_vec()[e];
            assert!(
                (fd - ad).abs() < 1e-7 * (1.0 + ad.abs()),
                "input {k}[{e}]: {fd} vs {ad}"
            );
        }
    }
}

/// A 16-layer `tanh(h·Wᵢ)` chain, f32, checkpointed every `every` layers (0: never).
fn chain(every: usize) -> Graph {
    let b = GraphBuilder::new("chain");
    let x = b.input("x", DType::F32, &[32, 64]);
    let ws: Vec<Var> = (0..16)
        .map(|i| b.input(&format!("w{i}"), DType::F32, &[64, 64]))
        .collect();
    let mut h = x;
    for seg in ws.chunks(every.max(1)) {
        let layers = |_: &GraphBuilder| seg.iter().fold(h, |h, &w| h.matmul(w).tanh());
        h = if every == 0 {
            layers(&b)
        } else {
            b.checkpoint(layers)
        };
    }
    let loss = (h * h).sum();
    let mut wrt = vec![x];
    wrt.extend(&ws);
    let g = b.grad(loss, &wrt).unwrap();
    let mut outs = vec![("loss".to_string(), loss)];
    outs.extend(g.iter().enumerate().map(|(i, &d)| (format!("d{i}"), d)));
    let outs: Vec<(&str, Var)> = outs.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    optimized(b.finish(&outs).unwrap())
}

fn chain_inputs() -> Vec<Tensor> {
    let mut v = vec![Tensor::from_f32(
        vec![32, 64],
        values(32 * 64, 7).iter().map(|&x| x as f32).collect(),
    )];
    for i in 0..16 {
        let w = values(64 * 64, 100 + i)
            .iter()
            .map(|&x| (x * 0.25) as f32)
            .collect();
        v.push(Tensor::from_f32(vec![64, 64], w));
    }
    v
}

#[test]
fn recomputed_copies_survive_the_optimizer_and_shrink_the_workspace() {
    let exact = JitConfig {
        exact_math: true,
        ..JitConfig::default()
    };
    let plain = chain(0);
    let k0 = jit::compile_with(&plain, &exact).unwrap();
    let want = k0.run(&chain_inputs()).unwrap();
    assert_bits_eq(
        &want,
        &interp::run(&plain, &chain_inputs()).unwrap(),
        "plain JIT vs interpreter",
    );
    for every in [4, 2] {
        let g = chain(every);
        // Every tanh but the segments' last ones (the saved outputs) is recomputed, and the
        // copies read the segment's input through a barrier: CSE merged none of them.
        // (Inside a segment, layer i's copy reads W_i through a barrier too.)
        let recomputed = every - 1;
        assert_eq!(
            count(&g, Op::Barrier),
            16 / every * (1 + recomputed),
            "every {every}"
        );
        assert_eq!(count(&g, Op::Tanh), 16 + 16 - 16 / every, "every {every}");
        let k = jit::compile_with(&g, &exact).unwrap();
        assert_bits_eq(&k.run(&chain_inputs()).unwrap(), &want, "checkpointed JIT");
        assert!(
            k.workspace_bytes() < k0.workspace_bytes(),
            "every {every}: {} bytes, not less than {} without checkpoints",
            k.workspace_bytes(),
            k0.workspace_bytes()
        );
    }
}

/// `f(x) = Σ exp(sin(x)·x)` (checkpointed or not), its gradient, the gradient of `Σ ∂f/∂x · v`
/// (reverse over reverse) and `hvp` (forward over reverse) along `v`.
fn nested(checkpointed: bool) -> Graph {
    let b = GraphBuilder::new("nested");
    let x = b.input("x", DType::F64, &[5]);
    let v = b.input("v", DType::F64, &[5]);
    let body = |_: &GraphBuilder| (x.sin() * x).exp();
    let y = if checkpointed {
        b.checkpoint(body)
    } else {
        body(&b)
    };
    let f = y.sum();
    let g = b.grad(f, &[x]).unwrap()[0];
    let gg = b.grad((g * v).sum(), &[x]).unwrap()[0];
    let hv = b.hvp(f, &[x], &[v]).unwrap()[0];
    b.finish(&[("g", g), ("gg", gg), ("hv", hv)]).unwrap()
}

#[test]
fn nested_derivatives_through_a_checkpoint() {
    let xs = values(5, 11);
    let vs = values(5, 12);
    let inputs = [
        Tensor::from_f64(vec![5], xs.clone()),
        Tensor::from_f64(vec![5], vs.clone()),
    ];
    let want = interp::run(&nested(false), &inputs).unwrap();
    let got = interp::run(&nested(true), &inputs).unwrap();
    // The gradient and the forward-over-reverse product are the same operations on the same
    // values; reverse over reverse sums the second-order contributions in another order (the
    // copies get adjoints of their own), so it equals within rounding.
    assert!(got[0].bits_eq(&want[0]) && got[2].bits_eq(&want[2]));
    for (a, b) in got[1].to_f64_vec().iter().zip(want[1].to_f64_vec()) {
        assert!((a - b).abs() <= 1e-14 * (1.0 + b.abs()), "{a} vs {b}");
    }
    // Analytic: u = x·sin x, f' = e^u·u', f'' = e^u·(u'² + u''), u' = sin x + x cos x,
    // u'' = 2 cos x - x sin x; the Hessian is diagonal.
    for i in 0..5 {
        let (x, v) = (xs[i], vs[i]);
        let u = x * x.sin();
        let du = x.sin() + x * x.cos();
        let d2u = 2.0 * x.cos() - x * x.sin();
        let (g, h) = (u.exp() * du, u.exp() * (du * du + d2u));
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * (1.0 + b.abs());
        assert!(close(got[0].to_f64_vec()[i], g));
        assert!(close(got[1].to_f64_vec()[i], h * v));
        assert!(close(got[2].to_f64_vec()[i], h * v));
    }
}

/// Random graphs (every op, dtype and derivative order of the generator) with the whole forward
/// graph in one checkpoint region: the forward outputs, gradients, JVPs and forward-over-reverse
/// products equal the uncheckpointed ones bitwise; reverse over reverse, which sums the copies'
/// second-order contributions in another order, agrees to rounding.
#[test]
fn random_graphs_through_a_checkpoint_equal_the_stored_derivatives() {
    use crate::random::{GenConfig, ORDER_REVERSE_REVERSE, agree, generate, input_values};
    use gradlift::autodiff::checkpoint::CheckpointRegion;
    let (mut reverse_reverse, mut barriers) = (0, 0);
    for seed in 0..160u64 {
        let cfg = GenConfig {
            steps: 12,
            safe: true,
            smooth: false,
            order: (seed % 5) as u8,
            syntax: false,
            loops: true,
        };
        let case = generate(seed, &cfg);
        let Ok((plain, _)) = case.build() else {
            continue;
        };
        for policy in [CheckpointPolicy::SaveNothing, CheckpointPolicy::SaveDots] {
            let mut ck = case.clone();
            let g = &mut ck.forward;
            let region = CheckpointRegion {
                first: gradlift::NodeId(0),
                end: gradlift::NodeId(g.len() as u32),
                outputs: g.outputs().to_vec(),
                policy,
            };
            g.checkpoints_mut().regions.push(region);
            let (checked, _) = ck.build().expect("builds as the plain case did");
            barriers += count(&checked, Op::Barrier);
            let inputs = input_values(&plain, seed);
            let want = interp::run(&plain, &inputs).unwrap();
            let got = interp::run(&checked, &inputs).unwrap();
            let second = if cfg.order == ORDER_REVERSE_REVERSE {
                reverse_reverse += 1;
                // The outputs after the gradients and `s2` are second-order.
                let wrt = (plain.inputs().iter())
                    .filter(|&&i| plain.ty(i).dtype.is_float())
                    .count();
                case.forward.outputs().len() + wrt + 1
            } else {
                want.len()
            };
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                let ok = if k < second {
                    a.bits_eq(b)
                } else {
                    let rel = if a.dtype() == DType::F32 { 1e-5 } else { 1e-12 };
                    agree(a, b, rel)
                };
                assert!(ok, "seed {seed}, output {k}: {a:?} vs {b:?}");
            }
        }
    }
    assert!(reverse_reverse > 10);
    // Recomputation happened (copies read their outside values through barriers).
    assert!(barriers > 100, "{barriers}");
}

#[test]
fn custom_rules_and_stop_gradient_inside_a_checkpoint() {
    use gradlift::ops::custom::CustomOp;
    // A gradient clip on an intermediate: identity forward, cotangent clipped to [-1, 1].
    let clip = CustomOp::new("clip_grad", |_, x| x[0])
        .with_vjp(|_, _, ct| vec![Some(ct.max(ct.scalar_like(-1.0)).min(ct.scalar_like(1.0)))]);
    let build = |checkpointed: bool| {
        let b = GraphBuilder::new("g");
        let x = b.input("x", DType::F64, &[3]);
        let body = |_: &GraphBuilder| {
            let a = x.sin() * 4.0;
            let c = b.custom(&clip, &[a]);
            (c * c.exp() + a.stop_gradient() * x).sum()
        };
        let y = if checkpointed {
            b.checkpoint(body)
        } else {
            body(&b)
        };
        let g = b.grad(y, &[x]).unwrap()[0];
        b.finish(&[("y", y), ("g", g)]).unwrap()
    };
    let xs = [0.3, -1.2, 2.0];
    let inputs = [Tensor::from_f64(vec![3], xs.to_vec())];
    let want = interp::run(&build(false), &inputs).unwrap();
    let got = interp::run(&build(true), &inputs).unwrap();
    assert_bits_eq(&got, &want, "custom rule inside a checkpoint");
    // By hand: a = 4 sin x, c = a, ∂/∂c (c·eᶜ) = (1 + c)eᶜ clipped to [-1, 1], times
    // ∂a/∂x = 4 cos x; plus the stopped a as the coefficient of x.
    for (i, &x) in xs.iter().enumerate() {
        let a = 4.0 * x.sin();
        let want = ((1.0 + a) * a.exp()).clamp(-1.0, 1.0) * 4.0 * x.cos() + a;
        let got = got[1].to_f64_vec()[i];
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}
