//! JIT compile time on GradBench graphs at two sizes each:
//! - `det_gradient`: the `det` eval's gradient (many small fused groups: minors over column
//!   subsets) at ℓ = 3 and ℓ = 10 (171 and 2,173 optimized nodes), about 10× apart in nodes, so
//!   that a regression or a superlinear phase shows as a ratio above ~10.
//! - `lstm_jacobian`: the `lstm` eval's gradient (l = 2 layers, b = 14) over c = 32 and
//!   c = 320 characters. Its time loop is a `scan`, so both graphs have the same nodes (about
//!   280 optimized) and should compile in the same time: a ratio above ~1 means something
//!   grew with the trip count.
//!
//! Each graph is built, differentiated and optimized once, outside the timing; the timed part
//! is `jit::compile_with` with one compile thread and no parallel chunks, as `gradlift
//! gradbench` compiles. Goal (issue 10): ≤ 50 ms per input shape below 100k nodes. Run with
//! `cargo bench --bench compile -- --warm-up-time 1 --measurement-time 5`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gradlift::gradbench::{self, Value};
use gradlift::jit::{self, JitConfig};
use gradlift::{Graph, opt};
use std::hint::black_box;

fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The optimized graph of `module.function` on `input`.
fn graph(module: &str, function: &str, input: &Value) -> Graph {
    let task = gradbench::prepare(module, function, input).expect("a valid eval input");
    let mut g = (task.build)().expect("the eval's graph builds");
    opt::optimize(&mut g, &opt::OptConfig::default());
    g
}

fn det(ell: usize) -> Graph {
    let a = (0..ell * ell)
        .map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0)
        .collect();
    let input = object(vec![("A", Value::list(a)), ("ell", Value::Num(ell as f64))]);
    graph("det", "gradient", &input)
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
    let cfg = JitConfig {
        threads: 1,
        parallel_min_elements: usize::MAX,
        ..JitConfig::default()
    };
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
            let id = BenchmarkId::new("compile", format!("{size},nodes={}", g.len()));
            group.bench_function(id, |bench| {
                bench.iter(|| jit::compile_with(black_box(g), &cfg).expect("compiles"));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
