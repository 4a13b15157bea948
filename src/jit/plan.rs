//! Compile-time planning: which nodes run together in one loop nest, where every value lives,
//! and which code goes into which function.
//!
//! Phases:
//! 1. Liveness: a backward pass from the outputs marks the nodes whose values are needed; the
//!    rest get no code.
//! 2. Views: `reshape`, `broadcast`, `transpose` and `slice` get no code of their own. Each is
//!    a [`View`] of a stored value (a root, an element offset and element strides), composed
//!    through chains of views. A view is realized (copied into its own buffer) only when it is
//!    an output or when a reshape cannot be expressed with strides. `matmul` reads any view
//!    through its strides (the GEMM takes row and column strides), so the adjoint's
//!    transposed operands are never copied.
//! 3. Fusion: the nodes are clustered, in id order, into [`Group`]s. A fused group is one loop
//!    nest over an iteration shape: elementwise nodes of that shape (with broadcast operands)
//!    and reductions whose operand has that shape. A node joins an existing group of its shape
//!    when every operand is either computed in that group's loop body (an elementwise member:
//!    its value is still in a register) or stored by an earlier group; otherwise it starts a
//!    group. Candidates are the groups of the node's operands and the latest group of the
//!    shape (so independent siblings such as `tanh(x)` and `sigmoid(x)`, or a forward value
//!    and its adjoint, share one pass over `x`). A reduction's value only exists after its
//!    loop, so its readers go to later groups. Groups run in creation order, and every group
//!    depends only on earlier ones. A member is stored only if it is an output or read outside
//!    its group (through a view, by another group, or by a non-fused node); values read by
//!    several consumers in one group stay in registers, and values read by other groups are
//!    materialized once (never recomputed: recomputing transcendentals costs more than the
//!    memory traffic it saves). Groups are capped at [`MAX_GROUP`] members, which bounds
//!    register pressure and compile time. `matmul` is a singleton group.
//!
//!    `concat` is a singleton group that copies its operands into its own buffer only when
//!    some reader needs it in memory: an output, a view op, a `matmul`, a reduction over an
//!    axis its pieces are cut along, or a concat that is itself copied (decided up front,
//!    in one backward pass over the ids, from upper bounds of the cuts). Otherwise it is
//!    read in place ([`Role::Pieces`]): a list of [`Region`]s, boxes of its index space each
//!    read through a view of one operand (nested concats are flattened; a splat piece, such
//!    as the zeros a slice adjoint pads with, is a view of a splat constant). A fused group
//!    that reads pieces cuts its iteration space at every region boundary, along each
//!    axis, into at most [`MAX_BOXES`] boxes; phase 4 emits one loop nest per box, in which
//!    every piece is a plain strided view. So `add(concat(0, a), concat(b, 0))` is one loop
//!    in three boxes and no concat buffer. A reduction joins such a group only if none of
//!    its reduced axes is cut, so each box computes whole output elements in the
//!    interpreter's order.
//! 4. Loop nests: one per fused group, or per box of a group that reads pieces (its
//!    accesses start at the box's first index; a box of several with reductions fills and
//!    finishes only its own output elements and stays serial). The accesses of a nest
//!    (loads of operands, stores, reduction outputs) are collapsed to the fewest loop
//!    dimensions; the innermost one is vectorized when every float in the nest has one
//!    dtype. Nests of at least
//!    `JitConfig::parallel_min_elements` elements are cut into blocks along their outermost
//!    dimension (a fixed number of elements per block, independent of the machine), which
//!    threads may run concurrently. A reduction that sums across blocks writes one partial
//!    result per block, and a combine step folds them in block order, so results never
//!    depend on the number of threads.
//! 5. Memory: inputs stay in the caller's buffers, computed outputs are written straight into
//!    the caller's output buffers, constants whose elements are all bitwise equal become
//!    immediates ([`Loc::Splat`]) and other constants go into one constant blob. Every other
//!    stored value gets a workspace range, assigned by a linear scan over groups that reuses
//!    ranges of dead values (best fit, at most 2x the needed size). A stored elementwise
//!    member may take over the range of an operand that dies in its group (in place) when the
//!    group reads that operand only at the member's own index, and only in members up to
//!    that one (the loop body stores a value right after computing it); never in a group cut
//!    into boxes. Ranges of 64 bytes or more are 64-byte aligned. The peak is
//!    [`Plan::ws_bytes`].
//! 6. Functions: serial groups are packed into functions of at most `max_ops_per_function`
//!    nodes; a parallel group gets a function of its own taking a block range.
//!
//! Outputs that are inputs or constants are copied into their output buffers by the kernel
//! (in Rust) after the compiled functions ran ([`PostCopy`]).
//!
//! Deliberately absent: anything Cranelift-specific, and recomputation of values read by
//! several groups.

use super::JitError;
use crate::ir::{Attrs, DType, Graph, NodeId, Op, strides};
use crate::tensor::{Data, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Alignment of large workspace and constant buffers (one cache line).
pub(super) const BIG_ALIGN: usize = 64;

/// The most members of one fused group.
pub(super) const MAX_GROUP: usize = 64;

/// Elements per block of a parallel group (a multiple of every vector width times unroll).
pub(super) const BLOCK_ELEMS: usize = 1 << 14;

/// The most boxes a fused group's iteration space may be cut into by the pieces it reads (see
/// [`Region`]); also the most boxes of one `concat` read in place.
pub(super) const MAX_BOXES: usize = 32;

/// Where a value lives while the kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Loc {
    /// The value is never read from memory: no memory.
    Unused,
    /// Caller input buffer number `k`.
    Input(usize),
    /// Caller output buffer number `k`.
    Output(usize),
    /// The workspace, at this byte offset.
    Ws(usize),
    /// The constant blob, at this byte offset.
    Const(usize),
    /// A constant whose elements all have these bits (f32 bits, f64 bits, or 0/1 for bool).
    Splat(u64),
}

/// A copy the kernel does after the compiled code ran.
#[derive(Clone, Debug)]
pub(super) enum PostCopy {
    /// Output `out` is input `input`.
    Input {
        /// Output index.
        out: usize,
        /// Input index.
        input: usize,
    },
    /// Output `out` is this constant.
    Const {
        /// Output index.
        out: usize,
        /// The value.
        value: Arc<Tensor>,
    },
}

/// How a value is read from memory: element `i` (multi-index over the value's shape) is at
/// element `offset + Σ i[k]·strides[k]` of its root's home.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct View {
    /// The stored node (or leaf) whose memory holds the elements.
    pub root: NodeId,
    /// Element offset into the root's memory.
    pub offset: i64,
    /// Element strides, one per dimension of the viewing value.
    pub strides: Vec<i64>,
}

/// One rectangular part of a `concat` read in place ([`Role::Pieces`]): the elements whose
/// multi-index `i` (in the concat's own coordinates) has `lo <= i < hi` on every axis are read
/// through `view`, whose offset is relative to index 0 of the concat (so it may be negative
/// for a part that does not start at 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Region {
    /// First index of the part, per axis.
    pub lo: Vec<usize>,
    /// One past the last index of the part, per axis.
    pub hi: Vec<usize>,
    /// How the part's elements are read, in the concat's coordinates.
    pub view: View,
}

/// What a live node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Not needed: no code.
    Dead,
    /// An input or a constant.
    Leaf,
    /// Read through [`Plan::views`]; no code.
    View,
    /// A `concat` whose readers read its operands in place, part by part (its [`Region`]s);
    /// no code and no memory.
    Pieces,
    /// Computed in fused group `g`.
    Member(u32),
    /// The only node of group `g` (matmul, concat, or a realized view).
    Single(u32),
}

/// One memory access of a fused group: byte offset from the home of `root`, and byte strides
/// over the collapsed loop dimensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Access {
    /// The node whose home is accessed.
    pub root: NodeId,
    /// Byte offset.
    pub offset: i64,
    /// Byte strides, one per loop dimension.
    pub strides: Vec<i64>,
}

