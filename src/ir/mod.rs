//! The graph IR: data only.
//!
//! A [`Graph`] is an append-only arena of [`Node`]s in topological order: every operand id is
//! smaller than the id of the node that reads it, so a graph is acyclic by construction and every
//! pass can be a plain forward or backward loop. Each node produces exactly one value, so a
//! [`NodeId`] also names that value.
//!
//! This module knows nothing about derivatives, optimization or code generation. Type inference
//! lives in the per-op rule table ([`crate::ops`]); [`Graph::push`] calls it.

mod builder;
mod composite;
mod groups;
mod indexing;
pub mod loops;
pub mod text;
mod types;
mod verify;

pub use builder::{BuildError, BuildErrorKind, GraphBuilder, ScanArgs, ScanOut, ScanStep, Var};
pub use groups::{GroupParam, Groups, Place};
pub use types::{
    DType, EMPTY_TENSOR_REASON, MAX_ELEMENTS, TensorType, broadcast_shapes, broadcast_strides,
    checked_numel, shape_problem, strides,
};
pub use verify::{VerifyError, VerifyErrors, verify};

use crate::autodiff::checkpoint::Checkpoints;
use crate::ops::custom::CustomRegion;
use crate::ops::{self, ShapeError};
use crate::tensor::Tensor;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

/// Index of a node (and of the value it produces). Displays as its `.gir` spelling, `%7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The index into [`Graph::nodes`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// The primitive operations. Fieldless: attributes live on the [`Node`]. Every rule about an op
/// (name, arity, type inference, evaluation, derivatives, lowering) is in [`crate::ops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // each op is documented by its rule constant in `ops`.
pub enum Op {
    Input,
    Const,
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Relu,
    Recip,
    Log1p,
    Expm1,
    Tan,
    Erf,
    Floor,
    Ceil,
    Round,
    Sign,
    Powi,
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Atan2,
    Max,
    Min,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Select,
    Cast,
    ReduceSum,
    ReduceMean,
    ReduceMax,
    ReduceMin,
    Reshape,
    Transpose,
    Broadcast,
    Slice,
    Concat,
    Cumsum,
    Matmul,
    StopGradient,
    Barrier,
    Iota,
    Gather,
    ScatterAdd,
    Argmax,
    Argmin,
    RandomUniform,
    Scan,
    AllReduceSum,
    AllReduceMean,
    Pvary,
    NumRanks,
    AllGather,
    ReduceScatter,
    CollectiveBroadcast,
    AxisIndex,
}

impl Op {
    /// Every op, in declaration order (tests loop over this).
    pub const ALL: [Op; 67] = [
        Op::Input,
        Op::Const,
        Op::Neg,
        Op::Abs,
        Op::Exp,
        Op::Log,
        Op::Sqrt,
        Op::Rsqrt,
        Op::Sin,
        Op::Cos,
        Op::Tanh,
        Op::Sigmoid,
        Op::Relu,
        Op::Recip,
        Op::Log1p,
        Op::Expm1,
        Op::Tan,
        Op::Erf,
        Op::Floor,
        Op::Ceil,
        Op::Round,
        Op::Sign,
        Op::Powi,
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::Pow,
        Op::Atan2,
        Op::Max,
        Op::Min,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::Eq,
        Op::Ne,
        Op::Select,
        Op::Cast,
        Op::ReduceSum,
        Op::ReduceMean,
        Op::ReduceMax,
        Op::ReduceMin,
        Op::Reshape,
        Op::Transpose,
        Op::Broadcast,
        Op::Slice,
        Op::Concat,
        Op::Cumsum,
        Op::Matmul,
        Op::StopGradient,
        Op::Barrier,
        Op::Iota,
        Op::Gather,
        Op::ScatterAdd,
        Op::Argmax,
        Op::Argmin,
        Op::RandomUniform,
        Op::Scan,
        Op::AllReduceSum,
        Op::AllReduceMean,
        Op::Pvary,
        Op::NumRanks,
        Op::AllGather,
        Op::ReduceScatter,
        Op::CollectiveBroadcast,
        Op::AxisIndex,
    ];

