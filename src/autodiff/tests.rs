//! Tests of the drivers: Jacobians by both modes against finite differences, Hessians and third
//! derivatives against closed forms worked out by hand, Hessian-vector products, custom rules,
//! and the typed errors.
//!
//! Every expected value is computed here independently (hand-derived formulas evaluated in plain
//! Rust, or finite differences through the interpreter), never by the code under test.

use super::{GradError, Mode};
use crate::ops::custom::CustomOp;
use crate::ops::tests::Rng;
use crate::{DType, Error, Graph, GraphBuilder, NodeId, Tensor, TensorType, Var, interp};

fn vec_t(v: &[f64]) -> Tensor {
    Tensor::from_f64(vec![v.len()], v.to_vec())
}

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    Tensor::from_fn(&TensorType::new(DType::F64, shape.to_vec()), |_| {
        rng.uniform(-1.0, 1.0)
    })
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Central finite-difference Jacobian of output `out` of `g` with respect to input `k`, as a
/// row-major `[numel(out), numel(input k)]` matrix.
fn fd_jacobian(g: &Graph, vals: &[Tensor], out: usize, k: usize) -> Vec<f64> {
    let h = 1e-6;
    let at = |i: usize, d: f64| {
        let mut v = vals.to_vec();
        let mut flat = v[k].to_f64_vec();
        flat[i] += d;
        v[k] = Tensor::from_f64(v[k].shape().to_vec(), flat);
        interp::run(g, &v).unwrap()[out].to_f64_vec()
    };
    let n = vals[k].numel();
    let cols: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let (p, m) = (at(i, h), at(i, -h));
            p.iter().zip(m).map(|(a, b)| (a - b) / (2.0 * h)).collect()
        })
        .collect();
    let m = cols[0].len();
    (0..m)
        .flat_map(|r| cols.iter().map(move |c| c[r]))
        .collect()
}

// ---- Jacobians -------------------------------------------------------------------------------

/// Two inputs of different shapes, two outputs of different shapes, through matmul, reductions,
/// broadcasting, transpose, slice and concat.
fn two_by_two(b: &GraphBuilder) -> ([Var<'_>; 2], [Var<'_>; 2]) {
    let a = b.input("a", DType::F64, &[2, 3]);
    let v = b.input("v", DType::F64, &[3]);
    let av = a.matmul(v.reshape(&[3, 1])).reshape(&[2]); // [2]
    let y1 = b.concat(&[av.tanh(), (v * v).sum().reshape(&[1])], 0); // [3]
    let y2 = (a.transpose(&[1, 0]) * v.reshape(&[3, 1]))
        .sin()
        .slice(&[0, 0], &[3, 1])
        + a.max_axes(&[0], false).reshape(&[3, 1]).exp(); // [3, 1]
    ([a, v], [y1, y2])
}

#[test]
fn jacobians_by_forward_and_reverse_mode_equal_finite_differences() {
    let mut rng = Rng(5);
    for mode in [Mode::Forward, Mode::Reverse, Mode::Auto] {
        let b = GraphBuilder::new("j");
        let (xs, ys) = two_by_two(&b);
        let j = b.jacobian(&ys, &xs, mode).unwrap();
        let mut outs = vec![("y1", ys[0]), ("y2", ys[1])];
        let names = ["j11", "j12", "j21", "j22"];
        for (k, name) in names.iter().enumerate() {
            outs.push((name, j[k / 2][k % 2]));
        }
        let g = b.finish(&outs).unwrap();
        let vals = vec![random(&[2, 3], &mut rng), random(&[3], &mut rng)];
        let out = interp::run(&g, &vals).unwrap();
        let shapes: [&[usize]; 4] = [&[3, 2, 3], &[3, 3], &[3, 1, 2, 3], &[3, 1, 3]];
        for (k, shape) in shapes.iter().enumerate() {
            let got = &out[2 + k];
            assert_eq!(got.shape(), *shape, "{mode:?} block {k}");
            let want = fd_jacobian(&g, &vals, k / 2, k % 2);
            assert_close(&got.to_f64_vec(), &want, 1e-7, &format!("{mode:?} J{k}"));
        }
    }
}