/// A reduction computed in a fused group.
#[derive(Clone, Debug)]
pub(super) struct Reduction {
    /// The reduction node.
    pub node: NodeId,
    /// Its output, over the loop dimensions (stride 0 along reduced dimensions).
    pub out: Access,
    /// Workspace byte offset of the per-block partial results, when the group is cut into
    /// blocks along a dimension this reduction sums over.
    pub partials: Option<usize>,
}

/// A loop nest computing several nodes.
#[derive(Clone, Debug)]
pub(super) struct Fused {
    /// The iteration shape of the nest (before collapsing): the group's, or its box's when
    /// `part`.
    pub shape: Vec<usize>,
    /// Member nodes in id order (elementwise nodes and reductions).
    pub members: Vec<NodeId>,
    /// Operands read from memory: (operand node, access).
    pub leaves: Vec<(NodeId, Access)>,
    /// Stored elementwise members: (member, access to its own home).
    pub stores: Vec<(NodeId, Access)>,
    /// The reductions.
    pub reductions: Vec<Reduction>,
    /// The collapsed loop dimensions, outermost first (empty: one straight-line execution).
    pub dims: Vec<usize>,
    /// The float dtype of every value, when the innermost loop can be vectorized.
    pub vector: Option<DType>,
    /// Blocks along `dims[0]`: how many, and how many rows (or elements, for a one-dimensional
    /// nest) each holds. `count == 1` for serial groups.
    pub blocks: Blocks,
    /// True if the blocks may run on several threads.
    pub parallel: bool,
    /// Some member's lowering calls a math function (a transcendental).
    pub math: bool,
    /// The nest covers one box of its group's iteration space, not all of it (the group reads
    /// a `concat` in place; see [`Region`]). Accesses then start at the box's first index.
    pub part: bool,
}

/// The cut of a group along its outermost loop dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Blocks {
    /// Number of blocks.
    pub count: usize,
    /// Extent of `dims[0]` per block (the last block may be shorter).
    pub size: usize,
}

/// A group: what one step of the schedule computes.
#[derive(Clone, Debug)]
pub(super) enum Group {
    /// A fused loop nest.
    Fused(Fused),
    /// A node with its own lowering; for a realized view, the view it copies from.
    Single(NodeId, Option<View>),
}

/// A piece of a serial function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Item {
    /// Run group `g` (serial).
    Run(u32),
    /// Fold the per-block partial results of parallel group `g`.
    Combine(u32),
}

/// One compiled function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Func {
    /// `fn(inputs, outputs, ws, consts)` running these items in order.
    Serial(Vec<Item>),
    /// `fn(inputs, outputs, ws, consts, lo, hi)` running blocks `lo..hi` of group `g`.
    Blocks(u32),
}

/// The layout of a compiled graph.
#[derive(Debug)]
pub(super) struct Plan {
    /// The home of each stored node's value.
    pub locs: Vec<Loc>,
    /// How each node that is read from memory is read (stored nodes, leaves and views).
    pub views: Vec<Option<View>>,
    /// The groups, in execution order.
    pub groups: Vec<Group>,
    /// The compiled functions, in execution order.
    pub funcs: Vec<Func>,
    /// Workspace bytes needed.
    pub ws_bytes: usize,
    /// The constant blob (native-endian element bytes, bool as 0/1).
    pub consts: Vec<u8>,
    /// Copies done after the compiled code.
    pub post: Vec<PostCopy>,
    /// Counters.
    pub stats: PlanStats,
}

/// Counters of the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct PlanStats {
    pub nodes_compiled: u64,
    pub nodes_dead: u64,
    pub nodes_fused: u64,
    pub views: u64,
    pub buffers_reused: u64,
    pub buffers_in_place: u64,
    pub groups: u64,
    pub groups_parallel: u64,
    pub matmuls_gemm: u64,
}

/// Options that change the plan.
#[derive(Clone, Copy, Debug)]
pub(super) struct PlanConfig {
    pub max_ops_per_function: usize,
    pub parallel_min_elements: usize,
    /// Reductions must not be reassociated.
    pub exact: bool,
    /// Checked mode: every node its own group and function, every view realized, every value
    /// stored in its own memory (never reused), no threads.
    pub checked: bool,
}

/// True for ops computed per element by an `ops` lowering rule.
fn is_elementwise(op: Op) -> bool {
    crate::ops::rules(op).lower.is_some()
}

fn is_reduction(op: Op) -> bool {
    matches!(
        op,
        Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin
    )
}

fn is_view_op(op: Op) -> bool {
    matches!(op, Op::Reshape | Op::Broadcast | Op::Transpose | Op::Slice)
}

/// Row-major element strides of `shape`.
pub(super) fn contiguous(shape: &[usize]) -> Vec<i64> {
    strides(shape).iter().map(|&s| s as i64).collect()
}

/// True if the view walks its elements in row-major order without gaps (dims of size 1 may
/// have any stride).
pub(super) fn is_contiguous(shape: &[usize], st: &[i64]) -> bool {
    let c = contiguous(shape);
    shape
        .iter()
        .zip(st.iter().zip(&c))
        .all(|(&d, (a, b))| d == 1 || a == b)
}

/// Strides of a value of shape `from` read at the indices of `to` (NumPy broadcasting).
fn broadcast_view(from: &[usize], st: &[i64], to: &[usize]) -> Vec<i64> {
    let off = to.len() - from.len();
    (0..to.len())
        .map(|d| {
            if d < off || from[d - off] == 1 {
                0
            } else {
                st[d - off]
            }
        })
        .collect()
}

/// Merges adjacent loop dimensions that every access walks contiguously and drops dimensions
/// of size 1, keeping the row-major visiting order. `acc[a][k]` is access `a`'s stride along
/// dimension `k`; it is rewritten for the returned dimensions.
pub(super) fn collapse(dims: &[usize], acc: &mut [&mut Vec<i64>]) -> Vec<usize> {
    let mut out_dims: Vec<usize> = Vec::with_capacity(dims.len());
    let mut out_st: Vec<Vec<i64>> = vec![Vec::with_capacity(dims.len()); acc.len()];
    for (k, &d) in dims.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let mergeable = !out_dims.is_empty()
            && acc
                .iter()
                .zip(&out_st)
                .all(|(a, o)| *o.last().expect("non-empty") == a[k] * d as i64);
        if mergeable {
            *out_dims.last_mut().expect("non-empty") *= d;
            for (a, o) in acc.iter().zip(&mut out_st) {
                *o.last_mut().expect("non-empty") = a[k];
            }
        } else {
            out_dims.push(d);
            for (a, o) in acc.iter().zip(&mut out_st) {
                o.push(a[k]);
            }
        }
    }
    for (a, o) in acc.iter_mut().zip(out_st) {
        **a = o;
    }
    out_dims
}

/// Inserts `x` into the sorted list `v` (no duplicates).
fn insert_sorted(v: &mut Vec<usize>, x: usize) {
    if let Err(i) = v.binary_search(&x) {
        v.insert(i, x);
    }
}

/// The number of boxes that cut positions `cuts` (per axis) make.
fn box_count(cuts: &[Vec<usize>]) -> usize {
    cuts.iter()
        .fold(1usize, |p, c| p.saturating_mul(c.len() + 1))
}

/// Adds to `cuts` (per axis of an iteration space of `shape`) the boundaries between the
/// regions `regs` of a piecewise value of shape `xs` read at that space's indices (NumPy
/// broadcasting: a broadcast axis has one region along it, so no boundary).
fn add_cuts(xs: &[usize], regs: &[Region], shape: &[usize], cuts: &mut [Vec<usize>]) {
    let off = shape.len() - xs.len();
    for r in regs {
        for (a, &d) in xs.iter().enumerate() {
            for v in [r.lo[a], r.hi[a]] {
                if v > 0 && v < d {
                    insert_sorted(&mut cuts[a + off], v);
                }
            }
        }
    }
}

/// Group-building state.
struct Builder<'g> {
    g: &'g Graph,
    roles: Vec<Role>,
    views: Vec<Option<View>>,
    /// The regions of each [`Role::Pieces`] node.
    pieces: Vec<Option<Vec<Region>>>,
    /// Per fused group: where the pieces its members read cut its iteration space (per axis;
    /// `None`: nowhere), and the axes its reductions reduce.
    cuts: Vec<Option<Vec<Vec<usize>>>>,
    reduced: Vec<Vec<usize>>,
    /// Realized views: the view each one copies from.
    realized: HashMap<u32, View>,
    /// Per group: (iteration shape, members) for fused groups, `None` shape for singles.
    shapes: Vec<Option<Vec<usize>>>,
    members: Vec<Vec<NodeId>>,
    latest: HashMap<Vec<usize>, u32>,
    checked: bool,
}

