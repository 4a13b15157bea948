//! The `gradlift` command line: `run`, `print`, `bench` and `dot` on `.gir` files, and
//! `gradbench`, a GradBench tool.
//!
//! This file holds the argument definitions (clap derive) and the process boundary: it maps a
//! [`cli::CliError`] to one `error: ...` line on stderr and exit status 1; clap reports usage
//! errors itself with exit status 2. The commands live in the binary-only `cli` modules.
//!
//! The contract is `docs/cli.md`. What this binary deliberately does not do: any graph
//! semantics of its own (parsing, differentiation, optimization and evaluation are the
//! library's), and it never lets a panic escape as a crash: the commands are written not to panic,
//! and as defence in depth a panic is still reported as `error: internal error (bug): ...` with
//! exit status 1 (tests treat that message as a failure).

// No function over 150 lines (the threshold is in clippy.toml; CI denies warnings).
#![warn(clippy::too_many_lines)]

mod cli;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

/// Static computational graphs: evaluate, differentiate, optimize and JIT-compile `.gir` files.
#[derive(Debug, Parser)]
#[command(name = "gradlift", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate a graph once and print its outputs (and gradients) as JSON.
    ///
    /// Without --inputs the inputs are generated (the same every run); --print-inputs shows
    /// them.
    Run(RunArgs),
    /// Print the graph in canonical .gir form (after --grad and/or --opt).
    Print(PrintArgs),
    /// Measure optimization, JIT compile time and time per call (JIT vs interpreter).
    Bench(BenchArgs),
    /// Print the graph as Graphviz DOT text (render it with Graphviz).
    ///
    /// Rendering needs Graphviz's `dot` program (Debian/Ubuntu: `apt-get install graphviz`;
    /// macOS: `brew install graphviz`): `gradlift dot FILE | dot -Tsvg > graph.svg`.
    Dot(DotArgs),
    /// Act as a GradBench tool: answer the eval's protocol messages on stdin/stdout.
    Gradbench(GradbenchArgs),
}

/// Differentiation flags shared by every subcommand.
#[derive(Debug, Args)]
struct GradArgs {
    /// Append the reverse-mode gradient of the first output (a float scalar).
    #[arg(long)]
    grad: bool,
    /// Differentiate only with respect to these float inputs (comma-separated; default: all
    /// float inputs).
    #[arg(long, value_name = "NAMES", value_delimiter = ',', requires = "grad")]
    wrt: Option<Vec<String>>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The .gir file.
    file: PathBuf,
    /// JSON object mapping each input name to its value ('-' reads standard input). Without
    /// it, the inputs are generated: the same every run (a fixed-seed generator), floats
    /// uniform in [-1, 1), bools true or false with equal odds. --print-inputs shows them.
    #[arg(long, value_name = "JSON")]
    inputs: Option<PathBuf>,
    /// Print the inputs this run uses (the generated ones, or those read from --inputs) as one
    /// JSON object in the format --inputs reads, instead of evaluating.
    #[arg(long)]
    print_inputs: bool,
    #[command(flatten)]
    grad: GradArgs,
    #[command(flatten)]
    derivs: DerivArgs,
    /// Evaluation backend.
    #[arg(long, value_enum, default_value_t = Backend::Jit)]
    backend: Backend,
    /// Skip the optimizer (for debugging; results do not change).
    #[arg(long)]
    no_opt: bool,
    /// Stop at the first node that produces a NaN or infinity from finite operands and report
    /// it (its statement and `.gir` line, or the forward node of an adjoint) as an error. The
    /// graph is evaluated as written, without the optimizer, so every node keeps its own line.
    #[arg(long)]
    check_finite: bool,
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    budget: BudgetArg,
}

/// `--threads` for the commands that call JIT kernels.
#[derive(Debug, Args)]
struct ThreadsArg {
    /// The most threads a JIT kernel call uses, for large loops and matrix products (at least
    /// 1; 1 = single-threaded). Results are bitwise the same for every count. Default: all
    /// cores. The interpreter is single-threaded.
    #[arg(long = "threads", value_name = "N", value_parser = parse_threads)]
    n: Option<NonZeroUsize>,
}

