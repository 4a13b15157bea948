//! The per-op rule table: everything about one primitive in one place.
//!
//! [`rules`] is the single exhaustive `match` on [`Op`]. Each op is one [`OpRules`] constant in
//! its family file (`elementwise`, `reduce`, `cumsum`, `loops`, `shape`, `linalg`, `index` for `iota`,
//! `gather`, `scatter_add`, `argmax`, `argmin`, and [`random`]) holding its `.gir` name, arity,
//! attribute kind, properties, shape rule, interpreter kernel, JVP and VJP rules (side by side)
//! and (for elementwise ops) its scalar lowering. [`custom`] holds user-defined composite ops with
//! their own derivative rules. The parser, printer, builder, interpreter, reverse mode, the optimizer and
//! the JIT all dispatch through this table, so adding an op touches this module only (plus the
//! `Op` variant).
//!
//! Deliberately absent: any Cranelift type (lowering targets the small [`ScalarEmit`] trait that
//! `jit` implements), and any sharing between `eval` and `lower` (the interpreter stays an
//! independent oracle).

pub mod collective;
mod cumsum;
pub mod custom;
mod elementwise;
pub mod index;
mod linalg;
pub mod loops;
pub mod random;
mod reduce;
mod shape;

use crate::ir::{Attrs, DType, GraphBuilder, Node, NodeId, Op, TensorType, Var};
use crate::tensor::Tensor;
use std::fmt;

pub(crate) use elementwise::erf_ref;
pub use elementwise::powi_ref;
pub(crate) use reduce::reduced_shape;

/// The largest `|n|` accepted by `powi`: every `i32` except `i32::MIN`. Each derivative lowers
/// the exponent by one (`n·xⁿ⁻¹`), and `n - 1` cannot overflow for any accepted `n`; a nested
/// derivative that would need `i32::MIN` is an error, not an overflow. A tighter bound would
/// reject valid graphs (the first derivative of `powi n=-1073741824` needs `n - 1 = -2^30 - 1`).
pub const MAX_POWI: u32 = i32::MAX as u32;

/// A shape or dtype error: an op was applied to operands or attributes it does not accept.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{op}: {message}{}", operand_list(.operands, .names))]
pub struct ShapeError {
    /// The op being built.
    pub op: Op,
    /// The operand types it was given.
    pub operands: Vec<TensorType>,
    /// What was wrong and what was expected.
    pub message: String,
    /// The operands' names (`%x`), when the caller knows them (the builder fills them in);
    /// empty otherwise.
    pub names: Vec<String>,
}

fn operand_list(ops: &[TensorType], names: &[String]) -> String {
    if ops.is_empty() {
        return String::new();
    }
    let tys: Vec<String> = if names.len() == ops.len() {
        ops.iter()
            .zip(names)
            .map(|(t, n)| format!("{n}: {t}"))
            .collect()
    } else {
        ops.iter().map(ToString::to_string).collect()
    };
    format!(" (operands: {})", tys.join(", "))
}

impl ShapeError {
    /// An error about `op` with no operand list.
    pub fn new(op: Op, message: String) -> ShapeError {
        ShapeError {
            op,
            operands: Vec::new(),
            message,
            names: Vec::new(),
        }
    }
}

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exact(usize),
    /// One or more.
    Variadic,
}

