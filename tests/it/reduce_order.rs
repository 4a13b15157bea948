//! The order of vectorized reductions (`jit` module docs, "Agreement with the interpreter"):
//! in default mode element `i` of an innermost reduced loop accumulates into partial
//! `i mod 8` (f64: four slots of two lanes) or `i mod 16` (f32: four slots of four lanes),
//! folded slots pairwise, then lanes pairwise; with `exact_math` the interpreter's order,
//! bitwise. Sizes cross the vector, slot and staged-segment boundaries; NaN and infinities
//! propagate through `reduce_max`/`reduce_min` (whose vector form uses the native max/min
//! instructions and tracks NaN lanes apart) and sums; the `lse` gradient agrees with finite
//! differences; and shifted views of zero-padded values (`concat(0, y)[k..k + n]`, read in
//! place) equal the interpreter bitwise.

use crate::fuzz_check::same_bits;
use gradlift::jit::{self, JitConfig};
use gradlift::testutil::Rng;
use gradlift::{DType, Graph, GraphBuilder, Tensor, interp};
use std::num::NonZeroUsize;

const RELEASE: bool = !cfg!(debug_assertions);

fn exact() -> JitConfig {
    JitConfig {
        exact_math: true,
        ..JitConfig::default()
    }
}

fn single() -> JitConfig {
    JitConfig {
        parallel_min_elements: usize::MAX,
        kernel_threads: NonZeroUsize::new(1),
        ..JitConfig::default()
    }
}

/// The sizes every test uses: single, around the f64 round of slots (8) and the f32 one
/// (16), around a staged segment (1024), and (release builds) one large odd size cut into
/// parallel chunks. (Size 0 does not exist: see `an_empty_reduction_is_refused`.)
fn sizes() -> Vec<usize> {
    let mut v = vec![1, 7, 8, 9, 15, 16, 17, 1023, 1024, 1025, 3 * 1024 + 7];
    if RELEASE {
        v.push(1_000_003);
    }
    v
}

fn tensor(d: DType, xs: &[f64]) -> Tensor {
    match d {
        DType::F32 => Tensor::from_f32(vec![xs.len()], xs.iter().map(|&v| v as f32).collect()),
        _ => Tensor::from_f64(vec![xs.len()], xs.to_vec()),
    }
}

/// The documented default-mode order for a sum of `xs` (rounded to `d` after every add):
/// partial `i mod (4·lanes)`, slots folded pairwise, then lanes pairwise.
fn slot_order_sum(d: DType, xs: &[f64]) -> f64 {
    let lanes = 16 / d.size_bytes();
    let round = |v: f64| {
        if d == DType::F32 {
            f64::from(v as f32)
        } else {
            v
        }
    };
    let mut part = vec![0.0f64; 4 * lanes];
    for (i, &x) in xs.iter().enumerate() {
        let k = i % part.len();
        part[k] = round(part[k] + x);
    }
    // Slot s holds lanes `s·lanes .. (s+1)·lanes`; slots pairwise: (0+1), (2+3), then the two.
    let slot = |s: usize| part[s * lanes..(s + 1) * lanes].to_vec();
    let add =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| round(x + y)).collect() };
    let mut v = add(&add(&slot(0), &slot(1)), &add(&slot(2), &slot(3)));
    while v.len() > 1 {
        v = v.chunks(2).map(|p| round(p[0] + p[1])).collect();
    }
    v[0]
}

fn sum_graph(d: DType, n: usize) -> Graph {
    let b = GraphBuilder::new("sum");
    let x = b.input("x", d, &[n]);
    b.finish(&[("s", x.sum())]).unwrap()
}

fn one(g: &Graph, cfg: &JitConfig, x: &Tensor) -> f64 {
    let k = jit::compile_with(g, cfg).unwrap();
    k.run(std::slice::from_ref(x)).unwrap()[0].to_f64_vec()[0]
}

/// gradlift has no empty tensors, so a reduction always has a defined result: an input of
/// size 0 is a typed error naming it, not a kernel.
#[test]
fn an_empty_reduction_is_refused() {
    let b = GraphBuilder::new("empty");
    let x = b.input("x", DType::F64, &[0]);
    let err = b.finish(&[("s", x.sum())]).unwrap_err().to_string();
    assert!(
        err.contains("\"x\"") && err.contains("no empty tensors"),
        "{err}"
    );
}