#[test]
fn auto_mode_picks_the_smaller_side() {
    assert_eq!(Mode::Auto.choose(4, 1000), Mode::Forward);
    assert_eq!(Mode::Auto.choose(1000, 4), Mode::Reverse);
    assert_eq!(Mode::Auto.choose(5, 5), Mode::Reverse);
    assert_eq!(Mode::Forward.choose(1000, 4), Mode::Forward);
    assert_eq!(Mode::Reverse.choose(4, 1000), Mode::Reverse);
    // And the graph shows it: forward mode seeds an [n, ...] tangent batch (n = 2 inputs), so
    // for f: R² → R⁵ no [5, ...] cotangent batch appears, and vice versa.
    for (n, m, fwd) in [(2usize, 5usize, true), (5, 2, false)] {
        let b = GraphBuilder::new("auto");
        let x = b.input("x", DType::F64, &[n]);
        let w = b.constant(Tensor::from_fn(
            &TensorType::new(DType::F64, vec![m, n]),
            |i| i as f64,
        ));
        let y = w.matmul(x.reshape(&[n, 1])).reshape(&[m]).sin();
        let before = b.graph().len();
        b.jacobian(&[y], &[x], Mode::Auto).unwrap();
        let g = b.graph();
        let lead: Vec<usize> = g.nodes()[before..]
            .iter()
            .filter(|nd| nd.ty.rank() >= 2)
            .map(|nd| nd.ty.shape[0])
            .collect();
        let k = if fwd { n } else { m };
        assert!(lead.contains(&k), "{n}->{m}: no batch of {k} in {lead:?}");
    }
}

#[test]
fn jacobian_of_unrelated_values_is_zero_and_scalar_blocks_work() {
    let b = GraphBuilder::new("z");
    let x = b.input("x", DType::F64, &[]);
    let u = b.input("u", DType::F64, &[2]);
    let y = x.exp();
    for mode in [Mode::Forward, Mode::Reverse] {
        let j = b.jacobian(&[y], &[x, u], mode).unwrap();
        assert_eq!(j[0][0].shape(), Vec::<usize>::new());
        assert_eq!(j[0][1].shape(), vec![2]);
        let ids: Vec<NodeId> = vec![j[0][0].id(), j[0][1].id()];
        let g = {
            let mut g = b.graph().clone();
            g.set_outputs(ids);
            g
        };
        let out = interp::run(&g, &[1.5.into(), vec_t(&[1.0, 2.0])]).unwrap();
        assert_eq!(out[0].scalar_value(), Some(1.5f64.exp()));
        assert_eq!(out[1].to_f64_vec(), vec![0.0, 0.0]);
    }
}

// ---- Hessians, HVPs, third derivatives -------------------------------------------------------

/// Builds `f(x)`, its Hessian and `H·v` (for an input `v`); returns (H, Hv) evaluated at `x`.
fn hessian_and_hvp(
    f: impl for<'b> Fn(Var<'b>) -> Var<'b>,
    x: &[f64],
    v: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    let b = GraphBuilder::new("h");
    let xv = b.input("x", DType::F64, &[n]);
    let vv = b.input("v", DType::F64, &[n]);
    let y = f(xv);
    let h = b.hessian(y, &[xv]).unwrap()[0][0];
    let hv = b.hvp(y, &[xv], &[vv]).unwrap()[0];
    assert_eq!(h.shape(), vec![n, n]);
    let g = b.finish(&[("h", h), ("hv", hv)]).unwrap();
    let out = interp::run(&g, &[vec_t(x), vec_t(v)]).unwrap();
    (out[0].to_f64_vec(), out[1].to_f64_vec())
}

