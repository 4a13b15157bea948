//! `scan` in the JIT: an RK4 solver of a small nonlinear system (GradBench `ode`'s shape made
//! nonlinear: `y₀' = x₀`, `yᵢ' = xᵢ·cos(yᵢ₋₁)`, `y(0) = 0` on `[0, 2]`, n = 8) over `s` steps,
//! built as a scan (the body, one RK4 step, is built and compiled once) or unrolled.
//! - `compile`: `jit::compile_with` of the forward graph (`y(2)`) and of the gradient graph
//!   (`∂y₇(2)/∂x`), scan at s = 10, 10³ and 10⁵, unrolled at s = 10 and 10³ (unrolled is linear
//!   in s). Goal (issue 11): the scan's compile time within 1.5× from 10 to 10⁵ steps.
//! - `call`: one call at s = 10³, scan vs unrolled, forward and gradient; the scan also at 10⁵.
//! - `call_tiny`: 10⁵ steps of a scalar body `y ← 0.999·y + 10⁻³`: the cost of a step itself.
//! - `checkpoint`: the gradient at s = 10⁵ with the backward loop keeping every carry (the full
//!   tape), 1% of them (1000 snapshots), √s (316) and log₂ s (17): binomial checkpointing. Each
//!   case prints its `workspace_bytes` and the schedule's forward steps. Goal (issue 11): memory
//!   ≤ 1% of the full tape at ≤ 4× the full tape's time.
//! - `while_exit`: Heron's square root of 8 values (`x ← (x + a/x)/2` from `x = a`, a in
//!   `[1, 8]`, while `Σ(x² − a)² > 10⁻²⁴·Σa²`) with `max_steps = 1000`; it converges in 6
//!   steps. The early-exiting `while_loop` against the same loop as a scan of 1000 steps whose
//!   body keeps the carries once the condition is false (`select`, the form the exit
//!   replaced): forward and gradient (of `Σx` with respect to `a`).
//!
//! Graphs are built and optimized outside the timing; one compile thread, no parallel chunks.
//! Run with `cargo bench --bench loops -- --warm-up-time 1 --measurement-time 3`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gradlift::jit::{self, JitConfig};
use gradlift::{DType, Graph, GraphBuilder, Tensor, Var, opt};
use std::hint::black_box;

const N: usize = 8;

/// `f(y) = x ⊙ cos(shift(y))`, `shift(y) = [0, y₀, …, y_{n−2}]`.
fn rhs<'b>(y: Var<'b>, x: Var<'b>) -> Var<'b> {
    let b = y.builder();
    let zero = b.zeros(DType::F64, &[1]);
    let shifted = b.concat(&[zero, y.slice(&[0], &[N - 1])], 0);
    x * shifted.cos()
}

/// One classic RK4 step of size `h`.
fn rk4<'b>(y: Var<'b>, x: Var<'b>, h: f64) -> Var<'b> {
    let k1 = rhs(y, x);
    let k2 = rhs(y + k1 * (h / 2.0), x);
    let k3 = rhs(y + k2 * (h / 2.0), x);
    let k4 = rhs(y + k3 * h, x);
    y + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6.0)
}

/// The solver over `s` steps (`looped`: a scan), its final `y` or the gradient of `y₇`.
fn graph(s: usize, looped: bool, grad: bool) -> Graph {
    graph_with(s, looped, grad, None)
}

/// [`graph`], the scan's backward loop keeping at most `snapshots` carries.
fn graph_with(s: usize, looped: bool, grad: bool, snapshots: Option<usize>) -> Graph {
    let b = GraphBuilder::new("ode");
    let x = b.input("x", DType::F64, &[N]);
    let h = 2.0 / s as f64;
    let y0 = b.zeros(DType::F64, &[N]);
    let y = if looped {
        let args = gradlift::ScanArgs {
            length: s,
            reverse: false,
            init: &[y0],
            xs: &[],
            consts: &[x],
            checkpoint: snapshots,
        };
        b.scan_with(args, |_, st| {
            (vec![rk4(st.carry[0], st.consts[0], h)], vec![])
        })
        .carry[0]
    } else {
        (0..s).fold(y0, |y, _| rk4(y, x, h))
    };
    let mut g = if grad {
        let last = y.slice(&[N - 1], &[N]).sum();
        let d = b.grad(last, &[x]).expect("differentiable")[0];
        b.finish(&[("dx", d)]).expect("builds")
    } else {
        b.finish(&[("y", y)]).expect("builds")
    };
    opt::optimize(&mut g, &opt::OptConfig::default());
    g
}

