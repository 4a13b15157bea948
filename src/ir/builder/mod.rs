//! [`GraphBuilder`]: the construction API, reading like the math.
//!
//! Values are [`Var`] handles (`Copy`) that borrow the builder, so `x * x + y`, `-x`, `x / 2.0`
//! and `x.exp()` just work. A shape or dtype error never panics: the first one is recorded with
//! the op, the operand types and the caller's source location (`#[track_caller]`), every later
//! op that uses the failed value is skipped, and the error is returned by the next fallible call
//! ([`GraphBuilder::finish`], [`GraphBuilder::grad`], [`GraphBuilder::check`]).
//!
//! The builder only appends, so node ids stay topologically ordered.

use super::{Attrs, DType, Graph, NodeId, Op, Origin, TensorType};
use crate::ops::ShapeError;
use crate::tensor::Tensor;
use std::cell::{Cell, Ref, RefCell};
use std::fmt;
use std::panic::Location;

/// An error in a builder call, with the caller's source location.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{location}: {error}")]
pub struct BuildError {
    /// What was wrong.
    #[source]
    pub error: BuildErrorKind,
    /// The builder call that failed (`file:line:col`).
    pub location: String,
}

/// What was wrong in a builder call.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildErrorKind {
    /// An op got operands or attributes it does not accept (user error: fix the call).
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A value made by another [`GraphBuilder`] was passed (user error: build every value of a
    /// graph with one builder; its node id would name an unrelated node of this graph).
    #[error(
        "{call}: {value} belongs to another GraphBuilder (graph @{other}); values of two \
         builders cannot be mixed"
    )]
    ForeignValue {
        /// The call that got it (an op's name, `grad`, `finish`, ...).
        call: String,
        /// The value, as its builder names it.
        value: String,
        /// The name of the graph it belongs to.
        other: String,
    },
    /// A derivative could not be formed (user error; see [`crate::autodiff::GradError`]).
    #[error(transparent)]
    Grad(#[from] crate::autodiff::GradError),
}

/// The id of a value that failed to build; ops on it are skipped.
const POISON: NodeId = NodeId(u32::MAX);

/// Builds a [`Graph`] with math-like syntax.
///
/// ```
/// use gradlift::{GraphBuilder, DType};
/// let b = GraphBuilder::new("seed");
/// let x1 = b.input("x1", DType::F64, &[]);
/// let x2 = b.input("x2", DType::F64, &[]);
/// let y = x1 * x1 + x2;
/// let grads = b.grad(y, &[x1, x2]).unwrap();
/// let g = b.finish(&[("y", y), ("dx1", grads[0]), ("dx2", grads[1])]).unwrap();
/// let out = gradlift::interp::run(&g, &[3.0.into(), 4.0.into()]).unwrap();
/// assert_eq!(out[0].scalar_value(), Some(13.0));
/// assert_eq!(out[1].scalar_value(), Some(6.0)); // ∂y/∂x1 = 2·x1
/// assert_eq!(out[2].scalar_value(), Some(1.0)); // ∂y/∂x2 = 1
/// ```
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: RefCell<Graph>,
    error: RefCell<Option<BuildError>>,
    origin: Cell<Option<Origin>>,
}

/// A value in a graph under construction. Cheap to copy; operators build new nodes.
#[derive(Clone, Copy)]
pub struct Var<'b> {
    id: NodeId,
    b: &'b GraphBuilder,
}

impl fmt::Debug for Var<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Var({})", self.id)
    }
}

impl GraphBuilder {
    /// An empty builder for a graph named `name`.
    pub fn new(name: &str) -> GraphBuilder {
        GraphBuilder {
            graph: RefCell::new(Graph::new(name)),
            ..Default::default()
        }
    }

    /// A builder that appends to an existing graph.
    pub fn from_graph(graph: Graph) -> GraphBuilder {
        GraphBuilder {
            graph: RefCell::new(graph),
            ..Default::default()
        }
    }

