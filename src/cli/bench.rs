//! `gradlift bench`: graph size before and after optimization, JIT compile time, and time per
//! call of the compiled kernel and of the interpreter on the same graph and inputs; with
//! `--memory-budget`, what the budget's recomputation costs (nodes, flops, and time against
//! the same kernel without a budget).
//!
//! Timing policy ([`time_per_call`]): one warm-up call, then a batch size calibrated so a batch
//! takes at least 10 ms, then the median over 11 batches of the time per call. Not here: any
//! claim about statistical significance; the numbers are for humans and trend tracking.

use super::{CliError, backend, check_memory, dedup_outputs, emit, prepare, read_inputs};
use crate::BenchArgs;
use std::fmt::Write;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Minimum duration of one timed batch.
const MIN_BATCH: Duration = Duration::from_millis(10);
/// Number of timed batches (the reported figure is their median).
const BATCHES: usize = 11;

/// Median nanoseconds per call of `f` (see the module docs for the policy).
pub fn time_per_call(mut f: impl FnMut() -> Result<(), CliError>) -> Result<f64, CliError> {
    f()?; // warm-up: page in code and data, fill caches.
    let mut batch: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            f()?;
        }
        let el = t.elapsed();
        if el >= MIN_BATCH || batch >= 1 << 32 {
            break;
        }
        // Aim for ~12 ms; grow at most 100x per step (the first timings are noisy).
        let want = if el.is_zero() {
            batch.saturating_mul(100)
        } else {
            let scaled = batch as f64 * 12e6 / el.as_nanos() as f64;
            (scaled.ceil() as u64).clamp(batch + 1, batch.saturating_mul(100))
        };
        batch = want;
    }
    let mut per_call = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..batch {
            f()?;
        }
        per_call.push(t.elapsed().as_nanos() as f64 / batch as f64);
    }
    Ok(median(&mut per_call))
}

/// Median of a non-empty sample (the mean of the middle two for even sizes).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Rounds to 4 significant digits for display (the timings are not more precise than that).
fn round4(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// A finite float as JSON (non-finite values cannot occur in practice; they print as 0).
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{:?}", round4(x))
    } else {
        "0.0".into()
    }
}

/// Runs the benchmark and prints the table or the JSON object.
pub fn bench(a: &BenchArgs) -> Result<(), CliError> {
    let p = prepare(&a.file, &a.grad, true)?;
    check_memory(&p.graph)?;
    let inputs = read_inputs(a.inputs.as_deref(), &p.inputs)?;
    let (g, _) = dedup_outputs(&p.graph);
    let opts = backend::JitOpts {
        threads: a.threads.n,
        memory_budget: a.budget.bytes,
    };
    let jit = backend::bench_jit(&g, &inputs, opts)?;
    // With a budget, the same kernel without one: what the recomputation costs in time.
    let unbudgeted = match a.budget.bytes {
        Some(_) => Some(backend::bench_jit(
            &g,
            &inputs,
            backend::JitOpts {
                memory_budget: None,
                ..opts
            },
        )?),
        None => None,
    };
    let interp_ns = time_per_call(|| {
        let out =
            gradlift::interp::run(black_box(&g), black_box(&inputs)).map_err(CliError::bug)?;
        black_box(out);
        Ok(())
    })?;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let speedup = ratio(interp_ns, jit.ns_per_call);
    let nodes_opt = g.len();
    let mut s = String::new();
    if a.json {
        let _ = write!(
            s,
            "{{\"nodes\": {}, \"nodes_opt\": {nodes_opt}, \"compile_ms\": {}, \
             \"jit_ns_per_call\": {}, \"interp_ns_per_call\": {}, \"speedup\": {}, \
             \"workspace_bytes\": {}, \"nodes_recomputed\": {}, \"flops_recomputed\": {}",
            p.nodes_before,
            num(jit.compile_ms),
            num(jit.ns_per_call),
            num(interp_ns),
            num(speedup),
            jit.workspace_bytes,
            jit.nodes_recomputed,
            jit.flops_recomputed
        );
        if let (Some(budget), Some(u)) = (a.budget.bytes, &unbudgeted) {
            let _ = write!(
                s,
                ", \"memory_budget\": {budget}, \"unbudgeted_workspace_bytes\": {}, \
                 \"unbudgeted_jit_ns_per_call\": {}, \"recompute_time_ratio\": {}",
                u.workspace_bytes,
                num(u.ns_per_call),
                num(ratio(jit.ns_per_call, u.ns_per_call))
            );
        }
        s.push_str("}\n");
    } else {
        let _ = writeln!(s, "graph        @{} ({})", g.name, a.file.display());
        let _ = writeln!(
            s,
            "nodes        {} -> {nodes_opt} after optimization",
            p.nodes_before
        );
        if let Some(r) = &p.report {
            let summary = r.to_string();
            let first = summary.lines().next().unwrap_or_default();
            let _ = writeln!(
                s,
                "optimizer    {}",
                first.trim_start_matches("optimizer: ")
            );
        }
        let _ = writeln!(s, "compile      {} ms", round4(jit.compile_ms));
        let _ = writeln!(s, "workspace    {} bytes", jit.workspace_bytes);
        let _ = writeln!(s, "jit          {} ns/call", round4(jit.ns_per_call));
        if let Some(u) = &unbudgeted {
            let _ = writeln!(
                s,
                "recomputed   {} nodes, {} flops: {}x the time of {} ns/call with {} bytes \
                 unbudgeted",
                jit.nodes_recomputed,
                jit.flops_recomputed,
                round4(ratio(jit.ns_per_call, u.ns_per_call)),
                round4(u.ns_per_call),
                u.workspace_bytes
            );
        }
        let _ = writeln!(s, "interpreter  {} ns/call", round4(interp_ns));
        let _ = writeln!(s, "speedup      {}x", round4(speedup));
    }
    emit(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_rounding() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(round4(38.4729), 38.47);
        assert_eq!(round4(2310.49), 2310.0);
        assert_eq!(round4(0.00123456), 0.001235);
        assert_eq!(num(f64::NAN), "0.0");
    }

    #[test]
    fn timer_counts_calls() {
        let mut calls = 0u64;
        let ns = time_per_call(|| {
            calls += 1;
            black_box((0..100u64).sum::<u64>());
            Ok(())
        })
        .unwrap();
        assert!(ns > 0.0);
        // A warm-up, the calibration and 11 batches of >= 10 ms worth of calls.
        assert!(calls > 11, "{calls}");
    }
}
