//! The float ops added for a user's first hour (`tan`, `erf`, `atan2`, `floor`, `ceil`,
//! `round`, `sign`, `cumsum`) and the composites (`softplus`, `logaddexp`, `clamp`, `pad`),
//! against hand-computed or analytic values, with every backend: the interpreter, the JIT with
//! exact math and the default JIT. (The generic checks, finite differences, ⟨Jv,w⟩ = ⟨v,Jᵀw⟩
//! and JIT = interpreter on every op, loop over `Op::ALL` elsewhere.)

use gradlift::ir::text;
use gradlift::{DType, Graph, GraphBuilder, Tensor, TensorType, interp, jit};

fn exact() -> jit::JitConfig {
    jit::JitConfig {
        exact_math: true,
        ..jit::JitConfig::default()
    }
}

/// Runs `g` on the interpreter and both JIT modes; asserts the three agree bitwise and
/// returns the interpreter's outputs.
fn run_all(g: &Graph, ins: &[Tensor]) -> Vec<Tensor> {
    let want = interp::run(g, ins).unwrap();
    for cfg in [exact(), jit::JitConfig::default()] {
        let got = jit::compile_with(g, &cfg).unwrap().run(ins).unwrap();
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                a.bits_eq(b),
                "output {k}: jit {a:?} vs interp {b:?} (exact_math {})\n{}",
                cfg.exact_math,
                text::print(g)
            );
        }
    }
    want
}

fn vec_of(dtype: DType, v: &[f64]) -> Tensor {
    Tensor::from_fn(&TensorType::new(dtype, vec![v.len()]), |i| v[i])
}

/// Asserts `got` equals `want` bit for bit, element by element (NaN equals NaN).
fn assert_bits(what: &str, got: &Tensor, want: &[f64]) {
    let g = got.to_f64_vec();
    assert_eq!(g.len(), want.len(), "{what}");
    for (i, (a, b)) in g.iter().zip(want).enumerate() {
        let same = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        assert!(same, "{what}[{i}]: got {a:?}, want {b:?}");
    }
}

#[test]
fn erf_tan_and_atan2_at_known_points() {
    // erf(0.5), erf(1), erf(2) to 17 digits (Abramowitz & Stegun, table 7.1), odd symmetry,
    // erf(±inf) = ±1; tan(0) = 0, tan(π/4) ≈ 1.
    let xs = [0.5, 1.0, 2.0, -0.5, f64::INFINITY, f64::NEG_INFINITY, 0.0];
    let erf = [
        0.520_499_877_813_046_5,
        0.842_700_792_949_714_9,
        0.995_322_265_018_952_7,
        -0.520_499_877_813_046_5,
        1.0,
        -1.0,
        0.0,
    ];
    for d in [DType::F64, DType::F32] {
        let b = GraphBuilder::new("e");
        let x = b.input("x", d, &[xs.len()]);
        let g = b.finish(&[("erf", x.erf()), ("tan", x.tan())]).unwrap();
        let out = run_all(&g, &[vec_of(d, &xs)]);
        let tol = if d == DType::F64 { 2e-16 } else { 1.2e-7 };
        for (i, (&got, &want)) in out[0].to_f64_vec().iter().zip(&erf).enumerate() {
            assert!((got - want).abs() <= tol, "{d} erf({}) = {got}", xs[i]);
        }
        assert_eq!(out[1].to_f64_vec()[6], 0.0);
        let b = GraphBuilder::new("t");
        let x = b.input("x", d, &[]);
        let g = b.finish(&[("tan", x.tan())]).unwrap();
        let quarter = Tensor::from_fn(&TensorType::new(d, vec![]), |_| std::f64::consts::FRAC_PI_4);
        let q = run_all(&g, &[quarter]);
        assert!((q[0].to_f64_vec()[0] - 1.0).abs() <= 2.0 * tol);
    }
    // atan2(y, x) in every quadrant, on the axes, and the signed zeros.
    use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, PI};
    let cases: [(f64, f64, f64); 10] = [
        (1.0, 1.0, FRAC_PI_4),
        (1.0, -1.0, 3.0 * FRAC_PI_4),
        (-1.0, -1.0, -3.0 * FRAC_PI_4),
        (-1.0, 1.0, -FRAC_PI_4),
        (1.0, 0.0, FRAC_PI_2),
        (-1.0, 0.0, -FRAC_PI_2),
        (0.0, -1.0, PI),
        (-0.0, -1.0, -PI),
        (0.0, 1.0, 0.0),
        (-0.0, 1.0, -0.0),
    ];
    let ys: Vec<f64> = cases.iter().map(|c| c.0).collect();
    let xs: Vec<f64> = cases.iter().map(|c| c.1).collect();
    let want: Vec<f64> = cases.iter().map(|c| c.2).collect();
    let b = GraphBuilder::new("a");
    let y = b.input("y", DType::F64, &[ys.len()]);
    let x = b.input("x", DType::F64, &[xs.len()]);
    let g = b.finish(&[("a", y.atan2(x))]).unwrap();
    let out = run_all(&g, &[vec_of(DType::F64, &ys), vec_of(DType::F64, &xs)]);
    assert_bits("atan2", &out[0], &want);
}

