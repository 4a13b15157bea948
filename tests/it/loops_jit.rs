//! `scan` in the JIT: every loop graph compiled in exact mode equals the interpreter bitwise
//! (values, gradients, JVPs, HVPs, trip counts 0, 1 and 10⁵, f32/f64/i32 carries, reverse and
//! nested loops, threads, donated buffers), and closed forms where there is one.

use crate::fuzz_check::same_bits;
use crate::loops::{Case, N, case, grad_graph, hvp_graph, jvp_graph, model, model_with};
use gradlift::jit::{self, BufMut, JitConfig};
use gradlift::{DType, Graph, GraphBuilder, ScanArgs, Tensor, Var, interp};
use std::num::NonZeroUsize;

fn exact() -> JitConfig {
    JitConfig {
        exact_math: true,
        ..JitConfig::default()
    }
}

/// Runs `g` on `args` compiled with `cfg` and interpreted; asserts equal bits and returns the
/// results.
fn agree_with(g: &Graph, args: &[Tensor], cfg: &JitConfig) -> Vec<Tensor> {
    let k = jit::compile_with(g, cfg).unwrap();
    let got = k.run(args).unwrap();
    let want = interp::run(g, args).unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(
            same_bits(a, b),
            "{}: output {i}: jit {a:?} vs interpreter {b:?}",
            g.name
        );
    }
    got
}

fn agree(g: &Graph, args: &[Tensor]) -> Vec<Tensor> {
    agree_with(g, args, &exact())
}

fn case_args(c: &Case) -> Vec<Tensor> {
    vec![c.c0.clone(), c.xs.clone(), c.w.clone()]
}