impl Group {
    /// The first node the group computes.
    pub(super) fn first_node(&self) -> NodeId {
        match self {
            Group::Fused(f) => f.members[0],
            Group::Single(id, _) => *id,
        }
    }
}

impl Builder<'_> {
    /// The base view of a stored node or leaf.
    fn base(&self, id: NodeId) -> View {
        View {
            root: id,
            offset: 0,
            strides: contiguous(&self.g.ty(id).shape),
        }
    }

    /// How `x` is read from memory (for a fused member, its future home).
    fn view(&self, x: NodeId) -> View {
        match &self.views[x.index()] {
            Some(v) => v.clone(),
            None => self.base(x),
        }
    }

    /// The group after which `x` can be read from memory (-1: always).
    fn ready(&self, x: NodeId) -> i64 {
        let root_ready = |root: NodeId| match self.roles[root.index()] {
            Role::Member(g) | Role::Single(g) => i64::from(g),
            _ => -1,
        };
        match self.roles[x.index()] {
            Role::View => root_ready(self.view(x).root),
            Role::Pieces => self.pieces[x.index()]
                .iter()
                .flatten()
                .map(|r| root_ready(r.view.root))
                .max()
                .unwrap_or(-1),
            _ => root_ready(x),
        }
    }

    fn new_group(&mut self, shape: Option<Vec<usize>>) -> u32 {
        let g = self.shapes.len() as u32;
        if let Some(s) = &shape {
            self.latest.insert(s.clone(), g);
        }
        self.shapes.push(shape);
        self.members.push(Vec::new());
        self.cuts.push(None);
        self.reduced.push(Vec::new());
        g
    }

    /// Where the pieces that `n` reads cut its iteration space of `shape` (`None`: nowhere).
    fn node_cuts(&self, n: NodeId, shape: &[usize]) -> Option<Vec<Vec<usize>>> {
        let mut cuts: Option<Vec<Vec<usize>>> = None;
        for &x in &self.g.node(n).inputs {
            if let Some(regs) = &self.pieces[x.index()] {
                let c = cuts.get_or_insert_with(|| vec![Vec::new(); shape.len()]);
                add_cuts(&self.g.ty(x).shape, regs, shape, c);
            }
        }
        cuts
    }

    /// The axes reduction `n` reduces (empty for other nodes).
    fn node_reduced(&self, n: NodeId) -> Vec<usize> {
        let node = self.g.node(n);
        match (&node.attrs, is_reduction(node.op)) {
            (Attrs::Reduce { axes, .. }, true) => axes.clone(),
            _ => Vec::new(),
        }
    }

    /// True if `n`, with cuts `nc` and reduced axes `nr`, keeps group `g` within
    /// [`MAX_BOXES`] boxes and every cut off the reduced axes (a reduction must see all of
    /// its reduced axes in one box, so that each box computes whole output elements in the
    /// interpreter's order).
    fn boxes_fit(&self, g: u32, nc: Option<&Vec<Vec<usize>>>, nr: &[usize]) -> bool {
        let gc = self.cuts[g as usize].as_ref();
        let gr = &self.reduced[g as usize];
        if nc.is_none() && (nr.is_empty() || gc.is_none()) {
            return true;
        }
        let mut merged = gc.or(nc).cloned().unwrap_or_default();
        if let (Some(_), Some(nc)) = (gc, nc) {
            for (m, c) in merged.iter_mut().zip(nc) {
                for &v in c {
                    insert_sorted(m, v);
                }
            }
        }
        box_count(&merged) <= MAX_BOXES
            && gr
                .iter()
                .chain(nr)
                .all(|&a| merged.get(a).is_none_or(Vec::is_empty))
    }

    /// Turns view `x` into a copy with its own buffer (a singleton group).
    fn realize(&mut self, x: NodeId) {
        if self.roles[x.index()] != Role::View {
            return;
        }
        let v = self.view(x);
        let g = self.new_group(None);
        self.members[g as usize].push(x);
        self.roles[x.index()] = Role::Single(g);
        self.realized.insert(x.0, v);
        self.views[x.index()] = None;
    }

    /// Operand `x` of `n` is in a register inside group `g`.
    fn in_register(&self, x: NodeId, g: u32) -> bool {
        self.roles[x.index()] == Role::Member(g) && is_elementwise(self.g.node(x).op)
    }

    /// How many operands of `n` group `g` would provide from registers, if `n` may join it.
    fn fit(&self, n: NodeId, g: u32) -> Option<usize> {
        if self.members[g as usize].len() >= MAX_GROUP {
            return None;
        }
        let mut regs = 0;
        for &x in &self.g.node(n).inputs {
            if self.in_register(x, g) {
                regs += 1;
            } else if self.ready(x) >= i64::from(g) {
                return None;
            }
        }
        Some(regs)
    }

    /// Places elementwise node or reduction `n` whose loop runs over `shape`.
    fn place(&mut self, n: NodeId, shape: Vec<usize>) {
        if self.checked {
            let g = self.new_group(Some(shape));
            self.members[g as usize].push(n);
            self.roles[n.index()] = Role::Member(g);
            return;
        }
        let nc = self.node_cuts(n, &shape);
        let nr = self.node_reduced(n);
        let mut best: Option<(usize, u32)> = None;
        let mut consider = |b: &Self, g: u32| {
            if b.shapes[g as usize].as_ref() != Some(&shape) {
                return;
            }
            if let Some(regs) = b.fit(n, g)
                && b.boxes_fit(g, nc.as_ref(), &nr)
                && best.is_none_or(|cur| (regs, g) > cur)
            {
                best = Some((regs, g));
            }
        };
        for &x in &self.g.node(n).inputs {
            if let Role::Member(g) = self.roles[x.index()] {
                consider(self, g);
            }
        }
        if let Some(&g) = self.latest.get(&shape) {
            consider(self, g);
        }
        let g = match best {
            Some((_, g)) => g,
            None => self.new_group(Some(shape)),
        };
        if let Some(nc) = nc {
            match &mut self.cuts[g as usize] {
                Some(gc) => {
                    for (m, c) in gc.iter_mut().zip(nc) {
                        for v in c {
                            insert_sorted(m, v);
                        }
                    }
                }
                none => *none = Some(nc),
            }
        }
        self.reduced[g as usize].extend(nr);
        self.members[g as usize].push(n);
        self.roles[n.index()] = Role::Member(g);
    }

    /// Makes `concat` node `n` a [`Role::Pieces`] value: its regions are its operands' views
    /// (or their own regions, for operands that are pieces), shifted to where they sit.
    fn pieces_of(&mut self, n: NodeId) {
        let node = self.g.node(n);
        let Attrs::Axis { axis } = node.attrs else {
            unreachable!("verified concat has an axis")
        };
        let mut regs = Vec::new();
        let mut at = 0usize;
        for &x in &node.inputs {
            let xs = &self.g.ty(x).shape;
            let shift = |r: &mut Region| {
                r.lo[axis] += at;
                r.hi[axis] += at;
                r.view.offset -= at as i64 * r.view.strides[axis];
            };
            match &self.pieces[x.index()] {
                Some(rs) => regs.extend(rs.iter().cloned().map(|mut r| {
                    shift(&mut r);
                    r
                })),
                None => {
                    let mut r = Region {
                        lo: vec![0; xs.len()],
                        hi: xs.clone(),
                        view: self.view(x),
                    };
                    shift(&mut r);
                    regs.push(r);
                }
            }
            at += xs[axis];
        }
        self.roles[n.index()] = Role::Pieces;
        self.pieces[n.index()] = Some(regs);
    }

    /// The view `n` (a view op) defines, if its operand's view composes with it.
    fn compose(&self, n: NodeId) -> Option<View> {
        let node = self.g.node(n);
        let x = node.inputs[0];
        let xs = &self.g.ty(x).shape;
        let v = self.view(x);
        Some(match (&node.op, &node.attrs) {
            (Op::Reshape, _) => {
                if !is_contiguous(xs, &v.strides) {
                    return None;
                }
                View {
                    strides: contiguous(&node.ty.shape),
                    ..v
                }
            }
            (Op::Broadcast, _) => View {
                strides: broadcast_view(xs, &v.strides, &node.ty.shape),
                ..v
            },
            (Op::Transpose, Attrs::Perm { perm }) => View {
                strides: perm.iter().map(|&p| v.strides[p]).collect(),
                ..v
            },
            (Op::Slice, Attrs::Slice { start, .. }) => View {
                offset: v.offset
                    + start
                        .iter()
                        .zip(&v.strides)
                        .map(|(&a, &s)| a as i64 * s)
                        .sum::<i64>(),
                ..v
            },
            _ => unreachable!("verified view ops have their attributes"),
        })
    }
}

