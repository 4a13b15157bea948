//! gradlift: static computational graphs, reverse-mode automatic differentiation, a graph
//! optimizer, and a Cranelift JIT that compiles forward and backward passes into one native
//! kernel.
//!
//! ```
#![doc = include_str!("../examples/quickstart.rs")]
//! ```
//!
//! # Layers
//! - [`ir`]: the graph ([`Graph`]), the builder ([`GraphBuilder`]), the verifier and the `.gir`
//!   text format ([`ir::text`]).
//! - [`ops`]: the per-op rule table (shape rule, interpreter kernel, VJP, lowering).
//! - [`autodiff`]: reverse mode ([`autodiff::grad`], [`autodiff::vjp`]), forward mode
//!   ([`autodiff::jvp`]), Jacobians, Hessians and Hessian-vector products, custom rules.
//! - [`opt`]: the optimizer pipeline ([`opt::optimize`]).
//! - [`interp`]: the reference interpreter ([`interp::run`]; [`interp::run_checked`] reports
//!   where a NaN or infinity first appeared, see [`finite`]).
//! - [`jit`]: the Cranelift backend ([`jit::compile`], [`jit::Kernel`]).
//! - [`comm`]: communicators for the collective ops (one process, threads as ranks, MPI
//!   behind the `mpi` feature).
//! - [`gradbench`]: the GradBench evals as graphs (used by `gradlift gradbench`).
//!
//! # Closures over `Var`s
//! A [`Var`] borrows its builder, so it carries the builder's lifetime. A closure whose
//! parameter is written `|x: Var|` fails with "lifetime may not live long enough": Rust makes
//! an annotated closure generic over the parameter's lifetime but gives its result one fixed
//! lifetime. Leave the type off (it is inferred from the first call), or use a function with
//! one named lifetime for both:
//!
//! ```
//! use gradlift::{DType, GraphBuilder, Var};
//! fn dense<'b>(x: Var<'b>, w: Var<'b>, b: Var<'b>) -> Var<'b> {
//!     (x.matmul(w) + b).tanh()
//! }
//! let g = GraphBuilder::new("net");
//! let (w, b) = (g.input("w", DType::F32, &[4, 4]), g.input("b", DType::F32, &[4]));
//! let layer = |x| dense(x, w, b); // not `|x: Var|`
//! let y = layer(layer(g.input("x", DType::F32, &[2, 4])));
//! let graph = g.finish(&[("y", y)]).unwrap();
//! assert_eq!(graph.ty(graph.outputs()[0]).shape, vec![2, 4]);
//! ```
//!
//! # Debug builds of your crate
//! Cargo builds dependencies with your profile, so in a debug build (`cargo run` without
//! `--release`) gradlift, Cranelift and the `gemm` crate are unoptimized: compiling a graph is
//! 10-30× slower, and a kernel that calls back into Rust (matrix products, batched math) much
//! slower too. Optimize the dependencies and keep your own code quick to rebuild by adding to
//! your `Cargo.toml`:
//!
//! ```toml
//! [profile.dev.package."*"]
//! opt-level = 3
//! ```
//!
//! (`"*"` is every dependency, so it also covers Cranelift's and `gemm`'s many crates; your own
//! crate stays at opt-level 0.) Without it gradlift softens the trap
//! where it can ([`jit::DEPENDENCY_UNOPTIMIZED`]): kernels keep matrix products and math in
//! compiled code and skip Cranelift's verifier. `benches/README.md` has the measurements.
//!
//! The `.gir` text format and the `gradlift` command line are described in `docs/gir.md` and
//! `docs/cli.md` in the repository.
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]
// No function over 150 lines (the threshold is in clippy.toml; CI denies warnings).
#![warn(clippy::too_many_lines)]

pub mod autodiff;
pub mod comm;
mod error;
pub mod finite;
pub mod gradbench;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod ops;
pub mod opt;
mod tensor;
#[doc(hidden)]
pub mod testutil;

pub use error::Error;
pub use ir::{
    Attrs, DType, Graph, GraphBuilder, Node, NodeId, Op, Origin, ScanArgs, ScanOut, ScanStep,
    TensorType, Var,
};
pub use tensor::{Data, Tensor};

/// The README's code blocks, compiled and run as doctests so the README cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