    /// The `.gir` spelling.
    pub fn name(self) -> &'static str {
        ops::rules(self).name
    }

    /// Looks an op up by its `.gir` spelling (`input` and `const` are statements, not ops, and
    /// are not found here).
    pub fn from_name(s: &str) -> Option<Op> {
        Op::ALL
            .iter()
            .copied()
            .find(|&op| !matches!(op, Op::Input | Op::Const) && op.name() == s)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Attributes of a node. Which variant an op takes is fixed by its rule (`ops::rules(op).attrs`).
#[derive(Clone, Debug, PartialEq)]
pub enum Attrs {
    /// No attributes.
    None,
    /// `powi`: the integer exponent.
    Powi {
        /// Exponent (may be negative or zero).
        n: i32,
    },
    /// `cast`: the target dtype (`f32` or `f64`).
    Cast {
        /// Target dtype.
        to: DType,
    },
    /// `reduce_*`: reduced axes (sorted, distinct, in range; all axes when omitted in `.gir`).
    Reduce {
        /// Axes to reduce, sorted ascending.
        axes: Vec<usize>,
        /// Keep reduced axes as size 1.
        keepdims: bool,
    },
    /// `reshape` and `broadcast`: the target shape.
    Shape {
        /// Target shape.
        shape: Vec<usize>,
    },
    /// `transpose`: output axis `i` is input axis `perm[i]`.
    Perm {
        /// A permutation of the axes.
        perm: Vec<usize>,
    },
    /// `slice`: half-open ranges per axis, step 1.
    Slice {
        /// First index per axis.
        start: Vec<usize>,
        /// One past the last index per axis.
        stop: Vec<usize>,
    },
    /// `concat`: the axis to join along.
    Axis {
        /// Axis.
        axis: usize,
    },
    /// `cumsum`: the axis to scan along, and the direction.
    Cumsum {
        /// Axis.
        axis: usize,
        /// Scan from the last element to the first (`y[i] = x[i] + ... + x[n-1]`).
        reverse: bool,
    },
    /// `const`: the value (shared, so cloning graphs is cheap).
    Const(Arc<Tensor>),
    /// `iota`: the result type and the axis whose index each element holds.
    Iota {
        /// Result type.
        ty: TensorType,
        /// Axis.
        axis: usize,
    },
    /// `scatter_add`: the axis the indices address and the result's size along it.
    Scatter {
        /// Axis.
        axis: usize,
        /// Result dimension along `axis`.
        size: usize,
    },
    /// `random_uniform`: the result type.
    Random {
        /// Result type (a float dtype).
        ty: TensorType,
    },
    /// `scan`: the loop (shared by the nodes of one group) and which of its results this node
    /// holds (see [`loops`]).
    Scan {
        /// The loop.
        body: Arc<loops::Loop>,
        /// Index into the body's outputs.
        result: usize,
    },
    /// Collectives: the groups of ranks they combine over, and the op's own parameter.
    Group {
        /// The groups.
        groups: Groups,
        /// The op's parameter.
        param: GroupParam,
    },
}

impl Attrs {
    /// A collective's attributes over the world group.
    pub fn world(param: GroupParam) -> Attrs {
        Attrs::Group {
            groups: Groups::world(),
            param,
        }
    }

    /// Hash of the attributes, consistent with [`Attrs::same`] (constants hash by bits).
    pub fn hash_into<H: std::hash::Hasher>(&self, h: &mut H) {
        use std::hash::Hash;
        std::mem::discriminant(self).hash(h);
        match self {
            Attrs::None => {}
            Attrs::Powi { n } => n.hash(h),
            Attrs::Cast { to } => to.hash(h),
            Attrs::Reduce { axes, keepdims } => (axes, keepdims).hash(h),
            Attrs::Shape { shape } => shape.hash(h),
            Attrs::Perm { perm } => perm.hash(h),
            Attrs::Slice { start, stop } => (start, stop).hash(h),
            Attrs::Axis { axis } => axis.hash(h),
            Attrs::Iota { ty, axis } => (ty, axis).hash(h),
            Attrs::Scatter { axis, size } => (axis, size).hash(h),
            Attrs::Random { ty } => ty.hash(h),
            Attrs::Cumsum { axis, reverse } => (axis, reverse).hash(h),
            Attrs::Group { groups, param } => (groups, param).hash(h),
            Attrs::Scan { body, result } => {
                (body.length, body.reverse, body.n_carry, body.n_xs, result).hash(h);
                body.body.len().hash(h);
            }
            Attrs::Const(t) => {
                t.shape().hash(h);
                t.to_bytes().hash(h);
            }
        }
    }

    /// Equality that compares constants bitwise (so `nan == nan`, `-0.0 != 0.0`).
    pub fn same(&self, other: &Attrs) -> bool {
        match (self, other) {
            (Attrs::Const(a), Attrs::Const(b)) => a.bits_eq(b),
            _ => self == other,
        }
    }

    /// The constant of a `const` node.
    pub fn as_const(&self) -> Option<&Tensor> {
        match self {
            Attrs::Const(t) => Some(t),
            _ => None,
        }
    }
}

/// Where a node came from, for error messages and NaN provenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Origin {
    /// Unknown (e.g. created by a pass).
    #[default]
    None,
    /// Created by a builder call at this Rust source location.
    Source(&'static Location<'static>),
    /// Parsed from `.gir` at this line and column (1-based).
    Line(u32, u32),
    /// Part of the adjoint of this forward node.
    Adjoint(NodeId),
    /// Part of the tangent (forward-mode derivative) of this node.
    Tangent(NodeId),
}

