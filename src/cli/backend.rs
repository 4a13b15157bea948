//! The JIT backend as the CLI uses it: compile and run once (`run`), or compile and time the
//! zero-allocation call path (`bench`).
//!
//! This is the only file of the `.gir` commands that names `gradlift::jit` (`gradbench.rs`,
//! the GradBench tool, keeps its own kernel cache). Not here: the interpreter (called
//! directly) or any timing policy (see `bench::time_per_call`).

use super::CliError;
use super::bench::{median, time_per_call};
use gradlift::finite::NonFinite;
use gradlift::jit::{self, Buf, BufMut, CallError, JitConfig, Kernel};
use gradlift::{Graph, Tensor};
use std::error::Error;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// An error and its chain of sources on one line (`a: b: c`).
fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s.replace('\n', " ")
}

/// The command-line options of the CLI's kernels.
#[derive(Clone, Copy, Debug, Default)]
pub struct JitOpts {
    /// At most this many threads per call (`None`: all cores).
    pub threads: Option<NonZeroUsize>,
    /// `JitConfig::memory_budget_bytes`.
    pub memory_budget: Option<u64>,
}

/// The configuration of the CLI's kernels: the default one with `opts`.
fn config(opts: JitOpts) -> JitConfig {
    JitConfig {
        kernel_threads: opts.threads,
        memory_budget_bytes: opts.memory_budget,
        ..JitConfig::default()
    }
}

fn compile_with(g: &Graph, cfg: &JitConfig) -> Result<Kernel, CliError> {
    jit::compile_with(g, cfg)
        .map_err(|e| CliError::new(format!("JIT compilation failed: {}", chain(&e))))
}

/// Compiles `g` with `opts` and evaluates it once on `inputs`.
pub fn run_jit(g: &Graph, inputs: &[Tensor], opts: JitOpts) -> Result<Vec<Tensor>, CliError> {
    let k = compile_with(g, &config(opts))?;
    k.run(inputs).map_err(|e| CliError::bug(chain(&e)))
}

/// [`run_jit`] in checked mode (`JitConfig::check_finite`): `Err(Ok(report))` when a node
/// produced a non-finite value from finite operands.
pub fn run_jit_checked(
    g: &Graph,
    inputs: &[Tensor],
    opts: JitOpts,
) -> Result<Vec<Tensor>, Result<Box<NonFinite>, CliError>> {
    let cfg = JitConfig {
        check_finite: true,
        ..config(opts)
    };
    let k = compile_with(g, &cfg).map_err(Err)?;
    k.run(inputs).map_err(|e| match e {
        CallError::NonFinite(r) => Ok(r),
        e => Err(CliError::bug(chain(&e))),
    })
}

/// JIT measurements.
pub struct JitTiming {
    /// Median compile time in milliseconds.
    pub compile_ms: f64,
    /// Median time per call of the compiled kernel in nanoseconds.
    pub ns_per_call: f64,
    /// Bytes of the kernel's reusable workspace.
    pub workspace_bytes: usize,
    /// Nodes and floating-point work recomputed to meet the memory budget.
    pub nodes_recomputed: u64,
    /// See `nodes_recomputed`.
    pub flops_recomputed: u64,
}

/// Compilations timed for the compile-time figure (fewer when one is slow).
const COMPILES: usize = 5;
/// Stop repeating compilations after this much total compile time.
const COMPILE_BUDGET: Duration = Duration::from_millis(500);

/// Compiles `g` with `opts` (timed, median of up to [`COMPILES`] compilations) and times calls
/// of the kernel on `inputs` through [`Kernel::call`] with preallocated outputs and a reused
/// workspace.
pub fn bench_jit(g: &Graph, inputs: &[Tensor], opts: JitOpts) -> Result<JitTiming, CliError> {
    let cfg = config(opts);
    let mut times = Vec::new();
    let mut total = Duration::ZERO;
    let mut kernel = None;
    while times.len() < COMPILES && (times.is_empty() || total < COMPILE_BUDGET) {
        let t = Instant::now();
        let k = compile_with(g, &cfg)?;
        let el = t.elapsed();
        total += el;
        times.push(el.as_secs_f64() * 1e3);
        kernel = Some(k); // the previous kernel is dropped here, outside the timed region.
    }
    let Some(k) = kernel else {
        return Err(CliError::bug("no kernel was compiled"));
    };
    let mut outs: Vec<Tensor> = k
        .output_types()
        .iter()
        .map(|t| Tensor::splat(t, 0.0))
        .collect();
    let ins: Vec<Buf<'_>> = inputs.iter().map(Buf::from).collect();
    let mut bufs: Vec<BufMut<'_>> = outs.iter_mut().map(BufMut::from).collect();
    let mut ws = k.workspace();
    let ns_per_call = time_per_call(|| {
        k.call(black_box(&ins), black_box(&mut bufs), &mut ws)
            .map_err(|e| CliError::bug(chain(&e)))
    })?;
    Ok(JitTiming {
        compile_ms: median(&mut times),
        ns_per_call,
        workspace_bytes: k.workspace_bytes(),
        nodes_recomputed: k.stats().nodes_recomputed,
        flops_recomputed: k.stats().flops_recomputed,
    })
}
