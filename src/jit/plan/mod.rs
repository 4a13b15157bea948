//! Compile-time planning: which nodes run together in one loop nest, where every value lives,
//! and which code goes into which function.
//!
//! [`plan_donating`] is a short driver calling one phase after another; each phase is a module whose
//! inputs and outputs are types:
//!
//! 1. [`live`]: a backward pass from the outputs marks the nodes whose values are needed; the
//!    rest get no code.
//! 2. [`pieces`]: which `concat`s are read in place, piece by piece, instead of being copied
//!    into a buffer of their own (see below).
//! 3. [`fuse`], the one home of the fusion rules. Views first: `reshape`, `broadcast`,
//!    `transpose` and `slice` get no code of their own. Each is a [`View`] of a stored value
//!    (a root, an element offset and element strides), composed through chains of views. A
//!    view is realized (copied into its own buffer) only when it is an output or when a
//!    reshape cannot be expressed with strides. `matmul` reads any view through its strides
//!    (the GEMM takes row and column strides), so the adjoint's transposed operands are never
//!    copied. Then groups: the nodes are clustered, in id order, into groups. A fused group is
//!    one loop nest over an iteration shape: elementwise nodes of that shape (with broadcast
//!    operands) and reductions whose operand has that shape. A node joins an existing group of
//!    its shape when every operand is either computed in that group's loop body (an
//!    elementwise member: its value is still in a register) or stored by an earlier group;
//!    otherwise it starts a group. Candidates are the groups of the node's operands and the
//!    latest group of the shape (so independent siblings such as `tanh(x)` and `sigmoid(x)`,
//!    or a forward value and its adjoint, share one pass over `x`). A reduction's value only
//!    exists after its loop, so its readers go to later groups. Groups run in creation order,
//!    and every group depends only on earlier ones. A member is stored only if it is an output
//!    or read outside its group (through a view, by another group, or by a non-fused node);
//!    values read by several consumers in one group stay in registers, and values read by
//!    other groups are materialized once (never recomputed: recomputing transcendentals costs
//!    more than the memory traffic it saves). Groups are capped at [`MAX_GROUP`] members,
//!    which bounds register pressure and compile time. `matmul` is a group of its own.
//!
//!    `concat` is a group of its own that copies its operands into its own buffer only when
//!    some reader needs it in memory: an output, a view op, a `matmul`, a reduction over an
//!    axis its pieces are cut along, or a concat that is itself copied (decided by
//!    [`pieces`], in one backward pass over the ids, from upper bounds of the cuts).
//!    Otherwise it is read in place ([`Role::Pieces`]): a list of [`Piece`]s, boxes of its
//!    index space each read through a view of one operand (nested concats are flattened; a
//!    splat piece, such as the zeros a slice adjoint pads with, is a view of a splat
//!    constant). A fused group that reads pieces cuts its iteration space at every piece
//!    boundary, along each axis, into at most [`MAX_BOXES`] boxes; [`nest`] makes one loop
//!    nest per box, in which every piece is a plain strided view. So
//!    `add(concat(0, a), concat(b, 0))` is one loop in three boxes and no concat buffer. A
//!    reduction joins such a group only if none of its reduced axes is cut, so each box
//!    computes whole output elements in the interpreter's order.
//!    Then [`epilogue`]: a `matmul` computed by the GEMM whose only reader adds it to a value
//!    the GEMM can update in place (an input donated to the sum, or a value read only by the
//!    sum) computes that sum itself ([`Accumulate`]); the sum leaves its fused group.
//! 4. [`nest`]: the loop nests, one per fused group, or per box of a group that reads pieces
//!    (its accesses start at the box's first index; a box of several with reductions fills
//!    and finishes only its own output elements and stays serial). The accesses of a nest
//!    (loads of operands, stores, reduction outputs) are collapsed to the fewest loop levels;
//!    the innermost one is vectorized when every float in the nest has one dtype. Nests of at
//!    least `JitConfig::parallel_min_elements` elements are cut into chunks along their
//!    outermost level (a fixed number of elements per chunk, independent of the machine),
//!    which threads may run concurrently. A reduction that sums across chunks writes one
//!    partial result per chunk, and a combine step folds them in chunk order, so results
//!    never depend on the number of threads. This phase also decides, once, whether a
//!    `matmul` calls the GEMM ([`Group::Matmul`]).
//! 5. [`memory`]: inputs stay in the caller's buffers, computed outputs are written straight
//!    into the caller's output buffers, constants whose elements are all bitwise equal become
//!    immediates ([`Loc::Splat`]) and other constants go into one constant blob. Every other
//!    stored value gets a workspace range, assigned by a linear scan over groups that reuses
//!    ranges of dead values (best fit, at most 2x the needed size). A stored elementwise
//!    member may take over the range of an operand that dies in its group (in place) when the
//!    group reads that operand only at the member's own index, and only in members up to
//!    that one (the loop body stores a value right after computing it); never in a group cut
//!    into boxes. Ranges of 64 bytes or more are 64-byte aligned. The peak is
//!    [`Plan::ws_bytes`].
//! 6. [`funcs`]: serial groups are packed into functions of at most `max_ops_per_function`
//!    nodes; a parallel group gets a function of its own taking a chunk range.
//!
//! A loop (the live `scan` nodes of one result group) is one group, [`Group::Loop`], planned by
//! [`loops`]: it reads its operands from memory, each contiguous (other views of them are
//! realized), writes its members' homes, takes a scratch block of the workspace for its
//! duration (carry buffers, the body's workspace), and is a step with no function
//! ([`Func::Loop`]) that the kernel runs around the body's own compiled kernel.
//!
//! Outputs that are inputs or constants are copied into their output buffers by the kernel
//! (in Rust) after the compiled functions ran ([`PostCopy`]).
//!
//! Deliberately absent: anything Cranelift-specific, and recomputation of values read by
//! several groups.