fn check_hessian(name: &str, got: &[f64], hv: &[f64], want: &[f64], v: &[f64]) {
    let n = v.len();
    assert_close(got, want, 1e-12, name);
    for i in 0..n {
        for j in 0..n {
            let (a, b) = (got[i * n + j], got[j * n + i]);
            assert!(
                (a - b).abs() <= 1e-14 * (1.0 + a.abs()),
                "{name}: H not symmetric at {i},{j}: {a} vs {b}"
            );
        }
    }
    let want_hv: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| want[i * n + j] * v[j]).sum())
        .collect();
    assert_close(hv, &want_hv, 1e-12, &format!("{name} hvp"));
}

#[test]
fn hessian_of_a_polynomial() {
    // f = x0⁴ + x0²·x1 + 3·x1·x2 + x2³.
    fn f(x: Var<'_>) -> Var<'_> {
        let e = |i: usize| x.slice(&[i], &[i + 1]).reshape(&[]);
        let (a, b, c) = (e(0), e(1), e(2));
        a.powi(4) + a * a * b + 3.0 * b * c + c.powi(3)
    }
    let (x, v) = ([0.7, -1.3, 2.1], [0.5, -2.0, 1.0]);
    let (h, hv) = hessian_and_hvp(f, &x, &v);
    #[rustfmt::skip]
    let want = [
        12.0 * x[0] * x[0] + 2.0 * x[1], 2.0 * x[0], 0.0,
        2.0 * x[0],                      0.0,        3.0,
        0.0,                             3.0,        6.0 * x[2],
    ];
    check_hessian("polynomial", &h, &hv, &want, &v);
}

fn rosenbrock(x: Var<'_>) -> Var<'_> {
    let n = x.shape()[0];
    let head = x.slice(&[0], &[n - 1]);
    let tail = x.slice(&[1], &[n]);
    (100.0 * (tail - head * head).powi(2) + (1.0 - head).powi(2)).sum()
}

#[test]
fn hessian_of_rosenbrock() {
    let mut rng = Rng(21);
    let n = 6;
    let x: Vec<f64> = (0..n).map(|_| rng.uniform(-1.5, 1.5)).collect();
    let v: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let (h, hv) = hessian_and_hvp(rosenbrock, &x, &v);
    // By hand: ∂²/∂xᵢ² = [i<n-1](1200xᵢ² - 400xᵢ₊₁ + 2) + [i>0]·200,
    // ∂²/∂xᵢ∂xᵢ₊₁ = -400xᵢ, zero elsewhere.
    let mut want = vec![0.0; n * n];
    for i in 0..n {
        if i + 1 < n {
            want[i * n + i] += 1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0;
            want[i * n + i + 1] = -400.0 * x[i];
            want[(i + 1) * n + i] = -400.0 * x[i];
        }
        if i > 0 {
            want[i * n + i] += 200.0;
        }
    }
    check_hessian("rosenbrock", &h, &hv, &want, &v);
}

#[test]
fn hessian_of_log_sum_exp() {
    // f = log Σ exp(xᵢ); H = diag(p) - p·pᵀ with p = softmax(x).
    let x = [0.3, -1.2, 2.0, 0.9];
    let v = [1.0, 0.5, -0.25, 2.0];
    let (h, hv) = hessian_and_hvp(|x| x.logsumexp(0, false), &x, &v);
    let z: f64 = x.iter().map(|a| a.exp()).sum();
    let p: Vec<f64> = x.iter().map(|a| a.exp() / z).collect();
    let n = x.len();
    let want: Vec<f64> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            f64::from(u8::from(i == j)) * p[i] - p[i] * p[j]
        })
        .collect();
    check_hessian("logsumexp", &h, &hv, &want, &v);
}

