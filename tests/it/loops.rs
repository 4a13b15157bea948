//! `scan`, `fori_loop` and `while_loop`: against the same computation unrolled, finite
//! differences, closed forms and plain Rust loops.

use gradlift::autodiff::Mode;
use gradlift::{DType, Graph, GraphBuilder, ScanArgs, Tensor, Var, interp};

pub(crate) const N: usize = 3;

/// One step of a small nonlinear recurrence: `c' = c + a·tanh(W c + x)`, `y = sum(c'²)`.
fn step<'s>(c: Var<'s>, x: Var<'s>, w: Var<'s>) -> (Var<'s>, Var<'s>) {
    let h = (w.matmul(c.reshape(&[N, 1])).reshape(&[N]) + x).tanh();
    let c2 = c + h * 0.7;
    (c2, (c2 * c2).sum())
}

pub(crate) struct Case {
    pub(crate) c0: Tensor,
    pub(crate) xs: Tensor,
    pub(crate) w: Tensor,
}

pub(crate) fn case(t: usize, seed: u64) -> Case {
    let mut r = gradlift::testutil::Rng(seed);
    let mut v = |n: usize| (0..n).map(|_| r.uniform(-1.0, 1.0)).collect::<Vec<f64>>();
    Case {
        c0: Tensor::from_f64(vec![N], v(N)),
        xs: Tensor::from_f64(vec![t, N], v(t * N)),
        w: Tensor::from_f64(vec![N, N], v(N * N)),
    }
}

/// The model's inputs (`c0`, `xs`, `w`) and its outputs: final carry and loss
/// `sum(c_T) + sum(ys)`, built as a scan (`looped`) or unrolled.
pub(crate) fn model<'b>(
    b: &'b GraphBuilder,
    t: usize,
    looped: bool,
) -> ([Var<'b>; 3], Var<'b>, Var<'b>) {
    model_with(b, t, looped.then_some(None))
}

/// [`model`]; `looped`: `None` unrolled, `Some(checkpoint)` a scan with that many snapshots.
pub(crate) fn model_with<'b>(
    b: &'b GraphBuilder,
    t: usize,
    looped: Option<Option<usize>>,
) -> ([Var<'b>; 3], Var<'b>, Var<'b>) {
    let c0 = b.input("c0", DType::F64, &[N]);
    let xs = b.input("xs", DType::F64, &[t, N]);
    let w = b.input("w", DType::F64, &[N, N]);
    let (c, ys) = if let Some(checkpoint) = looped {
        let args = ScanArgs {
            length: t,
            reverse: false,
            init: &[c0],
            xs: &[xs],
            consts: &[w],
            checkpoint,
        };
        let out = b.scan_with(args, |_, s| {
            let (c, y) = step(s.carry[0], s.x[0], s.consts[0]);
            (vec![c], vec![y])
        });
        (out.carry[0], out.ys[0])
    } else {
        let mut c = c0;
        let mut ys = Vec::new();
        for i in 0..t {
            let x = xs.slice(&[i, 0], &[i + 1, N]).reshape(&[N]);
            let (c2, y) = step(c, x, w);
            c = c2;
            ys.push(y.reshape(&[1]));
        }
        (c, b.concat(&ys, 0))
    };
    ([c0, xs, w], c, c.sum() + ys.sum())
}

fn run(g: &Graph, c: &Case) -> Vec<Tensor> {
    interp::run(g, &[c.c0.clone(), c.xs.clone(), c.w.clone()]).unwrap()
}

fn assert_bits(a: &[Tensor], b: &[Tensor], what: &str) {
    assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.shape(), y.shape(), "{what}: output {k}");
        let (xv, yv) = (x.to_f64_vec(), y.to_f64_vec());
        for (i, (p, q)) in xv.iter().zip(&yv).enumerate() {
            assert!(
                p.to_bits() == q.to_bits(),
                "{what}: output {k}[{i}]: {p} vs {q}"
            );
        }
    }
}

/// Value and gradient of the loss, looped or unrolled.
pub(crate) fn grad_graph(t: usize, looped: bool) -> Graph {
    let b = GraphBuilder::new("g");
    let (ins, c, loss) = model(&b, t, looped);
    let g = b.grad(loss, &ins).unwrap();
    b.finish(&[
        ("c", c),
        ("loss", loss),
        ("dc0", g[0]),
        ("dxs", g[1]),
        ("dw", g[2]),
    ])
    .unwrap()
}