fn cfg() -> JitConfig {
    JitConfig {
        threads: 1,
        parallel_min_elements: usize::MAX,
        ..JitConfig::default()
    }
}

fn compile(c: &mut Criterion) {
    let cfg = cfg();
    for grad in [false, true] {
        let what = if grad { "gradient" } else { "forward" };
        let mut group = c.benchmark_group(format!("compile_{what}"));
        group.sample_size(10);
        let cases = [
            (10, true),
            (1000, true),
            (100_000, true),
            (10, false),
            (1000, false),
        ];
        for (s, looped) in cases {
            let g = graph(s, looped, grad);
            let kind = if looped { "scan" } else { "unrolled" };
            let id = BenchmarkId::new(kind, format!("s={s},nodes={}", g.len()));
            group.bench_function(id, |bench| {
                bench.iter(|| jit::compile_with(black_box(&g), &cfg).expect("compiles"));
            });
        }
        group.finish();
    }
}

fn call(c: &mut Criterion) {
    let cfg = cfg();
    let x = Tensor::from_f64(vec![N], (0..N).map(|i| 0.5 + 0.1 * i as f64).collect());
    for grad in [false, true] {
        let what = if grad { "gradient" } else { "forward" };
        let mut group = c.benchmark_group(format!("call_{what}"));
        group.sample_size(20);
        for (s, looped) in [(1000, true), (1000, false), (100_000, true)] {
            let g = graph(s, looped, grad);
            let k = jit::compile_with(&g, &cfg).expect("compiles");
            let mut ws = k.workspace();
            let mut out = vec![0.0f64; N];
            let kind = if looped { "scan" } else { "unrolled" };
            group.bench_function(BenchmarkId::new(kind, format!("s={s}")), |bench| {
                bench.iter(|| {
                    k.call(&[(&x).into()], &mut [(&mut out[..]).into()], &mut ws)
                        .expect("runs");
                    black_box(&out);
                });
            });
        }
        group.finish();
    }
}

/// Per-step overhead: 10⁵ steps of a scalar body (`y ← 0.999·y + 10⁻³`, one fused group).
fn tiny(c: &mut Criterion) {
    let b = GraphBuilder::new("tiny");
    let y0 = b.input("y0", DType::F64, &[]);
    let out = b.scan(100_000, &[y0], &[], &[], |_, st| {
        (vec![st.carry[0] * 0.999 + 1e-3], vec![])
    });
    let g = b.finish(&[("y", out.carry[0])]).expect("builds");
    let k = jit::compile_with(&g, &cfg()).expect("compiles");
    let mut ws = k.workspace();
    let mut out = 0.0f64;
    c.bench_function("call_tiny/scan/s=100000", |bench| {
        bench.iter(|| {
            k.call(&[1.5.into()], &mut [(&mut out).into()], &mut ws)
                .expect("runs");
            black_box(out);
        });
    });
}

