//! The top-level [`Error`]: one variant per layer, each wrapping that layer's own error type.

use crate::autodiff::GradError;
use crate::interp::EvalError;
use crate::ir::text::ParseError;
use crate::ir::{BuildError, VerifyErrors};
use crate::jit::{CallError, JitError};
use crate::ops::ShapeError;

/// Any gradlift error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A builder call got operands of the wrong shape or dtype (user error; fix the call at the
    /// reported location).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// An op was given invalid operands or attributes (user error).
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A `.gir` file is malformed (user error; the message has `line:col`).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A graph broke an invariant (a bug in whatever produced the graph).
    #[error(transparent)]
    Verify(#[from] VerifyErrors),
    /// Differentiation was asked for something that has no gradient (user error).
    #[error(transparent)]
    Grad(#[from] GradError),
    /// The interpreter was called with wrong inputs (user error).
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Compilation failed (a limit, or a bug; the source is Cranelift's error).
    #[error(transparent)]
    Jit(#[from] JitError),
    /// A compiled kernel was called with wrong buffers (user error).
    #[error(transparent)]
    Call(#[from] CallError),
}

impl Error {
    /// The [`GradError`] behind this error, whether it came from the graph-level drivers
    /// ([`Error::Grad`]) or from a builder call, which adds the caller's location
    /// ([`Error::Build`] with [`crate::ir::BuildErrorKind::Grad`]).
    pub fn grad_error(&self) -> Option<&GradError> {
        match self {
            Error::Grad(e) => Some(e),
            Error::Build(BuildError {
                error: crate::ir::BuildErrorKind::Grad(e),
                ..
            }) => Some(e),
            _ => None,
        }
    }
}