#[test]
fn rounding_ops_and_sign_by_hand_in_both_dtypes_and_vector_loops() {
    // Ties go to even for `round`; signed zeros and NaN are kept by all four.
    let x = [
        0.5,
        1.5,
        2.5,
        -0.5,
        -1.5,
        -2.5,
        2.4,
        -2.6,
        -0.0,
        0.0,
        3.0,
        f64::NAN,
        f64::INFINITY,
    ];
    let nan = f64::NAN;
    let round = [
        0.0,
        2.0,
        2.0,
        -0.0,
        -2.0,
        -2.0,
        2.0,
        -3.0,
        -0.0,
        0.0,
        3.0,
        nan,
        f64::INFINITY,
    ];
    let floor = [
        0.0,
        1.0,
        2.0,
        -1.0,
        -2.0,
        -3.0,
        2.0,
        -3.0,
        -0.0,
        0.0,
        3.0,
        nan,
        f64::INFINITY,
    ];
    let ceil = [
        1.0,
        2.0,
        3.0,
        -0.0,
        -1.0,
        -2.0,
        3.0,
        -2.0,
        -0.0,
        0.0,
        3.0,
        nan,
        f64::INFINITY,
    ];
    let sign = [
        1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -0.0, 0.0, 1.0, nan, 1.0,
    ];
    // 13 elements: a scalar run; 13·5 = 65: vector loops with a tail.
    for reps in [1, 5] {
        let rep =
            |v: &[f64]| -> Vec<f64> { v.iter().copied().cycle().take(v.len() * reps).collect() };
        for d in [DType::F64, DType::F32] {
            let b = GraphBuilder::new("r");
            let xv = b.input("x", d, &[x.len() * reps]);
            let g = b
                .finish(&[
                    ("round", xv.round()),
                    ("floor", xv.floor()),
                    ("ceil", xv.ceil()),
                    ("sign", xv.sign()),
                ])
                .unwrap();
            let out = run_all(&g, &[vec_of(d, &rep(&x))]);
            assert_bits("round", &out[0], &rep(&round));
            assert_bits("floor", &out[1], &rep(&floor));
            assert_bits("ceil", &out[2], &rep(&ceil));
            assert_bits("sign", &out[3], &rep(&sign));
        }
    }
}

