//! Bounded while loops that exit early: against plain Rust loops, the same loop run for all
//! its `max_steps` with a `select` keeping the carries (the form the exit replaces), finite
//! differences, every snapshot count, and the JIT bitwise.

use crate::fuzz_check::same_bits;
use gradlift::jit::{self, JitConfig};
use gradlift::{DType, Graph, GraphBuilder, ScanStep, Tensor, Var, interp};

/// The loops' `max_steps`.
const M: usize = 8;

/// The body: `x' = x·x·w·0.5 + x·0.3` (elementwise, `f64[3]`) and a step counter `i' = i + 1`.
fn body<'s>(st: &ScanStep<'s>) -> Vec<Var<'s>> {
    let (x, w) = (st.carry[0], st.consts[0]);
    vec![x * x * w * 0.5 + x * 0.3, st.carry[1] + 1.0]
}

/// The condition: `i < k` (`k`, a float input, sets the trip count).
fn cond<'s>(st: &ScanStep<'s>) -> Var<'s> {
    st.carry[1].lt(st.consts[1])
}

/// The while loop on inputs `x0, w, k`, as an early-exiting `while_loop` (`exit`, with an
/// optional checkpoint) or as a scan of `M` steps whose body keeps the carries once the
/// condition is false (`select`). Returns the final `x`.
fn looped<'b>(
    b: &'b GraphBuilder,
    ins: [Var<'b>; 3],
    exit: bool,
    checkpoint: Option<usize>,
) -> Var<'b> {
    let [x0, w, k] = ins;
    let i0 = b.scalar(DType::F64, 0.0);
    if exit {
        let out = b.while_loop_with(
            M,
            checkpoint,
            &[x0, i0],
            &[w, k],
            |_, st| cond(st),
            |_, st| body(st),
        );
        return out[0];
    }
    let out = b.scan(M, &[x0, i0], &[], &[w, k], |s, st| {
        let go = cond(st);
        let next = body(st);
        let kept = (next.iter().zip(&st.carry))
            .map(|(&n, &c)| s.select(go, n, c))
            .collect();
        (kept, vec![])
    });
    out.carry[0]
}

fn inputs(b: &GraphBuilder) -> [Var<'_>; 3] {
    [
        b.input("x0", DType::F64, &[3]),
        b.input("w", DType::F64, &[3]),
        b.input("k", DType::F64, &[]),
    ]
}

/// Final `x`, the loss `sum(x²)`, its gradient with respect to `x0` and `w`, its JVP along
/// `dx0, dw` and its HVP along `dx0, dw`.
fn derivatives(exit: bool, checkpoint: Option<usize>) -> Graph {
    let b = GraphBuilder::new("while");
    let ins = inputs(&b);
    let x = looped(&b, ins, exit, checkpoint);
    let loss = (x * x).sum();
    let wrt = [ins[0], ins[1]];
    let g = b.grad(loss, &wrt).unwrap();
    let d = [
        b.input("dx0", DType::F64, &[3]),
        b.input("dw", DType::F64, &[3]),
    ];
    let jv = b.jvp(&[loss], &wrt, &d).unwrap();
    let hv = b.hvp(loss, &wrt, &d).unwrap();
    let outs = [
        ("x", x),
        ("loss", loss),
        ("gx0", g[0]),
        ("gw", g[1]),
        ("jv", jv[0]),
        ("hx0", hv[0]),
        ("hw", hv[1]),
    ];
    b.finish(&outs).unwrap()
}

fn v3(v: [f64; 3]) -> Tensor {
    Tensor::from_f64(vec![3], v.to_vec())
}

const X0: [f64; 3] = [0.9, -0.4, 0.6];
const W: [f64; 3] = [0.7, 1.3, -0.8];
const DX0: [f64; 3] = [0.3, -0.2, 0.5];
const DW: [f64; 3] = [-0.6, 0.1, 0.4];

fn args(x0: [f64; 3], w: [f64; 3], k: f64) -> Vec<Tensor> {
    vec![v3(x0), v3(w), Tensor::scalar_f64(k), v3(DX0), v3(DW)]
}

/// The loop as a plain Rust loop: the final `x`.
fn rust_loop(mut x: [f64; 3], w: [f64; 3], k: f64) -> [f64; 3] {
    let mut i = 0.0;
    for _ in 0..M {
        if i >= k {
            break;
        }
        for j in 0..3 {
            x[j] = x[j] * x[j] * w[j] * 0.5 + x[j] * 0.3;
        }
        i += 1.0;
    }
    x
}

