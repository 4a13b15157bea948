//! JIT vs interpreter, value + gradient, and JIT compile time.
//!
//! Groups:
//! - `seed`: y = x1² + x2 (per-call latency through the zero-allocation call path).
//! - `rosenbrock_1000`: vector Rosenbrock, n = 1000.
//! - `scalar_10k`: a 10,000-node scalar graph with long-range reuse.
//! - `compile`: JIT compile time of 1k, 10k and 100k-node scalar graphs plus their adjoints.
//!
//! Goals (issue 2): JIT ≥ 10× the interpreter on `scalar_10k`; 100k-node compile < 2 s.
//! See `benches/README.md` for the figures measured on the reference machine.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gradlift::jit::{self, Buf, BufMut, Kernel};
use gradlift::{DType, Graph, GraphBuilder, Tensor, interp, opt};
use std::hint::black_box;
use std::time::Duration;

/// A scalar graph of about `n` forward nodes where each step reads the previous value and one
/// value from far back (long-range reuse), plus its gradient with respect to all inputs.
pub fn scalar_graph(n: usize, inputs: usize) -> Graph {
    let b = GraphBuilder::new("scalar");
    let xs: Vec<_> = (0..inputs)
        .map(|i| b.input(&format!("x{i}"), DType::F64, &[]))
        .collect();
    let mut vals = xs.clone();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    while b.graph().len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let prev = *vals.last().unwrap();
        let far = vals[(state as usize) % vals.len()];
        let v = match state % 4 {
            0 => (prev * 0.5 + far * 0.25).tanh(),
            1 => prev * far * 0.9 + 0.1,
            2 => (prev - far).sin(),
            _ => prev / (far * far + 1.0),
        };
        vals.push(v);
    }
    let y = *vals.last().unwrap() + vals[vals.len() / 2];
    let grads = b.grad(y, &xs).unwrap();
    let mut outs = vec![("y".to_string(), y)];
    outs.extend(grads.iter().enumerate().map(|(i, g)| (format!("g{i}"), *g)));
    let outs: Vec<(&str, _)> = outs.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    b.finish(&outs).unwrap()
}

fn with_grad(src: &str) -> Graph {
    let mut g = gradlift::ir::text::parse(src).unwrap();
    let y = g.outputs()[0];
    let ins = g.inputs();
    let grads = gradlift::autodiff::grad(&mut g, y, &ins).unwrap();
    let mut outs: Vec<(String, gradlift::NodeId)> = vec![(g.value_name(y), y)];
    for (i, gr) in ins.iter().zip(grads) {
        outs.push((format!("grad_{}", g.value_name(*i)), gr));
    }
    let outs: Vec<(&str, gradlift::NodeId)> = outs.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    g.set_named_outputs(&outs).unwrap();
    g
}

fn inputs_for(g: &Graph) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(k, &i)| Tensor::from_fn(g.ty(i), |j| ((k * 31 + j * 17) % 100) as f64 / 100.0 - 0.5))
        .collect()
}

/// Benchmarks one graph, value + gradient, on both backends.
fn jit_vs_interp(c: &mut Criterion, name: &str, mut g: Graph) {
    opt::optimize(&mut g, &opt::OptConfig::default());
    let kernel: Kernel = jit::compile(&g).unwrap();
    let ins = inputs_for(&g);
    let mut group = c.benchmark_group(name);
    group.measurement_time(Duration::from_secs(3));
    let mut ws = kernel.workspace();
    let mut outs: Vec<Tensor> = kernel
        .output_types()
        .iter()
        .map(|t| Tensor::splat(t, 0.0))
        .collect();
    group.bench_function("jit", |bch| {
        bch.iter(|| {
            let in_bufs: Vec<Buf<'_>> = ins.iter().map(Buf::from).collect();
            let mut out_bufs: Vec<BufMut<'_>> = outs.iter_mut().map(BufMut::from).collect();
            kernel
                .call(black_box(&in_bufs), &mut out_bufs, &mut ws)
                .unwrap();
        })
    });
    group.bench_function("interp", |bch| {
        bch.iter(|| interp::run(&g, black_box(&ins)).unwrap())
    });
    group.finish();
}

fn seed(c: &mut Criterion) {
    jit_vs_interp(c, "seed", with_grad(include_str!("../ir/seed.gir")));
    // The seed's per-call latency with pre-built buffer arrays (no Vec per call).
    let mut g = with_grad(include_str!("../ir/seed.gir"));
    opt::optimize(&mut g, &opt::OptConfig::default());
    let k = jit::compile(&g).unwrap();
    let mut ws = k.workspace();
    let (x1, x2) = ([3.0f64], [4.0f64]);
    let (mut y, mut g1, mut g2) = ([0.0f64], [0.0f64], [0.0f64]);
    c.bench_function("seed/jit_arrays", |b| {
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
    // The same call with scalars by value and by name (names hashed on every call).
    let names: Vec<String> = k.output_names().to_vec();
    let (mut y, mut g1, mut g2) = (0.0f64, 0.0f64, 0.0f64);
    c.bench_function("seed/jit_scalars", |b| {
        b.iter(|| {
            let ins = [Buf::from(black_box(3.0f64)), Buf::from(black_box(4.0f64))];
            let mut outs = [(&mut y).into(), (&mut g1).into(), (&mut g2).into()];
            k.call(&ins, &mut outs, &mut ws).unwrap();
        })
    });
    c.bench_function("seed/jit_named", |b| {
        b.iter(|| {
            k.call_named(
                &[
                    ("x1", black_box(3.0f64).into()),
                    ("x2", black_box(4.0f64).into()),
                ],
                &mut [
                    (&names[0], (&mut y).into()),
                    (&names[1], (&mut g1).into()),
                    (&names[2], (&mut g2).into()),
                ],
                &mut ws,
            )
            .unwrap();
        })
    });
}

fn rosenbrock(c: &mut Criterion) {
    jit_vs_interp(
        c,
        "rosenbrock_1000",
        with_grad(include_str!("../ir/rosenbrock.gir")),
    );
}

fn scalar_10k(c: &mut Criterion) {
    jit_vs_interp(c, "scalar_10k", scalar_graph(10_000, 8));
}

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for n in [1_000usize, 10_000, 100_000] {
        let mut g = scalar_graph(n, 8);
        opt::optimize(&mut g, &opt::OptConfig::default());
        group.bench_with_input(BenchmarkId::from_parameter(n), &g, |b, g| {
            b.iter(|| jit::compile(black_box(g)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, seed, rosenbrock, scalar_10k, compile);
criterion_main!(benches);