/// Which attribute variant an op takes (its attributes in `.gir` follow from this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    /// No attributes.
    None,
    /// `n=INT` (required).
    Powi,
    /// `to=f32|f64` (required).
    Cast,
    /// `axes=[..]` (optional), `keepdims=BOOL` (optional).
    Reduce,
    /// `shape=[..]` (required).
    Shape,
    /// `perm=[..]` (required).
    Perm,
    /// `start=[..] stop=[..]` (required).
    Slice,
    /// `axis=INT` (required).
    Axis,
    /// `axis=INT` (required), `reverse=BOOL` (optional).
    Cumsum,
    /// A constant value (the `const` statement).
    Const,
    /// `type=TYPE axis=INT` (both required).
    Iota,
    /// `axis=INT size=INT` (both required).
    Scatter,
    /// `type=TYPE` (required).
    Random,
    /// A loop body region and `length=INT` (required), `carry=INT`, `xs=INT`, `reverse=BOOL`.
    Scan,
    /// `groups=[[..],..]` (optional: the world).
    Group,
    /// `to=TYPE` (required), `groups=` (optional).
    GroupTo,
    /// `axis=INT` and `groups=` (both required).
    GroupAxis,
    /// `root=INT` (required), `groups=` (optional).
    GroupRoot,
}

/// Named op properties that passes query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpProps {
    /// `f(a, b) == f(b, a)` bitwise (CSE normalizes operand order).
    pub commutative: bool,
    /// Computes each output element from the same-index (broadcast) elements of the operands.
    pub elementwise: bool,
    /// Has JVP and VJP rules (comparisons, `stop_gradient` and graph leaves do not: no
    /// derivative flows through them).
    pub differentiable: bool,
}

/// The math of an elementwise op, for the interpreter. `f32` versions compute in `f32`.
#[derive(Clone, Copy)]
pub enum Elementwise {
    /// `y = f(x)`.
    Unary {
        /// In f64.
        f64: fn(f64) -> f64,
        /// In f32.
        f32: fn(f32) -> f32,
    },
    /// `y = f(x, n)` with the integer attribute `n` (`powi`).
    UnaryInt {
        /// In f64.
        f64: fn(f64, i32) -> f64,
        /// In f32.
        f32: fn(f32, i32) -> f32,
    },
    /// `y = f(a, b)`.
    Binary {
        /// In f64.
        f64: fn(f64, f64) -> f64,
        /// In f32.
        f32: fn(f32, f32) -> f32,
    },
    /// `y = a ⋈ b` (bool result; f32 operands compare exactly after widening).
    Compare(fn(f64, f64) -> bool),
    /// `select(c, a, b)`.
    Select,
    /// `cast`.
    Cast,
}

/// An opaque scalar value inside an emitter (a Cranelift SSA value in the JIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SVal(pub u32);

/// A float unary instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FUnary {
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// Correctly rounded square root.
    Sqrt,
    /// Round toward -∞.
    Floor,
    /// Round toward +∞.
    Ceil,
    /// Round to the nearest integer, ties to even.
    RoundEven,
}

/// A float binary instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FBinary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// NaN if either is NaN, else the larger (`+0 > -0`).
    Max,
    /// NaN if either is NaN, else the smaller (`-0 < +0`).
    Min,
}

/// A math-library function (no Cranelift instruction exists for these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum MathFn {
    Exp,
    Log,
    Sin,
    Cos,
    Tanh,
    Log1p,
    Expm1,
    /// `1/(1 + exp(-x))`, computed exactly so (the interpreter's formula).
    Sigmoid,
    /// Two arguments.
    Pow,
    Tan,
    /// The `libm` crate's `erf`/`erff` (Rust's `std` has none).
    Erf,
    /// Two arguments: `atan2(y, x)`.
    Atan2,
}

impl MathFn {
    /// Every math function.
    pub const ALL: [MathFn; 12] = [
        MathFn::Exp,
        MathFn::Log,
        MathFn::Sin,
        MathFn::Cos,
        MathFn::Tanh,
        MathFn::Log1p,
        MathFn::Expm1,
        MathFn::Sigmoid,
        MathFn::Pow,
        MathFn::Tan,
        MathFn::Erf,
        MathFn::Atan2,
    ];

    /// Number of arguments.
    pub fn arity(self) -> usize {
        if matches!(self, MathFn::Pow | MathFn::Atan2) {
            2
        } else {
            1
        }
    }
}