#[test]
fn jit_scan_values_and_gradients_equal_the_interpreter_bitwise() {
    for t in [1, 2, 7, 300] {
        let c = case(t, 20 + t as u64);
        agree(&grad_graph(t, true), &case_args(&c));
    }
    // The default (non-exact) mode stays within rounding of the interpreter.
    let c = case(7, 1);
    let g = grad_graph(7, true);
    let got = jit::compile(&g).unwrap().run(&case_args(&c)).unwrap();
    let want = interp::run(&g, &case_args(&c)).unwrap();
    for (a, b) in got.iter().zip(&want) {
        for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
            assert!((p - q).abs() <= 1e-12 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }
}

#[test]
fn jit_scan_jvps_hvps_and_jacobians_equal_the_interpreter_bitwise() {
    let t = 6;
    let (c, d) = (case(t, 5), case(t, 6));
    let mut args = case_args(&c);
    args.extend(case_args(&d));
    agree(&jvp_graph(t, true), &args);
    let g = hvp_graph(t, true);
    agree(&g, &args);
}

/// `fori_loop(lo, hi)` of `y = 0.999 y + i·1e-3` and its derivative, against a Rust loop.
#[test]
fn jit_fori_loops_of_zero_one_and_a_hundred_thousand_steps() {
    for (lo, hi) in [(0, 1), (-5, 100_000)] {
        let b = GraphBuilder::new("fori");
        let x = b.input("x", DType::F64, &[]);
        let out = b.fori_loop(lo, hi, &[x], &[], |_, i, s| {
            vec![s.carry[0] * 0.999 + i.cast(DType::F64) * 1e-3]
        });
        let dx = b.grad(out[0], &[x]).unwrap();
        let g = b.finish(&[("y", out[0]), ("dx", dx[0])]).unwrap();
        let r = agree(&g, &[1.5.into()]);
        let (mut y, mut d) = (1.5f64, 1.0f64);
        for i in lo..hi {
            y = y * 0.999 + f64::from(i) * 1e-3;
            d *= 0.999;
        }
        assert_eq!(r[0].scalar_value(), Some(y), "{lo}..{hi}");
        assert_eq!(r[1].scalar_value(), Some(d), "{lo}..{hi}");
    }
    // Length 0: the results are the initial carries (a scan of no steps, no xs, no ys).
    let b = GraphBuilder::new("empty");
    let x = b.input("x", DType::F32, &[3]);
    let k = b.input("k", DType::F32, &[3]);
    let out = b.scan(0, &[x, k], &[], &[k], |_, s| {
        (vec![s.carry[0] * s.consts[0], s.carry[1]], vec![])
    });
    let g = b
        .finish(&[("y", out.carry[0] + 1.0), ("k2", out.carry[1])])
        .unwrap();
    let xv = Tensor::from_f32(vec![3], vec![1.0, -2.0, 0.5]);
    let kv = Tensor::from_f32(vec![3], vec![3.0, 4.0, 5.0]);
    let r = agree(&g, &[xv, kv.clone()]);
    assert_eq!(r[0].to_f64_vec(), vec![2.0, -1.0, 1.5]);
    assert!(same_bits(&r[1], &kv));
}

#[test]
fn jit_f32_and_i32_carries_and_ys_with_stopped_gradients() {
    // c' = c·x + sin x (f32, x's gradient stopped), n' = 1 where x > 0 else n (i32), ys
    // (c', n', x > 1).
    let b = GraphBuilder::new("mixed");
    let c0 = b.input("c0", DType::F32, &[2]);
    let xs = b.input("xs", DType::F32, &[5, 2]);
    let n0 = b.constant(Tensor::from_i32(vec![2], vec![0, 7]));
    let out = b.scan(5, &[c0, n0], &[xs], &[], |s, st| {
        let x = st.x[0];
        let pos = x.gt(x * 0.0);
        let one = s.constant(Tensor::from_i32(vec![2], vec![1, 1]));
        let n = s.select(pos, one, st.carry[1]);
        let c = st.carry[0] * x.stop_gradient() + x.sin();
        (vec![c, n], vec![c, n, x.gt(x * 0.0 + 1.0)])
    });
    let g = b.grad(out.carry[0].sum(), &[c0, xs]).unwrap();
    let graph = b
        .finish(&[
            ("c", out.carry[0]),
            ("n", out.carry[1]),
            ("cs", out.ys[0]),
            ("ns", out.ys[1]),
            ("big", out.ys[2]),
            ("dc0", g[0]),
            ("dxs", g[1]),
        ])
        .unwrap();
    let mut rng = gradlift::testutil::Rng(4);
    let xv: Vec<f32> = (0..10).map(|_| rng.uniform(-2.0, 2.0) as f32).collect();
    let r = agree(
        &graph,
        &[
            Tensor::from_f32(vec![2], vec![0.5, -1.0]),
            Tensor::from_f32(vec![5, 2], xv.clone()),
        ],
    );
    // The flags: 1 once some x of the lane was positive; the gradient wrt c0 is the
    // product of the xs.
    let seen = |j: usize, n0: f64| {
        let any = xv.iter().skip(j).step_by(2).any(|&x| x > 0.0);
        if any { 1.0 } else { n0 }
    };
    assert_eq!(r[1].to_f64_vec(), vec![seen(0, 0.0), seen(1, 7.0)]);
    let prod = |j: usize| f64::from(xv.iter().skip(j).step_by(2).product::<f32>());
    for (j, g) in r[5].to_f64_vec().into_iter().enumerate() {
        assert!(
            (g - prod(j)).abs() <= 1e-6 * prod(j).abs(),
            "{g} vs {}",
            prod(j)
        );
    }
}

#[test]
fn jit_reverse_scan_matches_the_closed_form_and_its_gradient_the_interpreter() {
    // Also with a checkpointed VJP: the backward loop recomputes a reverse loop's carries.
    for checkpoint in [None, Some(2)] {
        let b = GraphBuilder::new("suffix");
        let xs = b.input("xs", DType::F64, &[4]);
        let zero = b.scalar(DType::F64, 0.0);
        let args = ScanArgs {
            length: 4,
            reverse: true,
            init: &[zero],
            xs: &[xs],
            consts: &[],
            checkpoint,
        };
        let out = b.scan_with(args, |_, s| {
            let acc = s.carry[0] * 10.0 + s.x[0];
            (vec![acc], vec![acc])
        });
        let d = b.grad((out.ys[0] * out.ys[0]).sum(), &[xs]).unwrap();
        let g = b
            .finish(&[("total", out.carry[0]), ("partial", out.ys[0]), ("d", d[0])])
            .unwrap();
        let r = agree(&g, &[Tensor::from_f64(vec![4], vec![1.0, 2.0, 3.0, 4.0])]);
        assert_eq!(r[0].scalar_value(), Some(4321.0));
        assert_eq!(r[1].to_f64_vec(), vec![4321.0, 432.0, 43.0, 4.0]);
    }
}

/// A scan whose body runs a scan: `c' = c + sum_j tanh(c·k_j)` over rows `k_j` of each x.
fn nested<'b>(b: &'b GraphBuilder, c0: Var<'b>, xs: Var<'b>) -> Var<'b> {
    let out = b.scan(3, &[c0], &[xs], &[], |sb, s| {
        let inner = sb.scan(4, &[s.carry[0]], &[s.x[0]], &[], |_, t| {
            (vec![t.carry[0] + (t.carry[0] * t.x[0]).tanh()], vec![])
        });
        (vec![inner.carry[0]], vec![inner.carry[0].sum()])
    });
    out.carry[0].sum() + out.ys[0].sum()
}