#[test]
fn analytic_derivatives_of_the_new_primitives() {
    // erf'(0) = 2/√π, tan'(x) = 1 + tan², ∂atan2(y,x) = (x, -y)/(x²+y²), and zero for the
    // rounding ops and sign (JAX's convention), in reverse and forward mode.
    let b = GraphBuilder::new("d");
    let x = b.input("x", DType::F64, &[]);
    let y = b.input("y", DType::F64, &[]);
    let loss = x.erf() + x.tan() + y.atan2(x) + x.floor() + x.ceil() + x.round() + x.sign();
    let gr = b.grad(loss, &[x, y]).unwrap();
    let one = b.scalar(DType::F64, 1.0);
    let zero = b.scalar(DType::F64, 0.0);
    let tx = b.jvp(&[loss], &[x, y], &[one, zero]).unwrap()[0];
    let g = b
        .finish(&[("gx", gr[0]), ("gy", gr[1]), ("tx", tx)])
        .unwrap();
    let (xv, yv) = (0.0f64, 2.0f64);
    let out = run_all(&g, &[xv.into(), yv.into()]);
    let r2 = xv * xv + yv * yv;
    let want_gx = std::f64::consts::FRAC_2_SQRT_PI + (1.0 + xv.tan().powi(2)) - yv / r2;
    let want_gy = xv / r2;
    let gx = out[0].scalar_value().unwrap();
    assert!((gx - want_gx).abs() < 1e-15, "{gx} vs {want_gx}");
    assert_eq!(out[1].scalar_value(), Some(want_gy));
    assert!((out[2].scalar_value().unwrap() - want_gx).abs() < 1e-15);
}