#[test]
fn scan_values_and_gradients_equal_the_unrolled_graph_bitwise() {
    for t in [1, 2, 7] {
        let c = case(t, 10 + t as u64);
        let a = run(&grad_graph(t, true), &c);
        let b = run(&grad_graph(t, false), &c);
        assert_bits(&a, &b, &format!("t={t}"));
    }
}

#[test]
fn scan_gradient_matches_finite_differences() {
    let t = 5;
    let c = case(t, 3);
    let out = run(&grad_graph(t, true), &c);
    let b = GraphBuilder::new("f");
    let (_, _, loss) = model(&b, t, true);
    let f = b.finish(&[("loss", loss)]).unwrap();
    let eval = |c0: &Tensor, xs: &Tensor, w: &Tensor| {
        interp::run(&f, &[c0.clone(), xs.clone(), w.clone()]).unwrap()[0]
            .scalar_value()
            .unwrap()
    };
    let h = 1e-6;
    for (which, grad) in [(0, &out[2]), (1, &out[3]), (2, &out[4])] {
        let base = [c.c0.clone(), c.xs.clone(), c.w.clone()];
        for i in 0..base[which].numel() {
            let bump = |d: f64| {
                let mut a = base.clone();
                let mut v = a[which].to_f64_vec();
                v[i] += d;
                a[which] = Tensor::from_f64(a[which].shape().to_vec(), v);
                eval(&a[0], &a[1], &a[2])
            };
            let fd = (bump(h) - bump(-h)) / (2.0 * h);
            let g = grad.to_f64_vec()[i];
            assert!(
                (fd - g).abs() < 1e-6 * (1.0 + g.abs()),
                "input {which}[{i}]: {g} vs fd {fd}"
            );
        }
    }
}

/// `jvp` along all three inputs, looped or unrolled.
pub(crate) fn jvp_graph(t: usize, looped: bool) -> Graph {
    let b = GraphBuilder::new("j");
    let (ins, c, loss) = model(&b, t, looped);
    let dirs: Vec<Var<'_>> = ins
        .iter()
        .enumerate()
        .map(|(k, v)| b.input(&format!("d{k}"), DType::F64, &v.shape()))
        .collect();
    let t_out = b.jvp(&[c, loss], &ins, &dirs).unwrap();
    b.finish(&[("dc", t_out[0]), ("dloss", t_out[1])]).unwrap()
}

#[test]
fn scan_jvp_equals_unrolled_and_is_the_transpose_of_the_vjp() {
    let t = 6;
    let c = case(t, 5);
    let d = case(t, 6);
    let args = [
        c.c0.clone(),
        c.xs.clone(),
        c.w.clone(),
        d.c0.clone(),
        d.xs.clone(),
        d.w.clone(),
    ];
    let a = interp::run(&jvp_graph(t, true), &args).unwrap();
    let b = interp::run(&jvp_graph(t, false), &args).unwrap();
    assert_bits(&a, &b, "jvp");
    // ⟨∇loss, v⟩ = d loss along v.
    let g = run(&grad_graph(t, true), &c);
    let dot: f64 = (2..5)
        .map(|k| {
            let dv = [&d.c0, &d.xs, &d.w][k - 2].to_f64_vec();
            g[k].to_f64_vec()
                .iter()
                .zip(&dv)
                .map(|(p, q)| p * q)
                .sum::<f64>()
        })
        .sum();
    let jv = a[1].scalar_value().unwrap();
    assert!((dot - jv).abs() < 1e-12 * (1.0 + jv.abs()), "{dot} vs {jv}");
}

/// Hessian-vector products of the loss along inputs `v0..v2`, and the Jacobian of the final
/// carry with respect to `w` in both modes, looped or unrolled.
pub(crate) fn hvp_graph(t: usize, looped: bool) -> Graph {
    let b = GraphBuilder::new("h");
    let (ins, c, loss) = model(&b, t, looped);
    let dirs: Vec<Var<'_>> = (ins.iter().enumerate())
        .map(|(k, x)| b.input(&format!("v{k}"), DType::F64, &x.shape()))
        .collect();
    let hv = b.hvp(loss, &ins, &dirs).unwrap();
    let jr = b.jacobian(&[c], &[ins[2]], Mode::Reverse).unwrap();
    let jf = b.jacobian(&[c], &[ins[2]], Mode::Forward).unwrap();
    let outs = [
        ("h0", hv[0]),
        ("h1", hv[1]),
        ("h2", hv[2]),
        ("jr", jr[0][0]),
        ("jf", jf[0][0]),
    ];
    b.finish(&outs).unwrap()
}