#[test]
fn hessian_blocks_for_several_inputs() {
    // f(a, b) = a²·b + sin(a·b) for scalars: all four blocks by hand.
    let b = GraphBuilder::new("ab");
    let a = b.input("a", DType::F64, &[]);
    let c = b.input("b", DType::F64, &[]);
    let y = a * a * c + (a * c).sin();
    let h = b.hessian(y, &[a, c]).unwrap();
    let outs = [
        ("haa", h[0][0]),
        ("hab", h[0][1]),
        ("hba", h[1][0]),
        ("hbb", h[1][1]),
    ];
    let g = b.finish(&outs).unwrap();
    let (av, bv) = (0.8f64, -1.7f64);
    let out = interp::run(&g, &[av.into(), bv.into()]).unwrap();
    let s = (av * bv).sin();
    let co = (av * bv).cos();
    let want = [
        2.0 * bv - bv * bv * s,
        2.0 * av + co - av * bv * s,
        2.0 * av + co - av * bv * s,
        -av * av * s,
    ];
    let got: Vec<f64> = out.iter().map(|t| t.scalar_value().unwrap()).collect();
    assert_close(&got, &want, 1e-12, "blocks");
}

#[test]
fn third_derivatives_of_scalar_functions() {
    // f = x⁵ + sin(x): f''' = 60x² - cos(x), three ways: grad∘grad∘grad, JVP of the Hessian
    // (forward over forward over reverse), and the Jacobian of the Hessian by reverse mode.
    let b = GraphBuilder::new("d3");
    let x = b.input("x", DType::F64, &[]);
    let y = x.powi(5) + x.sin();
    let d1 = b.grad(y, &[x]).unwrap()[0];
    let d2 = b.grad(d1, &[x]).unwrap()[0];
    let d3 = b.grad(d2, &[x]).unwrap()[0];
    let h = b.hessian(y, &[x]).unwrap()[0][0];
    let one = b.scalar(DType::F64, 1.0);
    let d3_fwd = b.jvp(&[h], &[x], &[one]).unwrap()[0];
    let d3_rev = b.jacobian(&[h], &[x], Mode::Reverse).unwrap()[0][0];
    let g = b
        .finish(&[("d3", d3), ("d3f", d3_fwd), ("d3r", d3_rev), ("h", h)])
        .unwrap();
    for xv in [0.4, -1.1, 2.0] {
        let out = interp::run(&g, &[xv.into()]).unwrap();
        let want = 60.0 * xv * xv - f64::cos(xv);
        for (k, t) in out[..3].iter().enumerate() {
            assert_close(&t.to_f64_vec(), &[want], 1e-12, &format!("d3 #{k} at {xv}"));
        }
        let want_h = 20.0 * xv.powi(3) - xv.sin();
        assert_close(&out[3].to_f64_vec(), &[want_h], 1e-12, "f''");
    }
}

#[test]
fn third_derivative_tensor_of_a_vector_function() {
    // f = exp(c·x): T[i][j][k] = cᵢcⱼcₖ·exp(c·x), the forward Jacobian of the Hessian.
    let c = [0.5, -1.0, 2.0];
    let b = GraphBuilder::new("t3");
    let x = b.input("x", DType::F64, &[3]);
    let cv = b.constant(vec_t(&c));
    let y = (x * cv).sum().exp();
    let h = b.hessian(y, &[x]).unwrap()[0][0];
    let t = b.jacobian(&[h], &[x], Mode::Forward).unwrap()[0][0];
    assert_eq!(t.shape(), vec![3, 3, 3]);
    let g = b.finish(&[("t", t)]).unwrap();
    let xv = [0.2, 0.1, -0.3];
    let out = interp::run(&g, &[vec_t(&xv)]).unwrap();
    let e = (c[0] * xv[0] + c[1] * xv[1] + c[2] * xv[2]).exp();
    let want: Vec<f64> = (0..27)
        .map(|k| c[k / 9] * c[(k / 3) % 3] * c[k % 3] * e)
        .collect();
    assert_close(&out[0].to_f64_vec(), &want, 1e-12, "T");
}

// ---- custom rules ----------------------------------------------------------------------------