fn loss_of(x0: [f64; 3], w: [f64; 3], k: f64) -> f64 {
    rust_loop(x0, w, k).iter().map(|v| v * v).sum()
}

fn assert_bits(a: &[Tensor], b: &[Tensor], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        assert!(same_bits(p, q), "{what}: output {i}: {p:?} vs {q:?}");
    }
}

fn exact() -> JitConfig {
    JitConfig {
        exact_math: true,
        ..JitConfig::default()
    }
}

/// Runs `g` interpreted and compiled (exact mode); asserts equal bits; returns the results.
fn run_both(g: &Graph, args: &[Tensor]) -> Vec<Tensor> {
    let want = interp::run(g, args).unwrap();
    let got = jit::compile_with(g, &exact()).unwrap().run(args).unwrap();
    assert_bits(&got, &want, &format!("{}: jit vs interpreter", g.name));
    want
}

/// Exit steps 0, 1, a few, exactly `M`, and a condition still true at `M` (the bound stops it).
const KS: [f64; 5] = [0.0, 1.0, 3.0, M as f64, 20.0];

#[test]
fn a_while_loop_exits_at_step_k_like_a_rust_loop() {
    let (exit, select) = (derivatives(true, None), derivatives(false, None));
    for k in KS {
        let a = args(X0, W, k);
        let r = run_both(&exit, &a);
        let want = rust_loop(X0, W, k);
        assert_eq!(r[0].to_f64_vec(), want.to_vec(), "k = {k}");
        // The select form: every value and derivative bitwise (no skipped step adds a signed
        // zero or a NaN here: see `a_skipped_step_adds_nothing_to_a_cotangent`).
        assert_bits(
            &r,
            &run_both(&select, &a),
            &format!("k = {k}: exit vs select"),
        );
    }
}

/// Central differences of the loss along `x0` and `w`.
fn fd_grad(k: f64) -> Vec<f64> {
    let h = 1e-6;
    let mut g = Vec::new();
    for which in 0..2 {
        for j in 0..3 {
            let (mut p, mut m) = ([X0, W], [X0, W]);
            p[which][j] += h;
            m[which][j] -= h;
            g.push((loss_of(p[0], p[1], k) - loss_of(m[0], m[1], k)) / (2.0 * h));
        }
    }
    g
}

#[test]
fn while_gradients_jvps_and_hvps_match_finite_differences() {
    let g = derivatives(true, None);
    for k in KS {
        let r = interp::run(&g, &args(X0, W, k)).unwrap();
        let ad: Vec<f64> = [r[2].to_f64_vec(), r[3].to_f64_vec()].concat();
        let fd = fd_grad(k);
        for (a, f) in ad.iter().zip(&fd) {
            assert!(
                (a - f).abs() <= 1e-7 * (1.0 + f.abs()),
                "k = {k}: {ad:?} vs {fd:?}"
            );
        }
        // JVP = ⟨∇loss, d⟩.
        let d: Vec<f64> = [DX0, DW].concat();
        let dot: f64 = ad.iter().zip(&d).map(|(p, q)| p * q).sum();
        let jv = r[4].scalar_value().unwrap();
        assert!((dot - jv).abs() <= 1e-12 * (1.0 + jv.abs()), "k = {k}");
        // HVP: central differences of the gradient along d.
        let h = 1e-5;
        let at = |s: f64| {
            let x0: Vec<f64> = X0.iter().zip(&DX0).map(|(a, b)| a + s * b).collect();
            let w: Vec<f64> = W.iter().zip(&DW).map(|(a, b)| a + s * b).collect();
            let r = interp::run(&g, &args(x0.try_into().unwrap(), w.try_into().unwrap(), k));
            let r = r.unwrap();
            [r[2].to_f64_vec(), r[3].to_f64_vec()].concat()
        };
        let (p, m) = (at(h), at(-h));
        let hv: Vec<f64> = [r[5].to_f64_vec(), r[6].to_f64_vec()].concat();
        for j in 0..6 {
            let f = (p[j] - m[j]) / (2.0 * h);
            assert!(
                (hv[j] - f).abs() <= 1e-6 * (1.0 + f.abs()),
                "k = {k}: {hv:?}"
            );
        }
    }
}