#[test]
fn sums_follow_the_documented_slot_order_and_are_exact_in_exact_mode() {
    let mut r = Rng(5);
    for d in [DType::F64, DType::F32] {
        for n in sizes() {
            let xs: Vec<f64> = (0..n).map(|_| r.uniform(-1.0, 1e3)).collect();
            let xs: Vec<f64> = match d {
                DType::F32 => xs.iter().map(|&v| f64::from(v as f32)).collect(),
                _ => xs,
            };
            let x = tensor(d, &xs);
            let g = sum_graph(d, n);
            let want = interp::run(&g, std::slice::from_ref(&x)).unwrap()[0].to_f64_vec()[0];
            // Exact mode: the interpreter's bits.
            let got = one(&g, &exact(), &x);
            assert_eq!(got.to_bits(), want.to_bits(), "{d} n={n} exact");
            // Default mode, one chunk: the documented order, bit for bit.
            let got = one(&g, &single(), &x);
            let oracle = slot_order_sum(d, &xs);
            assert_eq!(
                got.to_bits(),
                oracle.to_bits(),
                "{d} n={n}: {got} vs {oracle}"
            );
            // Default mode, chunked: within the summation bound, and the same bits whatever
            // the thread count.
            let eps = if d == DType::F32 {
                f64::from(f32::EPSILON)
            } else {
                f64::EPSILON
            };
            let abs: f64 = xs.iter().map(|v| v.abs()).sum();
            let mut bits = None;
            for threads in [1, 2, 4] {
                let cfg = JitConfig {
                    kernel_threads: NonZeroUsize::new(threads),
                    ..JitConfig::default()
                };
                let got = one(&g, &cfg, &x);
                assert!(
                    (got - want).abs() <= n as f64 * eps * abs,
                    "{d} n={n}: {got} vs {want}"
                );
                assert_eq!(
                    *bits.get_or_insert(got.to_bits()),
                    got.to_bits(),
                    "{threads}"
                );
            }
        }
    }
}

/// `reduce_max`/`reduce_min`, and a sum of `exp` (a staged loop from 1024 elements): the
/// extremes equal the interpreter's as numbers in default mode (a zero's sign may differ) and
/// bitwise in exact mode; the `exp` sum is the documented order applied to the kernel's own
/// elementwise `exp` values (whose accuracy `simd.rs` checks).
#[test]
fn extremes_and_staged_sums_follow_the_documented_order() {
    let mut r = Rng(6);
    for d in [DType::F64, DType::F32] {
        for n in sizes() {
            let xs: Vec<f64> = (0..n).map(|_| r.uniform(-30.0, 30.0)).collect();
            let x = tensor(d, &xs);
            let b = GraphBuilder::new("extremes");
            let v = b.input("x", d, &[n]);
            let g = b
                .finish(&[
                    ("max", v.max_axes(&[0], false)),
                    ("min", v.min_axes(&[0], false)),
                    ("lse", v.exp().sum()),
                    ("e", v.exp()),
                ])
                .unwrap();
            let want = interp::run(&g, std::slice::from_ref(&x)).unwrap();
            let k = jit::compile_with(&g, &exact()).unwrap();
            let got = k.run(std::slice::from_ref(&x)).unwrap();
            for (w, o) in want.iter().zip(&got) {
                assert!(same_bits(w, o), "{d} n={n} exact: {w:?} vs {o:?}");
            }
            let got = jit::compile_with(&g, &single())
                .unwrap()
                .run(std::slice::from_ref(&x))
                .unwrap();
            for i in 0..2 {
                assert_eq!(
                    want[i].to_f64_vec(),
                    got[i].to_f64_vec(),
                    "{d} n={n} output {i}"
                );
            }
            let oracle = slot_order_sum(d, &got[3].to_f64_vec());
            let s = got[2].to_f64_vec()[0];
            assert_eq!(s.to_bits(), oracle.to_bits(), "{d} n={n}: {s} vs {oracle}");
        }
    }
}

#[test]
fn nan_and_infinities_propagate_through_extremes_and_sums() {
    let inf = f64::INFINITY;
    for d in [DType::F64, DType::F32] {
        for n in sizes() {
            // Every special value at positions in each slot, lane, the tail and the ends.
            let mut positions = vec![0, n - 1, n / 2];
            positions.extend((1..17).filter(|&p| p < n));
            for &p in &positions {
                for (special, what) in [(f64::NAN, "nan"), (inf, "inf"), (-inf, "-inf")] {
                    let mut xs: Vec<f64> = (0..n).map(|i| (i % 13) as f64 - 6.0).collect();
                    xs[p] = special;
                    let x = tensor(d, &xs);
                    let b = GraphBuilder::new("specials");
                    let v = b.input("x", d, &[n]);
                    let g = b
                        .finish(&[
                            ("max", v.max_axes(&[0], false)),
                            ("min", v.min_axes(&[0], false)),
                            ("sum", v.sum()),
                        ])
                        .unwrap();
                    let (max, min, sum) = match what {
                        "nan" => (f64::NAN, f64::NAN, f64::NAN),
                        "inf" => (inf, xs.iter().copied().fold(inf, f64::min), inf),
                        _ => (xs.iter().copied().fold(-inf, f64::max), -inf, -inf),
                    };
                    for cfg in [exact(), single(), JitConfig::default()] {
                        let got = jit::compile_with(&g, &cfg)
                            .unwrap()
                            .run(std::slice::from_ref(&x))
                            .unwrap();
                        for (o, want) in got.iter().zip([max, min, sum]) {
                            let o = o.to_f64_vec()[0];
                            assert!(
                                o == want || (o.is_nan() && want.is_nan()),
                                "{d} n={n} {what} at {p}: {o} vs {want}"
                            );
                        }
                    }
                }
            }
            // inf and -inf in one sum: NaN.
            let mut xs = vec![1.0; n];
            xs[0] = inf;
            xs[n - 1] = -inf;
            if n > 1 {
                let x = tensor(d, &xs);
                for cfg in [exact(), single()] {
                    assert!(one(&sum_graph(d, n), &cfg, &x).is_nan(), "{d} n={n}");
                }
            }
        }
    }
}