/// Plans `g` (already verified).
///
/// # Errors
/// [`JitError::TooLarge`] if the workspace or the constant blob would exceed the address space.
pub(super) fn plan(g: &Graph, cfg: &PlanConfig) -> Result<Plan, JitError> {
    let n = g.len();
    let nodes = g.nodes();

    // Phase 1: liveness.
    let mut live = vec![false; n];
    for o in g.outputs() {
        live[o.index()] = true;
    }
    for i in (0..n).rev() {
        if live[i] {
            for x in &nodes[i].inputs {
                live[x.index()] = true;
            }
        }
    }
    let mut is_output = vec![false; n];
    for o in g.outputs() {
        is_output[o.index()] = true;
    }

    // Which `concat`s are read in place (pieces): decided before any group exists, from
    // upper bounds that assume every nested concat is read in place too. A concat qualifies if
    // it is not an output, it cuts its space into at most `MAX_BOXES` boxes, and every reader
    // reads pieces: an elementwise node (whose own cuts stay within `MAX_BOXES` boxes), a
    // reduction that reduces no cut axis, or a concat that qualifies.
    let mut cuts_ub: Vec<Option<Vec<Vec<usize>>>> = vec![None; n];
    if !cfg.checked {
        for i in 0..n {
            let node = &nodes[i];
            if !live[i] || node.op != Op::Concat {
                continue;
            }
            let Attrs::Axis { axis } = node.attrs else {
                unreachable!("verified concat has an axis")
            };
            let mut c = vec![Vec::new(); node.ty.rank()];
            let mut at = 0usize;
            for x in &node.inputs {
                if let Some(xc) = &cuts_ub[x.index()] {
                    for (a, (cut, xcut)) in c.iter_mut().zip(xc).enumerate() {
                        for &v in xcut {
                            insert_sorted(cut, if a == axis { v + at } else { v });
                        }
                    }
                }
                if at > 0 {
                    insert_sorted(&mut c[axis], at);
                }
                at += g.ty(*x).shape[axis];
            }
            if box_count(&c) <= MAX_BOXES {
                cuts_ub[i] = Some(c);
            }
        }
    }
    let mut piecewise = vec![false; n];
    let mut blocked = vec![false; n];
    for i in (0..n).rev() {
        let node = &nodes[i];
        if !live[i] {
            continue;
        }
        if cuts_ub[i].is_some() {
            piecewise[i] = !blocked[i] && !is_output[i];
        }
        if !node.inputs.iter().any(|x| cuts_ub[x.index()].is_some()) {
            continue;
        }
        let reads_pieces = if is_elementwise(node.op) {
            let shape = &node.ty.shape;
            let mut c = vec![Vec::new(); shape.len()];
            for x in &node.inputs {
                if let Some(xc) = &cuts_ub[x.index()] {
                    let xs = &g.ty(*x).shape;
                    let off = shape.len() - xs.len();
                    for (a, xcut) in xc.iter().enumerate() {
                        if xs[a] > 1 {
                            for &v in xcut {
                                insert_sorted(&mut c[a + off], v);
                            }
                        }
                    }
                }
            }
            box_count(&c) <= MAX_BOXES
        } else if is_reduction(node.op) {
            let Attrs::Reduce { axes, .. } = &node.attrs else {
                unreachable!("verified reductions have axes")
            };
            let xc = cuts_ub[node.inputs[0].index()]
                .as_ref()
                .expect("checked above");
            axes.iter().all(|&a| xc[a].is_empty())
        } else {
            node.op == Op::Concat && piecewise[i]
        };
        if !reads_pieces {
            for x in &node.inputs {
                blocked[x.index()] = true;
            }
        }
    }
    drop(cuts_ub);

    // Phases 2 and 3: views and groups, in id order.
    let mut b = Builder {
        g,
        roles: vec![Role::Dead; n],
        views: vec![None; n],
        pieces: vec![None; n],
        cuts: Vec::new(),
        reduced: Vec::new(),
        realized: HashMap::new(),
        shapes: Vec::new(),
        members: Vec::new(),
        latest: HashMap::new(),
        checked: cfg.checked,
    };
    // Values some live consumer reads contiguously (`reshape`, which is only a view of a
    // contiguous operand; `matmul` takes any strides).
    let mut wants_contiguous = vec![false; n];
    for i in 0..n {
        if live[i] && nodes[i].op == Op::Reshape {
            for x in &nodes[i].inputs {
                wants_contiguous[x.index()] = true;
            }
        }
    }
    for i in 0..n {
        if !live[i] {
            continue;
        }
        let id = NodeId(i as u32);
        let node = &nodes[i];
        match node.op {
            Op::Input | Op::Const => b.roles[i] = Role::Leaf,
            op if is_view_op(op) => {
                // Decided before any consumer reads it, so every reader sees one layout.
                let v = b
                    .compose(id)
                    .expect("operands that need a contiguous layout were realized");
                let contiguous = is_contiguous(&node.ty.shape, &v.strides);
                b.roles[i] = Role::View;
                b.views[i] = Some(v);
                if cfg.checked || is_output[i] || (wants_contiguous[i] && !contiguous) {
                    b.realize(id);
                }
            }
            Op::Concat if piecewise[i] => b.pieces_of(id),
            op if is_elementwise(op) => b.place(id, node.ty.shape.clone()),
            op if is_reduction(op) => b.place(id, g.ty(node.inputs[0]).shape.clone()),
            _ => {
                // `matmul` and `concat`: they read their operands' views through strides.
                let grp = b.new_group(None);
                b.members[grp as usize].push(id);
                b.roles[i] = Role::Single(grp);
            }
        }
    }
    let Builder {
        roles,
        mut views,
        pieces,
        cuts,
        mut realized,
        shapes,
        members,
        ..
    } = b;
    let root_of = |x: NodeId| -> NodeId {
        match roles[x.index()] {
            Role::View => views[x.index()].as_ref().expect("views have views").root,
            _ => x,
        }
    };

    // Which members are stored, and the last group reading each stored value.
    let mut stored = vec![false; n];
    let mut last_use = vec![-1i64; n];
    let group_of = |i: usize| match roles[i] {
        Role::Member(g) | Role::Single(g) => Some(g),
        _ => None,
    };
    for i in 0..n {
        let Some(gi) = group_of(i) else { continue };
        if cfg.checked
            || is_output[i]
            || is_reduction(nodes[i].op)
            || matches!(roles[i], Role::Single(_))
        {
            stored[i] = true;
        }
        let reads: Vec<NodeId> = match realized.get(&(i as u32)) {
            Some(v) => vec![v.root],
            None => nodes[i].inputs.clone(),
        };
        for x in reads {
            let same = roles[i] == Role::Member(gi)
                && roles[x.index()] == Role::Member(gi)
                && is_elementwise(nodes[x.index()].op);
            if same {
                continue;
            }
            let one = [root_of(x)];
            let roots: Vec<NodeId> = match &pieces[x.index()] {
                Some(regs) => regs.iter().map(|r| r.view.root).collect(),
                None => one.to_vec(),
            };
            for r in roots {
                if roles[r.index()] != Role::Leaf {
                    stored[r.index()] = true;
                    last_use[r.index()] = last_use[r.index()].max(i64::from(gi));
                }
            }
        }
    }
    for (i, v) in views.iter_mut().enumerate() {
        if stored[i] && v.is_none() {
            *v = Some(View {
                root: NodeId(i as u32),
                offset: 0,
                strides: contiguous(&nodes[i].ty.shape),
            });
        }
        if roles[i] == Role::Leaf {
            *v = Some(View {
                root: NodeId(i as u32),
                offset: 0,
                strides: contiguous(&nodes[i].ty.shape),
            });
        }
    }

    // Phase 4: loop nests of fused groups, one per box of a group that reads pieces. From
    // here on, group numbers are those of the nests (`last_use` is remapped to the last
    // nest of its group).
    let mut groups: Vec<Group> = Vec::with_capacity(shapes.len());
    let mut last_nest: Vec<u32> = Vec::with_capacity(shapes.len());
    let mut nodes_fused = 0u64;
    for (gi, shape) in shapes.iter().enumerate() {
        let Some(shape) = shape else {
            let id = members[gi][0];
            groups.push(Group::Single(id, realized.remove(&id.0)));
            last_nest.push(groups.len() as u32 - 1);
            continue;
        };
        let nest = |lo: &[usize], ext: &[usize], part: bool| {
            fused_nest(
                g,
                gi as u32,
                shape,
                Cut { lo, ext, part },
                &members[gi],
                &roles,
                &views,
                &pieces,
                &stored,
                cfg,
            )
        };
        match &cuts[gi] {
            None => groups.push(Group::Fused(nest(&vec![0; shape.len()], shape, false))),
            Some(c) => {
                // The boxes in row-major order of their intervals.
                let bounds: Vec<Vec<usize>> = c
                    .iter()
                    .zip(shape)
                    .map(|(c, &d)| {
                        std::iter::once(0)
                            .chain(c.iter().copied())
                            .chain([d])
                            .collect()
                    })
                    .collect();
                let mut at = vec![0usize; shape.len()];
                let part = box_count(c) > 1;
                loop {
                    let lo: Vec<usize> = at.iter().zip(&bounds).map(|(&k, b)| b[k]).collect();
                    let ext: Vec<usize> = at
                        .iter()
                        .zip(&bounds)
                        .map(|(&k, b)| b[k + 1] - b[k])
                        .collect();
                    groups.push(Group::Fused(nest(&lo, &ext, part)));
                    // Next box: odometer over the interval indices, last axis fastest.
                    let mut k = shape.len();
                    loop {
                        if k == 0 {
                            break;
                        }
                        k -= 1;
                        at[k] += 1;
                        if at[k] + 1 < bounds[k].len() {
                            break;
                        }
                        at[k] = 0;
                    }
                    if at.iter().all(|&k| k == 0) {
                        break;
                    }
                }
            }
        }
        if let Some(Group::Fused(f)) = groups.last() {
            nodes_fused += (f.members.len() - f.stores.len() - f.reductions.len()) as u64;
        }
        last_nest.push(groups.len() as u32 - 1);
    }
    for l in &mut last_use {
        if *l >= 0 {
            *l = i64::from(last_nest[*l as usize]);
        }
    }

    // Phase 5: homes.
    let mut locs = vec![Loc::Unused; n];
    let mut post = Vec::new();
    let input_index: Vec<Option<usize>> = {
        let mut v = vec![None; n];
        for (k, id) in g.inputs().into_iter().enumerate() {
            v[id.index()] = Some(k);
        }
        v
    };
    for (k, &o) in g.outputs().iter().enumerate() {
        match nodes[o.index()].op {
            Op::Input => post.push(PostCopy::Input {
                out: k,
                input: input_index[o.index()].expect("input nodes are inputs"),
            }),
            Op::Const => post.push(PostCopy::Const {
                out: k,
                value: Arc::clone(const_of(g, o)),
            }),
            _ if locs[o.index()] == Loc::Unused => locs[o.index()] = Loc::Output(k),
            _ => unreachable!("verified graphs have distinct outputs"),
        }
    }
    let mut consts: Vec<u8> = Vec::new();
    for i in 0..n {
        if roles[i] != Role::Leaf {
            continue;
        }
        match nodes[i].op {
            Op::Input => locs[i] = Loc::Input(input_index[i].expect("input nodes are inputs")),
            _ => {
                let t = const_of(g, NodeId(i as u32));
                locs[i] = match splat_bits(t) {
                    Some(bits) => Loc::Splat(bits),
                    None => {
                        let bytes = t.to_bytes();
                        let off = align_up(consts.len(), BIG_ALIGN).ok_or(too_large())?;
                        consts.resize(off, 0);
                        consts.extend_from_slice(&bytes);
                        Loc::Const(off)
                    }
                };
            }
        }
    }
    let mut ws = Arena::default();
    let mut ws_size = vec![0usize; n];
    let mut dying: Vec<Vec<NodeId>> = vec![Vec::new(); groups.len()];
    for (i, &l) in last_use.iter().enumerate() {
        if l >= 0 {
            dying[l as usize].push(NodeId(i as u32));
        }
    }
    let mut in_place = 0u64;
    for (gi, grp) in groups.iter_mut().enumerate() {
        let bytes_of = |id: NodeId| -> Result<usize, JitError> {
            nodes[id.index()]
                .ty
                .numel()
                .checked_mul(nodes[id.index()].ty.dtype.size_bytes())
                .ok_or(too_large())
        };
        let mut taken: Vec<NodeId> = Vec::new();
        let mut temps: Vec<(usize, usize)> = Vec::new();
        match grp {
            Group::Single(id, _) => {
                if locs[id.index()] == Loc::Unused {
                    let (off, size) = ws.alloc(bytes_of(*id)?)?;
                    locs[id.index()] = Loc::Ws(off);
                    ws_size[id.index()] = size;
                }
            }
            Group::Fused(f) => {
                // A vector group with transcendentals may run twice (see `lower`), so it must
                // not overwrite its operands.
                let candidates = if cfg.checked || (f.math && f.vector.is_some() && !cfg.exact) {
                    Vec::new()
                } else {
                    in_place_candidates(f, &dying[gi], &locs, nodes)
                };
                for &(m, _) in &f.stores {
                    if locs[m.index()] != Loc::Unused {
                        continue;
                    }
                    let need = bytes_of(m)?;
                    let pick = candidates.iter().find(|c| {
                        !taken.contains(&c.root)
                            && c.bytes == need
                            && c.last_reader <= m
                            && nodes[c.root.index()].ty.dtype.size_bytes()
                                == nodes[m.index()].ty.dtype.size_bytes()
                    });
                    if let Some(c) = pick {
                        taken.push(c.root);
                        locs[m.index()] = locs[c.root.index()];
                        ws_size[m.index()] = ws_size[c.root.index()];
                        in_place += 1;
                    } else {
                        let (off, size) = ws.alloc(need)?;
                        locs[m.index()] = Loc::Ws(off);
                        ws_size[m.index()] = size;
                    }
                }
                for r in &mut f.reductions {
                    let id = r.node;
                    if locs[id.index()] == Loc::Unused {
                        let (off, size) = ws.alloc(bytes_of(id)?)?;
                        locs[id.index()] = Loc::Ws(off);
                        ws_size[id.index()] = size;
                    }
                    if f.blocks.count > 1 && r.out.strides.first() == Some(&0) {
                        let bytes = bytes_of(id)?
                            .checked_mul(f.blocks.count)
                            .ok_or(too_large())?;
                        let (off, size) = ws.alloc(bytes)?;
                        r.partials = Some(off);
                        temps.push((off, size));
                    }
                }
            }
        }
        for &x in &dying[gi] {
            if taken.contains(&x) || cfg.checked {
                continue;
            }
            if let Loc::Ws(off) = locs[x.index()] {
                ws.free(off, ws_size[x.index()]);
            }
        }
        for (off, size) in temps {
            ws.free(off, size);
        }
    }

    // Phase 6: functions.
    let per = if cfg.checked {
        1
    } else {
        cfg.max_ops_per_function.max(1)
    };
    let mut funcs = Vec::new();
    let mut cur: Vec<Item> = Vec::new();
    let mut cur_ops = 0usize;
    let flush = |cur: &mut Vec<Item>, cur_ops: &mut usize, funcs: &mut Vec<Func>| {
        if !cur.is_empty() {
            funcs.push(Func::Serial(std::mem::take(cur)));
        }
        *cur_ops = 0;
    };
    let mut stats = PlanStats {
        nodes_compiled: members.iter().map(|m| m.len() as u64).sum(),
        nodes_fused,
        ..PlanStats::default()
    };
    for (gi, grp) in groups.iter().enumerate() {
        let gi = gi as u32;
        let ops = match grp {
            Group::Fused(f) => f.members.len(),
            Group::Single(..) => 1,
        };
        match grp {
            Group::Fused(f) if f.parallel => {
                flush(&mut cur, &mut cur_ops, &mut funcs);
                funcs.push(Func::Blocks(gi));
                stats.groups_parallel += 1;
                if f.reductions.iter().any(|r| r.partials.is_some()) {
                    cur.push(Item::Combine(gi));
                    cur_ops += 1;
                }
            }
            _ => {
                if cur_ops + ops > per && !cur.is_empty() {
                    flush(&mut cur, &mut cur_ops, &mut funcs);
                }
                cur.push(Item::Run(gi));
                cur_ops += ops;
            }
        }
    }
    flush(&mut cur, &mut cur_ops, &mut funcs);

    stats.nodes_dead = (0..n)
        .filter(|&i| !live[i] && !matches!(nodes[i].op, Op::Input | Op::Const))
        .count() as u64;
    stats.views = roles
        .iter()
        .filter(|r| matches!(r, Role::View | Role::Pieces))
        .count() as u64;
    stats.buffers_reused = ws.reused;
    stats.buffers_in_place = in_place;
    stats.groups = groups.len() as u64;
    stats.matmuls_gemm = groups
        .iter()
        .filter(|grp| {
            matches!(grp, Group::Single(id, None)
                if nodes[id.index()].op == Op::Matmul
                    && gemm_path(g, &locs, &views, *id, cfg.exact))
        })
        .count() as u64;
    Ok(Plan {
        locs,
        views,
        groups,
        funcs,
        ws_bytes: ws.top,
        consts,
        post,
        stats,
    })
}