/// `f(x) = x²` whose rules deliberately lie: VJP 3·x·ȳ, JVP 5·x·ẋ (true: 2x), so a test can see
/// which rule was used.
fn lying_square() -> CustomOp {
    CustomOp::new("lying_square", |_, x| x[0] * x[0])
        .with_vjp(|_, call, ct| vec![Some(ct * call.inputs[0] * 3.0)])
        .with_jvp(|_, call, tg| Some(tg.get(0)? * call.inputs[0] * 5.0))
}

#[test]
fn custom_rules_are_used_by_both_modes() {
    let op = lying_square();
    let b = GraphBuilder::new("c");
    let x = b.input("x", DType::F64, &[2]);
    let y = b.custom(&op, &[x]).sin(); // the chain rule continues through the custom op
    let gr = b.grad(y.sum(), &[x]).unwrap()[0];
    let ones = b.constant(vec_t(&[1.0, 1.0]));
    let t = b.jvp(&[y], &[x], &[ones]).unwrap()[0];
    let jf = b.jacobian(&[y], &[x], Mode::Forward).unwrap()[0][0];
    let jr = b.jacobian(&[y], &[x], Mode::Reverse).unwrap()[0][0];
    let g = b
        .finish(&[("y", y), ("g", gr), ("t", t), ("jf", jf), ("jr", jr)])
        .unwrap();
    let xv = [0.7, -1.2];
    let out = interp::run(&g, &[vec_t(&xv)]).unwrap();
    let c = |i: usize| (xv[i] * xv[i]).cos();
    assert_close(
        &out[0].to_f64_vec(),
        &[0.49f64.sin(), 1.44f64.sin()],
        1e-15,
        "value",
    );
    let rev = [3.0 * xv[0] * c(0), 3.0 * xv[1] * c(1)];
    let fwd = [5.0 * xv[0] * c(0), 5.0 * xv[1] * c(1)];
    assert_close(&out[1].to_f64_vec(), &rev, 1e-14, "grad uses the vjp rule");
    assert_close(&out[2].to_f64_vec(), &fwd, 1e-14, "jvp uses the jvp rule");
    assert_close(
        &out[3].to_f64_vec(),
        &[fwd[0], 0.0, 0.0, fwd[1]],
        1e-14,
        "forward J",
    );
    assert_close(
        &out[4].to_f64_vec(),
        &[rev[0], 0.0, 0.0, rev[1]],
        1e-14,
        "reverse J",
    );
}

