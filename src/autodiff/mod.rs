//! Differentiation passes. Generic drivers only: the per-op math is in [`crate::ops`].
//!
//! - [`reverse`]: reverse mode. [`grad`] (ȳ = 1 for a scalar) and [`vjp`] (explicit seed
//!   cotangents, optionally a batch of them with a leading axis) append the adjoint graph.
//! - [`forward`]: forward mode. [`jvp`] appends the tangent graph, for one direction or a batch
//!   of directions carried along a leading axis ([`jvp_batched`]).
//! - [`jacobian`](mod@jacobian): full Jacobians by whichever mode is cheaper ([`Mode`]), Hessians
//!   (forward-over-reverse) and Hessian-vector products.
//!
//! Every result is ordinary graph, appended to the same graph: it can be printed, optimized,
//! compiled into one kernel with the primal, and differentiated again (so `grad(grad(f))`,
//! Hessians and third derivatives are just nesting). Both drivers honour custom-derivative
//! regions ([`crate::ops::custom`]): at a region's output they call the user's rule, and a
//! missing rule is [`GradError::MissingCustomRule`].
//!
//! Not done here: simplification of the appended nodes (the optimizer does that).

pub mod checkpoint;
pub mod forward;
pub mod jacobian;
mod regions;
pub mod reverse;

pub(crate) use forward::append_jvp;
pub use forward::{jvp, jvp_batched};
pub use jacobian::{Mode, hessian, hvp, jacobian};
pub(crate) use jacobian::{append_hessian, append_hvp, append_jacobian};
pub(crate) use reverse::{append_grad, append_vjp};
pub use reverse::{grad, vjp, vjp_batched};

use crate::ir::{Graph, GraphBuilder, NodeId};

/// Why a derivative could not be formed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GradError {
    /// The differentiated value is not a float scalar (user error: reduce it first, or use
    /// [`vjp`] with an explicit seed).
    #[error("cannot differentiate {name}: expected a float scalar, found {ty}")]
    NotScalar {
        /// The value's name.
        name: String,
        /// Its type.
        ty: String,
    },
    /// A `wrt` value is not a float tensor (user error).
    #[error(
        "cannot differentiate with respect to {name}: it has dtype {dtype}, expected f32 or f64"
    )]
    NotFloat {
        /// The value's name.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A differentiated output is not a float tensor (user error: bool values have no
    /// derivative).
    #[error("cannot differentiate {name}: it has dtype {dtype}, expected f32 or f64")]
    OutputNotFloat {
        /// The value's name.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// An id does not name a node of the graph (user error).
    #[error("node {0} does not exist")]
    NoSuchNode(NodeId),
    /// Two lists that must pair up have different lengths (user error).
    #[error("{what}: expected {expected}, found {found}")]
    Count {
        /// What was counted.
        what: &'static str,
        /// How many were expected.
        expected: usize,
        /// How many were given.
        found: usize,
    },
    /// A seed tangent or cotangent has the wrong type for its value (user error: it must have
    /// the value's dtype and shape, with a leading batch axis when batched).
    #[error("the {kind} for {name} must be {expected}, found {found}")]
    SeedType {
        /// `tangent` or `cotangent`.
        kind: &'static str,
        /// The value it is for.
        name: String,
        /// The type it must have.
        expected: String,
        /// The type it has.
        found: String,
    },
    /// A derivative was asked through a custom op that has no rule for that mode (user error:
    /// give the rule with `CustomOp::with_vjp`/`with_jvp`, or use the other mode).
    #[error("custom op `{name}` has no {rule} rule, so it cannot be differentiated in {mode} mode")]
    MissingCustomRule {
        /// The custom op's name.
        name: String,
        /// `vjp` or `jvp`.
        rule: &'static str,
        /// `reverse` or `forward`.
        mode: &'static str,
    },
    /// A derivative would need a tensor larger than any value may be (a limit: differentiate
    /// fewer or smaller values at once).
    #[error("{0}")]
    TooLarge(String),
    /// A custom rule returned something unusable (user error in the rule: wrong number of
    /// results, or a result that does not fit its value's shape or dtype).
    #[error("custom op `{name}`: {message}")]
    CustomRule {
        /// The custom op's name.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The derivative of a loop body could not be built (the message says why, e.g. a custom
    /// op without a rule inside the body).
    #[error("in the derivative of a loop body: {0}")]
    Body(String),
}

/// Runs a builder-level driver on a graph, putting the graph back afterwards.
fn on_graph<T>(
    g: &mut Graph,
    f: impl FnOnce(&GraphBuilder) -> Result<T, GradError>,
) -> Result<T, crate::Error> {
    let outputs = g.outputs().to_vec();
    let b = GraphBuilder::from_graph(std::mem::take(g));
    let res = f(&b);
    let built = b.check();
    let mut back = b.take_graph();
    back.set_outputs(outputs);
    *g = back;
    // A recorded builder error is the root cause of whatever the driver then reported.
    built?;
    Ok(res?)
}

/// Checks that every id names a node.
fn check_ids(b: &GraphBuilder, ids: &[&[NodeId]]) -> Result<(), GradError> {
    let n = b.graph().len();
    for &id in ids.iter().flat_map(|l| l.iter()) {
        if id.index() >= n {
            return Err(GradError::NoSuchNode(id));
        }
    }
    Ok(())
}

/// Checks that every `wrt` value is a float tensor.
fn check_wrt(b: &GraphBuilder, wrt: &[NodeId]) -> Result<(), GradError> {
    match wrt.iter().find(|&&w| !b.ty(w).dtype.is_float()) {
        Some(&w) => Err(GradError::NotFloat {
            name: b.graph().describe_value(w),
            dtype: b.ty(w).dtype.to_string(),
        }),
        None => Ok(()),
    }
}

/// Checks that every differentiated output is a float tensor.
fn check_float_outputs(b: &GraphBuilder, outputs: &[NodeId]) -> Result<(), GradError> {
    match outputs.iter().find(|&&o| !b.ty(o).dtype.is_float()) {
        Some(&o) => Err(GradError::OutputNotFloat {
            name: b.graph().describe_value(o),
            dtype: b.ty(o).dtype.to_string(),
        }),
        None => Ok(()),
    }
}

/// Checks that `seeds[i]` has `values[i]`'s dtype and shape (with the batch axis prepended).
fn check_seeds(
    b: &GraphBuilder,
    kind: &'static str,
    values: &[NodeId],
    seeds: &[NodeId],
    batch: Option<usize>,
) -> Result<(), GradError> {
    if values.len() != seeds.len() {
        return Err(GradError::Count {
            what: if kind == "tangent" {
                "tangents (one per wrt value)"
            } else {
                "cotangents (one per output)"
            },
            expected: values.len(),
            found: seeds.len(),
        });
    }
    for (&v, &s) in values.iter().zip(seeds) {
        let vt = b.ty(v);
        let want = crate::ir::TensorType::new(
            vt.dtype,
            batch.iter().copied().chain(vt.shape).collect::<Vec<_>>(),
        );
        let got = b.ty(s);
        if got != want {
            return Err(GradError::SeedType {
                kind,
                name: b.graph().describe_value(v),
                expected: want.to_string(),
                found: got.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