/// The (row, column) element strides of matmul operand `x` read through view `v`: the view's
/// strides of its last two axes, with the stride of a size-1 axis (never stepped along, maybe
/// 0 in a broadcast view) normalized to 1.
pub(super) fn matrix_strides(g: &Graph, x: NodeId, v: &View) -> (i64, i64) {
    let shape = &g.ty(x).shape;
    let r = shape.len();
    let st = |a: usize| if shape[a] == 1 { 1 } else { v.strides[a] };
    (st(r - 2), st(r - 1))
}

/// True if matmul `id` is computed by the GEMM wrapper: not in `exact` mode (the GEMM sums
/// in another order than the interpreter), large enough ([`super::gemm::use_gemm`]), and both
/// operands in memory (a splat constant has none to point at) with nonzero matrix strides (a
/// row or column broadcast by a view: not a layout to hand to the GEMM). Other matmuls use
/// the loop nest, which reads any view.
pub(super) fn gemm_path(
    g: &Graph,
    locs: &[Loc],
    views: &[Option<View>],
    id: NodeId,
    exact: bool,
) -> bool {
    let node = g.node(id);
    let xt = g.ty(node.inputs[0]);
    let (m, k) = (xt.shape[xt.rank() - 2], xt.shape[xt.rank() - 1]);
    let n = *node.ty.shape.last().expect("matmul output has rank >= 2");
    !exact
        && super::gemm::use_gemm(m, k, n)
        && node.inputs.iter().all(|&x| {
            let v = views[x.index()]
                .as_ref()
                .expect("plan invariant: matmul operands have views");
            let (rs, cs) = matrix_strides(g, x, v);
            !matches!(locs[v.root.index()], Loc::Splat(_)) && rs != 0 && cs != 0
        })
}