    /// The graph built so far.
    pub fn graph(&self) -> Ref<'_, Graph> {
        self.graph.borrow()
    }

    /// A handle to an existing node.
    pub fn var(&self, id: NodeId) -> Var<'_> {
        Var { id, b: self }
    }

    /// The type of node `id` (a clone).
    pub fn ty(&self, id: NodeId) -> TensorType {
        if id == POISON {
            return TensorType::scalar(DType::F64);
        }
        self.graph.borrow().ty(id).clone()
    }

    /// Makes every node appended until [`GraphBuilder::clear_origin`] record `origin` instead of
    /// the caller's source location (reverse mode marks adjoint nodes this way).
    pub fn set_origin(&self, origin: Origin) {
        self.origin.set(Some(origin));
    }

    /// Undoes [`GraphBuilder::set_origin`].
    pub fn clear_origin(&self) {
        self.origin.set(None);
    }

    #[track_caller]
    pub(super) fn fail(&self, error: impl Into<BuildErrorKind>) -> Var<'_> {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(BuildError {
                error: error.into(),
                location: Location::caller().to_string(),
            });
        }
        Var {
            id: POISON,
            b: self,
        }
    }

    /// Records a [`BuildErrorKind::ForeignValue`] error (and returns `true`) if any of `values`
    /// was made by another builder: its id would silently name an unrelated node here.
    #[track_caller]
    fn foreign(&self, call: &str, values: &[&[Var<'_>]]) -> bool {
        let all = values.iter().flat_map(|l| l.iter());
        let Some(v) = all.into_iter().find(|v| !std::ptr::eq(v.b, self)) else {
            return false;
        };
        let (value, other) = {
            let g = v.b.graph.borrow();
            let value = if v.id == POISON || v.id.index() >= g.len() {
                "a value".to_string()
            } else {
                format!("%{}", g.value_name(v.id))
            };
            (value, g.name.clone())
        };
        self.fail(BuildErrorKind::ForeignValue {
            call: call.to_string(),
            value,
            other,
        });
        true
    }

    fn origin_here(&self, loc: &'static Location<'static>) -> Origin {
        self.origin.get().unwrap_or(Origin::Source(loc))
    }

    /// The first recorded error, if any.
    pub fn error(&self) -> Option<BuildError> {
        self.error.borrow().clone()
    }

    /// `Err` with the first recorded error, if any.
    ///
    /// # Errors
    /// The first shape or dtype error of any builder call so far.
    pub fn check(&self) -> Result<(), BuildError> {
        match self.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Appends `op(inputs)` with `attrs`. The generic entry point behind every method.
    #[track_caller]
    pub fn push(&self, op: Op, inputs: &[Var<'_>], attrs: Attrs) -> Var<'_> {
        if self.foreign(&op.to_string(), &[inputs]) || inputs.iter().any(|v| v.id == POISON) {
            return Var {
                id: POISON,
                b: self,
            };
        }
        let ids = inputs.iter().map(|v| v.id).collect();
        let res = self.graph.borrow_mut().push(op, ids, attrs);
        match res {
            Ok(id) => {
                let origin = self.origin_here(Location::caller());
                self.graph.borrow_mut().set_origin(id, origin);
                Var { id, b: self }
            }
            Err(mut e) => {
                if e.operands.len() == inputs.len() {
                    let g = self.graph.borrow();
                    e.names = inputs
                        .iter()
                        .map(|v| format!("%{}", g.value_name(v.id)))
                        .collect();
                }
                self.fail(e)
            }
        }
    }

    /// A graph input named `name` of the given dtype and shape.
    #[track_caller]
    pub fn input(&self, name: &str, dtype: DType, shape: &[usize]) -> Var<'_> {
        let Some(ty) = TensorType::checked(dtype, shape.to_vec()) else {
            let problem = super::shape_problem(shape).unwrap_or_default();
            return self.fail(ShapeError::new(
                Op::Input,
                format!("invalid shape for input {name:?}: {problem}"),
            ));
        };
        let res = self.graph.borrow_mut().add_input(name, ty);
        match res {
            Ok(id) => {
                self.graph
                    .borrow_mut()
                    .set_origin(id, Origin::Source(Location::caller()));
                Var { id, b: self }
            }
            Err(e) => self.fail(e),
        }
    }

    /// A constant tensor.
    #[track_caller]
    pub fn constant(&self, value: Tensor) -> Var<'_> {
        let id = self.graph.borrow_mut().add_const(value);
        let origin = self.origin_here(Location::caller());
        self.graph.borrow_mut().set_origin(id, origin);
        Var { id, b: self }
    }

    /// A scalar constant.
    #[track_caller]
    pub fn scalar(&self, dtype: DType, x: f64) -> Var<'_> {
        self.constant(Tensor::splat(&TensorType::scalar(dtype), x))
    }

    /// The number of ranks of the communicator the graph runs with, as a scalar of float
    /// `dtype` (1 on one process; see [`crate::ops::collective`]).
    #[track_caller]
    pub fn num_ranks(&self, dtype: DType) -> Var<'_> {
        self.num_ranks_in(dtype, &crate::ir::Groups::world())
    }

    /// A zero tensor of the given type (a scalar constant broadcast, so it costs no memory).
    #[track_caller]
    pub fn zeros(&self, dtype: DType, shape: &[usize]) -> Var<'_> {
        self.scalar(dtype, 0.0).broadcast_to(shape)
    }

    /// `c ? a : b`, elementwise with broadcasting.
    #[track_caller]
    pub fn select<'b>(&'b self, c: Var<'b>, a: Var<'b>, b: Var<'b>) -> Var<'b> {
        self.push(Op::Select, &[c, a, b], Attrs::None)
    }

    /// Joins values along `axis`.
    #[track_caller]
    pub fn concat<'b>(&'b self, parts: &[Var<'b>], axis: usize) -> Var<'b> {
        self.push(Op::Concat, parts, Attrs::Axis { axis })
    }

    /// Gives a value a name (used for outputs and in printed `.gir`).
    #[track_caller]
    pub fn name(&self, v: Var<'_>, name: &str) {
        if self.foreign("name", &[&[v]]) || v.id == POISON {
            return;
        }
        let clash = (self.graph.borrow().node_named(name)).is_some_and(|owner| owner != v.id);
        if clash || !is_value_name(name) {
            self.fail(ShapeError::new(
                self.graph.borrow().node(v.id).op,
                format!("cannot name a value %{name}: the name is taken or not an identifier"),
            ));
            return;
        }
        self.graph.borrow_mut().set_name(v.id, Some(name));
    }

    /// Finishes the graph with the given named outputs, taking it out of the builder (which is
    /// left empty).
    ///
    /// # Errors
    /// The first error recorded by any builder call, or a duplicate/invalid output name.
    #[track_caller]
    pub fn finish(&self, outputs: &[(&str, Var<'_>)]) -> Result<Graph, BuildError> {
        let values: Vec<Var<'_>> = outputs.iter().map(|&(_, v)| v).collect();
        self.foreign("finish", &[&values]);
        self.check()?;
        let mut g = std::mem::take(&mut *self.graph.borrow_mut());
        let outs: Vec<(&str, NodeId)> = outputs.iter().map(|(n, v)| (*n, v.id)).collect();
        // Taken here: inside the closure below it would name this file, not the caller.
        let location = Location::caller().to_string();
        g.set_named_outputs(&outs).map_err(|error| BuildError {
            error: error.into(),
            location,
        })?;
        Ok(g)
    }

    /// Takes the graph out, whatever errors were recorded (nodes that failed were never added,
    /// so it is a valid graph). The builder is left empty.
    pub(crate) fn take_graph(&self) -> Graph {
        std::mem::take(&mut *self.graph.borrow_mut())
    }

    /// Takes the graph out (leaving the builder empty), with outputs set to `outputs` (names
    /// unchanged).
    ///
    /// # Errors
    /// The first error recorded by any builder call.
    pub fn into_graph(&self, outputs: &[NodeId]) -> Result<Graph, BuildError> {
        self.check()?;
        let mut g = std::mem::take(&mut *self.graph.borrow_mut());
        g.set_outputs(outputs.to_vec());
        Ok(g)
    }
}

/// True for `.gir` value names: an identifier or a run of digits.
pub(crate) fn is_value_name(s: &str) -> bool {
    let mut cs = s.chars();
    match cs.next() {
        Some(c) if c.is_ascii_digit() => s.chars().all(|c| c.is_ascii_digit()),
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    }
}

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $m:ident => $op:ident;)*) => {
        impl<'b> Var<'b> {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $m(self) -> Var<'b> {
                    self.b.push(Op::$op, &[self], Attrs::None)
                }
            )*
        }
    };
}