#[test]
fn hessian_vector_products_and_jacobians_through_a_scan_equal_unrolled() {
    let t = 4;
    let c = case(t, 8);
    let v = case(t, 9);
    let build = |looped: bool| hvp_graph(t, looped);
    let args = [
        c.c0.clone(),
        c.xs.clone(),
        c.w.clone(),
        v.c0.clone(),
        v.xs.clone(),
        v.w.clone(),
    ];
    let a = interp::run(&build(true), &args).unwrap();
    let b = interp::run(&build(false), &args).unwrap();
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        for (p, q) in x.to_f64_vec().iter().zip(y.to_f64_vec()) {
            assert!(
                (p - q).abs() <= 1e-13 * (1.0 + q.abs()),
                "output {k}: {p} vs {q}"
            );
        }
    }
    // The two Jacobian modes agree with each other too.
    for (p, q) in a[3].to_f64_vec().iter().zip(a[4].to_f64_vec()) {
        assert!((p - q).abs() <= 1e-13 * (1.0 + q.abs()));
    }
}

#[test]
fn a_reverse_scan_reads_and_writes_step_t_in_reverse_order() {
    let b = GraphBuilder::new("suffix");
    let xs = b.input("xs", DType::F64, &[4]);
    let zero = b.scalar(DType::F64, 0.0);
    let args = ScanArgs {
        length: 4,
        reverse: true,
        init: &[zero],
        xs: &[xs],
        consts: &[],
        checkpoint: None,
    };
    let out = b.scan_with(args, |_, s| {
        let acc = s.carry[0] * 10.0 + s.x[0];
        (vec![acc], vec![acc])
    });
    let g = b
        .finish(&[("total", out.carry[0]), ("partial", out.ys[0])])
        .unwrap();
    let r = interp::run(&g, &[Tensor::from_f64(vec![4], vec![1.0, 2.0, 3.0, 4.0])]).unwrap();
    assert_eq!(r[0].scalar_value(), Some(4321.0));
    assert_eq!(r[1].to_f64_vec(), vec![4321.0, 432.0, 43.0, 4.0]);
}

#[test]
fn fori_loop_runs_zero_one_and_many_steps_like_a_rust_loop() {
    for (lo, hi) in [(3, 3), (0, 1), (-5, 2000)] {
        let b = GraphBuilder::new("f");
        let x = b.input("x", DType::F64, &[]);
        let out = b.fori_loop(lo, hi, &[x], &[], |_, i, s| {
            let fi = i.cast(DType::F64);
            vec![s.carry[0] * 0.999 + fi * 1e-3]
        });
        let dx = b.grad(out[0], &[x]).unwrap();
        let g = b.finish(&[("y", out[0]), ("dx", dx[0])]).unwrap();
        let r = interp::run(&g, &[1.5.into()]).unwrap();
        let (mut y, mut d) = (1.5f64, 1.0f64);
        for i in lo..hi {
            y = y * 0.999 + f64::from(i) * 1e-3;
            d *= 0.999;
        }
        assert_eq!(r[0].scalar_value(), Some(y), "{lo}..{hi}");
        assert_eq!(r[1].scalar_value(), Some(d), "{lo}..{hi}");
    }
}

#[test]
fn a_bounded_while_stops_at_its_condition_and_differentiates() {
    // Heron's method for sqrt(a) from x = a, until |x² - a| < 1e-12·a (at most 60 steps).
    let b = GraphBuilder::new("heron");
    let a = b.input("a", DType::F64, &[]);
    let out = b.while_loop(
        60,
        &[a],
        &[a],
        |_, s| {
            (s.carry[0] * s.carry[0] - s.consts[0])
                .abs()
                .gt(s.consts[0] * 1e-12)
        },
        |_, s| vec![(s.carry[0] + s.consts[0] / s.carry[0]) * 0.5],
    );
    let da = b.grad(out[0], &[a]).unwrap();
    let g = b.finish(&[("r", out[0]), ("da", da[0])]).unwrap();
    for av in [2.0f64, 10.0, 1e4] {
        let r = interp::run(&g, &[av.into()]).unwrap();
        let root = r[0].scalar_value().unwrap();
        assert!((root - av.sqrt()).abs() <= 1e-12 * av.sqrt(), "{root}");
        let d = r[1].scalar_value().unwrap();
        // d sqrt(a)/da = 1 / (2 sqrt a): converged iterations carry the derivative too.
        assert!((d - 0.5 / av.sqrt()).abs() < 1e-9, "{d}");
    }
}

