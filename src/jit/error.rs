//! What can go wrong: compiling ([`JitError`]) and calling ([`CallError`]) a kernel.

use crate::ir::{DType, TensorType, VerifyErrors};
use cranelift_codegen::settings;
use cranelift_module::ModuleError;

/// Compilation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JitError {
    /// The graph broke an invariant (a bug in whatever produced it: builder, parser or a pass).
    #[error("cannot compile an invalid graph")]
    InvalidGraph(#[source] VerifyErrors),
    /// Cranelift cannot generate code for this machine (unsupported host).
    #[error("unsupported host: {0}")]
    UnsupportedHost(String),
    /// Cranelift rejected a setting (a bug in gradlift).
    #[error("invalid Cranelift setting")]
    Settings(#[source] Box<settings::SetError>),
    /// Cranelift rejected a generated function (a bug in the lowering; with
    /// [`JitConfig::verifier`](super::JitConfig::verifier) on, the source lists the verifier's findings).
    #[error("Cranelift failed to compile function {function}")]
    Codegen {
        /// Index of the function (chunk of nodes) in the kernel.
        function: usize,
        /// Cranelift's error.
        #[source]
        source: Box<ModuleError>,
    },
    /// Declaring, linking or mapping the code failed (a bug, or the OS refused executable
    /// memory).
    #[error("Cranelift failed to link the kernel")]
    Module(#[source] Box<ModuleError>),
    /// A donated pair of [`JitConfig::donate`](super::JitConfig::donate) is impossible (user error: an unknown name, types
    /// that differ, or a name in two pairs).
    #[error("cannot donate input %{input} to output %{output}: {reason}")]
    Donation {
        /// The input's name as given.
        input: String,
        /// The output's name as given.
        output: String,
        /// What is wrong.
        reason: String,
    },
    /// No choice of recomputation fits [`JitConfig::memory_budget_bytes`](super::JitConfig::memory_budget_bytes) (user error: raise
    /// the budget to at least `minimum`).
    #[error(
        "no plan fits the memory budget of {budget} bytes: the smallest feasible budget is \
         {minimum} bytes of workspace"
    )]
    OverBudget {
        /// The budget asked for.
        budget: u64,
        /// The smallest workspace of any plan the compiler found.
        minimum: u64,
    },
    /// The graph needs more memory than can be addressed (a limit; split the graph).
    #[error("graph too large: {what}")]
    TooLarge {
        /// What overflowed.
        what: String,
    },
}

impl JitError {
    pub(super) fn module(e: ModuleError) -> JitError {
        JitError::Module(Box::new(e))
    }
}

/// A kernel was called with buffers that do not match its signature (nothing ran), or, in
/// checked mode, stopped at a non-finite value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Wrong number of inputs (user error: pass one per kernel input, in order, leaving out
    /// donated inputs).
    #[error("expected {expected} inputs, got {got}")]
    InputCount {
        /// Inputs the kernel has.
        expected: usize,
        /// Inputs given.
        got: usize,
    },
    /// Wrong number of output buffers (user error: pass one per kernel output, in order).
    #[error("expected {expected} output buffers, got {got}")]
    OutputCount {
        /// Outputs the kernel has.
        expected: usize,
        /// Buffers given.
        got: usize,
    },
    /// An input tensor passed to [`Kernel::run`](super::Kernel::run) has the wrong type (user error).
    #[error("input {index} (%{name}): expected {expected}, got {got}")]
    InputType {
        /// Input position.
        index: usize,
        /// Input name.
        name: String,
        /// Its declared type.
        expected: TensorType,
        /// The type given.
        got: TensorType,
    },
    /// An input buffer has the wrong dtype or length (user error).
    #[error(
        "input {index} (%{name}): expected {expected} ({} elements), got a {dtype} buffer of {len} elements",
        expected.numel()
    )]
    InputBuffer {
        /// Input position.
        index: usize,
        /// Input name.
        name: String,
        /// Its declared type.
        expected: TensorType,
        /// The buffer's dtype.
        dtype: DType,
        /// The buffer's length.
        len: usize,
    },
    /// An output buffer has the wrong dtype or length (user error).
    #[error(
        "output {index} (%{name}): expected {expected} ({} elements), got a {dtype} buffer of {len} elements",
        expected.numel()
    )]
    OutputBuffer {
        /// Output position.
        index: usize,
        /// Output name.
        name: String,
        /// Its type.
        expected: TensorType,
        /// The buffer's dtype.
        dtype: DType,
        /// The buffer's length.
        len: usize,
    },
    /// No input has this name (user error; [`Kernel::input_names`](super::Kernel::input_names) lists them).
    #[error("the kernel has no input named %{name}")]
    UnknownInput {
        /// The name given.
        name: String,
    },
    /// No output (nor donated input) has this name (user error; [`Kernel::output_names`](super::Kernel::output_names)
    /// lists them).
    #[error("the kernel has no output named %{name}")]
    UnknownOutput {
        /// The name given.
        name: String,
    },
    /// A named call got two buffers for one input or output (user error).
    #[error("%{name} got two buffers")]
    DuplicateBuffer {
        /// The input's or output's name.
        name: String,
    },
    /// A named call got no buffer for an input (user error).
    #[error("no buffer for input %{name}")]
    MissingInput {
        /// The input's name.
        name: String,
    },
    /// A named call got no buffer for an output (user error).
    #[error("no buffer for output %{name}")]
    MissingOutput {
        /// The output's name.
        name: String,
    },
    /// A donated input was passed as a read-only input (user error: pass its buffer, holding
    /// the input's value, as the output's, under either name).
    #[error(
        "input %{input} is donated to output %{output}: pass its buffer among the outputs, \
         not the inputs"
    )]
    DonatedInput {
        /// The input's name.
        input: String,
        /// The output it is donated to.
        output: String,
    },
    /// The workspace was made by another kernel (user error: use [`Kernel::workspace`](super::Kernel::workspace) of the
    /// kernel being called).
    #[error("the workspace belongs to another kernel")]
    ForeignWorkspace,
    /// Checked mode ([`JitConfig::check_finite`](super::JitConfig::check_finite)) only: a node produced a non-finite value from
    /// finite operands. Unlike the other variants, the kernel ran, up to and including that
    /// node; the output buffers hold whatever was computed by then.
    #[error(transparent)]
    NonFinite(Box<crate::finite::NonFinite>),
    /// A collective failed ([`Kernel::call_with_comm`](super::Kernel::call_with_comm)); the outputs are not meaningful.
    #[error(transparent)]
    Comm(#[from] crate::comm::CommError),
}