/// `--memory-budget` for the commands that compile JIT kernels.
#[derive(Debug, Args)]
struct BudgetArg {
    /// The most workspace (scratch memory) the JIT kernel may use, in bytes: the compiler
    /// recomputes forward values in the backward pass instead of storing them until it fits
    /// (results are bitwise the same), or fails naming the smallest budget that fits. Only
    /// gradients appended by --grad have a backward pass to trade. JIT backend only.
    #[arg(long = "memory-budget", value_name = "BYTES")]
    bytes: Option<u64>,
}

/// Parses a `--threads` count: a whole number, at least 1.
fn parse_threads(s: &str) -> Result<NonZeroUsize, String> {
    let n: usize = s
        .parse()
        .map_err(|e| format!("expected a whole number of threads (at least 1): {e}"))?;
    NonZeroUsize::new(n).ok_or_else(|| {
        "a kernel needs at least 1 thread (1 = single-threaded; leave --threads out for all \
         cores)"
            .to_string()
    })
}

/// Full Jacobians and Hessians for `run` (always with respect to every float input).
#[derive(Debug, Args)]
struct DerivArgs {
    /// Also print the Jacobian of every output with respect to every float input, under
    /// "jacobian" (each block shaped OUT.shape + IN.shape).
    #[arg(long)]
    jacobian: bool,
    /// How --jacobian is built: forward mode, reverse mode, or whichever is cheaper.
    #[arg(long, value_enum, default_value_t = JacobianMode::Auto, requires = "jacobian")]
    mode: JacobianMode,
    /// Also print the Hessian of the first output (a float scalar) with respect to each float
    /// input under "hessian", and the blocks for pairs of inputs under "hessian_cross" (key
    /// "a,b" for inputs a before b, shaped a.shape + b.shape).
    #[arg(long)]
    hessian: bool,
}

/// How `run --jacobian` builds the Jacobian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum JacobianMode {
    /// Forward mode (one batched JVP, a direction per input element).
    Fwd,
    /// Reverse mode (one batched VJP, a seed per output element).
    Rev,
    /// Forward if the inputs are smaller in total than the outputs, else reverse.
    Auto,
}

#[derive(Debug, Args)]
struct PrintArgs {
    /// The .gir file.
    file: PathBuf,
    #[command(flatten)]
    grad: GradArgs,
    /// Run the optimizer before printing.
    #[arg(long)]
    opt: bool,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// The .gir file.
    file: PathBuf,
    /// Inputs as for `run` (default: the same generated inputs as `run`; see
    /// `run --print-inputs`).
    #[arg(long, value_name = "JSON")]
    inputs: Option<PathBuf>,
    #[command(flatten)]
    grad: GradArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    budget: BudgetArg,
}

#[derive(Debug, Args)]
struct DotArgs {
    /// The .gir file.
    file: PathBuf,
    #[command(flatten)]
    grad: GradArgs,
    /// Run the optimizer first.
    #[arg(long)]
    opt: bool,
}

#[derive(Debug, Args)]
struct GradbenchArgs {
    /// Let kernels run large loops and matrix products, and the JIT compile, on all cores
    /// (GradBench's convention); default: one thread. The outputs are bitwise the same either
    /// way.
    #[arg(long)]
    multithreaded: bool,
    /// Report each compiled graph (node counts, build/optimize/compile times) on stderr.
    #[arg(long)]
    verbose: bool,
}

/// Which evaluator `run` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// Compile with Cranelift and call the native kernel.
    Jit,
    /// The reference interpreter.
    Interp,
}

/// The panic message of a panic caught by [`main`], recorded by the panic hook.
static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors: clap prints them and exits with status 2.
    // Defence in depth only: the commands are written not to panic. If one does anyway, report
    // it as a bug in the `error:` format instead of crashing with status 101.
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            *slot = Some(info.to_string());
        }
    }));
    let result = std::panic::catch_unwind(|| cli::dispatch(cli));
    let message = match result {
        Ok(Ok(())) => return ExitCode::SUCCESS,
        Ok(Err(e)) => e.to_string(),
        Err(_) => {
            let what = PANIC_MESSAGE
                .lock()
                .ok()
                .and_then(|mut s| s.take())
                .unwrap_or_else(|| "unknown panic".into());
            format!("internal error (bug): {}", what.replace('\n', " "))
        }
    };
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = writeln!(std::io::stderr().lock(), "error: {message}");
    ExitCode::FAILURE
}