mod epilogue;
mod funcs;
mod fuse;
mod live;
mod loops;
mod memory;
mod nest;
mod pieces;
#[cfg(test)]
mod tests;

use super::JitError;
pub(super) use super::layout::View;
use crate::ir::{DType, Graph, NodeId, Op};
use crate::tensor::Tensor;
pub(super) use loops::{BodySizes, LoopLayout, LoopStep, RecomputeLayout, body_key};
use std::sync::Arc;

/// Alignment of large workspace and constant buffers (one cache line).
pub(super) const BIG_ALIGN: usize = 64;

/// The most members of one fused group.
pub(super) const MAX_GROUP: usize = 64;

/// Elements per chunk of a parallel group (a multiple of every vector width times unroll):
/// small enough to split the MLP's 64×256 activations in two, large enough that a chunk's
/// work (a few microseconds) dwarfs claiming it.
pub(super) const CHUNK_ELEMS: usize = 1 << 13;

/// The most boxes a fused group's iteration space may be cut into by the pieces it reads (see
/// [`Piece`]); also the most boxes of one `concat` read in place.
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

/// One rectangular part of a `concat` read in place ([`Role::Pieces`]): the elements whose
/// multi-index `i` (in the concat's own coordinates) has `lo <= i < hi` on every axis are read
/// through `view`, whose offset is relative to index 0 of the concat (so it may be negative
/// for a part that does not start at 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Piece {
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
    /// A `concat` whose readers read its operands in place, part by part (its [`Piece`]s);
    /// no code and no memory.
    Pieces,
    /// Computed in fused group `g`.
    Member(u32),
    /// The only node of group `g` (matmul, concat, or a realized view), or one of the live
    /// nodes of a loop group.
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
    /// Workspace byte offset of the per-chunk partial results, when the group is cut into
    /// chunks along a dimension this reduction sums over.
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
    /// Chunks along `dims[0]`: how many, and how many rows (or elements, for a one-dimensional
    /// nest) each holds. `count == 1` for serial groups.
    pub chunks: Chunks,
    /// True if the chunks may run on several threads.
    pub parallel: bool,
    /// Some member's lowering calls a math function (a transcendental).
    pub math: bool,
    /// The nest covers one box of its group's iteration space, not all of it (the group reads
    /// a `concat` in place; see [`Piece`]). Accesses then start at the box's first index.
    pub part: bool,
}

/// The cut of a group along its outermost loop dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Chunks {
    /// Number of chunks.
    pub count: usize,
    /// Extent of `dims[0]` per chunk (the last chunk may be shorter).
    pub size: usize,
}

/// A group: what one step of the schedule computes. Each variant is a decision the plan made
/// once; lowering reads it.
#[derive(Clone, Debug)]
pub(super) enum Group {
    /// A fused loop nest.
    Fused(Fused),
    /// A `matmul`: a GEMM call per batch entry (`gemm`, see [`nest`]) or a loop nest
    /// accumulating in the interpreter's order.
    Matmul {
        /// The matmul node.
        node: NodeId,
        /// Computed by the GEMM wrapper.
        gemm: bool,
        /// The elementwise node the GEMM computes instead of the product alone (only with
        /// `gemm`; see [`epilogue`]).
        acc: Option<Accumulate>,
    },
    /// A node with a lowering of its own, dispatched on its op (a `concat` kept in memory).
    Node(NodeId),
    /// A realized view: `node`'s elements copied from `from` into its own buffer.
    Copy {
        /// The view node.
        node: NodeId,
        /// The view it copies from.
        from: View,
    },
    /// A loop (a group of `scan` nodes), run by the kernel around its compiled body.
    Loop(LoopStep),
}

