//! JIT compile time on GradBench graphs at two sizes each:
//! - `det_gradient`: the gradient of a determinant by minors over column subsets in the
//!   formulation GradBench's `det` used until it switched to gathers (every row and column one
//!   step over all `2^ℓ` subsets: `O(ℓ²)` nodes and many small fused groups) at ℓ = 3 and
//!   ℓ = 10 (171 and 2,173 optimized nodes), about 10× apart in nodes, so that a regression or
//!   a superlinear phase shows as a ratio above ~10.
//! - `lstm_jacobian`: the `lstm` eval's gradient (l = 2 layers, b = 14) over c = 32 and
//!   c = 320 characters. Its time loop is a `scan`, so both graphs have the same nodes (about
//!   280 optimized) and should compile in the same time: a ratio above ~1 means something
//!   grew with the trip count.
//!
//! Each graph is built, differentiated and optimized once, outside the timing; the timed part
//! is `jit::compile_with` with no parallel chunks, on one compile thread (`threads=1`) and on
//! every core of rayon's pool (`threads=all`, as `gradlift gradbench` compiles). Goal
//! (issue 10): ≤ 50 ms per input shape below 100k nodes.
//!
//! `optimize` times `opt::optimize` on the same unoptimized determinant gradients (ℓ = 3 and 10: 306 and
//! 3,729 nodes, 12× apart), so a superlinear pass shows as a ratio well above ~12.
//!
//! Run with `cargo bench --bench compile -- --warm-up-time 1 --measurement-time 5`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gradlift::gradbench::{self, Value};
use gradlift::jit::{self, JitConfig};
use gradlift::{DType, Graph, GraphBuilder, Tensor, Var, opt};
use std::hint::black_box;

fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The graph of `module.function` on `input`, as built (derivatives included).
fn built(module: &str, function: &str, input: &Value) -> Graph {
    let task = gradbench::prepare(module, function, input).expect("a valid eval input");
    (task.build)().expect("the eval's graph builds")
}

/// The optimized graph of `module.function` on `input`.
fn graph(module: &str, function: &str, input: &Value) -> Graph {
    let mut g = built(module, function, input);
    opt::optimize(&mut g, &opt::OptConfig::default());
    g
}

/// The determinant of `a` by minors over all `2^ℓ` column subsets, one step per row and
/// column: `V_r[S] = Σ_{c∈S} (−1)^{#(S below c)} A[r, c] V_{r+1}[S∖c]`, with `S ↦ S∖c` a
/// reshape to `[2^(ℓ−1−c), 2, 2^c]` and a slice.
fn minors_by_halves(a: Var<'_>) -> Var<'_> {
    let b = a.builder();
    let ell = a.shape()[0];
    let full = 1usize << ell;
    let mut e = vec![0.0; full];
    e[0] = 1.0;
    let mut v = b.constant(Tensor::from_f64(vec![full], e));
    for r in (0..ell).rev() {
        let mut acc: Option<Var<'_>> = None;
        for c in 0..ell {
            let (hi, lo) = (full >> (c + 1), 1usize << c);
            let signs = (0..lo)
                .map(|i: usize| {
                    if i.count_ones().is_multiple_of(2) {
                        1.0
                    } else {
                        -1.0
                    }
                })
                .collect();
            let sg = b.constant(Tensor::from_f64(vec![1, 1, lo], signs));
            let without = v.reshape(&[hi, 2, lo]).slice(&[0, 0, 0], &[hi, 1, lo]);
            let arc = a.slice(&[r, c], &[r + 1, c + 1]).reshape(&[1, 1, 1]);
            let term = without * (sg * arc);
            let zeros = b.zeros(DType::F64, &[hi, 1, lo]);
            let placed = b.concat(&[zeros, term], 1).reshape(&[full]);
            acc = Some(acc.map_or(placed, |s| s + placed));
        }
        v = acc.unwrap_or(v);
    }
    v.slice(&[full - 1], &[full]).sum()
}

/// The gradient graph of [`minors_by_halves`] at edge `ell`, as built.
fn det_built(ell: usize) -> Graph {
    let b = GraphBuilder::new("det");
    let a = b.input("A", DType::F64, &[ell, ell]);
    let grad = b.grad(minors_by_halves(a), &[a]).expect("differentiable")[0];
    b.finish(&[("out", grad)]).expect("a valid graph")
}

fn det(ell: usize) -> Graph {
    let mut g = det_built(ell);
    opt::optimize(&mut g, &opt::OptConfig::default());
    g
}

fn lstm(c: usize) -> Graph {
    let (l, b) = (2, 14);
    let m = |rows: usize, cols: usize| {
        let flat: Vec<f64> = (0..rows * cols).map(|i| (i % 13) as f64 * 0.01).collect();
        Value::rows(&flat, cols)
    };
    let input = object(vec![
        ("main_params", m(2 * l, 4 * b)),
        ("extra_params", m(3, b)),
        ("state", m(2 * l, b)),
        ("sequence", m(c, b)),
    ]);
    graph("lstm", "jacobian", &input)
}

fn bench(c: &mut Criterion) {
    jit::warm_up(&JitConfig::default()).expect("the JIT works on this host");
    let cfgs = [1, 0].map(|threads| JitConfig {
        threads,
        parallel_min_elements: usize::MAX,
        ..JitConfig::default()
    });
    let cases: [(&str, Vec<(String, Graph)>); 2] = [
        (
            "det_gradient",
            [3, 10].map(|ell| (format!("ell={ell}"), det(ell))).into(),
        ),
        (
            "lstm_jacobian",
            [32, 320].map(|n| (format!("c={n}"), lstm(n))).into(),
        ),
    ];
    for (name, graphs) in &cases {
        let mut group = c.benchmark_group(*name);
        group.sample_size(10);
        for (size, g) in graphs {
            for cfg in &cfgs {
                let threads = if cfg.threads == 1 { "1" } else { "all" };
                let id = BenchmarkId::new(
                    "compile",
                    format!("{size},nodes={},threads={threads}", g.len()),
                );
                group.bench_function(id, |bench| {
                    bench.iter(|| jit::compile_with(black_box(g), cfg).expect("compiles"));
                });
            }
        }
        group.finish();
    }
    let mut group = c.benchmark_group("optimize");
    group.sample_size(10);
    for ell in [3, 10] {
        let g = det_built(ell);
        let id = BenchmarkId::new("det_gradient", format!("ell={ell},nodes={}", g.len()));
        group.bench_function(id, |bench| {
            bench.iter_batched(
                || g.clone(),
                |mut g| opt::optimize(&mut g, &opt::OptConfig::default()),
                criterion::BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