#[test]
fn jit_nested_scans_and_their_gradients_and_hvps_equal_the_interpreter_bitwise() {
    let b = GraphBuilder::new("nested");
    let c0 = b.input("c0", DType::F64, &[2]);
    let xs = b.input("xs", DType::F64, &[3, 4, 2]);
    let v = b.input("v", DType::F64, &[2]);
    let loss = nested(&b, c0, xs);
    let g = b.grad(loss, &[c0, xs]).unwrap();
    let hv = b.hvp(loss, &[c0], &[v]).unwrap();
    let graph = b
        .finish(&[("loss", loss), ("dc0", g[0]), ("dxs", g[1]), ("hv", hv[0])])
        .unwrap();
    let mut rng = gradlift::testutil::Rng(11);
    let mut vals = |n: usize| (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect::<Vec<f64>>();
    let args = [
        Tensor::from_f64(vec![2], vals(2)),
        Tensor::from_f64(vec![3, 4, 2], vals(24)),
        Tensor::from_f64(vec![2], vals(2)),
    ];
    let r = agree(&graph, &args);
    // The nested loop against plain Rust.
    let (c, x) = (args[0].to_f64_vec(), args[1].to_f64_vec());
    let mut cur = c.clone();
    let mut loss = 0.0;
    let mut ysum = 0.0;
    for i in 0..3 {
        for j in 0..4 {
            for e in 0..2 {
                cur[e] += (cur[e] * x[i * 8 + j * 2 + e]).tanh();
            }
        }
        ysum += cur[0] + cur[1];
    }
    loss += cur[0] + cur[1] + ysum;
    let got = r[0].scalar_value().unwrap();
    assert!((got - loss).abs() <= 1e-12 * loss.abs(), "{got} vs {loss}");
}

#[test]
fn jit_loop_bodies_run_threaded_chunks_with_the_same_bits_at_one_and_two_threads() {
    // A carry of 40000 f32: the body's loop is cut into chunks (a reduction across them too).
    let n = 40_000;
    let b = GraphBuilder::new("wide");
    let c0 = b.input("c0", DType::F32, &[n]);
    let k = b.input("k", DType::F32, &[n]);
    let out = b.scan(5, &[c0], &[], &[k], |_, s| {
        let c = (s.carry[0] * s.consts[0]).sin() + s.carry[0];
        (vec![c], vec![c.sum()])
    });
    let d = b.grad(out.ys[0].sum(), &[c0]).unwrap();
    let g = b
        .finish(&[("c", out.carry[0]), ("ys", out.ys[0]), ("d", d[0])])
        .unwrap();
    let mut rng = gradlift::testutil::Rng(2);
    let mut vals = || {
        (0..n)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect::<Vec<f32>>()
    };
    let args = [
        Tensor::from_f32(vec![n], vals()),
        Tensor::from_f32(vec![n], vals()),
    ];
    for threads in [1, 2] {
        let cfg = JitConfig {
            kernel_threads: NonZeroUsize::new(threads),
            parallel_min_elements: 1 << 15,
            ..exact()
        };
        let k = jit::compile_with(&g, &cfg).unwrap();
        assert!(k.workspace_bytes() >= 2 * n * 4, "two carry buffers");
        agree_with(&g, &args, &cfg);
    }
}

#[test]
fn jit_loops_with_donated_buffers_splat_constants_and_views_as_operands() {
    // w_next = scan over xs of w ← w - lr·(w·x) with w donated (it is the initial carry and a
    // const); the xs are a transposed input (a view the JIT copies) and `lr` a splat constant.
    let b = GraphBuilder::new("sgd");
    let w = b.input("w", DType::F64, &[3]);
    let xt = b.input("xt", DType::F64, &[3, 6]);
    let lr = b.constant(Tensor::from_f64(vec![3], vec![0.1; 3]));
    let xs = xt.transpose(&[1, 0]).slice(&[1, 0], &[5, 3]);
    let out = b.scan(4, &[w], &[xs], &[lr, w], |_, s| {
        let (c, x, lr, w0) = (s.carry[0], s.x[0], s.consts[0], s.consts[1]);
        let c2 = c - lr * (c * x) + (w0 - c) * 0.01;
        (vec![c2], vec![c2.sum()])
    });
    let loss = out.ys[0].sum();
    let g = b
        .finish(&[("w_next", out.carry[0]), ("loss", loss)])
        .unwrap();
    let mut rng = gradlift::testutil::Rng(8);
    let wv: Vec<f64> = (0..3).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let xv = Tensor::from_f64(
        vec![3, 6],
        (0..18).map(|_| rng.uniform(-1.0, 1.0)).collect(),
    );
    let want = interp::run(&g, &[Tensor::from_f64(vec![3], wv.clone()), xv.clone()]).unwrap();
    let cfg = exact().donating(&[("w", "w_next")]);
    let k = jit::compile_with(&g, &cfg).unwrap();
    let mut ws = k.workspace();
    let (mut wbuf, mut lossv) = (wv, 0.0f64);
    k.call(
        &[(&xv).into()],
        &mut [BufMut::from(&mut wbuf[..]), (&mut lossv).into()],
        &mut ws,
    )
    .unwrap();
    assert_eq!(
        wbuf.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        want[0]
            .to_f64_vec()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    );
    assert_eq!(lossv.to_bits(), want[1].scalar_value().unwrap().to_bits());
    assert_eq!(
        k.stats().donated_copied,
        1,
        "the loop reads w while writing it"
    );
}

#[test]
fn jit_loops_whose_results_are_partly_unused_and_checked_mode() {
    // Only the ys are outputs (the final carry is dropped), then only the carry.
    let build = |which: usize| {
        let b = GraphBuilder::new("part");
        let (_, carry, _) = model(&b, 5, true);
        let xs = b.input("extra", DType::F64, &[5, N]);
        let out = b.scan(5, &[carry], &[xs], &[], |_, s| {
            let c = s.carry[0] * s.x[0];
            (vec![c], vec![c.exp(), c.sum()])
        });
        let pick = [out.ys[0], out.ys[1], out.carry[0]][which];
        b.finish(&[("out", pick)]).unwrap()
    };
    let c = case(5, 30);
    let mut args = case_args(&c);
    args.push(case(5, 31).xs);
    for which in 0..3 {
        agree(&build(which), &args);
    }
    let cfg = JitConfig {
        check_finite: true,
        ..exact()
    };
    agree_with(&grad_graph(4, true), &case_args(&case(4, 2)), &cfg);
}

/// The gradient graph of the loss with a scan keeping `snaps` snapshots.
fn checkpointed_grad_graph(t: usize, snaps: usize) -> Graph {
    let b = GraphBuilder::new("ckpt");
    let (ins, cf, loss) = model_with(&b, t, Some(Some(snaps)));
    let g = b.grad(loss, &ins).unwrap();
    let outs = [
        ("c", cf),
        ("loss", loss),
        ("dc0", g[0]),
        ("dxs", g[1]),
        ("dw", g[2]),
    ];
    b.finish(&outs).unwrap()
}

#[test]
fn jit_checkpointed_gradients_equal_the_full_tape_bitwise_for_every_snapshot_count() {
    for t in [1, 7, 50] {
        let c = case(t, 60 + t as u64);
        let full = agree(&grad_graph(t, true), &case_args(&c));
        for snaps in [1, 2, 3, 5, t, t + 2] {
            let g = checkpointed_grad_graph(t, snaps);
            let got = agree(&g, &case_args(&c));
            for (k, (a, b)) in got.iter().zip(&full).enumerate() {
                assert!(same_bits(a, b), "t={t} snapshots={snaps}: output {k}");
            }
            // Threads and the default (fast-math) mode run the same schedule.
            let cfg = JitConfig {
                kernel_threads: NonZeroUsize::new(2),
                ..exact()
            };
            agree_with(&g, &case_args(&c), &cfg);
        }
    }
}

#[test]
fn a_checkpointed_loop_keeps_only_its_snapshots_in_the_workspace() {
    let t = 400;
    let ws = |snaps: usize| {
        let mut g = checkpointed_grad_graph(t, snaps);
        gradlift::opt::optimize(&mut g, &gradlift::opt::OptConfig::default());
        jit::compile_with(&g, &exact()).unwrap().workspace_bytes()
    };
    let (full, few) = (ws(t), ws(4));
    // A carry is 3 f64 = 24 bytes (64 with alignment): the full tape's 400 of them are gone.
    assert!(
        full >= few + 300 * 24,
        "full tape {full} B vs 4 snapshots {few} B"
    );
}

#[test]
fn a_memory_budget_lowers_a_loops_snapshot_count_to_fit_with_the_same_bits() {
    let t = 600;
    let c = case(t, 3);
    let mut g = grad_graph(t, true);
    gradlift::opt::optimize(&mut g, &gradlift::opt::OptConfig::default());
    let full = jit::compile_with(&g, &exact()).unwrap();
    let want = full.run(&case_args(&c)).unwrap();
    let mut last = u64::MAX;
    for frac in [2, 4, 16, 64] {
        let budget = full.workspace_bytes() as u64 / frac;
        let cfg = exact().with_memory_budget(budget);
        let k = match jit::compile_with(&g, &cfg) {
            Ok(k) => k,
            Err(jit::JitError::OverBudget { minimum, .. }) => {
                // The error names a budget that works.
                let k = jit::compile_with(&g, &exact().with_memory_budget(minimum)).unwrap();
                assert!(k.workspace_bytes() as u64 <= minimum);
                assert!(minimum > budget);
                k
            }
            Err(e) => panic!("{e}"),
        };
        assert!(k.workspace_bytes() as u64 <= budget.max(k.workspace_bytes() as u64));
        last = last.min(k.workspace_bytes() as u64);
        let got = k.run(&case_args(&c)).unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(same_bits(a, b), "budget 1/{frac}: output {i}");
        }
    }
    // The 600 stored carries (14,400 bytes) are gone; what is left is the rest of the graph.
    assert!(
        last * 3 < full.workspace_bytes() as u64,
        "{last} vs {}",
        full.workspace_bytes()
    );
}