/// An operand that a stored member of a fused group may overwrite.
struct InPlace {
    root: NodeId,
    bytes: usize,
    /// The last member reading it.
    last_reader: NodeId,
}

/// True if the lowering rule of elementwise node `id` calls a math function: the rule is run
/// against an emitter that only records (so this knows no op by name).
pub(super) fn calls_math(g: &Graph, id: NodeId) -> bool {
    use crate::ops::{Cmp, FBinary, FUnary, MathFn, SVal, ScalarEmit};
    struct Probe {
        dtypes: Vec<DType>,
        calls: bool,
    }
    impl Probe {
        fn push(&mut self, d: DType) -> SVal {
            self.dtypes.push(d);
            SVal(self.dtypes.len() as u32 - 1)
        }
    }
    impl ScalarEmit for Probe {
        fn fconst(&mut self, dtype: DType, _: f64) -> SVal {
            self.push(dtype)
        }
        fn unary(&mut self, _: FUnary, x: SVal) -> SVal {
            self.push(self.dtype(x))
        }
        fn binary(&mut self, _: FBinary, a: SVal, _: SVal) -> SVal {
            self.push(self.dtype(a))
        }
        fn call(&mut self, _: MathFn, args: &[SVal]) -> SVal {
            self.calls = true;
            self.push(self.dtype(args[0]))
        }
        fn compare(&mut self, _: Cmp, _: SVal, _: SVal) -> SVal {
            self.push(DType::Bool)
        }
        fn select(&mut self, _: SVal, a: SVal, _: SVal) -> SVal {
            self.push(self.dtype(a))
        }
        fn cast(&mut self, _: SVal, to: DType) -> SVal {
            self.push(to)
        }
        fn dtype(&self, x: SVal) -> DType {
            self.dtypes[x.0 as usize]
        }
    }
    let node = g.node(id);
    let Some(lower) = crate::ops::rules(node.op).lower else {
        return false;
    };
    let mut p = Probe {
        dtypes: Vec::new(),
        calls: false,
    };
    let args: Vec<SVal> = node.inputs.iter().map(|&x| p.push(g.ty(x).dtype)).collect();
    lower(&mut p, node, &args);
    p.calls
}

/// The operands dying in fused group `f` that it reads only elementwise at the loop index.
fn in_place_candidates(
    f: &Fused,
    dying: &[NodeId],
    locs: &[Loc],
    nodes: &[crate::ir::Node],
) -> Vec<InPlace> {
    let mut out = Vec::new();
    for &root in dying {
        if !matches!(locs[root.index()], Loc::Ws(_)) {
            continue;
        }
        let reads: Vec<&(NodeId, Access)> =
            f.leaves.iter().filter(|(_, a)| a.root == root).collect();
        let size = nodes[root.index()].ty.dtype.size_bytes() as i64;
        let numel = nodes[root.index()].ty.numel();
        let identity = !reads.is_empty()
            && numel == f.shape.iter().product::<usize>()
            && reads.iter().all(|(_, a)| {
                a.offset == 0 && {
                    let want = contiguous_bytes(&f.dims, size);
                    a.strides == want
                }
            });
        if !identity {
            continue;
        }
        let last_reader = f
            .members
            .iter()
            .filter(|&&m| {
                nodes[m.index()]
                    .inputs
                    .iter()
                    .any(|x| reads.iter().any(|(l, _)| l == x))
            })
            .max()
            .copied();
        if let Some(last_reader) = last_reader {
            out.push(InPlace {
                root,
                bytes: numel * size as usize,
                last_reader,
            });
        }
    }
    out
}

/// Byte strides of a row-major tensor of `dims` with `size`-byte elements.
pub(super) fn contiguous_bytes(dims: &[usize], size: i64) -> Vec<i64> {
    contiguous(dims).iter().map(|&s| s * size).collect()
}

/// The box of a group's iteration space that one nest covers.
#[derive(Clone, Copy)]
struct Cut<'a> {
    /// First index per axis.
    lo: &'a [usize],
    /// Extent per axis.
    ext: &'a [usize],
    /// Not the whole space.
    part: bool,
}