#[test]
fn checkpointed_while_loops_give_the_same_bits_for_every_snapshot_count() {
    let full = derivatives(true, None);
    for snaps in [1, 2, 3, 5] {
        let g = derivatives(true, Some(snaps));
        for k in KS {
            let a = args(X0, W, k);
            let want = interp::run(&full, &a).unwrap();
            assert_bits(
                &run_both(&g, &a),
                &want,
                &format!("{snaps} snapshots, k = {k}"),
            );
        }
    }
}

fn skip_cond<'s>(st: &ScanStep<'s>) -> Var<'s> {
    st.carry[0].gt(st.consts[0] + 0.5)
}

fn skip_body<'s>(st: &ScanStep<'s>) -> Vec<Var<'s>> {
    vec![(st.carry[0] - 1.0) + st.carry[0].sqrt() * 0.0]
}

#[test]
fn a_skipped_step_adds_nothing_to_a_cotangent() {
    // x' = (x - 1) + 0·sqrt(x) while x > 0.5, from x0 = 3: three steps, stopping at x = 0, where
    // sqrt has an infinite derivative. Run with a select, the skipped steps still
    // differentiate the body at x = 0 with a zero cotangent: 0·∞ = NaN. They did not run, and
    // with the exit they add nothing: d x_final / d x0 = 1.
    let build = |exit: bool| {
        let b = GraphBuilder::new("skip");
        let x0 = b.input("x0", DType::F64, &[]);
        let s = b.input("s", DType::F64, &[]);
        let zero = b.scalar(DType::F64, 0.0);
        let x = if exit {
            b.while_loop(
                6,
                &[x0],
                &[zero],
                |_, st| skip_cond(st),
                |_, st| skip_body(st),
            )[0]
        } else {
            let out = b.scan(6, &[x0], &[], &[zero], |sb, st| {
                (
                    vec![sb.select(skip_cond(st), skip_body(st)[0], st.carry[0])],
                    vec![],
                )
            });
            out.carry[0]
        };
        // The loss x·s: with s = -0.0 the cotangent entering the loop is a negative zero.
        let g = b.grad(x * s, &[x0]).unwrap();
        b.finish(&[("x", x), ("g", g[0])]).unwrap()
    };
    let (exit, select) = (build(true), build(false));
    let a = |s: f64| vec![Tensor::scalar_f64(3.0), Tensor::scalar_f64(s)];
    let r = run_both(&exit, &a(1.0));
    assert_eq!(r[0].scalar_value(), Some(0.0));
    assert_eq!(r[1].scalar_value(), Some(1.0));
    let r = run_both(&select, &a(1.0));
    assert!(
        r[1].scalar_value().unwrap().is_nan(),
        "the select form: 0·∞"
    );
    // The other difference: a zero cotangent keeps its sign through the steps that ran
    // (d(x·s)/dx0 = s·1 = -0), where the select form adds a +0 from the skipped steps.
    let r = run_both(&exit, &a(-0.0));
    assert_eq!(
        r[1].scalar_value().map(f64::to_bits),
        Some((-0.0f64).to_bits())
    );
}

/// A while body holding a scan of two steps of the polynomial.
fn two_steps<'s>(s: &'s GraphBuilder, st: &ScanStep<'s>) -> Vec<Var<'s>> {
    let inner = s.scan(2, &[st.carry[0]], &[], &[st.consts[0]], |_, t| {
        let (x, w) = (t.carry[0], t.consts[0]);
        (vec![x * x * w * 0.5 + x * 0.3], vec![])
    });
    vec![inner.carry[0], st.carry[1] + 1.0]
}