#[test]
fn jit_loop_bodies_that_pass_values_through_or_return_constants() {
    // Carry 0 passes through unchanged (a body output that is a body input), y 0 is a
    // constant, y 1 a const operand, and the xs are a constant of the outer graph; a second
    // node holds the same loop result (one group, two homes).
    let b = GraphBuilder::new("through");
    let a = b.input("a", DType::F64, &[2]);
    let k = b.input("k", DType::F64, &[2]);
    let xs = b.constant(Tensor::from_f64(
        vec![3, 2],
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    ));
    let out = b.scan(3, &[a, k], &[xs], &[k], |s, st| {
        let c1 = st.carry[1] * st.x[0] + st.consts[0];
        let seven = s.constant(Tensor::from_f64(vec![2], vec![7.0, -7.0]));
        (vec![st.carry[0], c1], vec![seven, st.consts[0]])
    });
    let mut g = b
        .finish(&[
            ("a_out", out.carry[0]),
            ("c1", out.carry[1]),
            ("sevens", out.ys[0]),
            ("ks", out.ys[1]),
        ])
        .unwrap();
    let first = g.outputs()[1];
    let node = g.node(first).clone();
    let again = g.push(node.op, node.inputs, node.attrs).unwrap();
    let mut outs = g.outputs().to_vec();
    outs.push(again);
    g.set_outputs(outs);
    let av = Tensor::from_f64(vec![2], vec![0.25, -0.5]);
    let kv = Tensor::from_f64(vec![2], vec![2.0, 3.0]);
    let r = agree(&g, &[av.clone(), kv]);
    assert!(same_bits(&r[0], &av));
    // c1 = ((k·1 + k)·3 + k)·5 + k, per lane with x = (1, 3, 5) and (2, 4, 6).
    let lane = |k: f64, x: [f64; 3]| ((k * x[0] + k) * x[1] + k) * x[2] + k;
    assert_eq!(
        r[1].to_f64_vec(),
        vec![lane(2.0, [1.0, 3.0, 5.0]), lane(3.0, [2.0, 4.0, 6.0])]
    );
    assert_eq!(r[2].to_f64_vec(), [7.0, -7.0].repeat(3));
    assert!(same_bits(&r[4], &r[1]));
}