#[test]
fn a_missing_custom_rule_is_a_typed_error() {
    fn sq<'b>(_: &'b GraphBuilder, x: &[Var<'b>]) -> Var<'b> {
        x[0] * x[0]
    }
    let vjp_only = CustomOp::new("vjp_only", sq).with_vjp(|_, c, ct| vec![Some(ct * c.inputs[0])]);
    let jvp_only =
        CustomOp::new("jvp_only", sq).with_jvp(|_, c, tg| Some(tg.get(0)? * c.inputs[0]));
    let b = GraphBuilder::new("m");
    let x = b.input("x", DType::F64, &[]);
    let one = b.scalar(DType::F64, 1.0);
    let y1 = b.custom(&vjp_only, &[x]);
    let y2 = b.custom(&jvp_only, &[x]);
    let missing = |e: Error| match e.grad_error().cloned() {
        Some(GradError::MissingCustomRule { name, rule, .. }) => (name, rule),
        other => panic!("expected MissingCustomRule, got {other:?}"),
    };
    let e = b.jvp(&[y1], &[x], &[one]).unwrap_err();
    assert_eq!(missing(e), ("vjp_only".to_string(), "jvp"));
    assert!(b.grad(y1, &[x]).is_ok());
    let e = b.grad(y2, &[x]).unwrap_err();
    assert_eq!(missing(e), ("jvp_only".to_string(), "vjp"));
    assert!(b.jvp(&[y2], &[x], &[one]).is_ok());
    // Jacobians: each mode needs its rule.
    let e = b.jacobian(&[y2], &[x], Mode::Reverse).unwrap_err();
    assert_eq!(missing(e).1, "vjp");
    let e = b.jacobian(&[y1], &[x], Mode::Forward).unwrap_err();
    assert_eq!(missing(e).1, "jvp");
    // A value that does not depend on the custom op is unaffected.
    assert!(b.jvp(&[x.exp()], &[x], &[one]).is_ok());
}

#[test]
fn hessian_through_a_vjp_only_custom_op_differentiates_its_rule() {
    // Forward-over-reverse only needs the forward rule where the gradient graph reads the
    // custom op's output. Here the VJP rule ȳ·cos(x) does not, so the Hessian is the derivative
    // of the rule: -sin(x) (the true op is sin(x)·2, so the rule is deliberately half).
    let op = CustomOp::new("half_sin_grad", |_, x| x[0].sin() * 2.0)
        .with_vjp(|_, c, ct| vec![Some(ct * c.inputs[0].cos())]);
    let b = GraphBuilder::new("h");
    let x = b.input("x", DType::F64, &[]);
    let y = b.custom(&op, &[x]);
    let h = b.hessian(y, &[x]).unwrap()[0][0];
    let g = b.finish(&[("h", h)]).unwrap();
    let out = interp::run(&g, &[0.6.into()]).unwrap();
    assert_close(&out[0].to_f64_vec(), &[-(0.6f64.sin())], 1e-15, "h");
}

#[test]
fn log1pexp_with_a_stable_derivative() {
    // log(1 + eˣ) computed stably as max(x, 0) + log1p(exp(-|x|)); derivative sigmoid(x).
    let op = CustomOp::new("log1pexp", |_, x| {
        let x = x[0];
        x.relu() + (-x.abs()).exp().log1p()
    })
    .with_vjp(|_, c, ct| vec![Some(ct * c.inputs[0].sigmoid())])
    .with_jvp(|_, c, tg| Some(tg.get(0)? * c.inputs[0].sigmoid()));
    let b = GraphBuilder::new("l");
    let x = b.input("x", DType::F64, &[4]);
    let y = b.custom(&op, &[x]);
    let gr = b.grad(y.sum(), &[x]).unwrap()[0];
    let h = b.hessian(y.sum(), &[x]).unwrap()[0][0];
    let g = b.finish(&[("y", y), ("g", gr), ("h", h)]).unwrap();
    let xs = [-800.0, -1.0, 0.0, 800.0];
    let out = interp::run(&g, &[vec_t(&xs)]).unwrap();
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let want_y = [0.0, (1.0 + (-1f64).exp()).ln(), 2f64.ln(), 800.0];
    assert_close(
        &out[0].to_f64_vec(),
        &want_y,
        1e-15,
        "value (no overflow at 800)",
    );
    let want_g: Vec<f64> = xs.iter().map(|&x| sig(x)).collect();
    assert_close(&out[1].to_f64_vec(), &want_g, 1e-15, "gradient");
    let hd = out[2].to_f64_vec();
    for (i, &x) in xs.iter().enumerate() {
        let want = sig(x) * (1.0 - sig(x));
        assert_close(&[hd[i * 4 + i]], &[want], 1e-15, "hessian diagonal");
    }
}

#[test]
fn gradient_clip_and_straight_through_estimator() {
    // Clip: identity forward, cotangent clipped to [-1, 1]. Straight-through: a step forward
    // (x > 0 as 0/1), identity derivative.
    let clip = CustomOp::new("clip_grad", |_, x| x[0])
        .with_vjp(|_, _, ct| vec![Some(ct.max(ct.scalar_like(-1.0)).min(ct.scalar_like(1.0)))]);
    let ste = CustomOp::new("ste_step", |_, x| {
        x[0].gt(x[0].scalar_like(0.0)).cast(DType::F64)
    })
    .with_vjp(|_, _, ct| vec![Some(ct)])
    .with_jvp(|_, _, tg| tg.get(0));
    let b = GraphBuilder::new("ce");
    let x = b.input("x", DType::F64, &[3]);
    let clipped = b.custom(&clip, &[x]) * 10.0;
    let step = b.custom(&ste, &[x]);
    let g1 = b.grad(clipped.sum(), &[x]).unwrap()[0];
    let g2 = b.grad((step * 4.0).sum(), &[x]).unwrap()[0];
    let ones = b.constant(vec_t(&[1.0, 1.0, 1.0]));
    let t2 = b.jvp(&[step], &[x], &[ones]).unwrap()[0];
    let g = b
        .finish(&[
            ("c", clipped),
            ("s", step),
            ("g1", g1),
            ("g2", g2),
            ("t2", t2),
        ])
        .unwrap();
    let out = interp::run(&g, &[vec_t(&[-0.5, 0.25, 3.0])]).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![-5.0, 2.5, 30.0]);
    assert_eq!(out[1].to_f64_vec(), vec![0.0, 1.0, 1.0]);
    assert_eq!(out[2].to_f64_vec(), vec![1.0, 1.0, 1.0]);
    assert_eq!(out[3].to_f64_vec(), vec![4.0, 4.0, 4.0]);
    assert_eq!(out[4].to_f64_vec(), vec![1.0, 1.0, 1.0]);
}

