//! Jacobians by forward vs reverse vs auto mode, and a Hessian-vector product vs a full Hessian.
//! Each graph is built, optimized and compiled once; what is timed is one kernel call.
//!
//! Groups:
//! - `jacobian_n4_m1000` and `jacobian_n1000_m4`: `f: Rⁿ → Rᵐ`,
//!   `f(x) = tanh(W·sin(x)) · (1 + mean(x²))` with a constant `W` of shape `[m, n]`. Forward
//!   mode costs about `n` primal evaluations, reverse mode about `m`: forward should win at
//!   (4, 1000), reverse at (1000, 4), and `auto` should match the winner.
//! - `rosenbrock_n1000`: the Hessian-vector product (one forward-over-reverse pass) against the
//!   full 1000 × 1000 Hessian (a batch of 1000 directions through the same pass).
//!
//! Run: `cargo bench --bench jacobian -- --warm-up-time 1 --measurement-time 3`.

use criterion::{Criterion, criterion_group, criterion_main};
use gradlift::autodiff::Mode;
use gradlift::jit::{self, Buf, BufMut, Kernel};
use gradlift::{DType, Data, Graph, GraphBuilder, Tensor, TensorType, opt};
use std::hint::black_box;
use std::time::Duration;

/// `f(x) = tanh(W·sin(x))·(1 + mean(x²))` and its Jacobian by `mode` (the only output).
fn jacobian_graph(n: usize, m: usize, mode: Mode) -> Graph {
    let b = GraphBuilder::new("f");
    let x = b.input("x", DType::F64, &[n]);
    let w = b.constant(Tensor::from_fn(
        &TensorType::new(DType::F64, vec![m, n]),
        |i| ((i * 7919) % 1000) as f64 / 1000.0 - 0.5,
    ));
    let z = w.matmul(x.sin().reshape(&[n, 1])).reshape(&[m]);
    let y = z.tanh() * (1.0 + (x * x).mean());
    let j = b.jacobian(&[y], &[x], mode).unwrap()[0][0];
    b.finish(&[("j", j)]).unwrap()
}

/// Rosenbrock `Σ 100(xᵢ₊₁ - xᵢ²)² + (1 - xᵢ)²` with either `H·v` (outputs: hv) or the full
/// Hessian (outputs: h).
fn rosenbrock_graph(n: usize, full: bool) -> Graph {
    let b = GraphBuilder::new("rosenbrock");
    let x = b.input("x", DType::F64, &[n]);
    let v = b.input("v", DType::F64, &[n]);
    let head = x.slice(&[0], &[n - 1]);
    let tail = x.slice(&[1], &[n]);
    let y = (100.0 * (tail - head * head).powi(2) + (1.0 - head).powi(2)).sum();
    if full {
        let h = b.hessian(y, &[x]).unwrap()[0][0];
        b.finish(&[("h", h)]).unwrap()
    } else {
        let hv = b.hvp(y, &[x], &[v]).unwrap()[0];
        b.finish(&[("hv", hv)]).unwrap()
    }
}

fn compiled(mut g: Graph) -> Kernel {
    opt::optimize(&mut g, &opt::OptConfig::default());
    jit::compile(&g).unwrap()
}

fn inputs_for(k: &Kernel) -> Vec<Tensor> {
    k.input_types()
        .iter()
        .enumerate()
        .map(|(a, t)| Tensor::from_fn(t, |j| ((a * 31 + j * 17) % 100) as f64 / 50.0 - 1.0))
        .collect()
}

/// Times one kernel call with preallocated buffers.
fn time_kernel(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    k: &Kernel,
) {
    let ins = inputs_for(k);
    let mut outs: Vec<Tensor> = k
        .output_types()
        .iter()
        .map(|t| Tensor::splat(t, 0.0))
        .collect();
    let mut ws = k.workspace();
    group.bench_function(name, |bch| {
        bch.iter(|| {
            let in_bufs: Vec<Buf<'_>> = ins.iter().map(buf).collect();
            let mut out_bufs: Vec<BufMut<'_>> = outs.iter_mut().map(buf_mut).collect();
            k.call(black_box(&in_bufs), &mut out_bufs, &mut ws).unwrap();
        })
    });
}

fn buf(t: &Tensor) -> Buf<'_> {
    match t.data() {
        Data::F32(v) => Buf::F32(v),
        Data::F64(v) => Buf::F64(v),
        Data::Bool(v) => Buf::Bool(v),
        Data::I32(v) => Buf::I32(v),
    }
}

fn buf_mut(t: &mut Tensor) -> BufMut<'_> {
    match t.data_mut() {
        Data::F32(v) => BufMut::F32(v),
        Data::F64(v) => BufMut::F64(v),
        Data::Bool(v) => BufMut::Bool(v),
        Data::I32(v) => BufMut::I32(v),
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn jacobians(c: &mut Criterion) {
    for (n, m) in [(4usize, 1000usize), (1000, 4)] {
        let kernels: Vec<(&str, Kernel)> = [
            ("forward", Mode::Forward),
            ("reverse", Mode::Reverse),
            ("auto", Mode::Auto),
        ]
        .into_iter()
        .map(|(name, mode)| (name, compiled(jacobian_graph(n, m, mode))))
        .collect();
        // The modes must agree before their speed means anything.
        let ins = inputs_for(&kernels[0].1);
        let results: Vec<Tensor> = kernels
            .iter()
            .map(|(_, k)| k.run(&ins).unwrap().remove(0))
            .collect();
        assert_eq!(results[0].shape(), &[m, n]);
        for r in &results[1..] {
            assert!(max_abs_diff(&results[0], r) < 1e-12);
        }
        let expected = if n < m { Mode::Forward } else { Mode::Reverse };
        assert_eq!(Mode::Auto.choose(n, m), expected);
        let mut group = c.benchmark_group(format!("jacobian_n{n}_m{m}"));
        group.measurement_time(Duration::from_secs(3));
        for (name, k) in &kernels {
            time_kernel(&mut group, name, k);
        }
        group.finish();
    }
}

fn hessian_vs_hvp(c: &mut Criterion) {
    let n = 1000;
    let hvp = compiled(rosenbrock_graph(n, false));
    let full = compiled(rosenbrock_graph(n, true));
    let mut group = c.benchmark_group("rosenbrock_n1000");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    time_kernel(&mut group, "hvp", &hvp);
    time_kernel(&mut group, "full_hessian", &full);
    group.finish();
}

criterion_group!(benches, jacobians, hessian_vs_hvp);
criterion_main!(benches);