#[test]
fn cumsum_by_hand_and_its_gradient_is_the_reverse_cumsum() {
    let x = Tensor::from_f64(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let w = Tensor::from_f64(vec![2, 3], vec![1.0, 10.0, 100.0, 2.0, 20.0, 200.0]);
    for d in [DType::F64, DType::F32] {
        let b = GraphBuilder::new("c");
        let xv = b.input("x", d, &[2, 3]);
        let wv = b.input("w", d, &[2, 3]);
        let fwd1 = xv.cumsum(1, false);
        let rev1 = xv.cumsum(1, true);
        let fwd0 = xv.cumsum(0, false);
        // Through a transposed view: the JIT reads the operand through strides.
        let tr = xv.transpose(&[1, 0]).cumsum(0, false);
        let loss = (fwd1 * wv).sum() + (rev1 * wv).sum();
        let gr = b.grad(loss, &[xv]).unwrap()[0];
        let g = b
            .finish(&[
                ("f1", fwd1),
                ("r1", rev1),
                ("f0", fwd0),
                ("tr", tr),
                ("g", gr),
            ])
            .unwrap();
        let cast =
            |t: &Tensor| Tensor::from_fn(&TensorType::new(d, vec![2, 3]), |i| t.to_f64_vec()[i]);
        let out = run_all(&g, &[cast(&x), cast(&w)]);
        assert_bits("f1", &out[0], &[1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
        assert_bits("r1", &out[1], &[6.0, 5.0, 3.0, 15.0, 11.0, 6.0]);
        assert_bits("f0", &out[2], &[1.0, 2.0, 3.0, 5.0, 7.0, 9.0]);
        assert_bits("tr", &out[3], &[1.0, 4.0, 3.0, 9.0, 6.0, 15.0]);
        // ∂/∂x of Σ w·cumsum(x) is the reverse cumsum of w, and of Σ w·cumsum(x, reverse) the
        // forward cumsum of w. Row 0 by hand: [111, 110, 100] + [1, 11, 111] = [112, 121, 211];
        // row 1 is twice row 0.
        assert_bits("g", &out[4], &[112.0, 121.0, 211.0, 224.0, 242.0, 422.0]);
    }
    // The first element is copied, so the sign of a zero survives (as NumPy's cumsum).
    let b = GraphBuilder::new("z");
    let xv = b.input("x", DType::F64, &[3]);
    let g = b.finish(&[("y", xv.cumsum(0, false))]).unwrap();
    let out = run_all(&g, &[Tensor::from_f64(vec![3], vec![-0.0, -0.0, 1.0])]);
    assert_bits("zeros", &out[0], &[-0.0, -0.0, 1.0]);
}

#[test]
fn cumsum_of_a_long_axis_and_many_rows_matches_sequential_sums() {
    // f32, 3 × 1000 along axis 1 and 1000 × 3 along axis 0: the JIT's order is the
    // interpreter's (run_all checks bitwise), and both are the plain sequential f32 sum.
    let n = 1000;
    let vals: Vec<f64> = (0..3 * n)
        .map(|i| ((i * 7919) % 1013) as f64 / 97.0 - 5.0)
        .collect();
    let b = GraphBuilder::new("l");
    let x = b.input("x", DType::F32, &[3, n]);
    let g = b
        .finish(&[
            ("a", x.cumsum(1, false)),
            ("b", x.reshape(&[n, 3]).cumsum(0, true)),
        ])
        .unwrap();
    let xt = Tensor::from_fn(&TensorType::new(DType::F32, vec![3, n]), |i| vals[i]);
    let out = run_all(&g, &[xt]);
    let a = out[0].to_f64_vec();
    for r in 0..3 {
        let mut acc = vals[r * n] as f32;
        for k in 1..n {
            acc += vals[r * n + k] as f32;
            assert_eq!(a[r * n + k], f64::from(acc), "row {r} element {k}");
        }
    }
}

#[test]
fn pad_by_hand_and_its_adjoint_slices() {
    let b = GraphBuilder::new("p");
    let x = b.input("x", DType::F64, &[2, 2]);
    let w = b.input("w", DType::F64, &[3, 5]);
    let p = x.pad(&[(1, 0), (2, 1)]);
    let q = x.pad_with(&[(0, 1), (0, 0)], 7.0);
    let gr = b.grad((p * w).sum(), &[x]).unwrap()[0];
    let g = b.finish(&[("p", p), ("q", q), ("g", gr)]).unwrap();
    let xv = Tensor::from_f64(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let wv = Tensor::from_f64(vec![3, 5], (0..15).map(f64::from).collect());
    let out = run_all(&g, &[xv, wv]);
    #[rustfmt::skip]
    let want = [
        0.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 1.0, 2.0, 0.0,
        0.0, 0.0, 3.0, 4.0, 0.0,
    ];
    assert_eq!(out[0].shape(), &[3, 5]);
    assert_bits("pad", &out[0], &want);
    assert_bits("pad_with", &out[1], &[1.0, 2.0, 3.0, 4.0, 7.0, 7.0]);
    // The adjoint of padding is the slice of w under x: rows 1..3, columns 2..4.
    assert_bits("adjoint", &out[2], &[7.0, 8.0, 12.0, 13.0]);
}

#[test]
fn pad_with_the_wrong_number_of_axes_names_the_callers_line() {
    let b = GraphBuilder::new("p");
    let x = b.input("x", DType::F64, &[2, 2]);
    let line = line!() + 1;
    let p = x.pad(&[(1, 1)]);
    let e = b.finish(&[("p", p)]).unwrap_err().to_string();
    assert!(
        e.contains("one (before, after) pair per axis (2 axes), found 1"),
        "{e}"
    );
    assert!(e.contains(&format!("float_ops.rs:{line}")), "{e}");
}

#[test]
fn softplus_and_logaddexp_are_stable_and_their_gradients_are_sigmoids() {
    let xs = [
        -1000.0,
        -30.0,
        -1.0,
        0.0,
        0.5,
        30.0,
        1000.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let b = GraphBuilder::new("s");
    let x = b.input("x", DType::F64, &[xs.len()]);
    let sp = x.softplus();
    let gr = b.grad(sp.sum(), &[x]).unwrap()[0];
    let g = b.finish(&[("sp", sp), ("g", gr)]).unwrap();
    let out = interp::run(&g, &[vec_of(DType::F64, &xs)]).unwrap();
    let jit_out = jit::compile_with(&g, &exact())
        .unwrap()
        .run(&[vec_of(DType::F64, &xs)])
        .unwrap();
    assert!(jit_out[0].bits_eq(&out[0]) && jit_out[1].bits_eq(&out[1]));
    let (sp, gr) = (out[0].to_f64_vec(), out[1].to_f64_vec());
    for (i, &x) in xs.iter().enumerate() {
        // Reference: log1p(exp(x)) where it does not overflow, x + log1p(exp(-x)) above 0.
        let want = if x > 0.0 {
            x + (-x).exp().ln_1p()
        } else {
            x.exp().ln_1p()
        };
        let sig = 1.0 / (1.0 + (-x).exp());
        let close = sp[i] == want || (sp[i] - want).abs() <= 1e-15 * want.abs();
        assert!(close, "softplus({x}) = {}, want {want}", sp[i]);
        assert!(
            (gr[i] - sig).abs() <= 1e-15,
            "softplus'({x}) = {} vs {sig}",
            gr[i]
        );
    }
    assert_eq!(gr[3], 0.5);
    assert_eq!(sp[0], 0.0); // exp(-1000) underflows; no NaN, no -inf
    // logaddexp: large equal arguments, infinities, and the gradient sigmoid(a - b).
    let a = [
        1000.0,
        2.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -3.0,
        f64::INFINITY,
    ];
    let c = [
        1000.0,
        -1.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
        5.0,
    ];
    let b = GraphBuilder::new("l");
    let av = b.input("a", DType::F64, &[a.len()]);
    let cv = b.input("c", DType::F64, &[c.len()]);
    let l = av.logaddexp(cv);
    let g = b.finish(&[("l", l)]).unwrap();
    let out = run_all(&g, &[vec_of(DType::F64, &a), vec_of(DType::F64, &c)]);
    let l = out[0].to_f64_vec();
    assert_eq!(l[0], 1000.0 + 2f64.ln());
    assert!((l[1] - (2f64.exp() + (-1f64).exp()).ln()).abs() < 1e-15);
    assert_eq!(
        &l[2..],
        &[f64::INFINITY, f64::NEG_INFINITY, -3.0, f64::INFINITY]
    );
    let b = GraphBuilder::new("lg");
    let av = b.input("a", DType::F64, &[]);
    let cv = b.input("c", DType::F64, &[]);
    let gr = b.grad(av.logaddexp(cv), &[av, cv]).unwrap();
    let g = b.finish(&[("ga", gr[0]), ("gc", gr[1])]).unwrap();
    for (x, y) in [(2.0f64, -1.0f64), (0.25, 0.25), (-40.0, 3.0)] {
        let out = run_all(&g, &[x.into(), y.into()]);
        let s = 1.0 / (1.0 + (y - x).exp());
        assert!(
            (out[0].scalar_value().unwrap() - s).abs() < 1e-15,
            "({x}, {y})"
        );
        assert!(
            (out[1].scalar_value().unwrap() - (1.0 - s)).abs() < 1e-15,
            "({x}, {y})"
        );
    }
}

#[test]
fn clamp_values_and_gradient() {
    let xs = [-3.0, -1.0, 0.0, 1.0, 2.0, f64::NAN];
    let b = GraphBuilder::new("c");
    let x = b.input("x", DType::F64, &[xs.len()]);
    let y = x.clamp(-1.0, 1.0);
    let gr = b.grad(y.sum(), &[x]).unwrap()[0];
    let g = b.finish(&[("y", y), ("g", gr)]).unwrap();
    let out = run_all(&g, &[vec_of(DType::F64, &xs)]);
    assert_bits("clamp", &out[0], &[-1.0, -1.0, 0.0, 1.0, 1.0, f64::NAN]);
    // 1 inside, 0 outside, ½ on a bound (max/min split ties), as jnp.clip.
    assert_eq!(out[1].to_f64_vec()[..5], [0.0, 0.5, 1.0, 0.5, 0.0]);
}

#[test]
fn select_broadcasts_all_three_operands() {
    // `where(c, a, b)` with c [3,1], a [1,4], b []: the result is [3,4]; gradients are
    // un-broadcast to each branch's shape.
    let b = GraphBuilder::new("w");
    let c = b.input("c", DType::F64, &[3, 1]);
    let a = b.input("a", DType::F64, &[1, 4]);
    let e = b.input("e", DType::F64, &[]);
    let y = b.select(c.gt(c.scalar_like(0.0)), a, e);
    let gr = b.grad(y.sum(), &[a, e]).unwrap();
    let g = b.finish(&[("y", y), ("ga", gr[0]), ("ge", gr[1])]).unwrap();
    let cv = Tensor::from_f64(vec![3, 1], vec![1.0, -1.0, 2.0]);
    let av = Tensor::from_f64(vec![1, 4], vec![1.0, 2.0, 3.0, 4.0]);
    let out = run_all(&g, &[cv, av, 9.0.into()]);
    #[rustfmt::skip]
    let want = [
        1.0, 2.0, 3.0, 4.0,
        9.0, 9.0, 9.0, 9.0,
        1.0, 2.0, 3.0, 4.0,
    ];
    assert_eq!(out[0].shape(), &[3, 4]);
    assert_bits("where", &out[0], &want);
    assert_bits("ga", &out[1], &[2.0, 2.0, 2.0, 2.0]);
    assert_eq!(out[2].scalar_value(), Some(4.0));
}

#[test]
fn gir_spelling_round_trips_and_runs() {
    let src = "graph @ops {
  %x = input f64[2,3]
  %y = input f64[2,3]
  %a = tan %x : f64[2,3]
  %b = erf %a : f64[2,3]
  %c = atan2 %b, %y : f64[2,3]
  %d = floor %c : f64[2,3]
  %e = ceil %d : f64[2,3]
  %f = round %x : f64[2,3]
  %g = sign %f : f64[2,3]
  %h = cumsum %g axis=1 reverse=true : f64[2,3]
  %i = cumsum %h axis=0 : f64[2,3]
  %j = add %e, %i : f64[2,3]
  output %j
}
";
    let g = text::parse(src).unwrap();
    assert_eq!(text::print(&g), src);
    let x = Tensor::from_f64(vec![2, 3], vec![-2.6, -0.5, 0.5, 1.5, 2.5, 0.1]);
    let y = Tensor::from_f64(vec![2, 3], vec![1.0; 6]);
    let out = run_all(&g, &[x, y])[0].to_f64_vec();
    // By hand. %e: atan2(erf(tan x), 1) = atan(erf(tan x)) lies in (-π/4, π/4) with the sign of
    // tan x, which is [+, -, +, +, -, +] (tan(-2.6) = tan(π - 2.6) > 0, tan(2.5) < 0), so
    // floor then ceil give [0, -1, 0, 0, -1, 0]. %g: round = [-3, -0, 0, 2, 2, 0] (ties to
    // even), sign = [-1, -0, 0, 1, 1, 0]; %h: reverse cumsum along rows = [-1, 0, 0, 2, 1, 0];
    // %i: cumsum down the columns = [-1, 0, 0, 1, 1, 0]. %j = %e + %i.
    assert_eq!(out, [-1.0, -1.0, 0.0, 1.0, 0.0, 0.0]);
    // An unknown attribute is an error at its column.
    let bad =
        "graph @b {\n  %x = input f64[3]\n  %y = cumsum %x axis=0 exclusive=true\n  output %y\n}\n";
    let e = text::parse(bad).unwrap_err();
    assert_eq!(e.line, 3);
}

#[test]
fn cumsum_overflow_is_traced_to_the_cumsum_with_its_summands() {
    // [1, MAX, MAX, 2] along the axis: element 2 is the first to overflow, from the three
    // finite elements summed into it. Reversed, elements 0 and 1 overflow; the report names
    // the first in row-major order, summed from all four.
    let m = f64::MAX;
    for (reverse, index, values) in [(false, 2, vec![1.0, m, m]), (true, 0, vec![1.0, m, m, 2.0])] {
        let b = GraphBuilder::new("o");
        let x = b.input("x", DType::F64, &[4]);
        let y = x.cumsum(0, reverse);
        let g = b.finish(&[("y", y)]).unwrap();
        let xv = Tensor::from_f64(vec![4], vec![1.0, f64::MAX, f64::MAX, 2.0]);
        let Err(gradlift::interp::EvalError::NonFinite(r)) =
            interp::run_checked(&g, std::slice::from_ref(&xv))
        else {
            panic!("overflow not reported (reverse {reverse})");
        };
        assert_eq!(r.op, gradlift::Op::Cumsum);
        assert_eq!(r.index, vec![index]);
        assert_eq!(r.operands[0].values, values);
        // The JIT's checked mode reports the same.
        let cfg = jit::JitConfig {
            check_finite: true,
            ..jit::JitConfig::default()
        };
        let Err(jit::CallError::NonFinite(j)) = jit::compile_with(&g, &cfg).unwrap().run(&[xv])
        else {
            panic!("overflow not reported by the JIT (reverse {reverse})");
        };
        assert_eq!(j, r);
    }
}