#[test]
fn nested_custom_regions_use_the_outer_rule() {
    // outer(x) = inner(x) + x, where inner has no rules at all: the outer rule replaces the
    // whole region, so the inner one is never asked.
    let inner = CustomOp::new("inner", |_, x| x[0].exp());
    let outer = CustomOp::new("outer", move |b, x| b.custom(&inner, x) + x[0])
        .with_vjp(|_, _, ct| vec![Some(ct * 7.0)])
        .with_jvp(|_, _, tg| Some(tg.get(0)? * 7.0));
    let b = GraphBuilder::new("n");
    let x = b.input("x", DType::F64, &[]);
    let y = b.custom(&outer, &[x]);
    let gr = b.grad(y, &[x]).unwrap()[0];
    let one = b.scalar(DType::F64, 1.0);
    let t = b.jvp(&[y], &[x], &[one]).unwrap()[0];
    let g = b.finish(&[("y", y), ("g", gr), ("t", t)]).unwrap();
    let out = interp::run(&g, &[0.5.into()]).unwrap();
    assert_eq!(out[0].scalar_value(), Some(0.5f64.exp() + 0.5));
    assert_eq!(out[1].scalar_value(), Some(7.0));
    assert_eq!(out[2].scalar_value(), Some(7.0));
}

#[test]
fn bad_custom_rule_results_are_typed_errors() {
    let two = CustomOp::new("two_results", |_, x| x[0] * 2.0)
        .with_vjp(|_, _, ct| vec![Some(ct), Some(ct)]);
    let wrong_shape = CustomOp::new("wrong_shape", |_, x| x[0] * 2.0)
        .with_vjp(|b, _, _| vec![Some(b.zeros(DType::F64, &[5]))])
        .with_jvp(|b, _, _| Some(b.zeros(DType::F64, &[5])));
    let b = GraphBuilder::new("bad");
    let x = b.input("x", DType::F64, &[3]);
    let y1 = b.custom(&two, &[x]).sum();
    let y2 = b.custom(&wrong_shape, &[x]);
    let rule_error = |e: Error| matches!(e.grad_error(), Some(GradError::CustomRule { .. }));
    assert!(rule_error(b.grad(y1, &[x]).unwrap_err()));
    assert!(rule_error(b.grad(y2.sum(), &[x]).unwrap_err()));
    let t = b.constant(vec_t(&[1.0, 1.0, 1.0]));
    assert!(rule_error(b.jvp(&[y2], &[x], &[t]).unwrap_err()));
}

