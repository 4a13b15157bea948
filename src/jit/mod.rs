//! The Cranelift backend (stub, being written).

/// Compilation failed.
#[derive(Debug, thiserror::Error)]
#[error("jit: {0}")]
pub struct JitError(pub String);

/// A kernel was called with wrong buffers.
#[derive(Debug, thiserror::Error)]
#[error("call: {0}")]
pub struct CallError(pub String);
