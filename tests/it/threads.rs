//! Kernels on several threads: large loops cut into chunks (elementwise, reductions) give the
//! same bits with 1, 2 or 4 threads per call, and agree with the interpreter (bitwise with
//! `exact_math`, within the summation bound otherwise).
//! The MLP step (GEMM-heavy) is checked in `mlp.rs`, the GEMM wrapper in `jit::gemm`'s tests.

use gradlift::jit::{self, JitConfig};
use gradlift::testutil::Rng;
use gradlift::{DType, GraphBuilder, Tensor, interp};
use std::num::NonZeroUsize;

fn bits(ts: &[Tensor]) -> Vec<Vec<u64>> {
    ts.iter()
        .map(|t| t.to_f64_vec().iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn chunked_loops_and_reductions_are_bitwise_independent_of_the_thread_count() {
    // 300 × 1000 elements: far above the default 65536-element threshold, so every loop is
    // cut into chunks; the full sums are reduced across chunks (partials folded in order).
    let (r, c) = (300, 1000);
    let b = GraphBuilder::new("reductions");
    let x = b.input("x", DType::F32, &[r, c]);
    let y = b.input("y", DType::F32, &[r, c]);
    let e = (x * y + 1.5).exp() - y;
    let g = b
        .finish(&[
            ("total", (x * x).sum()),
            ("rows", e.sum_axes(&[1])),
            ("cols", e.sum_axes(&[0])),
            ("elementwise", e),
            ("transcendental", (x * 0.5).tanh().sum()),
        ])
        .unwrap();
    let mut rng = Rng(9);
    let mut input = || {
        let v = (0..r * c).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
        Tensor::from_f32(vec![r, c], v)
    };
    let ins = [input(), input()];
    let want = interp::run(&g, &ins).unwrap();
    let run = |threads: usize, exact_math: bool| {
        let cfg = JitConfig {
            kernel_threads: NonZeroUsize::new(threads),
            exact_math,
            ..JitConfig::default()
        };
        let k = jit::compile_with(&g, &cfg).unwrap();
        // (`exact_math` keeps reductions in one piece, and the elementwise loop is fused
        // into them, so only the other mode has parallel groups here.)
        assert!(exact_math || k.stats().groups_parallel > 0, "{}", k.stats());
        k.run(&ins).unwrap()
    };
    let one = run(1, false);
    for threads in [2, 4] {
        assert!(
            bits(&run(threads, false)) == bits(&one),
            "{threads} threads"
        );
    }
    // The interpreter as oracle: the reassociated sum of n terms is within n·ε·Σ|terms|
    // (here of x², so Σ|terms| is the sum itself); elementwise values within the vmath
    // bounds (4 ULP for tanh, 1 for exp), checked loosely in relative terms.
    let (got, exact) = (one[0].to_f64_vec()[0], want[0].to_f64_vec()[0]);
    let n = (r * c) as f64;
    assert!(
        (got - exact).abs() <= n * f64::from(f32::EPSILON) * exact,
        "{got} vs {exact}"
    );
    for (i, (a, b)) in one.iter().zip(&want).enumerate().skip(1) {
        let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(&b)
            .fold(0f64, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            err <= 1e-3 * scale,
            "output {i}: error {err} (scale {scale})"
        );
    }
    // With exact_math the JIT reproduces the interpreter's bits, whatever the thread count.
    for threads in [1, 2] {
        assert!(
            bits(&run(threads, true)) == bits(&want),
            "exact_math, {threads} threads"
        );
    }
}

#[test]
fn the_thread_count_reaches_the_kernel_and_any_count_computes_the_same() {
    assert_eq!(JitConfig::default().kernel_threads, None);
    let b = GraphBuilder::new("tiny");
    let x = b.input("x", DType::F64, &[3]);
    let g = b.finish(&[("s", (x * x).sum())]).unwrap();
    for threads in [None, NonZeroUsize::new(1), NonZeroUsize::new(8)] {
        let cfg = JitConfig {
            kernel_threads: threads,
            ..JitConfig::default()
        };
        let k = jit::compile_with(&g, &cfg).unwrap();
        assert_eq!(k.threads(), threads);
        let out = k
            .run(&[Tensor::from_f64(vec![3], vec![1.0, 2.0, 3.0])])
            .unwrap();
        assert_eq!(out[0].scalar_value(), Some(14.0));
    }
}
