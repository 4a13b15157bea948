//! JIT kernel speed against hand-written Rust and the interpreter (value + gradient).
//!
//! Groups (each has `rust`, `jit` and `interp`; the last two also `jit_forward`, the value
//! alone, for the gradient/forward cost ratio):
//! - `worked_example`: `y = x1² + x2` and its gradient through the safe call API.
//! - `rosenbrock_1000`: `Σ 100(x[1:] - x[:-1]²)² + (1 - x[:-1])²` over 1000 f64.
//! - `chain_1m`: `Σ tanh(1.5x+0.5)·sigmoid(x) + exp(-x²)` over 1,048,576 f32.
//! - `math_1m`: `Σ log1p(exp(x)) + sin(x)·cos(x) + log(x²+1)` and its gradient over 1,048,576
//!   f32, the JIT with and without batched math helpers (`JitConfig::batch_math`): the
//!   other functions, and a call on a call's result (`log1p(exp(x))`).
//!
//! Every graph goes through the user's pipeline: build, differentiate, `opt::optimize`,
//! compile (the interpreter runs the same optimized graph).
//!
//! Goals (issue 3): worked example < 50 ns per call, Rosenbrock < 5 µs, chain ≤ 1 ms,
//! gradient ≤ 3 × forward. Run with
//! `cargo bench --bench jit_perf -- --warm-up-time 1 --measurement-time 3`.

use criterion::{Criterion, criterion_group, criterion_main};
use gradlift::jit::{self, Buf, BufMut, JitConfig, Kernel};
use gradlift::{DType, Graph, GraphBuilder, Tensor, interp, opt};
use std::hint::black_box;

fn worked_example() -> Graph {
    let b = GraphBuilder::new("worked");
    let x1 = b.input("x1", DType::F64, &[]);
    let x2 = b.input("x2", DType::F64, &[]);
    let y = x1 * x1 + x2;
    let d = b.grad(y, &[x1, x2]).unwrap();
    optimized(b.into_graph(&[y.id(), d[0].id(), d[1].id()]).unwrap())
}

/// `g` after the optimizer (what a user compiles).
fn optimized(mut g: Graph) -> Graph {
    opt::optimize(&mut g, &opt::OptConfig::default());
    g
}

/// Rosenbrock over `n` f64 values; with its gradient when `grad`.
fn rosenbrock(n: usize, grad: bool) -> Graph {
    let b = GraphBuilder::new("rosenbrock");
    let x = b.input("x", DType::F64, &[n]);
    let hi = x.slice(&[1], &[n]);
    let lo = x.slice(&[0], &[n - 1]);
    let y = ((hi - lo * lo).powi(2) * 100.0 + (1.0 - lo).powi(2)).sum();
    if !grad {
        return optimized(b.into_graph(&[y.id()]).unwrap());
    }
    let d = b.grad(y, &[x]).unwrap();
    optimized(b.into_graph(&[y.id(), d[0].id()]).unwrap())
}

/// The elementwise chain over `n` f32 values; with its gradient when `grad`.
fn chain(n: usize, grad: bool) -> Graph {
    let b = GraphBuilder::new("chain");
    let x = b.input("x", DType::F32, &[n]);
    let y = ((x * 1.5 + 0.5).tanh() * x.sigmoid() + (-(x * x)).exp()).sum();
    if !grad {
        return optimized(b.into_graph(&[y.id()]).unwrap());
    }
    let d = b.grad(y, &[x]).unwrap();
    optimized(b.into_graph(&[y.id(), d[0].id()]).unwrap())
}

fn rosenbrock_rust(x: &[f64], g: &mut [f64]) -> f64 {
    let n = x.len();
    let mut y = 0.0;
    g.fill(0.0);
    for i in 0..n - 1 {
        let t = x[i + 1] - x[i] * x[i];
        let u = 1.0 - x[i];
        y += 100.0 * t * t + u * u;
        g[i] += -400.0 * x[i] * t - 2.0 * u;
        g[i + 1] += 200.0 * t;
    }
    y
}

fn chain_rust(x: &[f32], g: &mut [f32]) -> f32 {
    let mut y = 0.0f32;
    for (xi, gi) in x.iter().zip(g.iter_mut()) {
        let t = (1.5 * xi + 0.5).tanh();
        let s = 1.0 / (1.0 + (-xi).exp());
        let e = (-(xi * xi)).exp();
        y += t * s + e;
        *gi = 1.5 * (1.0 - t * t) * s + t * s * (1.0 - s) - 2.0 * xi * e;
    }
    y
}

