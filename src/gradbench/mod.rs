//! The GradBench evals (<https://github.com/gradbench/gradbench>) written with the builder API.
//!
//! Each eval is a module that turns an eval's input (a JSON-free [`Value`] tree) into a
//! [`Task`]: the input buffers in graph-input order, a key naming the graph's shape (so a
//! caller can cache one compiled kernel per module, function and input shape), a closure that
//! builds the graph (derivatives included) and a closure that turns the kernel's outputs back
//! into the eval's output [`Value`] (or a [`GbError`] when they are no answer: a bounded loop
//! reached its limit). Nothing here does IO or knows about JSON or timing: the
//! protocol loop is the `gradlift gradbench` subcommand's.
//!
//! All evals compute in `f64`, as GradBench's reference tool does.

pub mod ba;
mod descent;
pub mod det;
pub mod gmm;
pub mod hello;
pub mod ht;
pub mod kmeans;
pub mod llsq;
pub mod lse;
pub mod lstm;
pub mod ode;
pub mod particle;
pub mod saddle;
mod value;

pub use value::Value;

use crate::Graph;

/// Why an eval cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum GbError {
    /// The module is not one of [`MODULES`].
    #[error("module `{0}` is not implemented by gradlift (implemented: {list})", list = MODULES.join(", "))]
    UnknownModule(String),
    /// The module has no function of that name.
    #[error("module `{module}` has no function `{function}` (expected one of: {expected})")]
    UnknownFunction {
        /// The module.
        module: String,
        /// The requested function.
        function: String,
        /// The functions the module has.
        expected: String,
    },
    /// The input does not have the eval's form.
    #[error("bad input: {0}")]
    Input(String),
    /// The graph for this input would be too large to build and compile in reasonable time.
    #[error("input too large: {0}")]
    TooLarge(String),
    /// A bounded loop of the eval reached its step limit before its own stopping rule.
    #[error("no convergence: {0}")]
    NotConverged(String),
    /// Building or differentiating the graph failed.
    #[error("building the graph failed: {0}")]
    Build(#[from] crate::Error),
}

/// The modules implemented here, in GradBench's names.
pub const MODULES: [&str; 12] = [
    "hello", "lse", "llsq", "gmm", "kmeans", "ode", "lstm", "det", "ba", "ht", "particle", "saddle",
];

/// Builds an eval's graph on demand.
pub type BuildFn = Box<dyn FnOnce() -> Result<Graph, GbError>>;
/// Turns a kernel's outputs (flat, in graph-output order) into the eval's output, or says why
/// they are not an answer.
pub type DecodeFn = Box<dyn Fn(Vec<Vec<f64>>) -> Result<Value, GbError>>;

/// One `evaluate` request, ready to compile (or fetch from a cache) and run.
pub struct Task {
    /// `module/function/shape`: equal keys build identical graphs.
    pub key: String,
    /// The kernel's inputs, flat row-major, in graph-input order.
    pub inputs: Vec<Vec<f64>>,
    /// Builds the graph (forward and derivative nodes), unoptimized.
    pub build: BuildFn,
    /// Decodes the kernel's outputs.
    pub decode: DecodeFn,
}

/// Whether `module` is implemented.
pub fn has_module(module: &str) -> bool {
    MODULES.contains(&module)
}

/// Prepares `module.function` on `input`.
///
/// # Errors
/// [`GbError::UnknownModule`], [`GbError::UnknownFunction`], [`GbError::Input`] for input of the
/// wrong form, [`GbError::TooLarge`] for a size whose graph would be infeasible.
pub fn prepare(module: &str, function: &str, input: &Value) -> Result<Task, GbError> {
    match module {
        "hello" => hello::prepare(function, input),
        "lse" => lse::prepare(function, input),
        "llsq" => llsq::prepare(function, input),
        "gmm" => gmm::prepare(function, input),
        "kmeans" => kmeans::prepare(function, input),
        "ode" => ode::prepare(function, input),
        "lstm" => lstm::prepare(function, input),
        "det" => det::prepare(function, input),
        "ba" => ba::prepare(function, input),
        "ht" => ht::prepare(function, input),
        "particle" => particle::prepare(function, input),
        "saddle" => saddle::prepare(function, input),
        _ => Err(GbError::UnknownModule(module.to_string())),
    }
}

/// The error for a function `module` does not have.
fn unknown_function(module: &str, function: &str, expected: &[&str]) -> GbError {
    GbError::UnknownFunction {
        module: module.to_string(),
        function: function.to_string(),
        expected: expected.join(", "),
    }
}

/// A decoder that always has an answer.
fn infallible(f: impl Fn(Vec<Vec<f64>>) -> Value + 'static) -> DecodeFn {
    Box::new(move |outs| Ok(f(outs)))
}

/// The first output of a kernel as a number (every eval's scalar output is rank 0).
fn scalar(outs: &[Vec<f64>]) -> Value {
    Value::Num(
        outs.first()
            .and_then(|o| o.first())
            .copied()
            .unwrap_or(f64::NAN),
    )
}

/// The first output as a flat list.
fn list(mut outs: Vec<Vec<f64>>) -> Value {
    if outs.is_empty() {
        Value::Array(Vec::new())
    } else {
        Value::list(outs.swap_remove(0))
    }
}
