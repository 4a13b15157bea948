//! Kernels on several threads: large loops cut into chunks (elementwise, reductions) give the
//! same bits with 1, 2 or 4 threads per call, and agree with the interpreter (bitwise with
//! `exact_math`, within the summation bound otherwise).
//! The MLP step (GEMM-heavy) is checked in `mlp.rs`, the GEMM wrapper in `jit::gemm`'s tests.
//! Compiling on several threads (`JitConfig::threads`) changes no output bit either, and the
//! ISA cached for the process serves every configuration.

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
    // 300 × 1000 elements: far above the default 16384-element threshold, so every loop is
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

/// `a` within `rel` × the largest magnitude of `b` of `b`, element by element (a GEMM's and a
/// reassociated sum's error bounds scale with the terms, not with the result).
fn close(a: &Tensor, b: &Tensor, rel: f64) -> bool {
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    a.len() == b.len() && a.iter().zip(&b).all(|(p, q)| (p - q).abs() <= rel * scale)
}

/// Runs `g` compiled with `cfg` on `ins`, or `None` if it does not compile or run.
fn jit_run(g: &gradlift::Graph, cfg: &JitConfig, ins: &[Tensor]) -> Option<Vec<Tensor>> {
    jit::compile_with(g, cfg).ok()?.run(ins).ok()
}

#[test]
fn the_compile_thread_count_changes_no_output_bit() {
    // Random graphs (loops, nested loops and gradients included), split into functions of at
    // most 3 nodes so that several functions (and loop bodies) compile side by side, on 1 to
    // 8 compile threads. Oracles: with `exact_math`, the interpreter, bit for bit; in the
    // default fast math, the same graph compiled on one thread, bit for bit.
    let (mut checked, mut multi) = (0, 0);
    for seed in 0..24u64 {
        let g = crate::random::random_graph_loops(seed, 30, seed % 2 == 0, true);
        let ins = crate::random::random_inputs(&g, seed);
        let Ok(want) = interp::run(&g, &ins) else {
            continue;
        };
        for exact_math in [true, false] {
            let cfg = |threads| JitConfig {
                threads,
                exact_math,
                max_ops_per_function: 3,
                ..JitConfig::default()
            };
            let Some(one) = jit_run(&g, &cfg(1), &ins) else {
                continue;
            };
            if exact_math {
                for (k, (a, b)) in one.iter().zip(&want).enumerate() {
                    assert!(crate::fuzz_check::same_bits(a, b), "seed {seed} output {k}");
                }
            }
            for threads in [2, 3, 8, 0] {
                let k = jit::compile_with(&g, &cfg(threads)).unwrap();
                multi += usize::from(k.function_count() > 1);
                let got = k.run(&ins).unwrap();
                assert!(
                    bits(&got) == bits(&one),
                    "seed {seed}, exact_math {exact_math}: {threads} compile threads"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 24, "only {checked} graphs checked");
    assert!(multi >= 40, "only {multi} kernels had several functions");
}

#[test]
fn the_cached_isa_serves_every_configuration_in_one_process() {
    // The host ISA is built once per process (per verifier setting) and shared by every
    // compile, also while other threads compile with other settings: interleaved verifier,
    // exact math, batch math and thread settings must each compute what the interpreter does
    // (bit for bit with `exact_math`, within the math functions' ULP bounds otherwise).
    let b = GraphBuilder::new("mix");
    let x = b.input("x", DType::F64, &[40, 24]);
    let w = b.input("w", DType::F64, &[24, 24]);
    let h = x.matmul(w).tanh();
    let loss = (h * h).sum() + (x * 0.5).exp().sum();
    let gw = b.grad(loss, &[w]).unwrap()[0];
    let g = b.finish(&[("loss", loss), ("gw", gw)]).unwrap();
    let mut rng = Rng(3);
    let mut input = |shape: Vec<usize>| {
        let n = shape.iter().product();
        Tensor::from_f64(shape, (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect())
    };
    let ins = [input(vec![40, 24]), input(vec![24, 24])];
    let want = interp::run(&g, &ins).unwrap();
    let configs: Vec<JitConfig> = [false, true]
        .into_iter()
        .flat_map(|verifier| {
            [
                (false, false, 1),
                (true, true, 2),
                (false, true, 0),
                (true, false, 3),
            ]
            .map(|(exact_math, batch_math, threads)| JitConfig {
                verifier,
                exact_math,
                batch_math,
                threads,
                max_ops_per_function: 4,
                ..JitConfig::default()
            })
        })
        .collect();
    jit::warm_up(&configs[0]).unwrap();
    std::thread::scope(|s| {
        for t in 0..2 {
            let (configs, g, ins, want) = (&configs, &g, &ins, &want);
            s.spawn(move || {
                for cfg in configs.iter().cycle().skip(t).step_by(2).take(8) {
                    let got = jit::compile_with(g, cfg).unwrap().run(ins).unwrap();
                    for (a, b) in got.iter().zip(want) {
                        let ok = if cfg.exact_math {
                            crate::fuzz_check::same_bits(a, b)
                        } else {
                            close(a, b, 1e-10)
                        };
                        assert!(ok, "{cfg:?}: {a:?} vs {b:?}");
                    }
                }
            });
        }
    });
}