/// Calls `k` through the safe, allocation-free API with pre-made buffers.
fn bench_kernel(c: &mut Criterion, name: &str, k: &Kernel, ins: &[Tensor]) {
    let mut ws = k.workspace();
    let mut outs: Vec<Tensor> = k
        .output_types()
        .iter()
        .map(|t| Tensor::splat(t, 0.0))
        .collect();
    c.bench_function(name, |b| {
        b.iter(|| {
            let in_bufs: Vec<Buf<'_>> = ins.iter().map(Buf::from).collect();
            let mut out_bufs: Vec<BufMut<'_>> = outs.iter_mut().map(BufMut::from).collect();
            k.call(black_box(&in_bufs), &mut out_bufs, &mut ws).unwrap();
        })
    });
}

fn bench_worked_example(c: &mut Criterion) {
    let g = worked_example();
    let k = jit::compile(&g).unwrap();
    let mut ws = k.workspace();
    let (x1, x2) = ([3.0f64], [4.0f64]);
    let (mut y, mut g1, mut g2) = ([0.0f64], [0.0f64], [0.0f64]);
    c.bench_function("worked_example/rust", |b| {
        b.iter(|| {
            let (a, c) = (black_box(x1[0]), black_box(x2[0]));
            black_box((a * a + c, 2.0 * a, 1.0))
        })
    });
    c.bench_function("worked_example/jit", |b| {
        b.iter(|| {
            let ins = [Buf::F64(black_box(&x1)), Buf::F64(black_box(&x2))];
            let mut outs = [
                BufMut::F64(&mut y),
                BufMut::F64(&mut g1),
                BufMut::F64(&mut g2),
            ];
            k.call(&ins, &mut outs, &mut ws).unwrap();
        })
    });
    let ins = [Tensor::scalar_f64(3.0), Tensor::scalar_f64(4.0)];
    c.bench_function("worked_example/interp", |b| {
        b.iter(|| interp::run(&g, black_box(&ins)).unwrap())
    });
}

fn bench_rosenbrock(c: &mut Criterion) {
    let n = 1000;
    let xs: Vec<f64> = (0..n)
        .map(|i| ((i * 37) % 100) as f64 / 50.0 - 1.0)
        .collect();
    let mut grad = vec![0.0; n];
    c.bench_function("rosenbrock_1000/rust", |b| {
        b.iter(|| rosenbrock_rust(black_box(&xs), &mut grad))
    });
    let ins = [Tensor::from_f64(vec![n], xs.clone())];
    let g = rosenbrock(n, true);
    bench_kernel(c, "rosenbrock_1000/jit", &jit::compile(&g).unwrap(), &ins);
    let f = rosenbrock(n, false);
    bench_kernel(
        c,
        "rosenbrock_1000/jit_forward",
        &jit::compile(&f).unwrap(),
        &ins,
    );
    c.bench_function("rosenbrock_1000/interp", |b| {
        b.iter(|| interp::run(&g, black_box(&ins)).unwrap())
    });
}

fn bench_chain(c: &mut Criterion) {
    let n = 1 << 20;
    let xs: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 6000) as f32 / 1000.0 - 3.0)
        .collect();
    let mut grad = vec![0.0f32; n];
    let mut group = c.benchmark_group("chain_1m");
    group.sample_size(20);
    group.bench_function("rust", |b| b.iter(|| chain_rust(black_box(&xs), &mut grad)));
    group.finish();
    let ins = [Tensor::from_f32(vec![n], xs.clone())];
    let g = chain(n, true);
    bench_kernel(c, "chain_1m/jit", &jit::compile(&g).unwrap(), &ins);
    let f = chain(n, false);
    bench_kernel(c, "chain_1m/jit_forward", &jit::compile(&f).unwrap(), &ins);
    let mut group = c.benchmark_group("chain_1m");
    group.sample_size(10);
    group.bench_function("interp", |b| {
        b.iter(|| interp::run(&g, black_box(&ins)).unwrap())
    });
    group.finish();
}

/// `Σ log1p(exp(x)) + sin(x)·cos(x) + log(x²+1)` over `n` f32 values, with its gradient.
fn math(n: usize) -> Graph {
    let b = GraphBuilder::new("math");
    let x = b.input("x", DType::F32, &[n]);
    let y = (x.exp().log1p() + x.sin() * x.cos() + (x * x + 1.0).log()).sum();
    let d = b.grad(y, &[x]).unwrap();
    optimized(b.into_graph(&[y.id(), d[0].id()]).unwrap())
}

fn bench_math(c: &mut Criterion) {
    let n = 1 << 20;
    let xs: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 6000) as f32 / 1000.0 - 3.0)
        .collect();
    let ins = [Tensor::from_f32(vec![n], xs)];
    let g = math(n);
    bench_kernel(c, "math_1m/jit", &jit::compile(&g).unwrap(), &ins);
    let unbatched = JitConfig {
        batch_math: false,
        ..JitConfig::default()
    };
    let k = jit::compile_with(&g, &unbatched).unwrap();
    bench_kernel(c, "math_1m/jit_unbatched", &k, &ins);
}

criterion_group!(
    benches,
    bench_worked_example,
    bench_rosenbrock,
    bench_chain,
    bench_math
);
criterion_main!(benches);
