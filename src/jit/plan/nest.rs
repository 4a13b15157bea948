//! Phase 4: loop nests and chunks. One nest per fused group, or per box of a group that reads
//! pieces; each access collapsed to the fewest loop dimensions; the innermost dimension
//! vectorized when every float has one dtype; large nests cut into chunks that threads may run.
//! Also decides, once, how each `matmul` is computed ([`Group::Matmul`]).

use super::fuse::{Cuts, Fusion};
use super::memory::is_splat;
use super::{
    Access, BodySizes, CHUNK_ELEMS, Chunks, Fused, Group, Piece, PlanConfig, Reduction, Role, View,
    box_count, is_elementwise, is_reduction,
};
use crate::ir::{Attrs, DType, Graph, NodeId, Op};
use crate::jit::JitError;
use crate::jit::layout::{broadcast, collapse, matrix_strides, row_major};

/// The groups as loop nests, and what the later phases need of the fusion.
pub(super) struct Nests {
    /// The groups in execution order (a group cut into boxes is one [`Group::Fused`] per box).
    pub groups: Vec<Group>,
    /// What each node is (see [`Fusion::roles`]).
    pub roles: Vec<Role>,
    /// How each node read from memory is read.
    pub views: Vec<Option<View>>,
    /// Per node: the last group (numbered as [`Nests::groups`]) reading it (-1: none).
    pub last_use: Vec<i64>,
    /// Nodes in groups.
    pub nodes_compiled: u64,
    /// Fused members neither stored nor reductions (the last box of each fused group).
    pub nodes_fused: u64,
}

/// Turns the groups of `fusion` into nests (a loop's scratch block sized for its body's
/// workspace, `bodies`).
///
/// # Errors
/// [`JitError::TooLarge`] if a loop's scratch block overflows.
pub(super) fn shape(
    g: &Graph,
    mut fusion: Fusion,
    cfg: &PlanConfig,
    bodies: &BodySizes,
) -> Result<Nests, JitError> {
    let mut groups: Vec<Group> = Vec::with_capacity(fusion.shapes.len());
    let mut last_nest: Vec<u32> = Vec::with_capacity(fusion.shapes.len());
    let mut nodes_fused = 0u64;
    let views = fusion.views.clone();
    let view_of = |x: NodeId| {
        views[x.index()]
            .clone()
            .expect("plan invariant: matmul operands have views")
    };
    for (gi, shape) in fusion.shapes.iter().enumerate() {
        if fusion.members[gi].is_empty() {
            // A fused group whose members all went into GEMM epilogues: no nest, and no
            // reader (a group reads only earlier groups' values).
            last_nest.push(groups.len().saturating_sub(1) as u32);
            continue;
        }
        let Some(shape) = shape else {
            let node = fusion.members[gi][0];
            groups.push(match fusion.realized.remove(&node.0) {
                Some(from) => Group::Copy { node, from },
                None if g.node(node).op == Op::Matmul => Group::Matmul {
                    node,
                    gemm: gemm(g, &view_of, node, cfg.exact),
                    acc: fusion.accumulate[gi],
                },
                None if g.node(node).op == Op::Scan => Group::Loop(super::loops::step(
                    g,
                    &fusion.members[gi],
                    bodies,
                    cfg.max_snapshots,
                )?),
                None => Group::Node(node),
            });
            last_nest.push(groups.len() as u32 - 1);
            continue;
        };
        let gi = gi as u32;
        match &fusion.cuts[gi as usize] {
            None => {
                let cut = Cut {
                    lo: &vec![0; shape.len()],
                    ext: shape,
                    part: false,
                };
                groups.push(Group::Fused(fused_nest(g, &fusion, gi, shape, cut, cfg)));
            }
            Some(c) => {
                let part = box_count(c) > 1;
                for (lo, ext) in boxes(shape, c) {
                    let cut = Cut {
                        lo: &lo,
                        ext: &ext,
                        part,
                    };
                    groups.push(Group::Fused(fused_nest(g, &fusion, gi, shape, cut, cfg)));
                }
            }
        }
        if let Some(Group::Fused(f)) = groups.last() {
            nodes_fused += (f.members.len() - f.stores.len() - f.reductions.len()) as u64;
        }
        last_nest.push(groups.len() as u32 - 1);
    }
    let mut last_use = fusion.last_use;
    for l in &mut last_use {
        if *l >= 0 {
            *l = i64::from(last_nest[*l as usize]);
        }
    }
    Ok(Nests {
        groups,
        roles: fusion.roles,
        views: fusion.views,
        last_use,
        nodes_compiled: fusion.members.iter().map(|m| m.len() as u64).sum(),
        nodes_fused,
    })
}