/// A while loop inside a scan body (a per-row trip count) and a scan inside a while body, as
/// early-exiting loops or select forms: `y = sum over rows r of while_{k_r}(x0 · r)` where the
/// while body runs an inner scan of two steps of the polynomial.
fn nested(exit: bool, checkpoint: Option<usize>) -> Graph {
    let b = GraphBuilder::new("nested");
    let x0 = b.input("x0", DType::F64, &[3]);
    let w = b.input("w", DType::F64, &[3]);
    let ks = b.input("ks", DType::F64, &[4]);
    let zero = b.scalar(DType::F64, 0.0);
    let out = b.scan(4, &[zero], &[ks], &[x0, w], |sb, st| {
        let (x0, w, k) = (st.consts[0], st.consts[1], st.x[0]);
        let i0 = sb.scalar(DType::F64, 0.0);
        let x = if exit {
            sb.while_loop_with(
                M,
                checkpoint,
                &[x0, i0],
                &[w, k],
                |_, st| cond(st),
                two_steps,
            )[0]
        } else {
            sb.scan(M, &[x0, i0], &[], &[w, k], |s, st| {
                let go = cond(st);
                let next = two_steps(s, st);
                let kept = (next.iter().zip(&st.carry))
                    .map(|(&n, &c)| s.select(go, n, c))
                    .collect();
                (kept, vec![])
            })
            .carry[0]
        };
        (vec![st.carry[0] + (x * x).sum()], vec![])
    });
    let y = out.carry[0];
    let g = b.grad(y, &[x0, w]).unwrap();
    let d = [
        b.input("dx0", DType::F64, &[3]),
        b.input("dw", DType::F64, &[3]),
    ];
    let hv = b.hvp(y, &[x0, w], &d).unwrap();
    let outs = [
        ("y", y),
        ("gx0", g[0]),
        ("gw", g[1]),
        ("hx0", hv[0]),
        ("hw", hv[1]),
    ];
    b.finish(&outs).unwrap()
}

#[test]
fn nested_while_in_scan_and_scan_in_while_equal_the_select_form() {
    let a = vec![
        v3([0.5, -0.3, 0.4]),
        v3(W),
        Tensor::from_f64(vec![4], vec![0.0, 2.0, 1.0, 9.0]),
        v3(DX0),
        v3(DW),
    ];
    let want = run_both(&nested(false, None), &a);
    // A plain Rust oracle for the value: row r runs min(k_r, M) while steps of two steps each.
    let mut y = 0.0;
    for k in [0usize, 2, 1, 9] {
        let mut x = [0.5, -0.3, 0.4];
        for _ in 0..2 * k.min(M) {
            for j in 0..3 {
                x[j] = x[j] * x[j] * W[j] * 0.5 + x[j] * 0.3;
            }
        }
        y += x.iter().map(|v| v * v).sum::<f64>();
    }
    assert_eq!(want[0].scalar_value(), Some(y));
    for snaps in [None, Some(1), Some(3)] {
        let r = run_both(&nested(true, snaps), &a);
        assert_bits(&r, &want, &format!("nested, {snaps:?} snapshots"));
    }
}