impl Origin {
    /// This origin after the graph's nodes were renumbered: `map` gives a node's new id, or
    /// `None` if it was removed (then an adjoint/tangent origin becomes [`Origin::None`]).
    pub fn renumbered(self, map: impl Fn(NodeId) -> Option<NodeId>) -> Origin {
        match self {
            Origin::Adjoint(f) => map(f).map_or(Origin::None, Origin::Adjoint),
            Origin::Tangent(f) => map(f).map_or(Origin::None, Origin::Tangent),
            other => other,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::None => f.write_str("<unknown>"),
            Origin::Source(l) => write!(f, "{}:{}:{}", l.file(), l.line(), l.column()),
            Origin::Line(l, c) => write!(f, "line {l}:{c}"),
            Origin::Adjoint(n) => write!(f, "adjoint of {n}"),
            Origin::Tangent(n) => write!(f, "tangent of {n}"),
        }
    }
}

/// One node: an op applied to earlier nodes, producing one value of type `ty`.
#[derive(Clone, Debug)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// Operand ids, each smaller than this node's id.
    pub inputs: Vec<NodeId>,
    /// Attributes (the variant is fixed by the op).
    pub attrs: Attrs,
    /// The inferred result type.
    pub ty: TensorType,
    /// The value name (`x1` for `%x1`), if it has one. Inputs and outputs always do.
    pub name: Option<Box<str>>,
    /// Where the node came from.
    pub origin: Origin,
}

impl Node {
    /// Structural equality: op, operands, attributes (constants bitwise), type and name.
    pub fn same(&self, other: &Node) -> bool {
        self.op == other.op
            && self.inputs == other.inputs
            && self.attrs.same(&other.attrs)
            && self.ty == other.ty
            && self.name == other.name
    }
}

/// A static computational graph.
///
/// ```
/// use gradlift::{Graph, Op, Attrs, TensorType, DType};
/// let mut g = Graph::new("seed");
/// let x = g.add_input("x", TensorType::scalar(DType::F64)).unwrap();
/// let y = g.push(Op::Mul, vec![x, x], Attrs::None).unwrap();
/// g.set_outputs(vec![y]);
/// assert_eq!(g.nodes()[y.index()].ty, TensorType::scalar(DType::F64));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// The graph's name (`@name` in `.gir`).
    pub name: String,
    nodes: Vec<Node>,
    outputs: Vec<NodeId>,
    /// Side table of custom-derivative regions (see [`crate::ops::custom`]); not part of the
    /// `.gir` text and ignored by [`Graph::same`].
    custom: Vec<CustomRegion>,
    /// Side table of checkpoint regions (see [`crate::autodiff::checkpoint`]); like `custom`.
    checkpoints: Checkpoints,
    /// Which node holds each name, so name checks cost O(1) instead of a scan of the graph.
    /// Kept by `append` and `set_name`; after [`Graph::nodes_mut`] it is stale and rebuilt by
    /// the next `&mut` name lookup (`&self` lookups scan meanwhile).
    names: NameIndex,
}