unary_methods! {
    /// `exp(x)`.
    exp => Exp;
    /// Natural logarithm.
    log => Log;
    /// `√x`.
    sqrt => Sqrt;
    /// `1/√x`.
    rsqrt => Rsqrt;
    /// `sin(x)`.
    sin => Sin;
    /// `cos(x)`.
    cos => Cos;
    /// `tanh(x)`.
    tanh => Tanh;
    /// `1/(1+exp(-x))`.
    sigmoid => Sigmoid;
    /// `max(x, 0)`.
    relu => Relu;
    /// `1/x`.
    recip => Recip;
    /// `ln(1+x)`.
    log1p => Log1p;
    /// `exp(x)-1`.
    expm1 => Expm1;
    /// `|x|`.
    abs => Abs;
    /// `tan(x)`.
    tan => Tan;
    /// The error function `erf(x)`.
    erf => Erf;
    /// `⌊x⌋` (zero derivative).
    floor => Floor;
    /// `⌈x⌉` (zero derivative).
    ceil => Ceil;
    /// Round to the nearest integer, ties to even, as `jnp.round` (zero derivative).
    round => Round;
    /// `1`, `-1`, or `x` itself for `±0` and NaN (zero derivative).
    sign => Sign;
}

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $m:ident => $op:ident;)*) => {
        impl<'b> Var<'b> {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $m(self, other: Var<'b>) -> Var<'b> {
                    self.b.push(Op::$op, &[self, other], Attrs::None)
                }
            )*
        }
    };
}

