//! Differentiation passes. Generic drivers only: the per-op math is in [`crate::ops`].
//!
//! - [`reverse`]: reverse mode (`grad`), which appends the adjoint graph.

pub mod reverse;

pub use reverse::{GradError, grad, grad_in};
