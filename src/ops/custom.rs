//! User-defined composite ops with their own derivative rules (JAX's `custom_jvp`/`custom_vjp`).
//!
//! A [`CustomOp`] is a forward function built from primitives plus an optional VJP rule and an
//! optional JVP rule. [`GraphBuilder::custom`] builds the forward subgraph (the *region*) and
//! records a [`CustomRegion`] in the graph's side table: the region's output node, its input
//! nodes, the first node of its interior, and the rules. Both AD drivers consult the table: at a
//! region's output they call the user's rule instead of descending into the region, and asking
//! for a mode whose rule is absent is a typed error
//! ([`crate::autodiff::GradError::MissingCustomRule`]), never a silent fallback to the primal
//! subgraph's derivative.
//!
//! Rules are written with builder primitives like the built-in ones, so they can be
//! differentiated again. They must accept batched tangents/cotangents (a leading batch axis, as
//! in [`Tangents`] and [`super::batch_dims`]) when used in Jacobians; rules written with
//! elementwise arithmetic do so automatically.
//!
//! Deliberately absent: a `.gir` spelling. The rules are Rust closures, so printing a graph with
//! custom regions prints the primal subgraph only and the rules are lost (a parsed copy
//! differentiates through the primal ops). The side table lives on the [`crate::Graph`] and is
//! kept by appending (the drivers, [`crate::Graph::set_named_outputs`]), but any pass that
//! renumbers nodes drops it (see [`crate::Graph::nodes_mut`]): differentiate before optimizing.
//! A region's interior is private: the forward function's intermediate values must not be used
//! outside it (forward mode does not compute their tangents).

use super::Tangents;
use crate::ir::{GraphBuilder, NodeId, Var};
use std::fmt;
use std::sync::Arc;

/// The forward function of a custom op: builds the primal value from the inputs.
pub type CustomForward = dyn for<'b> Fn(&'b GraphBuilder, &[Var<'b>]) -> Var<'b> + Send + Sync;

/// A custom VJP rule: given the call and the output's cotangent (shaped like the output, or with
/// leading batch axes for batched seeds), return one cotangent contribution per input (`None`:
/// no gradient). The driver un-broadcasts contributions to each input's shape.
pub type CustomVjp = dyn for<'b> Fn(&'b GraphBuilder, &CustomCall<'b>, Var<'b>) -> Vec<Option<Var<'b>>>
    + Send
    + Sync;

/// A custom JVP rule: given the call and the inputs' tangents (see [`Tangents`]), return the
/// output's tangent (`None`: zero). The driver broadcasts it to the output's tangent shape.
pub type CustomJvp = dyn for<'b> Fn(&'b GraphBuilder, &CustomCall<'b>, &Tangents<'b>) -> Option<Var<'b>>
    + Send
    + Sync;

/// What a custom rule sees: the region's inputs and its primal output (which rules may reuse).
#[derive(Clone, Debug)]
pub struct CustomCall<'b> {
    /// The values the op was applied to, in order.
    pub inputs: Vec<Var<'b>>,
    /// The op's primal output.
    pub output: Var<'b>,
}

/// A composite op with user-given derivative rules. Cheap to clone (shared closures).
///
/// ```
/// use gradlift::{DType, GraphBuilder, interp, ops::custom::CustomOp};
/// // A gradient clip: identity forward, cotangent clipped to [-1, 1].
/// let clip = CustomOp::new("clip_grad", |_, x| x[0])
///     .with_vjp(|_, _, ct| vec![Some(ct.max(ct.scalar_like(-1.0)).min(ct.scalar_like(1.0)))]);
/// let b = GraphBuilder::new("g");
/// let x = b.input("x", DType::F64, &[]);
/// let y = b.custom(&clip, &[x]) * 10.0;
/// let g = b.grad(y, &[x]).unwrap();
/// let graph = b.finish(&[("y", y), ("g", g[0])]).unwrap();
/// let out = interp::run(&graph, &[2.0.into()]).unwrap();
/// assert_eq!(out[1].scalar_value(), Some(1.0)); // not 10
/// ```
#[derive(Clone)]
pub struct CustomOp {
    name: Arc<str>,
    forward: Arc<CustomForward>,
    vjp: Option<Arc<CustomVjp>>,
    jvp: Option<Arc<CustomJvp>>,
}

impl CustomOp {
    /// A custom op named `name` (used in error messages) computing `forward`, with no rules yet.
    pub fn new(
        name: &str,
        forward: impl for<'b> Fn(&'b GraphBuilder, &[Var<'b>]) -> Var<'b> + Send + Sync + 'static,
    ) -> CustomOp {
        CustomOp {
            name: name.into(),
            forward: Arc::new(forward),
            vjp: None,
            jvp: None,
        }
    }

    /// Gives the op a reverse-mode rule (see [`CustomVjp`]).
    pub fn with_vjp(
        mut self,
        vjp: impl for<'b> Fn(&'b GraphBuilder, &CustomCall<'b>, Var<'b>) -> Vec<Option<Var<'b>>>
        + Send
        + Sync
        + 'static,
    ) -> CustomOp {
        self.vjp = Some(Arc::new(vjp));
        self
    }

    /// Gives the op a forward-mode rule (see [`CustomJvp`]).
    pub fn with_jvp(
        mut self,
        jvp: impl for<'b> Fn(&'b GraphBuilder, &CustomCall<'b>, &Tangents<'b>) -> Option<Var<'b>>
        + Send
        + Sync
        + 'static,
    ) -> CustomOp {
        self.jvp = Some(Arc::new(jvp));
        self
    }

    /// The op's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The forward function.
    pub fn forward(&self) -> &CustomForward {
        &*self.forward
    }

    /// The reverse-mode rule, if given.
    pub fn vjp(&self) -> Option<&CustomVjp> {
        self.vjp.as_deref()
    }

    /// The forward-mode rule, if given.
    pub fn jvp(&self) -> Option<&CustomJvp> {
        self.jvp.as_deref()
    }
}

impl fmt::Debug for CustomOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomOp")
            .field("name", &self.name)
            .field("vjp", &self.vjp.is_some())
            .field("jvp", &self.jvp.is_some())
            .finish()
    }
}

/// One application of a [`CustomOp`] in a graph: nodes `first..=output` are its interior (built
/// by the forward function), `inputs` are the values it was applied to.
#[derive(Clone, Debug)]
pub struct CustomRegion {
    /// The op and its rules.
    pub op: CustomOp,
    /// The values the op was applied to.
    pub inputs: Vec<NodeId>,
    /// The first node the forward function appended.
    pub first: NodeId,
    /// The region's output (always a node appended by the call, never one of `inputs`).
    pub output: NodeId,
}