binary_methods! {
    /// `self ^ other` elementwise (real power).
    pow => Pow;
    /// Elementwise maximum (NaN-propagating).
    max => Max;
    /// Elementwise minimum (NaN-propagating).
    min => Min;
    /// `atan2(self, x)`: the angle of the point `(x, self)` in `(-π, π]` (`jnp.arctan2`).
    atan2 => Atan2;
    /// `self < other` (bool).
    lt => Lt;
    /// `self <= other` (bool).
    le => Le;
    /// `self > other` (bool).
    gt => Gt;
    /// `self >= other` (bool).
    ge => Ge;
    /// `self == other` (bool).
    equal => Eq;
    /// `self != other` (bool).
    not_equal => Ne;
    /// Matrix product over the last two axes (`jnp.matmul`).
    matmul => Matmul;
}

impl<'b> Var<'b> {
    /// The node id.
    pub fn id(self) -> NodeId {
        self.id
    }

    /// The builder this value belongs to.
    pub fn builder(self) -> &'b GraphBuilder {
        self.b
    }

    /// The value's type.
    pub fn ty(self) -> TensorType {
        self.b.ty(self.id)
    }

    /// The value's shape.
    pub fn shape(self) -> Vec<usize> {
        self.ty().shape
    }

    /// The value's dtype.
    pub fn dtype(self) -> DType {
        self.ty().dtype
    }

    /// A scalar constant of this value's dtype.
    #[track_caller]
    pub fn scalar_like(self, x: f64) -> Var<'b> {
        self.b.scalar(self.dtype(), x)
    }

    /// Names this value (see [`GraphBuilder::name`]) and returns it.
    #[track_caller]
    pub fn named(self, name: &str) -> Var<'b> {
        self.b.name(self, name);
        self
    }

    /// `xⁿ` for an integer `n`.
    #[track_caller]
    pub fn powi(self, n: i32) -> Var<'b> {
        self.b.push(Op::Powi, &[self], Attrs::Powi { n })
    }

    /// `c ? self : other` where `self` is the condition: `c.select(a, b)`.
    #[track_caller]
    pub fn select(self, on_true: Var<'b>, on_false: Var<'b>) -> Var<'b> {
        self.b.select(self, on_true, on_false)
    }

    /// Converts to `to` (`bool` gives 0/1).
    #[track_caller]
    pub fn cast(self, to: DType) -> Var<'b> {
        self.b.push(Op::Cast, &[self], Attrs::Cast { to })
    }

    /// A reduction over `axes` (`None`: all axes); axes may be in any order.
    #[track_caller]
    pub fn reduce(self, op: Op, axes: Option<&[usize]>, keepdims: bool) -> Var<'b> {
        let mut axes: Vec<usize> = match axes {
            Some(a) => a.to_vec(),
            None => (0..self.ty().rank()).collect(),
        };
        axes.sort_unstable();
        self.b.push(op, &[self], Attrs::Reduce { axes, keepdims })
    }

    /// Sum of all elements (a scalar).
    #[track_caller]
    pub fn sum(self) -> Var<'b> {
        self.reduce(Op::ReduceSum, None, false)
    }

    /// Sum over `axes`.
    #[track_caller]
    pub fn sum_axes(self, axes: &[usize]) -> Var<'b> {
        self.reduce(Op::ReduceSum, Some(axes), false)
    }

    /// Sum over `axes`, keeping them as size 1.
    #[track_caller]
    pub fn sum_axes_keepdims(self, axes: &[usize]) -> Var<'b> {
        self.reduce(Op::ReduceSum, Some(axes), true)
    }

    /// Mean of all elements (a scalar).
    #[track_caller]
    pub fn mean(self) -> Var<'b> {
        self.reduce(Op::ReduceMean, None, false)
    }

    /// Mean over `axes`.
    #[track_caller]
    pub fn mean_axes(self, axes: &[usize]) -> Var<'b> {
        self.reduce(Op::ReduceMean, Some(axes), false)
    }

    /// Maximum over `axes`.
    #[track_caller]
    pub fn max_axes(self, axes: &[usize], keepdims: bool) -> Var<'b> {
        self.reduce(Op::ReduceMax, Some(axes), keepdims)
    }

    /// Minimum over `axes`.
    #[track_caller]
    pub fn min_axes(self, axes: &[usize], keepdims: bool) -> Var<'b> {
        self.reduce(Op::ReduceMin, Some(axes), keepdims)
    }

    /// Row-major reshape.
    #[track_caller]
    pub fn reshape(self, shape: &[usize]) -> Var<'b> {
        self.b.push(
            Op::Reshape,
            &[self],
            Attrs::Shape {
                shape: shape.to_vec(),
            },
        )
    }

    /// Permutes axes: output axis `i` is input axis `perm[i]`.
    #[track_caller]
    pub fn transpose(self, perm: &[usize]) -> Var<'b> {
        self.b.push(
            Op::Transpose,
            &[self],
            Attrs::Perm {
                perm: perm.to_vec(),
            },
        )
    }

    /// Swaps the last two axes (matrix transpose; batch axes stay).
    #[track_caller]
    pub fn mt(self) -> Var<'b> {
        let r = self.ty().rank();
        if r < 2 {
            return self.b.fail(ShapeError {
                op: Op::Transpose,
                operands: vec![self.ty()],
                names: Vec::new(),
                message: "mt needs rank >= 2".into(),
            });
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.transpose(&perm)
    }

    /// NumPy `broadcast_to`.
    #[track_caller]
    pub fn broadcast_to(self, shape: &[usize]) -> Var<'b> {
        if self.id != POISON && self.shape() == shape {
            return self;
        }
        self.b.push(
            Op::Broadcast,
            &[self],
            Attrs::Shape {
                shape: shape.to_vec(),
            },
        )
    }

    /// `self[start..stop]` per axis.
    #[track_caller]
    pub fn slice(self, start: &[usize], stop: &[usize]) -> Var<'b> {
        self.b.push(
            Op::Slice,
            &[self],
            Attrs::Slice {
                start: start.to_vec(),
                stop: stop.to_vec(),
            },
        )
    }

    /// Cumulative sum along `axis` (`lax.cumsum`); with `reverse`, from the last element.
    #[track_caller]
    pub fn cumsum(self, axis: usize, reverse: bool) -> Var<'b> {
        self.b
            .push(Op::Cumsum, &[self], Attrs::Cumsum { axis, reverse })
    }

    /// The elementwise sum of this value over every rank of the communicator the graph runs
    /// with (see [`crate::ops::collective`]); the identity on one process.
    #[track_caller]
    pub fn all_reduce_sum(self) -> Var<'b> {
        self.all_reduce_sum_in(&crate::ir::Groups::world())
    }

    /// The elementwise mean of this value over every rank (the sum divided by the number of
    /// ranks).
    #[track_caller]
    pub fn all_reduce_mean(self) -> Var<'b> {
        self.all_reduce_mean_in(&crate::ir::Groups::world())
    }

    /// Marks a value that is the same on every rank (a replicated parameter) as used per rank:
    /// the identity, whose transpose sums the per-rank cotangents over the ranks (JAX's
    /// `pvary`/`pbroadcast`). Apply it where replicated parameters enter rank-local work.
    #[track_caller]
    pub fn pvary(self) -> Var<'b> {
        self.pvary_in(&crate::ir::Groups::world())
    }

    // ---- composites (built from primitives; no rules of their own; more in `composite.rs`)

    /// `log Σ exp(x)` over `axis`, numerically stable (shifted by the maximum).
    #[track_caller]
    pub fn logsumexp(self, axis: usize, keepdims: bool) -> Var<'b> {
        let m = self.max_axes(&[axis], true);
        let s = (self - m).exp().sum_axes_keepdims(&[axis]).log() + m;
        if keepdims {
            s
        } else {
            s.reshape(&crate::ops::reduced_shape(&self.shape(), &[axis], false))
        }
    }

    /// `softmax` over `axis` (stable).
    #[track_caller]
    pub fn softmax(self, axis: usize) -> Var<'b> {
        let e = (self - self.max_axes(&[axis], true)).exp();
        e / e.sum_axes_keepdims(&[axis])
    }

    /// `log softmax` over `axis` (stable).
    #[track_caller]
    pub fn log_softmax(self, axis: usize) -> Var<'b> {
        self - self.logsumexp(axis, true)
    }

    /// Mean squared error `mean((self - target)²)`.
    #[track_caller]
    pub fn mse(self, target: Var<'b>) -> Var<'b> {
        (self - target).powi(2).mean()
    }

    /// Softmax cross-entropy of logits `[batch, classes]` against one-hot (or soft) labels of
    /// the same shape, averaged over the batch.
    #[track_caller]
    pub fn cross_entropy(self, labels: Var<'b>) -> Var<'b> {
        let last = self.ty().rank().saturating_sub(1);
        -(labels * self.log_softmax(last)).sum_axes(&[last]).mean()
    }
}

macro_rules! binop_traits {
    ($($tr:ident $m:ident => $op:ident;)*) => {$(
        impl<'b> std::ops::$tr for Var<'b> {
            type Output = Var<'b>;
            #[track_caller]
            fn $m(self, rhs: Var<'b>) -> Var<'b> {
                self.b.push(Op::$op, &[self, rhs], Attrs::None)
            }
        }
        impl<'b> std::ops::$tr<f64> for Var<'b> {
            type Output = Var<'b>;
            #[track_caller]
            fn $m(self, rhs: f64) -> Var<'b> {
                let c = self.scalar_like(rhs);
                self.b.push(Op::$op, &[self, c], Attrs::None)
            }
        }
        impl<'b> std::ops::$tr<Var<'b>> for f64 {
            type Output = Var<'b>;
            #[track_caller]
            fn $m(self, rhs: Var<'b>) -> Var<'b> {
                let c = rhs.scalar_like(self);
                rhs.b.push(Op::$op, &[c, rhs], Attrs::None)
            }
        }
    )*};
}

binop_traits! {
    Add add => Add;
    Sub sub => Sub;
    Mul mul => Mul;
    Div div => Div;
}

impl<'b> std::ops::Neg for Var<'b> {
    type Output = Var<'b>;
    #[track_caller]
    fn neg(self) -> Var<'b> {
        self.b.push(Op::Neg, &[self], Attrs::None)
    }
}

mod collective;
mod derive;
mod loops;
pub use loops::{ScanArgs, ScanOut, ScanStep};
#[cfg(test)]
mod tests;
