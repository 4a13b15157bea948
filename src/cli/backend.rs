//! The JIT backend as the CLI uses it: compile and run once (`run`), or compile and time the
//! zero-allocation call path (`bench`).
//!
//! This is the only CLI file that names `gradlift::jit`. Not here: the interpreter (called
//! directly) or any timing policy (see `bench::time_per_call`).

use super::CliError;
use gradlift::{Graph, Tensor};

/// Compiles `g` and evaluates it once on `inputs`.
pub fn run_jit(_g: &Graph, _inputs: &[Tensor]) -> Result<Vec<Tensor>, CliError> {
    Err(CliError::new(
        "the JIT backend is not available in this build yet; use --backend interp",
    ))
}

/// JIT measurements.
pub struct JitTiming {
    /// Median compile time in milliseconds.
    pub compile_ms: f64,
    /// Median time per call of the compiled kernel in nanoseconds.
    pub ns_per_call: f64,
    /// Bytes of the kernel's reusable workspace.
    pub workspace_bytes: usize,
}

/// Compiles `g` (timed) and times calls of the kernel on `inputs` with a reused workspace.
pub fn bench_jit(_g: &Graph, _inputs: &[Tensor]) -> Result<JitTiming, CliError> {
    Err(CliError::new(
        "the JIT backend is not available in this build yet",
    ))
}