#[test]
fn a_body_that_changes_a_carry_type_is_a_clear_error() {
    let b = GraphBuilder::new("bad");
    let x = b.input("x", DType::F64, &[2]);
    let out = b.scan(3, &[x], &[], &[], |_, s| (vec![s.carry[0].sum()], vec![]));
    let e = b.finish(&[("y", out.carry[0])]).unwrap_err().to_string();
    assert!(e.contains("carry 0 must stay f64[2]"), "{e}");
    assert!(e.contains("loops.rs"), "names the caller's line: {e}");
}

#[test]
fn stop_gradient_and_integer_carries_inside_a_body() {
    // c' = c·x with the x factor's gradient stopped; a counter carry rides along.
    let b = GraphBuilder::new("sg");
    let c0 = b.input("c0", DType::F64, &[]);
    let xs = b.input("xs", DType::F64, &[3]);
    let n0 = b.constant(Tensor::from_i32(vec![], vec![0]));
    let out = b.scan(3, &[c0, n0], &[xs], &[], |s, st| {
        let one = s.constant(Tensor::from_i32(vec![], vec![1]));
        let n = s.select(st.x[0].gt(st.x[0] * 0.0), st.carry[1], one);
        (vec![st.carry[0] * st.x[0].stop_gradient(), n], vec![])
    });
    let g = b.grad(out.carry[0], &[c0, xs]).unwrap();
    let graph = b
        .finish(&[("y", out.carry[0]), ("dc0", g[0]), ("dxs", g[1])])
        .unwrap();
    let r = interp::run(
        &graph,
        &[2.0.into(), Tensor::from_f64(vec![3], vec![2.0, 3.0, 4.0])],
    )
    .unwrap();
    assert_eq!(r[0].scalar_value(), Some(48.0));
    assert_eq!(r[1].scalar_value(), Some(24.0));
    assert_eq!(r[2].to_f64_vec(), vec![0.0, 0.0, 0.0]);
}

#[test]
fn checkpointed_scans_give_the_same_bits_for_every_snapshot_count() {
    for t in [7, 20] {
        let c = case(t, 40 + t as u64);
        let reference = run(&grad_graph(t, false), &c);
        for snaps in [1, 2, 3, 5, t, t + 4] {
            let b = GraphBuilder::new("g");
            let (ins, cf, loss) = model_with(&b, t, Some(Some(snaps)));
            let g = b.grad(loss, &ins).unwrap();
            let outs = [
                ("c", cf),
                ("loss", loss),
                ("dc0", g[0]),
                ("dxs", g[1]),
                ("dw", g[2]),
            ];
            let graph = b.finish(&outs).unwrap();
            assert_bits(
                &run(&graph, &c),
                &reference,
                &format!("t={t} snapshots={snaps}"),
            );
        }
    }
}

#[test]
fn second_derivatives_through_a_checkpointed_scan_equal_unrolled() {
    let t = 9;
    let c = case(t, 77);
    let v = case(t, 78);
    let build = |looped: Option<Option<usize>>| {
        let b = GraphBuilder::new("h");
        let (ins, _, loss) = model_with(&b, t, looped);
        let dirs: Vec<Var<'_>> = (ins.iter().enumerate())
            .map(|(k, x)| b.input(&format!("v{k}"), DType::F64, &x.shape()))
            .collect();
        // Reverse over reverse (grad of ⟨grad, v⟩) and forward over reverse (jvp of grad).
        let g = b.grad(loss, &ins).unwrap();
        let gv = (0..3)
            .map(|k| (g[k] * dirs[k]).sum())
            .reduce(|a, b| a + b)
            .unwrap();
        let rr = b.grad(gv, &ins).unwrap();
        let fr = b.jvp(&g, &ins, &dirs).unwrap();
        let outs = [
            ("rr0", rr[0]),
            ("rr2", rr[2]),
            ("fr0", fr[0]),
            ("fr2", fr[2]),
        ];
        b.finish(&outs).unwrap()
    };
    let args = [c.c0, c.xs, c.w, v.c0, v.xs, v.w];
    let a = interp::run(&build(Some(Some(2))), &args).unwrap();
    let b = interp::run(&build(None), &args).unwrap();
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        for (p, q) in x.to_f64_vec().iter().zip(y.to_f64_vec()) {
            assert!(
                (p - q).abs() <= 1e-12 * (1.0 + q.abs()),
                "output {k}: {p} vs {q}"
            );
        }
    }
}