/// `log Σ exp(xᵢ)` of GradBench's `lse`, its gradient against central differences of the
/// directly computed function.
#[test]
fn lse_gradient_agrees_with_finite_differences() {
    let lse = |xs: &[f64]| {
        let a = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        xs.iter().map(|x| (x - a).exp()).sum::<f64>().ln() + a
    };
    let mut r = Rng(7);
    for n in [1, 7, 8, 9, 1025] {
        let xs: Vec<f64> = (0..n).map(|_| r.uniform(-5.0, 5.0)).collect();
        let b = GraphBuilder::new("lse");
        let x = b.input("x", DType::F64, &[n]);
        let a = x.max_axes(&[0], false).stop_gradient();
        let y = (x - a).exp().sum().log() + a;
        let gx = b.grad(y, &[x]).unwrap()[0];
        let g = b.finish(&[("y", y), ("g", gx)]).unwrap();
        let out = jit::compile(&g)
            .unwrap()
            .run(&[Tensor::from_f64(vec![n], xs.clone())])
            .unwrap();
        let (y, grad) = (out[0].to_f64_vec()[0], out[1].to_f64_vec());
        assert!((y - lse(&xs)).abs() <= 1e-13 * y.abs().max(1.0), "n={n}");
        for i in 0..n {
            let h = 1e-6;
            let (mut p, mut m) = (xs.clone(), xs.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (lse(&p) - lse(&m)) / (2.0 * h);
            assert!(
                (grad[i] - fd).abs() <= 1e-7,
                "n={n} i={i}: {} vs {fd}",
                grad[i]
            );
        }
    }
}

/// `y + Σₖ aₖ·shiftₖ(y)` with `shiftₖ(y) = concat(0, y)[4−k..4−k+n]`, the shape of `ode`'s
/// Runge-Kutta step: the slices of the zero-padded value are read in place (no copy), and are
/// elementwise, so bitwise the interpreter's in every mode; also when the padded value is
/// needed in memory anyway (an output), and through the gradient (slice adjoints of slices).
#[test]
fn shifted_views_of_padded_values_equal_the_interpreter() {
    let mut r = Rng(8);
    let mut lens = vec![1, 3, 4, 5, 9, 17, 1000];
    if RELEASE {
        lens.push(200_001);
    }
    for n in lens {
        for padded_out in [false, true] {
            let b = GraphBuilder::new("shift");
            let y = b.input("y", DType::F64, &[n]);
            let a = b.input("a", DType::F64, &[n]);
            let zeros = b.zeros(DType::F64, &[4]);
            let yp = b.concat(&[zeros, y], 0);
            let mut next = y * 1.0;
            for k in 1..=4 {
                next = next + a * yp.slice(&[4 - k], &[4 - k + n]) * k as f64;
            }
            let loss = (next * next).sum();
            let gy = b.grad(loss, &[y]).unwrap()[0];
            let mut outs = vec![("next", next), ("gy", gy)];
            if padded_out {
                outs.push(("yp", yp));
            }
            let g = b.finish(&outs).unwrap();
            let ins: Vec<Tensor> = (0..2)
                .map(|_| Tensor::from_f64(vec![n], (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()))
                .collect();
            let want = interp::run(&g, &ins).unwrap();
            for cfg in [exact(), single(), JitConfig::default()] {
                let got = jit::compile_with(&g, &cfg).unwrap().run(&ins).unwrap();
                for i in [0, 2].into_iter().filter(|&i| i < want.len()) {
                    assert!(same_bits(&want[i], &got[i]), "n={n} output {i}");
                }
                // The gradient sums cotangents: bitwise in exact mode, else within the bound.
                let (w, o) = (want[1].to_f64_vec(), got[1].to_f64_vec());
                for (p, q) in w.iter().zip(&o) {
                    let ok = if cfg.exact_math {
                        p.to_bits() == q.to_bits()
                    } else {
                        (p - q).abs() <= 1e-12 * p.abs().max(1.0)
                    };
                    assert!(ok, "n={n} gradient: {p} vs {q}");
                }
            }
        }
    }
}