/// The gradient at 10⁵ steps under snapshot counts from the full tape down to log₂ s.
fn checkpoint(c: &mut Criterion) {
    let s = 100_000;
    let x = Tensor::from_f64(vec![N], (0..N).map(|i| 0.5 + 0.1 * i as f64).collect());
    let mut group = c.benchmark_group("checkpoint");
    group.sample_size(10);
    let mut reference: Option<Vec<f64>> = None;
    for snaps in [None, Some(1000), Some(316), Some(17)] {
        let g = graph_with(s, true, true, snaps);
        let k = jit::compile_with(&g, &cfg()).expect("compiles");
        let mut ws = k.workspace();
        let mut out = vec![0.0f64; N];
        k.call(&[(&x).into()], &mut [(&mut out[..]).into()], &mut ws)
            .expect("runs");
        // Recomputation is exact: every snapshot count gives the full tape's bits.
        let bits: Vec<f64> = out.clone();
        match &reference {
            None => reference = Some(bits),
            Some(r) => assert!(r.iter().zip(&bits).all(|(a, b)| a.to_bits() == b.to_bits())),
        }
        let name = snaps.map_or("full".to_string(), |n| n.to_string());
        let steps = snaps.map_or(s as u64 - 1, |n| {
            gradlift::ops::loops::revolve::forward_steps(s, n)
        });
        eprintln!(
            "checkpoint snapshots={name}: workspace_bytes={} forward_steps={steps}",
            k.workspace_bytes()
        );
        group.bench_function(BenchmarkId::new("snapshots", name), |bench| {
            bench.iter(|| {
                k.call(&[(&x).into()], &mut [(&mut out[..]).into()], &mut ws)
                    .expect("runs");
                black_box(&out);
            });
        });
    }
    group.finish();
}

/// Heron's condition: the residual is not yet tiny.
fn heron_cond<'s>(st: &gradlift::ScanStep<'s>) -> Var<'s> {
    let (x, a) = (st.carry[0], st.consts[0]);
    let r = x * x - a;
    (r * r).sum().gt((a * a).sum() * 1e-24)
}

/// Heron's step.
fn heron_step<'s>(st: &gradlift::ScanStep<'s>) -> Var<'s> {
    (st.carry[0] + st.consts[0] / st.carry[0]) * 0.5
}

/// Heron's square roots of `a` (8 values) with at most 1000 steps: the early-exiting
/// `while_loop` (`exit`) or the scan of 1000 steps with a `select`, its value or gradient.
fn heron(exit: bool, grad: bool) -> Graph {
    let b = GraphBuilder::new("heron");
    let a = b.input("a", DType::F64, &[N]);
    let x = if exit {
        b.while_loop(
            1000,
            &[a],
            &[a],
            |_, st| heron_cond(st),
            |_, st| vec![heron_step(st)],
        )[0]
    } else {
        b.scan(1000, &[a], &[], &[a], |sb, st| {
            (
                vec![sb.select(heron_cond(st), heron_step(st), st.carry[0])],
                vec![],
            )
        })
        .carry[0]
    };
    let mut g = if grad {
        let d = b.grad(x.sum(), &[a]).expect("differentiable")[0];
        b.finish(&[("da", d)]).expect("builds")
    } else {
        b.finish(&[("x", x)]).expect("builds")
    };
    opt::optimize(&mut g, &opt::OptConfig::default());
    g
}

fn while_exit(c: &mut Criterion) {
    let a = Tensor::from_f64(vec![N], (1..=N).map(|i| i as f64).collect());
    let mut group = c.benchmark_group("while_exit");
    group.sample_size(20);
    for grad in [false, true] {
        let mut results = Vec::new();
        for exit in [true, false] {
            let g = heron(exit, grad);
            let k = jit::compile_with(&g, &cfg()).expect("compiles");
            let mut ws = k.workspace();
            let mut out = vec![0.0f64; N];
            k.call(&[(&a).into()], &mut [(&mut out[..]).into()], &mut ws)
                .expect("runs");
            results.push(out.clone());
            let what = if grad { "gradient" } else { "forward" };
            let kind = if exit { "exit" } else { "select" };
            group.bench_function(BenchmarkId::new(what, kind), |bench| {
                bench.iter(|| {
                    k.call(&[(&a).into()], &mut [(&mut out[..]).into()], &mut ws)
                        .expect("runs");
                    black_box(&out);
                });
            });
        }
        // The same values: the skipped steps would not have changed the carries.
        assert_eq!(results[0], results[1]);
    }
    group.finish();
}

criterion_group!(benches, compile, call, tiny, checkpoint, while_exit);
criterion_main!(benches);