#[test]
fn custom_rules_inside_a_body_are_used_by_both_modes() {
    use gradlift::ops::custom::CustomOp;
    // Identity forward; the VJP clips the cotangent to [-1, 1], the JVP doubles the tangent:
    // rules no primal derivative would give, so using them is visible.
    let clip = CustomOp::new("clip_grad", |_, x| x[0])
        .with_vjp(|_, _, ct| vec![Some(ct.max(ct.scalar_like(-1.0)).min(ct.scalar_like(1.0)))])
        .with_jvp(|_, _, t| t.get(0).map(|t| t * 2.0));
    let build = |looped: bool| {
        let b = GraphBuilder::new("c");
        let x = b.input("x", DType::F64, &[]);
        let y = if looped {
            let clip = clip.clone();
            b.scan(3, &[x], &[], &[], move |s, st| {
                (vec![s.custom(&clip, &[st.carry[0]]) * 3.0], vec![])
            })
            .carry[0]
        } else {
            (0..3).fold(x, |c, _| b.custom(&clip, &[c]) * 3.0)
        };
        let g = b.grad(y, &[x]).unwrap();
        let one = b.scalar(DType::F64, 1.0);
        let t = b.jvp(&[y], &[x], &[one]).unwrap();
        b.finish(&[("y", y), ("g", g[0]), ("t", t[0])]).unwrap()
    };
    let a = interp::run(&build(true), &[0.5.into()]).unwrap();
    let b = interp::run(&build(false), &[0.5.into()]).unwrap();
    assert_bits(&a, &b, "custom");
    // By hand: ȳ = 1 → clip(3·1)=1 → clip(3)=1 → clip(3)=1; tangent 1 → 6 → 36 → 216.
    assert_eq!(a[0].scalar_value(), Some(13.5));
    assert_eq!(a[1].scalar_value(), Some(1.0));
    assert_eq!(a[2].scalar_value(), Some(216.0));
}

#[test]
fn a_full_snapshot_backward_loop_shares_the_forward_loops_tape_bit_for_bit() {
    let t = 11;
    let c = case(t, 91);
    let mut g = grad_graph(t, true);
    gradlift::opt::optimize(&mut g, &gradlift::opt::OptConfig::default());
    let before = run(&g, &c);
    let stats = gradlift::opt::tapes::share_tapes(&mut g);
    assert_eq!(
        stats.tapes_shared, 1,
        "the gradient's backward loop reads the forward tape"
    );
    gradlift::ir::verify(&g).unwrap();
    let recomputing = (g.nodes().iter())
        .filter_map(|n| gradlift::ir::loops::scan_attrs(&n.attrs))
        .filter(|(lp, _)| lp.recompute.is_some())
        .count();
    assert_eq!(recomputing, 0, "no loop recomputes any more");
    assert_bits(&run(&g, &c), &before, "shared tape");
    assert_bits(&before, &run(&grad_graph(t, false), &c), "unrolled");
    // A checkpointed loop (fewer snapshots than steps) keeps recomputing: nothing shared.
    let b = GraphBuilder::new("g");
    let (ins, _, loss) = model_with(&b, t, Some(Some(3)));
    let d = b.grad(loss, &ins).unwrap();
    let mut g = b.finish(&[("loss", loss), ("dw", d[2])]).unwrap();
    assert_eq!(gradlift::opt::tapes::share_tapes(&mut g).tapes_shared, 0);
}

#[test]
fn a_collective_inside_a_loop_body_is_a_clear_error() {
    let b = GraphBuilder::new("dp");
    let x = b.input("x", DType::F64, &[2]);
    let out = b.scan(3, &[x], &[], &[], |s, st| {
        let summed = s.push(
            gradlift::Op::AllReduceSum,
            &[st.carry[0]],
            gradlift::Attrs::world(gradlift::ir::GroupParam::None),
        );
        (vec![summed], vec![])
    });
    let e = b.finish(&[("y", out.carry[0])]).unwrap_err().to_string();
    assert!(e.contains("cannot hold `all_reduce_sum`"), "{e}");
}

/// The body-output counts of the graph's loops, in node order, one per group.
fn body_outputs(g: &Graph) -> Vec<usize> {
    gradlift::ir::loops::loop_groups(g)
        .iter()
        .map(|gr| {
            let lp = gradlift::ir::loops::scan_attrs(&g.node(gr.first).attrs)
                .unwrap()
                .0;
            lp.body.outputs().len()
        })
        .collect()
}