/// The boxes that cut positions `c` make of an iteration space of `shape`, as (first index,
/// extent) in row-major order of their intervals.
fn boxes(shape: &[usize], c: &Cuts) -> Vec<(Vec<usize>, Vec<usize>)> {
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
    let mut out = Vec::new();
    let mut at = vec![0usize; shape.len()];
    loop {
        let lo: Vec<usize> = at.iter().zip(&bounds).map(|(&k, b)| b[k]).collect();
        let ext: Vec<usize> = at
            .iter()
            .zip(&bounds)
            .map(|(&k, b)| b[k + 1] - b[k])
            .collect();
        out.push((lo, ext));
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
            return out;
        }
    }
}

/// True if matmul `id` is computed by the GEMM wrapper: not in `exact` mode (the GEMM sums
/// in another order than the interpreter), large enough ([`crate::jit::gemm::use_gemm`]), and
/// both operands in memory (a splat constant has none to point at) with nonzero matrix strides
/// (a row or column broadcast by a view: not a layout to hand to the GEMM), each operand read
/// through `view_of` it. Other matmuls use the loop nest, which reads any view.
pub(super) fn gemm(g: &Graph, view_of: &dyn Fn(NodeId) -> View, id: NodeId, exact: bool) -> bool {
    let node = g.node(id);
    let xt = g.ty(node.inputs[0]);
    let (m, k) = (xt.shape[xt.rank() - 2], xt.shape[xt.rank() - 1]);
    let n = *node.ty.shape.last().expect("matmul output has rank >= 2");
    !exact
        && crate::jit::gemm::use_gemm(m, k, n)
        && node.inputs.iter().all(|&x| {
            let v = view_of(x);
            let (rs, cs) = matrix_strides(g, x, &v);
            !is_splat(g, v.root) && rs != 0 && cs != 0
        })
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

/// The view through which piecewise value `x` (pieces `regs`) is read in the box starting at
/// `lo` of an iteration space of `shape`: the piece holding that box (the box lies inside
/// one piece, since the group's cuts include every piece boundary).
fn piece_at<'r>(xs: &[usize], regs: &'r [Piece], shape: &[usize], lo: &[usize]) -> &'r View {
    let off = shape.len() - xs.len();
    let at: Vec<usize> = (0..xs.len())
        .map(|a| if xs[a] == 1 { 0 } else { lo[a + off] })
        .collect();
    &regs
        .iter()
        .find(|r| (0..xs.len()).all(|a| r.lo[a] <= at[a] && at[a] < r.hi[a]))
        .expect("plan invariant: the pieces of a concat cover it")
        .view
}

/// Builds the loop nest of fused group `gi` over the box `cut` of its iteration `shape`.
fn fused_nest(
    g: &Graph,
    fusion: &Fusion,
    gi: u32,
    shape: &[usize],
    cut: Cut<'_>,
    cfg: &PlanConfig,
) -> Fused {
    let (roles, views, pieces, stored) =
        (&fusion.roles, &fusion.views, &fusion.pieces, &fusion.stored);
    let members = &fusion.members[gi as usize];
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
                Some(regs) => piece_at(xs, regs, shape, cut.lo),
                None => views[x.index()]
                    .as_ref()
                    .expect("operands read from memory have views"),
            };
            let size = g.ty(x).dtype.size_bytes() as i64;
            let st = broadcast(xs, &v.strides, shape);
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
            let ks = row_major(&kept_shape);
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
            let st = row_major(shape);
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
    let (chunks, parallel) = blocks(g, &dims, &reductions, cut, cfg);
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
        chunks,
        parallel,
    }
}

/// How the nest over `dims` (a box `cut`) with `reductions` is cut into chunks, and whether
/// they may run in parallel: nests of at least `parallel_min_elements` (and two chunks)
/// elements, unless the partial results of reductions across chunks would be large, or
/// `exact` forbids reassociating them, or the nest is one box of several with reductions.
fn blocks(
    g: &Graph,
    dims: &[usize],
    reductions: &[Reduction],
    cut: Cut<'_>,
    cfg: &PlanConfig,
) -> (Chunks, bool) {
    let numel: usize = cut.ext.iter().product();
    let mut chunks = Chunks {
        count: 1,
        size: dims.first().copied().unwrap_or(1),
    };
    let mut parallel = false;
    if !cfg.checked && numel >= cfg.parallel_min_elements.max(2 * CHUNK_ELEMS) && !dims.is_empty() {
        let inner: usize = dims[1..].iter().product();
        let size = CHUNK_ELEMS.div_ceil(inner).max(1);
        let count = dims[0].div_ceil(size);
        let crosses: Vec<&Reduction> = reductions
            .iter()
            .filter(|r| r.out.strides[0] == 0)
            .collect();
        let partial_elems: usize = crosses.iter().map(|r| g.ty(r.node).numel() * count).sum();
        // The nest of one box of several fills and finishes its reduction outputs in place
        // (see `lower`), which chunks do not do: such nests with reductions stay serial.
        if count >= 2
            && partial_elems <= numel / 4
            && (!cfg.exact || crosses.is_empty())
            && (!cut.part || reductions.is_empty())
        {
            chunks = Chunks { count, size };
            parallel = true;
        }
    }
    (chunks, parallel)
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