/// A float comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// What an elementwise lowering rule emits into: one scalar at a time, inside a loop body the
/// JIT owns. Rules compose, so a chain of elementwise ops becomes one expression.
pub trait ScalarEmit {
    /// A float constant of `dtype`.
    fn fconst(&mut self, dtype: DType, x: f64) -> SVal;
    /// A float unary instruction.
    fn unary(&mut self, op: FUnary, x: SVal) -> SVal;
    /// A float binary instruction (operands of one dtype).
    fn binary(&mut self, op: FBinary, a: SVal, b: SVal) -> SVal;
    /// A math-library call.
    fn call(&mut self, f: MathFn, args: &[SVal]) -> SVal;
    /// A comparison giving a bool.
    fn compare(&mut self, cmp: Cmp, a: SVal, b: SVal) -> SVal;
    /// `if c { a } else { b }`.
    fn select(&mut self, c: SVal, a: SVal, b: SVal) -> SVal;
    /// A dtype conversion from `x`'s dtype (bool → 0/1, f64 → f32 rounds to nearest even).
    fn cast(&mut self, x: SVal, to: DType) -> SVal;
    /// The dtype of a value.
    fn dtype(&self, x: SVal) -> DType;
}

/// The scalar lowering of an elementwise op: operands are already loaded (broadcast handled by
/// the caller), the result is the output element.
pub type LowerScalar = fn(&mut dyn ScalarEmit, &Node, &[SVal]) -> SVal;

/// The VJP rule: given the node (its id and data) and the cotangent of its output, return the
/// cotangent contribution of each operand (`None`: no gradient flows there). Rules are written
/// with builder primitives, so derivatives can be differentiated again. The reverse driver
/// un-broadcasts the results, so rules never do. For batched seeds the cotangent has leading
/// batch axes (`[k, ...shape]`, see [`batch_dims`]); elementwise rules need no change for that,
/// rules that name axes or shapes shift them.
pub type Vjp = for<'b> fn(&'b GraphBuilder, NodeId, &Node, Var<'b>) -> Vec<Option<Var<'b>>>;

/// The JVP (forward-mode) rule: given the node and the tangents of its operands (see
/// [`Tangents`]: `None` is a symbolic zero, and in batched mode tangents carry a leading batch
/// axis), return the tangent of its output (`None`: zero). Rules are written with builder
/// primitives, so they can be differentiated again, and may reuse the primal output. The
/// forward driver broadcasts the result to the output's full tangent shape, so rules never do.
pub type Jvp = for<'b> fn(&'b GraphBuilder, NodeId, &Node, &Tangents<'b>) -> Option<Var<'b>>;

/// The tangents of an op's operands, as the forward driver hands them to a [`Jvp`] rule.
///
/// Each tangent is `None` (a symbolic zero) or a value of its operand's dtype. Unbatched, it has
/// its operand's shape. Batched (a batch of `k` directions pushed in one pass), it has a leading
/// axis of size `k`: `[k, ...shape]`; and when the operand's rank is below the output's, the
/// driver has already lifted it to the output's rank by inserting size-1 axes after the batch
/// axis (`[k, 1, ..., 1, ...shape]`). So NumPy broadcasting between a tangent and the primal
/// operands (which have no batch axis and right-align) always lines up, and an elementwise rule
/// is written once for both modes. Rules for ops that name axes shift them with
/// [`Tangents::axis`], [`Tangents::shape`] and [`Tangents::perm`].
#[derive(Clone, Debug)]
pub struct Tangents<'b> {
    ts: Vec<Option<Var<'b>>>,
    batch: Option<usize>,
}

impl<'b> Tangents<'b> {
    /// Operand tangents (`None`: zero) and the batch size (`None`: unbatched).
    pub fn new(ts: Vec<Option<Var<'b>>>, batch: Option<usize>) -> Tangents<'b> {
        Tangents { ts, batch }
    }

    /// The tangent of operand `i` (`None`: zero, also for a missing operand).
    pub fn get(&self, i: usize) -> Option<Var<'b>> {
        self.ts.get(i).copied().flatten()
    }