#[test]
fn custom_regions_survive_appending_and_are_dropped_by_rewrites() {
    let b = GraphBuilder::new("keep");
    let x = b.input("x", DType::F64, &[]);
    let y = b.custom(&lying_square(), &[x]);
    let mut g = b.finish(&[("y", y)]).unwrap();
    assert_eq!(g.custom_regions().len(), 1);
    let (xi, yi) = (g.inputs()[0], g.outputs()[0]);
    let d = super::grad(&mut g, yi, &[xi]).unwrap()[0];
    g.set_outputs(vec![d]);
    assert_eq!(g.custom_regions().len(), 1);
    let out = interp::run(&g, &[2.0.into()]).unwrap();
    assert_eq!(out[0].scalar_value(), Some(6.0)); // the lying rule: 3·x
    let _ = g.nodes_mut();
    assert!(g.custom_regions().is_empty());
}

// ---- errors ----------------------------------------------------------------------------------

#[test]
fn seed_errors_are_typed() {
    let b = GraphBuilder::new("e");
    let x = b.input("x", DType::F64, &[2]);
    let y = x.exp();
    let bad = b.scalar(DType::F64, 1.0);
    let f32t = b.constant(Tensor::from_f32(vec![2], vec![1.0, 1.0]));
    let good = b.constant(vec_t(&[1.0, 1.0]));
    let grad_err = |e: Error| match e.grad_error() {
        Some(g) => g.clone(),
        other => panic!("expected a GradError, got {other:?}"),
    };
    assert!(matches!(
        grad_err(b.jvp(&[y], &[x], &[bad]).unwrap_err()),
        GradError::SeedType {
            kind: "tangent",
            ..
        }
    ));
    assert!(matches!(
        grad_err(b.jvp(&[y], &[x], &[f32t]).unwrap_err()),
        GradError::SeedType { .. }
    ));
    assert!(matches!(
        grad_err(b.jvp(&[y], &[x], &[]).unwrap_err()),
        GradError::Count {
            expected: 1,
            found: 0,
            ..
        }
    ));
    assert!(matches!(
        grad_err(b.vjp(&[y], &[x], &[bad]).unwrap_err()),
        GradError::SeedType {
            kind: "cotangent",
            ..
        }
    ));
    assert!(matches!(
        grad_err(b.jvp_batched(&[y], &[x], &[good], 3).unwrap_err()),
        GradError::SeedType { .. }
    ));
    let c = x.gt(good);
    assert!(matches!(
        grad_err(b.jvp(&[c], &[x], &[good]).unwrap_err()),
        GradError::OutputNotFloat { .. }
    ));
    assert!(matches!(
        grad_err(b.jacobian(&[y], &[c], Mode::Auto).unwrap_err()),
        GradError::NotFloat { .. }
    ));
    assert!(matches!(
        grad_err(b.hessian(y, &[x]).unwrap_err()),
        GradError::NotScalar { .. }
    ));
    let mut g = b.finish(&[("y", y)]).unwrap();
    assert!(super::jvp(&mut g, &[NodeId(999)], &[], &[]).is_err());
    assert_eq!(g.outputs().len(), 1, "the graph is put back after an error");
}

#[test]
fn forward_mode_on_a_long_chain_does_not_recurse() {
    // 200,000 nodes: every driver is a loop over ids.
    let b = GraphBuilder::new("chain");
    let x = b.input("x", DType::F64, &[]);
    let mut v = x;
    for i in 0..100_000 {
        v = if i % 2 == 0 { v.sin() } else { v * 1.0001 };
    }
    let one = b.scalar(DType::F64, 1.0);
    let t = b.jvp(&[v], &[x], &[one]).unwrap()[0];
    let g = b.finish(&[("t", t)]).unwrap();
    let out = interp::run(&g, &[0.5.into()]).unwrap();
    assert!(out[0].scalar_value().unwrap().is_finite());
}

#[test]
fn oversized_jacobians_are_a_typed_error() {
    let b = GraphBuilder::new("big");
    let x = b.input("x", DType::F32, &[100_000]);
    let y = x.exp();
    for mode in [Mode::Forward, Mode::Reverse, Mode::Auto] {
        match b.jacobian(&[y], &[x], mode).unwrap_err().grad_error() {
            Some(GradError::TooLarge(m)) => assert!(m.contains("100000"), "{m}"),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
    assert!(b.check().is_ok(), "nothing was built");
}
