//! The `gradlift` binary from `.gir` text to JSON on many inputs and outputs: a scaling check.
//!
//! Groups (each the whole process: read, parse, `--grad`, optimize, evaluate, print JSON):
//! - `cli_sum_chain/run_grad/N`: `gradlift run sum.gir --grad` on N scalar inputs summed by a
//!   chain of adds (N gradients, all named outputs), N = 1,000 and 10,000.
//! - `cli_sum_chain/print_grad_opt/N`: `gradlift print sum.gir --grad --opt` (N distinct printed
//!   outputs of one shared value).
//!
//! Goals (issue 13, item 3): `run --grad` at N = 10,000 in ≤ 0.2 s, and 10× the inputs costing
//! at most 20× the time (a quadratic step would cost 100×). Criterion's throughput line shows
//! the per-input cost at both sizes. Figures: `benches/README.md`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `n` scalar f64 inputs summed by a chain: `s1 = x0 + x1`, `s{i} = s{i-1} + x{i}`.
fn sum_chain(n: usize) -> String {
    let mut s = String::from("graph @sum {\n");
    for i in 0..n {
        s.push_str(&format!("  %x{i} = input f64[]\n"));
    }
    s.push_str("  %s1 = add %x0, %x1\n");
    for i in 2..n {
        s.push_str(&format!("  %s{i} = add %s{}, %x{i}\n", i - 1));
    }
    s.push_str(&format!("  output %s{}\n}}\n", n - 1));
    s
}

/// Runs the binary once, discarding its output; panics if it fails. `GRADLIFT_BIN` overrides
/// the binary (to measure another build, e.g. an older commit's, on the same files).
fn gradlift(args: &[&str]) {
    let bin = std::env::var_os("GRADLIFT_BIN");
    let bin = bin
        .as_deref()
        .unwrap_or(env!("CARGO_BIN_EXE_gradlift").as_ref());
    let status = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("spawn gradlift");
    assert!(status.success(), "gradlift {args:?} failed");
}

fn sum_chain_file(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join(format!("sum{n}.gir"));
    std::fs::write(&path, sum_chain(n)).expect("write the graph");
    path
}

fn cli_sum_chain(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("gradlift-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let mut g = c.benchmark_group("cli_sum_chain");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    for n in [1_000, 10_000] {
        let file = sum_chain_file(&dir, n);
        let file = file.to_str().expect("a UTF-8 temporary path");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("run_grad", n), &file, |b, f| {
            b.iter(|| gradlift(&["run", f, "--grad"]));
        });
        g.bench_with_input(BenchmarkId::new("print_grad_opt", n), &file, |b, f| {
            b.iter(|| gradlift(&["print", f, "--grad", "--opt"]));
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, cli_sum_chain);
criterion_main!(benches);