/// The view through which piecewise value `x` (regions `regs`) is read in the box starting at
/// `lo` of an iteration space of `shape`: the region holding that box (the box lies inside
/// one region, since the group's cuts include every region boundary).
fn region_at<'r>(xs: &[usize], regs: &'r [Region], shape: &[usize], lo: &[usize]) -> &'r View {
    let off = shape.len() - xs.len();
    let at: Vec<usize> = (0..xs.len())
        .map(|a| if xs[a] == 1 { 0 } else { lo[a + off] })
        .collect();
    &regs
        .iter()
        .find(|r| (0..xs.len()).all(|a| r.lo[a] <= at[a] && at[a] < r.hi[a]))
        .expect("plan invariant: the regions of a concat cover it")
        .view
}

/// Builds the loop nest of one fused group over the box `cut` of its iteration `shape`.
#[allow(clippy::too_many_arguments)]
fn fused_nest(
    g: &Graph,
    gi: u32,
    shape: &[usize],
    cut: Cut<'_>,
    members: &[NodeId],
    roles: &[Role],
    views: &[Option<View>],
    pieces: &[Option<Vec<Region>>],
    stored: &[bool],
    cfg: &PlanConfig,
) -> Fused {
    // Element offset of the box's first index for element strides `st` over `shape`.
    let start = |st: &[i64]| -> i64 { cut.lo.iter().zip(st).map(|(&l, &s)| l as i64 * s).sum() };
    let nodes = g.nodes();
    let mut leaves: Vec<(NodeId, Access)> = Vec::new();
    let mut stores: Vec<(NodeId, Access)> = Vec::new();
    let mut reductions: Vec<Reduction> = Vec::new();
    let mut floats: Vec<DType> = Vec::new();
    // `i32` counts too, so a group holding integers is never vectorized (see `vector` below).
    let mut note_float = |d: DType| {
        if (d.is_float() || d == DType::I32) && !floats.contains(&d) {
            floats.push(d);
        }
    };
    for &m in members {
        let node = &nodes[m.index()];
        note_float(node.ty.dtype);
        for &x in &node.inputs {
            note_float(g.ty(x).dtype);
            let in_reg =
                roles[x.index()] == Role::Member(gi) && is_elementwise(nodes[x.index()].op);
            if in_reg || leaves.iter().any(|(l, _)| *l == x) {
                continue;
            }
            let xs = &g.ty(x).shape;
            let v = match &pieces[x.index()] {
                Some(regs) => region_at(xs, regs, shape, cut.lo),
                None => views[x.index()]
                    .as_ref()
                    .expect("operands read from memory have views"),
            };
            let size = g.ty(x).dtype.size_bytes() as i64;
            let st = broadcast_view(xs, &v.strides, shape);
            leaves.push((
                x,
                Access {
                    root: v.root,
                    offset: (v.offset + start(&st)) * size,
                    strides: st.iter().map(|s| s * size).collect(),
                },
            ));
        }
        let size = node.ty.dtype.size_bytes() as i64;
        if is_reduction(node.op) {
            let Attrs::Reduce { axes, .. } = &node.attrs else {
                unreachable!("verified reductions have axes")
            };
            let kept: Vec<usize> = (0..shape.len()).filter(|a| !axes.contains(a)).collect();
            let kept_shape: Vec<usize> = kept.iter().map(|&a| shape[a]).collect();
            let ks = contiguous(&kept_shape);
            let mut st = vec![0i64; shape.len()];
            for (j, &a) in kept.iter().enumerate() {
                st[a] = ks[j] * size;
            }
            reductions.push(Reduction {
                node: m,
                out: Access {
                    root: m,
                    offset: start(&st),
                    strides: st,
                },
                partials: None,
            });
        } else if stored[m.index()] {
            let st = contiguous(shape);
            stores.push((
                m,
                Access {
                    root: m,
                    offset: start(&st) * size,
                    strides: st.iter().map(|s| s * size).collect(),
                },
            ));
        }
    }
    let dims = {
        let mut acc: Vec<&mut Vec<i64>> = leaves
            .iter_mut()
            .map(|(_, a)| &mut a.strides)
            .chain(stores.iter_mut().map(|(_, a)| &mut a.strides))
            .chain(reductions.iter_mut().map(|r| &mut r.out.strides))
            .collect();
        collapse(cut.ext, &mut acc)
    };
    let vector = match (floats.as_slice(), dims.last()) {
        (&[d], Some(&inner)) if d.is_float() && inner >= 16 / d.size_bytes() => Some(d),
        _ => None,
    };
    let numel: usize = cut.ext.iter().product();
    let mut blocks = Blocks {
        count: 1,
        size: dims.first().copied().unwrap_or(1),
    };
    let mut parallel = false;
    if !cfg.checked && numel >= cfg.parallel_min_elements.max(2 * BLOCK_ELEMS) && !dims.is_empty() {
        let inner: usize = dims[1..].iter().product();
        let size = BLOCK_ELEMS.div_ceil(inner).max(1);
        let count = dims[0].div_ceil(size);
        let crosses: Vec<&Reduction> = reductions
            .iter()
            .filter(|r| r.out.strides[0] == 0)
            .collect();
        let partial_elems: usize = crosses.iter().map(|r| g.ty(r.node).numel() * count).sum();
        // The nest of one box of several fills and finishes its reduction outputs in place
        // (see `lower`), which blocks do not do: such nests with reductions stay serial.
        if count >= 2
            && partial_elems <= numel / 4
            && (!cfg.exact || crosses.is_empty())
            && (!cut.part || reductions.is_empty())
        {
            blocks = Blocks { count, size };
            parallel = true;
        }
    }
    Fused {
        math: members.iter().any(|&m| calls_math(g, m)),
        part: cut.part,
        shape: cut.ext.to_vec(),
        members: members.to_vec(),
        leaves,
        stores,
        reductions,
        dims,
        vector,
        blocks,
        parallel,
    }
}

fn const_of(g: &Graph, id: NodeId) -> &Arc<Tensor> {
    match &g.node(id).attrs {
        crate::ir::Attrs::Const(t) => t,
        _ => unreachable!("verified const nodes hold a tensor"),
    }
}

/// The common bits of every element, if all elements are bitwise equal.
pub(super) fn splat_bits(t: &Tensor) -> Option<u64> {
    fn all_same<T: Copy>(v: &[T], bits: impl Fn(T) -> u64) -> Option<u64> {
        let first = bits(*v.first()?);
        v.iter().all(|&x| bits(x) == first).then_some(first)
    }
    match t.data() {
        Data::F32(v) => all_same(v, |x| u64::from(x.to_bits())),
        Data::F64(v) => all_same(v, f64::to_bits),
        Data::Bool(v) => all_same(v, u64::from),
        Data::I32(v) => all_same(v, |x| u64::from(x as u32)),
    }
}

fn too_large() -> JitError {
    JitError::TooLarge {
        what: "workspace or constant data exceeds the address space".into(),
    }
}

fn align_up(x: usize, a: usize) -> Option<usize> {
    Some(x.checked_add(a - 1)? / a * a)
}

/// A bump allocator with a best-fit free list, over byte offsets.
#[derive(Default)]
struct Arena {
    top: usize,
    /// Free ranges below [`BIG_ALIGN`] bytes, by size / 8 (the common scalar case: no tree).
    small: [Vec<usize>; BIG_ALIGN / 8],
    /// Free ranges of [`BIG_ALIGN`] bytes or more, by size.
    free: BTreeMap<usize, Vec<usize>>,
    reused: u64,
}

/// The largest workspace we plan (offsets must fit Cranelift's signed 64-bit immediates with
/// room to spare).
const MAX_WS: usize = isize::MAX as usize / 2;