#[derive(Clone, Debug, Default)]
struct NameIndex {
    owners: std::collections::HashMap<Box<str>, NodeId>,
    stale: bool,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            nodes: Vec::new(),
            outputs: Vec::new(),
            custom: Vec::new(),
            checkpoints: Checkpoints::default(),
            names: NameIndex::default(),
        }
    }

    /// The node named `name`, if any.
    pub fn node_named(&self, name: &str) -> Option<NodeId> {
        if self.names.stale {
            let i = (self.nodes.iter()).position(|n| n.name.as_deref() == Some(name))?;
            return Some(NodeId(i as u32));
        }
        self.names.owners.get(name).copied()
    }

    /// Rebuilds the name index if [`Graph::nodes_mut`] may have changed names or ids.
    fn refresh_names(&mut self) {
        if self.names.stale {
            self.names.owners = (self.nodes.iter().enumerate())
                .filter_map(|(i, n)| Some((n.name.clone()?, NodeId(i as u32))))
                .collect();
            self.names.stale = false;
        }
    }

    /// All nodes, in topological (id) order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `id`.
    ///
    /// # Panics
    /// If `id` is not a node of this graph (ids come from this graph's own methods).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Type of node `id`.
    ///
    /// # Panics
    /// As [`Graph::node`].
    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.nodes[id.index()].ty
    }

    /// The graph's inputs in order (the input nodes, in id order).
    pub fn inputs(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].op == Op::Input)
            .map(|i| NodeId(i as u32))
            .collect()
    }

    /// The input node with this name.
    pub fn input_named(&self, name: &str) -> Option<NodeId> {
        self.node_named(name)
            .filter(|&i| self.nodes[i.index()].op == Op::Input)
    }

    /// The outputs, in order.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// Replaces the outputs.
    pub fn set_outputs(&mut self, outputs: Vec<NodeId>) {
        self.outputs = outputs;
    }

    /// The name a value is known by: its name, or its number (`7` for an unnamed `%7`).
    ///
    /// # Panics
    /// As [`Graph::node`].
    pub fn value_name(&self, id: NodeId) -> String {
        match &self.nodes[id.index()].name {
            Some(n) => n.to_string(),
            None => id.0.to_string(),
        }
    }

    /// The statement that defines a value, as `.gir` would print it without its type:
    /// `%z = add %x, %y`.
    pub fn statement(&self, id: NodeId) -> String {
        let Some(n) = self.nodes.get(id.index()) else {
            return format!("{id} (not in this graph)");
        };
        let mut s = format!("%{} = {}", self.value_name(id), n.op);
        for (k, &x) in n.inputs.iter().enumerate() {
            s.push_str(if k == 0 { " %" } else { ", %" });
            s.push_str(&self.value_name(x));
        }
        s
    }

    /// A value as an error message names it: `%x` when it has a name, otherwise its number
    /// with the statement that made it and where (`%2 (%2 = lt %x, %y, built at
    /// src/main.rs:9:13)`), so an unnamed value can still be found in the user's code.
    pub fn describe_value(&self, id: NodeId) -> String {
        let Some(n) = self.nodes.get(id.index()) else {
            return format!("{id} (not in this graph)");
        };
        if n.name.is_some() {
            return format!("%{}", self.value_name(id));
        }
        let place = match n.origin {
            Origin::Source(l) => format!(", built at {}:{}:{}", l.file(), l.line(), l.column()),
            Origin::Line(l, c) => format!(", at line {l}:{c}"),
            Origin::Adjoint(f) => format!(", in the adjoint of %{}", self.value_name(f)),
            Origin::Tangent(f) => format!(", in the tangent of %{}", self.value_name(f)),
            Origin::None => String::new(),
        };
        format!("%{} ({}{place})", id.0, self.statement(id))
    }

    /// Makes `outputs` the graph's outputs under the given names. A value that already has
    /// another name (an input, say), or is listed twice, is output through an identity copy
    /// (`reshape` to its own shape) so every output is a distinct node with its own name.
    ///
    /// # Errors
    /// If an id is not a node of the graph, or a name is not a valid `.gir` value name or is
    /// already used by an unrelated node.
    pub fn set_named_outputs(&mut self, outputs: &[(&str, NodeId)]) -> Result<(), ShapeError> {
        // The name index and a set of the outputs so far: a lookup per output, no scans.
        self.refresh_names();
        let mut outs: Vec<NodeId> = Vec::with_capacity(outputs.len());
        let mut taken = std::collections::HashSet::with_capacity(outputs.len());
        for &(name, id) in outputs {
            if id.index() >= self.nodes.len() {
                return Err(ShapeError::new(
                    Op::Reshape,
                    format!("output %{name}: {id} is not a node of the graph"),
                ));
            }
            if !builder::is_value_name(name) {
                return Err(ShapeError::new(
                    self.node(id).op,
                    format!("%{name} is not a valid value name"),
                ));
            }
            let node = self.node(id);
            let reuse = !taken.contains(&id)
                && node.op != Op::Input
                && (node.name.is_none() || node.name.as_deref() == Some(name));
            let target = if reuse {
                id
            } else {
                let shape = node.ty.shape.clone();
                let origin = node.origin;
                let copy = self.push(Op::Reshape, vec![id], Attrs::Shape { shape })?;
                self.set_origin(copy, origin);
                copy
            };
            if self.node_named(name).is_some_and(|o| o != target) {
                return Err(ShapeError::new(
                    self.node(id).op,
                    format!("the name %{name} is already taken"),
                ));
            }
            self.set_name(target, Some(name));
            taken.insert(target);
            outs.push(target);
        }
        self.outputs = outs;
        Ok(())
    }

    /// Sets a node's name.
    ///
    /// # Panics
    /// As [`Graph::node`].
    pub fn set_name(&mut self, id: NodeId, name: Option<&str>) {
        let node = &mut self.nodes[id.index()];
        if let Some(old) = node.name.take()
            && self.names.owners.get(&old) == Some(&id)
        {
            self.names.owners.remove(&old);
        }
        node.name = name.map(Into::into);
        if let Some(n) = name {
            self.names.owners.insert(n.into(), id);
        }
    }

    /// Sets a node's origin.
    ///
    /// # Panics
    /// As [`Graph::node`].
    pub fn set_origin(&mut self, id: NodeId, origin: Origin) {
        self.nodes[id.index()].origin = origin;
    }

    /// Appends an input of type `ty` named `name`.
    ///
    /// # Errors
    /// If another node already has this name, or the type is invalid (a zero dimension, or more
    /// than [`MAX_ELEMENTS`] elements: such a graph could never be evaluated).
    pub fn add_input(&mut self, name: &str, ty: TensorType) -> Result<NodeId, ShapeError> {
        if let Some(problem) = shape_problem(&ty.shape) {
            return Err(ShapeError::new(
                Op::Input,
                format!("input %{name}: type {ty}: {problem}"),
            ));
        }
        self.refresh_names();
        if self.node_named(name).is_some() {
            return Err(ShapeError::new(
                Op::Input,
                format!("duplicate value name %{name}"),
            ));
        }
        let id = self.append(Node {
            op: Op::Input,
            inputs: Vec::new(),
            attrs: Attrs::None,
            ty,
            name: Some(name.into()),
            origin: Origin::None,
        });
        Ok(id)
    }

    /// Appends a constant.
    pub fn add_const(&mut self, value: Tensor) -> NodeId {
        let ty = value.ty();
        self.append(Node {
            op: Op::Const,
            inputs: Vec::new(),
            attrs: Attrs::Const(Arc::new(value)),
            ty,
            name: None,
            origin: Origin::None,
        })
    }

    /// Appends a scalar constant of the given dtype.
    pub fn add_scalar(&mut self, dtype: DType, x: f64) -> NodeId {
        self.add_const(Tensor::splat(&TensorType::scalar(dtype), x))
    }

    /// Appends `op(inputs)` with `attrs`, inferring its type with the op's shape rule.
    ///
    /// # Errors
    /// A [`ShapeError`] naming the op and operand types if the operands or attributes are
    /// invalid (wrong arity, dtype, shapes, attribute kind or range).
    pub fn push(
        &mut self,
        op: Op,
        inputs: Vec<NodeId>,
        attrs: Attrs,
    ) -> Result<NodeId, ShapeError> {
        if matches!(op, Op::Input | Op::Const) {
            return Err(ShapeError::new(op, "use add_input/add_const".into()));
        }
        if let Some(bad) = inputs.iter().find(|i| i.index() >= self.nodes.len()) {
            return Err(ShapeError::new(op, format!("operand {bad} is not defined")));
        }
        let tys: Vec<&TensorType> = inputs.iter().map(|&i| &self.nodes[i.index()].ty).collect();
        let ty = ops::infer(op, &tys, &attrs)?;
        Ok(self.append(Node {
            op,
            inputs,
            attrs,
            ty,
            name: None,
            origin: Origin::None,
        }))
    }

    /// Appends a node whose type the caller has already inferred (used by passes that rebuild
    /// graphs). Debug builds check the type and the topological order.
    pub fn append(&mut self, node: Node) -> NodeId {
        debug_assert!(
            node.inputs.iter().all(|i| i.index() < self.nodes.len()),
            "topological order: operands precede their user"
        );
        let id = NodeId(u32::try_from(self.nodes.len()).expect("graph exceeds 2^32 nodes"));
        if let Some(n) = &node.name {
            self.names.owners.insert(n.clone(), id);
        }
        self.nodes.push(node);
        id
    }

    /// Number of users of each node (outputs count as a use).
    pub fn use_counts(&self) -> Vec<u32> {
        let mut uses = vec![0u32; self.nodes.len()];
        for n in &self.nodes {
            for i in &n.inputs {
                uses[i.index()] += 1;
            }
        }
        for o in &self.outputs {
            uses[o.index()] += 1;
        }
        uses
    }

    /// Structural equality of two graphs (names, nodes, outputs; constants bitwise).
    pub fn same(&self, other: &Graph) -> bool {
        self.name == other.name
            && self.outputs == other.outputs
            && self.nodes.len() == other.nodes.len()
            && self.nodes.iter().zip(&other.nodes).all(|(a, b)| a.same(b))
    }

    /// Mutable access to the nodes, for passes. Passes must keep the topological order and the
    /// types consistent; debug builds run [`verify()`] after every pass.
    ///
    /// This drops the custom-derivative side table ([`Graph::custom_regions`]): its node ids
    /// would not survive a rewrite.
    pub fn nodes_mut(&mut self) -> &mut Vec<Node> {
        self.custom.clear();
        self.checkpoints = Checkpoints::default();
        self.names.stale = true;
        &mut self.nodes
    }

    /// Removes and returns the custom-derivative side table (passes that renumber nodes take it
    /// first and put the renumbered regions back with [`Graph::add_custom_region`]).
    pub fn take_custom_regions(&mut self) -> Vec<CustomRegion> {
        std::mem::take(&mut self.custom)
    }

    /// The checkpoint regions and names recorded by [`GraphBuilder::checkpoint`] and
    /// [`Var::checkpoint_name`] (dropped, like the custom regions, by passes that renumber).
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// Mutable access to the checkpoint side table (the builder records regions here).
    pub fn checkpoints_mut(&mut self) -> &mut Checkpoints {
        &mut self.checkpoints
    }

    /// For each node, whether it lies inside a custom region (`first..=output`).
    pub fn custom_interior(&self) -> Vec<bool> {
        let mut inside = vec![false; self.nodes.len()];
        for r in &self.custom {
            for f in &mut inside[r.first.index()..=r.output.index()] {
                *f = true;
            }
        }
        inside
    }

    /// The custom-derivative regions recorded by [`GraphBuilder::custom`], in creation order.
    pub fn custom_regions(&self) -> &[CustomRegion] {
        &self.custom
    }

    /// Records a custom-derivative region (what [`GraphBuilder::custom`] does after building
    /// the forward subgraph). The region's nodes must already be in the graph.
    pub fn add_custom_region(&mut self, region: CustomRegion) {
        debug_assert!(
            region.output.index() < self.nodes.len()
                && region.first <= region.output
                && region.inputs.iter().all(|i| *i < region.first),
            "custom region ids: inputs < first <= output < len"
        );
        self.custom.push(region);
    }
}