    /// Number of operands.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True if there are no operands.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// True if every tangent is a symbolic zero.
    pub fn all_zero(&self) -> bool {
        self.ts.iter().all(Option::is_none)
    }

    /// The batch size `k`, if batched.
    pub fn batch(&self) -> Option<usize> {
        self.batch
    }

    /// Number of leading batch axes: 1 if batched, else 0.
    pub fn lead(&self) -> usize {
        usize::from(self.batch.is_some())
    }

    /// The tangent shape of a primal shape: `[k, ...shape]` if batched, else `shape`.
    pub fn shape(&self, primal: &[usize]) -> Vec<usize> {
        self.batch
            .iter()
            .copied()
            .chain(primal.iter().copied())
            .collect()
    }

    /// `v` with `first` prepended if batched (e.g. slice starts: `prefixed(start, 0)`).
    pub fn prefixed(&self, v: &[usize], first: usize) -> Vec<usize> {
        let lead = self.batch.map(|_| first);
        lead.into_iter().chain(v.iter().copied()).collect()
    }

    /// The tangent axis of primal axis `a`.
    pub fn axis(&self, a: usize) -> usize {
        a + self.lead()
    }

    /// The tangent axes of primal axes.
    pub fn axes(&self, axes: &[usize]) -> Vec<usize> {
        axes.iter().map(|&a| self.axis(a)).collect()
    }

    /// The tangent permutation of a primal permutation (the batch axis stays first).
    pub fn perm(&self, perm: &[usize]) -> Vec<usize> {
        let l = self.lead();
        (0..l).chain(perm.iter().map(|&p| p + l)).collect()
    }