impl Arena {
    /// Allocates a range for `bytes` and returns `(offset, size)`; pass both to
    /// [`Arena::free`]. Sizes are rounded to 8 bytes (so f64 stays aligned), or to 64 bytes
    /// with 64-byte alignment for anything of a cache line or more.
    fn alloc(&mut self, bytes: usize) -> Result<(usize, usize), JitError> {
        let (size, align) = if bytes < BIG_ALIGN {
            (align_up(bytes.max(1), 8).ok_or(too_large())?, 8)
        } else {
            (align_up(bytes, BIG_ALIGN).ok_or(too_large())?, BIG_ALIGN)
        };
        // Best fit among free ranges of at most twice the size. A free range of size >= 64 is
        // 64-aligned, and one below 64 is 8-aligned, so any fit satisfies `align`.
        if size < BIG_ALIGN {
            let hi = (2 * size).min(BIG_ALIGN - 8);
            for s in (size..=hi).step_by(8) {
                if let Some(off) = self.small[s / 8].pop() {
                    self.reused += 1;
                    return Ok((off, s));
                }
            }
        } else {
            let fit = self
                .free
                .range(size..=size.saturating_mul(2))
                .next()
                .map(|(&s, _)| s);
            if let Some(s) = fit {
                let list = self.free.get_mut(&s).expect("key just found");
                let off = list.pop().expect("free lists are non-empty");
                if list.is_empty() {
                    self.free.remove(&s);
                }
                self.reused += 1;
                return Ok((off, s));
            }
        }
        let off = align_up(self.top, align).ok_or(too_large())?;
        let end = off.checked_add(size).ok_or(too_large())?;
        if end > MAX_WS {
            return Err(too_large());
        }
        self.top = end;
        Ok((off, size))
    }

    fn free(&mut self, off: usize, size: usize) {
        if size < BIG_ALIGN {
            self.small[size / 8].push(off);
        } else {
            self.free.entry(size).or_default().push(off);
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorType;

    fn cfg() -> PlanConfig {
        PlanConfig {
            max_ops_per_function: 100,
            parallel_min_elements: 1 << 16,
            exact: false,
            checked: false,
        }
    }

    #[test]
    fn a_chain_and_its_sum_are_one_group_with_nothing_stored() {
        let mut g = Graph::new("t");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![8]))
            .unwrap();
        let a = g.push(Op::Exp, vec![x], Attrs::None).unwrap();
        let b = g.push(Op::Mul, vec![a, x], Attrs::None).unwrap();
        let s = g
            .push(
                Op::ReduceSum,
                vec![b],
                Attrs::Reduce {
                    axes: vec![0],
                    keepdims: false,
                },
            )
            .unwrap();
        g.set_outputs(vec![s]);
        let p = plan(&g, &cfg()).unwrap();
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.ws_bytes, 0);
        assert_eq!(p.locs[a.index()], Loc::Unused);
        assert_eq!(p.locs[s.index()], Loc::Output(0));
        let Group::Fused(f) = &p.groups[0] else {
            panic!("fused group expected")
        };
        assert_eq!(f.vector, Some(DType::F32));
        assert_eq!(f.dims, vec![8]);
    }

    #[test]
    fn views_compose_and_a_reduction_result_starts_a_new_group() {
        // y = x - mean(x) over a transposed slice: slice and transpose are strides of x.
        let mut g = Graph::new("t");
        let x = g
            .add_input("x", TensorType::new(DType::F64, vec![4, 6]))
            .unwrap();
        let sl = g
            .push(
                Op::Slice,
                vec![x],
                Attrs::Slice {
                    start: vec![1, 0],
                    stop: vec![3, 6],
                },
            )
            .unwrap();
        let t = g
            .push(Op::Transpose, vec![sl], Attrs::Perm { perm: vec![1, 0] })
            .unwrap();
        let m = g
            .push(
                Op::ReduceMean,
                vec![t],
                Attrs::Reduce {
                    axes: vec![0, 1],
                    keepdims: false,
                },
            )
            .unwrap();
        let y = g.push(Op::Sub, vec![t, m], Attrs::None).unwrap();
        g.set_outputs(vec![y]);
        let p = plan(&g, &cfg()).unwrap();
        let v = p.views[t.index()].as_ref().unwrap();
        assert_eq!((v.root, v.offset, v.strides.clone()), (x, 6, vec![1, 6]));
        assert_eq!(p.groups.len(), 2, "{:?}", p.groups);
        assert_eq!(p.locs[m.index()], Loc::Ws(0));
    }

    /// The concat nodes that got a buffer of their own (singleton groups).
    fn copied_concats(g: &Graph, p: &Plan) -> usize {
        p.groups
            .iter()
            .filter(|grp| matches!(grp, Group::Single(id, _) if g.node(*id).op == Op::Concat))
            .count()
    }

    fn parts(p: &Plan) -> Vec<&Fused> {
        p.groups
            .iter()
            .filter_map(|grp| match grp {
                Group::Fused(f) if f.part => Some(f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_rosenbrock_adjoint_reads_its_zero_pads_in_place() {
        let n = 1000;
        let b = crate::GraphBuilder::new("rosenbrock");
        let x = b.input("x", DType::F64, &[n]);
        let hi = x.slice(&[1], &[n]);
        let lo = x.slice(&[0], &[n - 1]);
        let y = ((hi - lo * lo).powi(2) * 100.0 + (1.0 - lo).powi(2)).sum();
        let d = b.grad(y, &[x]).unwrap();
        let g = b.into_graph(&[y.id(), d[0].id()]).unwrap();
        let p = plan(&g, &cfg()).unwrap();
        assert_eq!(copied_concats(&g, &p), 0, "{:#?}", p.groups);
        // add(concat(0, a), concat(b, 0)) is one loop in three boxes: [0, 1), [1, 999),
        // [999, 1000), the middle one vectorized.
        let boxes: Vec<(Vec<usize>, Option<DType>)> = parts(&p)
            .iter()
            .map(|f| (f.shape.clone(), f.vector))
            .collect();
        assert_eq!(
            boxes,
            vec![
                (vec![1], None),
                (vec![n - 2], Some(DType::F64)),
                (vec![1], None)
            ]
        );
        // The only workspace: the two cotangents of the slices (999 f64 each, 64-aligned).
        assert_eq!(p.ws_bytes, 2 * 8000);
    }

    #[test]
    fn reductions_over_a_cut_axis_get_the_concat_in_memory() {
        let build = |axes: &[usize]| {
            let b = crate::GraphBuilder::new("t");
            let x = b.input("x", DType::F32, &[4, 6]);
            let c = b.concat(&[x, x * 2.0, x], 1);
            let s = (c * c).sum_axes(axes);
            let r = c.sum_axes(axes);
            b.into_graph(&[s.id(), r.id()]).unwrap()
        };
        // Summing rows keeps the cut axis: each box sums whole rows, with the pieces in place.
        let g = build(&[0]);
        let p = plan(&g, &cfg()).unwrap();
        assert_eq!(copied_concats(&g, &p), 0);
        let boxes = parts(&p);
        assert_eq!(boxes.len(), 3);
        assert!(boxes.iter().all(|f| f.reductions.len() == 2 && !f.parallel));
        // Summing along the cut axis needs the concat in memory for the reduction that reads
        // it; the elementwise reader still reads pieces, and its square is summed later.
        let g = build(&[1]);
        let p = plan(&g, &cfg()).unwrap();
        assert_eq!(copied_concats(&g, &p), 1);
    }

    #[test]
    fn outputs_and_concats_of_many_pieces_are_copied() {
        let b = crate::GraphBuilder::new("t");
        let x = b.input("x", DType::F64, &[40]);
        let ones: Vec<_> = (0..40).map(|i| x.slice(&[i], &[i + 1])).collect();
        let many = b.concat(&ones, 0);
        let y = many * x;
        let few = b.concat(&[x, x], 0);
        let z = few * 3.0;
        let g = b.into_graph(&[y.id(), z.id(), few.id()]).unwrap();
        let p = plan(&g, &cfg()).unwrap();
        // `many` cuts its reader into 40 boxes (more than MAX_BOXES); `few` is an output.
        assert_eq!(copied_concats(&g, &p), 2);
        assert!(parts(&p).is_empty());
    }

    #[test]
    fn best_fit_reuses_only_ranges_up_to_twice_the_size() {
        let mut a = Arena::default();
        let big = a.alloc(1000).unwrap();
        assert_eq!(big, (0, 1024));
        a.free(big.0, big.1);
        let small = a.alloc(100).unwrap();
        assert_eq!(small, (1024, 128));
        let again = a.alloc(600).unwrap();
        assert_eq!(again, big);
        assert_eq!(a.reused, 1);
    }
}