impl Group {
    /// The first node the group computes.
    pub(super) fn first_node(&self) -> NodeId {
        match self {
            Group::Fused(f) => f.members[0],
            Group::Matmul { node, .. } | Group::Node(node) | Group::Copy { node, .. } => *node,
            Group::Loop(l) => l.node,
        }
    }
}

/// A GEMM epilogue ([`epilogue`]): the matmul's group computes `out = alpha·init +
/// beta·(x·y)` straight into `out`'s home, which first receives `init`'s values (no copy when
/// it is `init`'s own memory), instead of storing the product and adding it in a later pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Accumulate {
    /// The elementwise node computed (an `add` or `sub` of the product and `init`).
    pub out: NodeId,
    /// The value the destination starts from: same type as `out`, read whole (an input or a
    /// stored value).
    pub init: NodeId,
    /// Its factor: ±1, or ± the constant of an absorbed `mul(init, c)`.
    pub alpha: f64,
    /// The product's factor: ±1.
    pub beta: f64,
    /// A `mul(init, c)` computed by the epilogue instead of its own group (its only reader
    /// was `out`): it gets no code and no memory.
    pub scaled: Option<NodeId>,
}

/// A step of a serial function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Item {
    /// Run group `g` (serial).
    Run(u32),
    /// Fold the per-chunk partial results of parallel group `g`.
    Combine(u32),
}

/// One compiled function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Func {
    /// `fn(inputs, outputs, ws, consts)` running these items in order.
    Serial(Vec<Item>),
    /// `fn(inputs, outputs, ws, consts, lo, hi)` running chunks `lo..hi` of group `g`.
    Chunks(u32),
    /// No compiled function: the kernel runs loop group `g` (a [`Group::Loop`]).
    Loop(u32),
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
    pub gemm_epilogues: u64,
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
    /// Keep the backward part's elementwise work out of the forward part's fused groups
    /// (see [`crate::opt::remat::backward_part`]): computing `1 - h²` in `h`'s forward loop
    /// stores a second value per layer until the backward pass. A memory-budget choice.
    pub keep_backward_apart: bool,
    /// The most snapshots a recomputing loop may keep (its own count if smaller; `None`: its
    /// own). A memory-budget choice.
    pub max_snapshots: Option<usize>,
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

/// Plans `g` (already verified), whose loop bodies compiled to kernels needing `bodies`
/// bytes of workspace.
///
/// # Errors
/// [`JitError::TooLarge`] if the workspace or the constant blob would exceed the address space.
#[cfg(test)]
pub(super) fn plan(g: &Graph, cfg: &PlanConfig, bodies: &BodySizes) -> Result<Plan, JitError> {
    plan_donating(g, cfg, bodies, &[])
}

/// Plans `g` (already verified), whose loop bodies compiled to kernels needing `bodies`
/// bytes of workspace, for a kernel whose donated pairs are `donated` (input index, output
/// index): a GEMM may then update a donated input in place as its output ([`epilogue`]).
///
/// # Errors
/// [`JitError::TooLarge`] if the workspace or the constant blob would exceed the address space.
pub(super) fn plan_donating(
    g: &Graph,
    cfg: &PlanConfig,
    bodies: &BodySizes,
    donated: &[(usize, usize)],
) -> Result<Plan, JitError> {
    let live = live::analyze(g);
    let piecewise = pieces::choose(g, &live, cfg.checked);
    let fusion = fuse::group(g, &live, &piecewise, cfg, donated);
    let nests = nest::shape(g, fusion, cfg, bodies)?;
    let mut groups = nests.groups;
    let memory = memory::assign(g, &nests.roles, &mut groups, &nests.last_use, cfg)?;
    let funcs = funcs::pack(&groups, cfg);
    let stats = PlanStats {
        nodes_compiled: nests.nodes_compiled,
        nodes_dead: live.dead(g),
        nodes_fused: nests.nodes_fused,
        views: nests
            .roles
            .iter()
            .filter(|r| matches!(r, Role::View | Role::Pieces))
            .count() as u64,
        buffers_reused: memory.reused,
        buffers_in_place: memory.in_place,
        groups: groups.len() as u64,
        groups_parallel: funcs
            .iter()
            .filter(|f| matches!(f, Func::Chunks(_)))
            .count() as u64,
        matmuls_gemm: groups
            .iter()
            .filter(|grp| matches!(grp, Group::Matmul { gemm: true, .. }))
            .count() as u64,
        gemm_epilogues: groups
            .iter()
            .filter(|grp| matches!(grp, Group::Matmul { acc: Some(_), .. }))
            .count() as u64,
    };
    Ok(Plan {
        locs: memory.locs,
        views: nests.views,
        groups,
        funcs,
        ws_bytes: memory.ws_bytes,
        consts: memory.consts,
        post: memory.post,
        stats,
    })
}