    /// The tangent of operand `i`, or explicit zeros of its tangent shape (for rules such as
    /// `concat` that must place every operand).
    pub fn or_zeros(&self, b: &'b GraphBuilder, i: usize, primal: &TensorType) -> Var<'b> {
        match self.get(i) {
            Some(t) => t,
            None => b.zeros(primal.dtype, &self.shape(&primal.shape)),
        }
    }
}

/// Sums two optional tangents or cotangents (`None` is a symbolic zero).
pub fn add_opt<'b>(a: Option<Var<'b>>, b: Option<Var<'b>>) -> Option<Var<'b>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The leading batch dimensions of a cotangent handed to a VJP rule: the reverse driver passes
/// `ȳ` shaped like the node's output, or, for batched seeds, with leading batch axes
/// (`[k, ...shape]`). Rules that name axes or shapes shift them by `batch_dims(..).len()`.
pub fn batch_dims(ct: Var<'_>, node: &Node) -> Vec<usize> {
    let s = ct.shape();
    let lead = s.len().saturating_sub(node.ty.rank());
    s[..lead].to_vec()
}

/// Everything about one op.
pub struct OpRules {
    /// The `.gir` spelling.
    pub name: &'static str,
    /// Number of operands.
    pub arity: Arity,
    /// Attribute kind.
    pub attrs: AttrKind,
    /// Named properties.
    pub props: OpProps,
    /// The shape and dtype rule (operands already checked against `arity`).
    pub infer: fn(&[&TensorType], &Attrs) -> Result<TensorType, String>,
    /// The interpreter kernel (operands already type-checked by `infer`).
    pub eval: fn(&Node, &[&Tensor]) -> Tensor,
    /// The forward-mode rule, if differentiable.
    pub jvp: Option<Jvp>,
    /// The reverse-mode rule, if differentiable.
    pub vjp: Option<Vjp>,
    /// Elementwise math for the interpreter, if elementwise.
    pub math: Option<Elementwise>,
    /// Scalar lowering for the JIT, if elementwise.
    pub lower: Option<LowerScalar>,
}

impl fmt::Debug for OpRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpRules")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The rules of `op`. The one exhaustive `match` on ops.
pub fn rules(op: Op) -> &'static OpRules {
    use elementwise as e;
    match op {
        Op::Input => &shape::INPUT,
        Op::Const => &shape::CONST,
        Op::Neg => &e::NEG,
        Op::Abs => &e::ABS,
        Op::Exp => &e::EXP,
        Op::Log => &e::LOG,
        Op::Sqrt => &e::SQRT,
        Op::Rsqrt => &e::RSQRT,
        Op::Sin => &e::SIN,
        Op::Cos => &e::COS,
        Op::Tanh => &e::TANH,
        Op::Sigmoid => &e::SIGMOID,
        Op::Relu => &e::RELU,
        Op::Recip => &e::RECIP,
        Op::Log1p => &e::LOG1P,
        Op::Expm1 => &e::EXPM1,
        Op::Tan => &e::TAN,
        Op::Erf => &e::ERF,
        Op::Floor => &e::FLOOR,
        Op::Ceil => &e::CEIL,
        Op::Round => &e::ROUND,
        Op::Sign => &e::SIGN,
        Op::Powi => &e::POWI,
        Op::Add => &e::ADD,
        Op::Sub => &e::SUB,
        Op::Mul => &e::MUL,
        Op::Div => &e::DIV,
        Op::Pow => &e::POW,
        Op::Atan2 => &e::ATAN2,
        Op::Max => &e::MAX,
        Op::Min => &e::MIN,
        Op::Lt => &e::LT,
        Op::Le => &e::LE,
        Op::Gt => &e::GT,
        Op::Ge => &e::GE,
        Op::Eq => &e::EQ,
        Op::Ne => &e::NE,
        Op::Select => &e::SELECT,
        Op::Cast => &e::CAST,
        Op::ReduceSum => &reduce::REDUCE_SUM,
        Op::ReduceMean => &reduce::REDUCE_MEAN,
        Op::ReduceMax => &reduce::REDUCE_MAX,
        Op::ReduceMin => &reduce::REDUCE_MIN,
        Op::Reshape => &shape::RESHAPE,
        Op::Transpose => &shape::TRANSPOSE,
        Op::Broadcast => &shape::BROADCAST,
        Op::Slice => &shape::SLICE,
        Op::Concat => &shape::CONCAT,
        Op::Cumsum => &cumsum::CUMSUM,
        Op::Scan => &loops::SCAN,
        Op::Matmul => &linalg::MATMUL,
        Op::StopGradient => &e::STOP_GRADIENT,
        Op::Barrier => &e::BARRIER,
        Op::Iota => &index::IOTA,
        Op::Gather => &index::GATHER,
        Op::ScatterAdd => &index::SCATTER_ADD,
        Op::Argmax => &index::ARGMAX,
        Op::Argmin => &index::ARGMIN,
        Op::RandomUniform => &random::RANDOM_UNIFORM,
        Op::AllReduceSum => &collective::ALL_REDUCE_SUM,
        Op::AllReduceMean => &collective::ALL_REDUCE_MEAN,
        Op::Pvary => &collective::PVARY,
        Op::NumRanks => &collective::NUM_RANKS,
        Op::AxisIndex => &collective::AXIS_INDEX,
        Op::AllGather => &collective::ALL_GATHER,
        Op::ReduceScatter => &collective::REDUCE_SCATTER,
        Op::CollectiveBroadcast => &collective::COLLECTIVE_BROADCAST,
    }
}

