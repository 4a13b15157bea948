//! Activation memory against step time under a memory budget (issue 11): one training step of
//! a 32-layer MLP (width 512, batch 256, f32; `tanh(h·W + b)` layers, loss `mean(h²)`): the
//! loss and the gradients of every weight and bias, compiled with
//! `JitConfig::memory_budget_bytes` from no budget down to the smallest feasible one. The
//! gradients are the kernel's outputs (caller buffers), so the workspace is the activation
//! memory: the values kept for the backward pass plus its temporaries.
//!
//! Before timing, the bench prints one line per budget: the workspace it got, the nodes and
//! flops recomputed, and that the outputs are bitwise those without a budget. Goal (Chen et al.
//! 2016, √n checkpointing): ≥ 4× less workspace at ≤ 1.35× the step time of the unbudgeted
//! kernel. One thread per call (`kernel_threads = 1`), so the two shared cores do not blur the
//! times. See `benches/README.md` for the figures.

use criterion::{Criterion, criterion_group, criterion_main};
use gradlift::jit::{self, Buf, BufMut, JitConfig, JitError, Kernel};
use gradlift::{DType, Graph, GraphBuilder, Tensor, Var, opt};
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Duration;

const LAYERS: usize = 32;
const WIDTH: usize = 512;
const BATCH: usize = 256;

/// The step's graph, optimized: outputs the loss, then `dw0, db0, dw1, ...`.
fn step_graph() -> Graph {
    let b = GraphBuilder::new("mlp32");
    let x = b.input("x", DType::F32, &[BATCH, WIDTH]);
    let mut params = Vec::new();
    let mut h = x;
    for i in 0..LAYERS {
        let w = b.input(&format!("w{i}"), DType::F32, &[WIDTH, WIDTH]);
        let bias = b.input(&format!("b{i}"), DType::F32, &[WIDTH]);
        h = (h.matmul(w) + bias).tanh();
        params.extend([w, bias]);
    }
    let loss = (h * h).mean();
    let grads = b.grad(loss, &params).expect("differentiable");
    let names: Vec<String> = (0..grads.len()).map(|i| format!("d{i}")).collect();
    let mut outs: Vec<(&str, Var)> = vec![("loss", loss)];
    outs.extend(names.iter().map(String::as_str).zip(grads));
    let mut g = b.finish(&outs).expect("builds");
    opt::optimize(&mut g, &opt::OptConfig::default());
    g
}

/// Inputs: `x` uniform in [-1, 1), weights scaled by `1/√WIDTH` so activations stay in tanh's
/// live range, biases small.
fn inputs(g: &Graph) -> Vec<Tensor> {
    let mut rng = gradlift::testutil::Rng(42);
    g.inputs()
        .iter()
        .map(|&i| {
            let name = g.value_name(i);
            let scale = match name.chars().next() {
                Some('w') => 1.7 / (WIDTH as f64).sqrt(),
                Some('b') => 0.1,
                _ => 1.0,
            };
            Tensor::from_fn(g.ty(i), |_| scale * rng.uniform(-1.0, 1.0))
        })
        .collect()
}

fn config(budget: Option<u64>) -> JitConfig {
    JitConfig {
        kernel_threads: NonZeroUsize::new(1),
        memory_budget_bytes: budget,
        ..JitConfig::default()
    }
}

/// One call into preallocated outputs and a reused workspace.
struct Runner {
    kernel: Kernel,
    outs: Vec<Tensor>,
}

impl Runner {
    fn new(kernel: Kernel) -> Runner {
        let outs = (kernel.output_types().iter())
            .map(|t| Tensor::splat(t, 0.0))
            .collect();
        Runner { kernel, outs }
    }

    fn step(&mut self, ins: &[Buf<'_>], ws: &mut jit::Workspace) {
        let mut bufs: Vec<BufMut<'_>> = self.outs.iter_mut().map(BufMut::from).collect();
        self.kernel
            .call(black_box(ins), black_box(&mut bufs), ws)
            .expect("call");
    }
}

fn bench(c: &mut Criterion) {
    let g = step_graph();
    let inputs = inputs(&g);
    let ins: Vec<Buf<'_>> = inputs.iter().map(Buf::from).collect();
    let full_kernel = jit::compile_with(&g, &config(None)).expect("compiles");
    let full = full_kernel.workspace_bytes() as u64;
    let minimum = match jit::compile_with(&g, &config(Some(0))) {
        Err(JitError::OverBudget { minimum, .. }) => minimum,
        other => panic!("a zero budget cannot fit: {:?}", other.map(|_| ())),
    };
    let mut reference = Runner::new(full_kernel);
    let mut ws = reference.kernel.workspace();
    reference.step(&ins, &mut ws);
    let mut budgets: Vec<Option<u64>> = vec![None];
    for div in [2, 3, 4, 5, 6] {
        if full / div > minimum {
            budgets.push(Some(full / div));
        }
    }
    budgets.push(Some(minimum));
    let mut runners = Vec::new();
    for budget in budgets {
        let k = jit::compile_with(&g, &config(budget)).expect("fits");
        let mut r = Runner::new(k);
        let mut ws = r.kernel.workspace();
        r.step(&ins, &mut ws);
        let same = (r.outs.iter().zip(&reference.outs)).all(|(a, b)| a.bits_eq(b));
        let st = r.kernel.stats();
        eprintln!(
            "budget {:>10}: workspace {:>9} bytes ({:.2}x less), recomputed {} nodes, {:.2} \
             GFLOP, compiled in {:.0} ms, bitwise equal: {same}",
            budget.map_or("none".to_string(), |b| b.to_string()),
            r.kernel.workspace_bytes(),
            full as f64 / r.kernel.workspace_bytes().max(1) as f64,
            st.nodes_recomputed,
            st.flops_recomputed as f64 * 1e-9,
            st.compile_time.as_secs_f64() * 1e3
        );
        assert!(same, "recomputation must be exact");
        runners.push((budget, r, ws));
    }
    interleaved(&mut runners, &ins);
    let mut group = c.benchmark_group("remat_mlp32");
    group.sample_size(10);
    for (budget, r, ws) in &mut runners {
        let id = match budget {
            None => "full".to_string(),
            Some(b) if *b == minimum => format!("min_{b}"),
            Some(b) => format!("budget_{b}"),
        };
        group.bench_function(id, |bch| bch.iter(|| r.step(&ins, ws)));
    }
    group.finish();
}

/// Median step time of each runner over rounds that call every runner once in turn, so a
/// change in the machine's load hits all of them alike; printed as ratios to the first.
fn interleaved(runners: &mut [(Option<u64>, Runner, jit::Workspace)], ins: &[Buf<'_>]) {
    const ROUNDS: usize = 9;
    let mut times = vec![Vec::with_capacity(ROUNDS); runners.len()];
    for _ in 0..ROUNDS {
        for ((_, r, ws), t) in runners.iter_mut().zip(&mut times) {
            let start = std::time::Instant::now();
            r.step(ins, ws);
            t.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let medians: Vec<f64> = (times.iter_mut())
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[ROUNDS / 2]
        })
        .collect();
    for ((budget, r, _), m) in runners.iter().zip(&medians) {
        eprintln!(
            "interleaved: budget {:>10}: workspace {:>9} bytes, median step {m:.1} ms = {:.2}x",
            budget.map_or("none".to_string(), |b| b.to_string()),
            r.kernel.workspace_bytes(),
            m / medians[0]
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