#[test]
fn while_loops_print_and_parse_back_and_bad_exits_are_clear_errors() {
    let g = derivatives(true, Some(2));
    let text = gradlift::ir::text::print(&g);
    assert!(text.contains(" while=2 {"), "{text}");
    assert!(text.contains("while_xs="), "{text}");
    let back = gradlift::ir::text::parse(&text).unwrap();
    assert_eq!(gradlift::ir::text::print(&back), text);
    let a = args(X0, W, 3.0);
    assert_bits(
        &interp::run(&back, &a).unwrap(),
        &interp::run(&g, &a).unwrap(),
        "parsed",
    );
    let bad = "graph @b {\n  %x = input f64[]\n  %y, %c = scan %x length=3 carry=1 while=0 {\n    \
               %a = input f64[]\n    %g = gt %a, %a\n    output %a, %g\n  }\n  output %y\n}\n";
    let e = gradlift::ir::text::parse(bad).unwrap_err().to_string();
    assert!(e.contains("`while=0` names no y"), "{e}");
    let both = bad.replace("while=0", "while=1 while_xs=0");
    let e = gradlift::ir::text::parse(&both).unwrap_err().to_string();
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn rows_after_the_exit_repeat_the_exit_row_or_are_zero() {
    // A `while` loop with a y: rows from the exit step on are the exit step's row (what every
    // later step would compute); a `while_xs` loop's rows of steps that did not run are zero.
    let src = "graph @rows {\n  %x = input f64[]\n  %f = input bool[5]\n  \
               %c, %ys, %go = scan %x length=5 carry=1 while=2 {\n    %a = input f64[]\n    \
               %two = const 2.0 : f64[]\n    %b = mul %a, %two\n    %lim = const 10.0 : f64[]\n    \
               %g = lt %a, %lim\n    output %b, %a, %g\n  }\n  \
               %d, %zs = scan %x, %f length=5 carry=1 xs=1 reverse=true while_xs=0 {\n    \
               %a = input f64[]\n    %fl = input bool[]\n    %one = const 1.0 : f64[]\n    \
               %b = add %a, %one\n    output %b, %a\n  }\n  output %c, %ys, %go, %d, %zs\n}\n";
    let g = gradlift::ir::text::parse(src).unwrap();
    let flags = Tensor::new(
        vec![5],
        gradlift::Data::Bool(vec![true, true, true, false, true]),
    );
    let r = run_both(&g, &[Tensor::scalar_f64(3.0), flags]);
    // 3 → 6 → 12 (stops: 12 ≥ 10), so the carry is 12 and row 2 (a = 12) repeats.
    assert_eq!(r[0].scalar_value(), Some(12.0));
    assert_eq!(r[1].to_f64_vec(), vec![3.0, 6.0, 12.0, 12.0, 12.0]);
    assert_eq!(r[2].to_f64_vec(), vec![1.0, 1.0, 0.0, 0.0, 0.0]);
    // Three leading true flags: steps 2, 1, 0 run (reverse), rows 3 and 4 are zero.
    assert_eq!(r[3].scalar_value(), Some(6.0));
    assert_eq!(r[4].to_f64_vec(), vec![5.0, 4.0, 3.0, 0.0, 0.0]);
}

#[test]
fn an_optimized_while_loop_without_its_condition_result_still_differentiates() {
    // After DCE no node holds the loop's stacked conditions; reverse mode then runs the loop
    // once more to read them, with the same gradient.
    let b = GraphBuilder::new("opt");
    let ins = inputs(&b);
    let x = looped(&b, ins, true, None);
    let loss = (x * x).sum();
    let mut g = b.finish(&[("loss", loss)]).unwrap();
    gradlift::opt::optimize(&mut g, &verified());
    let y = g.outputs()[0];
    let (x0, w) = (g.input_named("x0").unwrap(), g.input_named("w").unwrap());
    let d = gradlift::autodiff::grad(&mut g, y, &[x0, w]).unwrap();
    g.set_named_outputs(&[("loss", y), ("gx0", d[0]), ("gw", d[1])])
        .unwrap();
    let want = derivatives(true, None);
    for k in KS {
        let a = args(X0, W, k);
        let r = run_both(&g, &a[..3]);
        let full = interp::run(&want, &a).unwrap();
        assert_bits(&r, &full[1..4], &format!("k = {k}"));
    }
}

#[test]
fn a_memory_budget_lowers_a_while_loops_snapshots_with_the_same_bits() {
    // A while loop bounded by 600 steps that runs 40: the budget sees the bound (a tape of 600
    // carries), the schedule runs over the 40 steps that ran.
    let b = GraphBuilder::new("budget");
    let x0 = b.input("x0", DType::F64, &[3]);
    let w = b.input("w", DType::F64, &[3]);
    let k = b.input("k", DType::F64, &[]);
    let i0 = b.scalar(DType::F64, 0.0);
    let x = b.while_loop(600, &[x0, i0], &[w, k], |_, st| cond(st), |_, st| body(st))[0];
    let d = b.grad((x * x).sum(), &[x0, w]).unwrap();
    let mut g = b.finish(&[("gx0", d[0]), ("gw", d[1])]).unwrap();
    gradlift::opt::optimize(&mut g, &verified());
    let a = [v3(X0), v3([0.1, -0.2, 0.15]), Tensor::scalar_f64(40.0)];
    let want = interp::run(&g, &a).unwrap();
    let full = jit::compile_with(&g, &exact()).unwrap();
    assert_bits(&full.run(&a).unwrap(), &want, "full tape");
    for frac in [4, 16] {
        let budget = full.workspace_bytes() as u64 / frac;
        let k = match jit::compile_with(&g, &exact().with_memory_budget(budget)) {
            Ok(k) => k,
            Err(jit::JitError::OverBudget { minimum, .. }) => {
                jit::compile_with(&g, &exact().with_memory_budget(minimum)).unwrap()
            }
            Err(e) => panic!("{e}"),
        };
        assert!(k.workspace_bytes() < full.workspace_bytes());
        assert_bits(&k.run(&a).unwrap(), &want, &format!("budget 1/{frac}"));
    }
}

/// The optimizer's default settings, verifying the graph after every pass.
fn verified() -> gradlift::opt::OptConfig {
    gradlift::opt::OptConfig {
        verify: true,
        ..Default::default()
    }
}

#[test]
fn grad_of_grad_through_a_while_loop_equals_its_hvp() {
    // Reverse over reverse: the backward loop (`while_xs`) is differentiated again, its own
    // backward loop counting the same flags. ∇(∇loss · d) = H d.
    let b = GraphBuilder::new("gg");
    let ins = inputs(&b);
    let x = looped(&b, ins, true, Some(2));
    let loss = (x * x).sum();
    let wrt = [ins[0], ins[1]];
    let g = b.grad(loss, &wrt).unwrap();
    let d = [
        b.input("dx0", DType::F64, &[3]),
        b.input("dw", DType::F64, &[3]),
    ];
    let gd = (g[0] * d[0]).sum() + (g[1] * d[1]).sum();
    let gg = b.grad(gd, &wrt).unwrap();
    let graph = b.finish(&[("ggx0", gg[0]), ("ggw", gg[1])]).unwrap();
    let hvp = derivatives(true, None);
    for k in KS {
        let a = args(X0, W, k);
        let r = run_both(&graph, &a);
        let h = interp::run(&hvp, &a).unwrap();
        for (p, q) in r.iter().zip(&h[5..7]) {
            for (u, v) in p.to_f64_vec().iter().zip(q.to_f64_vec()) {
                assert!(
                    (u - v).abs() <= 1e-12 * (1.0 + v.abs()),
                    "k = {k}: {u} vs {v}"
                );
            }
        }
    }
}

#[test]
fn rows_after_the_exit_pass_their_cotangents_to_the_final_carries() {
    // The step that stops the loop computes its ys from the final carries, and its row fills
    // rows `n..5`: their cotangents reach `x` and `w` through it. (Reverse mode once dropped
    // them: found by `differential_random_graphs`, seeds 3440148810383 and 7020982662764.)
    let src = "graph @stop {\n  %x = input f64[]\n  %w = input f64[]\n  %lim = input f64[]\n  \
               %c, %ys, %go = scan %x, %w, %lim length=5 carry=1 while=2 {\n    \
               %a = input f64[]\n    %k = input f64[]\n    %l = input f64[]\n    \
               %b = mul %a, %k\n    %sq = mul %a, %a\n    %g = lt %a, %l\n    \
               output %b, %sq, %g\n  }\n  %s = reduce_sum %ys axes=[0]\n  \
               %loss = add %s, %c\n  output %loss\n}\n";
    let mut g = gradlift::ir::text::parse(src).unwrap();
    let (loss, x, w) = (g.outputs()[0], g.inputs()[0], g.inputs()[1]);
    let d = gradlift::autodiff::grad(&mut g, loss, &[x, w]).unwrap();
    g.set_named_outputs(&[("loss", loss), ("gx", d[0]), ("gw", d[1])])
        .unwrap();
    // The loop in Rust: a_t = x·w^t while a_t < lim; rows from the exit on repeat a_n².
    let rust = |x: f64, w: f64, lim: f64| {
        let (mut a, mut s, mut n) = (x, 0.0, 0);
        while n < 5 && a < lim {
            s += a * a;
            a *= w;
            n += 1;
        }
        s + (5 - n) as f64 * a * a + a
    };
    let (x0, w0, h) = (1.5, 1.3, 1e-6);
    // Exits at step 0, 2, 3, and never (a = 1.5, 1.95, 2.535, 3.2955, ...: no limit is near).
    for lim in [1.0, 2.0, 3.0, 100.0] {
        let r = run_both(&g, &[x0, w0, lim].map(Tensor::scalar_f64));
        assert_eq!(r[0].scalar_value(), Some(rust(x0, w0, lim)), "lim = {lim}");
        let fx = (rust(x0 + h, w0, lim) - rust(x0 - h, w0, lim)) / (2.0 * h);
        let fw = (rust(x0, w0 + h, lim) - rust(x0, w0 - h, lim)) / (2.0 * h);
        for (ad, fd) in [
            (r[1].scalar_value().unwrap(), fx),
            (r[2].scalar_value().unwrap(), fw),
        ] {
            assert!(
                (ad - fd).abs() <= 1e-7 * (1.0 + fd.abs()),
                "lim = {lim}: {ad} vs {fd}"
            );
        }
    }
}