/// Infers the type of `op(operands)` with `attrs`, checking arity, attribute kind and the op's
/// shape rule.
///
/// # Errors
/// A [`ShapeError`] naming the op, the operand types and what was expected.
pub fn infer(op: Op, operands: &[&TensorType], attrs: &Attrs) -> Result<TensorType, ShapeError> {
    let r = rules(op);
    let err = |message: String| ShapeError {
        op,
        operands: operands.iter().map(|t| (*t).clone()).collect(),
        message,
        names: Vec::new(),
    };
    match r.arity {
        Arity::Exact(n) if operands.len() != n => {
            return Err(err(format!(
                "expected {n} operand(s), found {}",
                operands.len()
            )));
        }
        Arity::Variadic if operands.is_empty() => {
            return Err(err("expected at least one operand".into()));
        }
        _ => {}
    }
    if attr_kind(attrs) != r.attrs {
        return Err(err(format!(
            "expected {:?} attributes, found {:?}",
            r.attrs,
            attr_kind(attrs)
        )));
    }
    if let Attrs::Powi { n } = attrs
        && n.unsigned_abs() > MAX_POWI
    {
        // Each derivative lowers the exponent by one; excluding i32::MIN keeps `n - 1` in range.
        return Err(err(format!(
            "powi exponent {n} is outside -{MAX_POWI}..={MAX_POWI}"
        )));
    }
    let ty = (r.infer)(operands, attrs).map_err(err)?;
    if crate::ir::checked_numel(&ty.shape).is_none() || ty.shape.contains(&0) {
        return Err(err(format!(
            "result shape {:?} is empty or too large",
            ty.shape
        )));
    }
    Ok(ty)
}

/// The kind of an attribute value.
pub fn attr_kind(attrs: &Attrs) -> AttrKind {
    match attrs {
        Attrs::None => AttrKind::None,
        Attrs::Powi { .. } => AttrKind::Powi,
        Attrs::Cast { .. } => AttrKind::Cast,
        Attrs::Reduce { .. } => AttrKind::Reduce,
        Attrs::Shape { .. } => AttrKind::Shape,
        Attrs::Perm { .. } => AttrKind::Perm,
        Attrs::Slice { .. } => AttrKind::Slice,
        Attrs::Axis { .. } => AttrKind::Axis,
        Attrs::Cumsum { .. } => AttrKind::Cumsum,
        Attrs::Scan { .. } => AttrKind::Scan,
        Attrs::Const(_) => AttrKind::Const,
        Attrs::Iota { .. } => AttrKind::Iota,
        Attrs::Scatter { .. } => AttrKind::Scatter,
        Attrs::Random { .. } => AttrKind::Random,
        Attrs::Group { param, .. } => match param {
            crate::ir::GroupParam::None => AttrKind::Group,
            crate::ir::GroupParam::To(_) => AttrKind::GroupTo,
            crate::ir::GroupParam::Axis(_) => AttrKind::GroupAxis,
            crate::ir::GroupParam::Root(_) => AttrKind::GroupRoot,
        },
    }
}

/// Evaluates one node on host tensors (the reference semantics).
pub fn eval(node: &Node, args: &[&Tensor]) -> Tensor {
    (rules(node.op).eval)(node, args)
}

// ---- shared shape-rule helpers -------------------------------------------------------------

fn same_float(tys: &[&TensorType]) -> Result<DType, String> {
    let d = tys[0].dtype;
    if !d.is_float() {
        return Err(format!("expected float operands, found {d}"));
    }
    if let Some(t) = tys.iter().find(|t| t.dtype != d) {
        return Err(format!(
            "operands must have the same dtype ({d} vs {}); use cast",
            t.dtype
        ));
    }
    Ok(d)
}

fn broadcast_all(tys: &[&TensorType]) -> Result<Vec<usize>, String> {
    let mut shape = tys[0].shape.clone();
    for t in &tys[1..] {
        shape = crate::ir::broadcast_shapes(&shape, &t.shape)
            .ok_or_else(|| "shapes do not broadcast".to_string())?;
    }
    Ok(shape)
}

/// Multi-index iteration helper: advances `idx` over `shape` in row-major order; false at end.
pub(crate) fn next_index(idx: &mut [usize], shape: &[usize]) -> bool {
    for ax in (0..shape.len()).rev() {
        idx[ax] += 1;
        if idx[ax] < shape[ax] {
            return true;
        }
        idx[ax] = 0;
    }
    false
}

#[cfg(test)]
pub(crate) mod tests;