/// Carries a, b, c and ys p, q, r; the final a, the stacked r and (`grad`) the gradient of
/// `sum(a) + sum(r)` are read. a reads b, c is read only by p and q, r reads a.
fn pruning_graph(grad: bool) -> Graph {
    let b = GraphBuilder::new("prune");
    let x = b.input("x", DType::F64, &[3]);
    let w = b.input("w", DType::F64, &[3]);
    let out = b.scan(5, &[x, x, x], &[], &[w], |_, s| {
        let [a, bb, c] = [s.carry[0], s.carry[1], s.carry[2]];
        let a2 = (a * s.consts[0] + bb).tanh();
        let b2 = bb * 0.9 + 0.1;
        let c2 = (c * c).sin();
        (
            vec![a2, b2, c2],
            vec![c2.sum(), (a * c).sum(), a2.sum() * 2.0],
        )
    });
    let mut outs = vec![("a", out.carry[0]), ("r", out.ys[2])];
    if grad {
        let loss = out.carry[0].sum() + out.ys[2].sum();
        let d = b.grad(loss, &[x, w]).unwrap();
        outs.extend([("dx", d[0]), ("dw", d[1])]);
    }
    b.finish(&outs).unwrap()
}

#[test]
fn unread_loop_outputs_are_pruned_from_the_body_without_changing_the_rest() {
    let args = [
        Tensor::from_f64(vec![3], vec![0.3, -0.2, 0.5]),
        Tensor::from_f64(vec![3], vec![0.7, 0.4, -0.9]),
    ];
    let cfg = gradlift::jit::JitConfig {
        exact_math: true,
        ..Default::default()
    };
    // Undifferentiated: c, p and q go (a, b, r stay); differentiated: the forward loop keeps
    // its carries for the backward loop (a, b, c, r), the backward loop is left alone.
    for (grad, kept) in [(false, vec![3]), (true, vec![4, 4])] {
        let g = pruning_graph(grad);
        let mut o = g.clone();
        let report = gradlift::opt::optimize(&mut o, &verified());
        assert_eq!(body_outputs(&o), kept, "{report}");
        let want = interp::run(&g, &args).unwrap();
        assert_bits(
            &interp::run(&o, &args).unwrap(),
            &want,
            "pruned, interpreted",
        );
        let k = gradlift::jit::compile_with(&o, &cfg).unwrap();
        assert_bits(&k.run(&args).unwrap(), &want, "pruned, compiled");
    }
    // A loop whose only read y reads no carry keeps one carry: a loop has an operand.
    let b = GraphBuilder::new("one");
    let x = b.input("x", DType::F64, &[]);
    let out = b.scan(3, &[x, x], &[], &[], |sb, s| {
        let one = sb.scalar(DType::F64, 1.0);
        (vec![s.carry[0] * 2.0, s.carry[1].sin()], vec![one])
    });
    let g = b.finish(&[("y", out.ys[0])]).unwrap();
    let mut o = g.clone();
    gradlift::opt::optimize(&mut o, &verified());
    assert_eq!(body_outputs(&o), vec![2], "one carry and the y");
    let args = [Tensor::scalar_f64(0.5)];
    let k = gradlift::jit::compile_with(&o, &cfg).unwrap();
    assert_bits(
        &k.run(&args).unwrap(),
        &interp::run(&g, &args).unwrap(),
        "one carry",
    );
    // A while loop keeps its condition even though no result holds it.
    let b = GraphBuilder::new("w");
    let x = b.input("x", DType::F64, &[]);
    let r = b.while_loop(
        50,
        &[x, x],
        &[],
        |sb, s| s.carry[0].gt(sb.scalar(DType::F64, 1.0)),
        |_, s| vec![s.carry[0] * 0.5, s.carry[1].sin()],
    );
    let g = b.finish(&[("y", r[0])]).unwrap();
    let mut o = g.clone();
    gradlift::opt::optimize(&mut o, &verified());
    assert_eq!(
        body_outputs(&o),
        vec![2],
        "the condition and the read carry"
    );
    let args = [Tensor::scalar_f64(37.0)];
    assert_bits(
        &interp::run(&o, &args).unwrap(),
        &interp::run(&g, &args).unwrap(),
        "while",
    );
}

/// The optimizer's default settings, verifying the graph after every pass.
fn verified() -> gradlift::opt::OptConfig {
    gradlift::opt::OptConfig {
        verify: true,
        ..Default::default()
    }
}
