//! Phase 5: memory. Where every stored value lives: the caller's buffers, immediates for
//! splat constants, one constant blob, and workspace ranges from an [`Arena`] that a linear
//! scan over the groups reuses (best fit) and that elementwise members may take over from
//! operands dying in their group (in place), as may a GEMM epilogue from its initial value
//! and an all-reduce from its operand.

use super::{Access, BIG_ALIGN, Fused, Group, Loc, PlanConfig, PostCopy, Role};
use crate::ir::{Graph, NodeId, Op};
use crate::jit::JitError;
use crate::jit::layout::row_major_bytes;
use crate::tensor::{Data, Tensor};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The homes of the values.
pub(super) struct Memory {
    /// The home of each stored node's value.
    pub locs: Vec<Loc>,
    /// Outputs that are inputs or constants, copied after the compiled code ran.
    pub post: Vec<PostCopy>,
    /// The constant blob.
    pub consts: Vec<u8>,
    /// Workspace bytes needed.
    pub ws_bytes: usize,
    /// Workspace ranges reused.
    pub reused: u64,
    /// Stored members that took over an operand's range.
    pub in_place: u64,
}

/// Assigns homes to the values of `g`, and workspace to the partial results of `groups`.
///
/// # Errors
/// [`JitError::TooLarge`] if the workspace or the constant blob would exceed the address space.
pub(super) fn assign(
    g: &Graph,
    roles: &[Role],
    groups: &mut [Group],
    last_use: &[i64],
    cfg: &PlanConfig,
) -> Result<Memory, JitError> {
    let input_at = input_positions(g);
    let (mut locs, post) = caller_homes(g, &input_at);
    let consts = leaf_homes(g, roles, &input_at, &mut locs)?;
    let mut ws = Workspace {
        arena: Arena::default(),
        size: vec![0; g.len()],
        in_place: 0,
    };
    let mut dying: Vec<Vec<NodeId>> = vec![Vec::new(); groups.len()];
    for (i, &l) in last_use.iter().enumerate() {
        if l >= 0 {
            dying[l as usize].push(NodeId(i as u32));
        }
    }
    for (grp, dying) in groups.iter_mut().zip(&dying) {
        let mut taken: Vec<NodeId> = Vec::new();
        let mut temps: Vec<(usize, usize)> = Vec::new();
        match grp {
            Group::Matmul { acc: Some(a), .. } => {
                // The GEMM updates its initial value where it lies when that value dies here.
                let x = a.init;
                let own = dying.contains(&x)
                    && matches!(locs[x.index()], Loc::Ws(_))
                    && locs[a.out.index()] == Loc::Unused
                    && !cfg.checked;
                if own {
                    locs[a.out.index()] = locs[x.index()];
                    ws.size[a.out.index()] = ws.size[x.index()];
                    taken.push(x);
                    ws.in_place += 1;
                } else {
                    ws.home(g, a.out, &mut locs)?;
                }
            }
            Group::Node(node) if in_place_all_reduce(g, roles, *node, dying, &locs, cfg) => {
                // The all-reduce reduces its dying operand where it lies (a bucket's flat
                // buffer): no copy into a buffer of its own.
                let x = g.node(*node).inputs[0];
                locs[node.index()] = locs[x.index()];
                ws.size[node.index()] = ws.size[x.index()];
                taken.push(x);
                ws.in_place += 1;
            }
            Group::Matmul { node, .. } | Group::Node(node) | Group::Copy { node, .. } => {
                ws.home(g, *node, &mut locs)?;
            }
            Group::Loop(l) => {
                for &(m, _) in &l.members {
                    ws.home(g, m, &mut locs)?;
                }
                let (off, size) = ws.arena.alloc(l.layout.bytes)?;
                l.temps = off;
                temps.push((off, size));
            }
            Group::Fused(f) => {
                // A vector group with transcendentals may run twice (see `lower`), so it must
                // not overwrite its operands.
                let candidates = if cfg.checked || (f.math && f.vector.is_some() && !cfg.exact) {
                    Vec::new()
                } else {
                    in_place_candidates(f, dying, &locs, g.nodes())
                };
                ws.fused(g, f, &candidates, &mut taken, &mut temps, &mut locs)?;
            }
        }
        for &x in dying {
            if taken.contains(&x) || cfg.checked {
                continue;
            }
            if let Loc::Ws(off) = locs[x.index()] {
                ws.arena.free(off, ws.size[x.index()]);
            }
        }
        for (off, size) in temps {
            ws.arena.free(off, size);
        }
    }
    Ok(Memory {
        locs,
        post,
        consts,
        ws_bytes: ws.arena.top,
        reused: ws.arena.reused,
        in_place: ws.in_place,
    })
}

/// True if all-reduce `node` may reduce its operand in place: a value computed in the
/// workspace (stored whole, row-major) that dies in this group, the all-reduce not being an
/// output; never in checked mode (which inspects the operand after the node ran).
fn in_place_all_reduce(
    g: &Graph,
    roles: &[Role],
    node: NodeId,
    dying: &[NodeId],
    locs: &[Loc],
    cfg: &PlanConfig,
) -> bool {
    let n = g.node(node);
    if !matches!(n.op, Op::AllReduceSum | Op::AllReduceMean) || cfg.checked {
        return false;
    }
    let x = n.inputs[0];
    matches!(roles[x.index()], Role::Member(_) | Role::Single(_))
        && dying.contains(&x)
        && matches!(locs[x.index()], Loc::Ws(_))
        && locs[node.index()] == Loc::Unused
}

/// Homes in the caller's buffers: outputs computed by the kernel, and the copies of outputs
/// that are inputs or constants.
fn caller_homes(g: &Graph, input_at: &[Option<usize>]) -> (Vec<Loc>, Vec<PostCopy>) {
    let nodes = g.nodes();
    let mut locs = vec![Loc::Unused; g.len()];
    let mut post = Vec::new();
    for (k, &o) in g.outputs().iter().enumerate() {
        match nodes[o.index()].op {
            Op::Input => post.push(PostCopy::Input {
                out: k,
                input: input_at[o.index()].expect("input nodes are inputs"),
            }),
            Op::Const => post.push(PostCopy::Const {
                out: k,
                value: Arc::clone(const_of(g, o)),
            }),
            _ if locs[o.index()] == Loc::Unused => locs[o.index()] = Loc::Output(k),
            _ => unreachable!("verified graphs have distinct outputs"),
        }
    }
    (locs, post)
}

/// Per node: its position among the graph's inputs.
fn input_positions(g: &Graph) -> Vec<Option<usize>> {
    let mut at = vec![None; g.len()];
    for (k, id) in g.inputs().into_iter().enumerate() {
        at[id.index()] = Some(k);
    }
    at
}

/// Homes of the leaves: inputs in the caller's buffers, splat constants as immediates, other
/// constants in the returned blob.
fn leaf_homes(
    g: &Graph,
    roles: &[Role],
    input_at: &[Option<usize>],
    locs: &mut [Loc],
) -> Result<Vec<u8>, JitError> {
    let nodes = g.nodes();
    let mut consts: Vec<u8> = Vec::new();
    for i in 0..g.len() {
        if roles[i] != Role::Leaf {
            continue;
        }
        match nodes[i].op {
            Op::Input => locs[i] = Loc::Input(input_at[i].expect("input nodes are inputs")),
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
    Ok(consts)
}

/// True if live leaf `id` is a constant whose elements are bitwise equal ([`Loc::Splat`]).
pub(super) fn is_splat(g: &Graph, id: NodeId) -> bool {
    g.node(id).op == Op::Const && splat_bits(const_of(g, id)).is_some()
}

/// The workspace scan's state.
struct Workspace {
    arena: Arena,
    /// Per node: the size of its range (as allocated).
    size: Vec<usize>,
    in_place: u64,
}

impl Workspace {
    /// A fresh range for `id`, if it has no home yet.
    fn home(&mut self, g: &Graph, id: NodeId, locs: &mut [Loc]) -> Result<(), JitError> {
        if locs[id.index()] == Loc::Unused {
            let (off, size) = self.arena.alloc(bytes_of(g, id)?)?;
            locs[id.index()] = Loc::Ws(off);
            self.size[id.index()] = size;
        }
        Ok(())
    }

    /// Homes of the stored members and reductions of fused group `f`, in place where a
    /// candidate fits (the roots taken go to `taken`), and its partial results (their ranges go
    /// to `temps`, freed after the group).
    fn fused(
        &mut self,
        g: &Graph,
        f: &mut Fused,
        candidates: &[InPlace],
        taken: &mut Vec<NodeId>,
        temps: &mut Vec<(usize, usize)>,
        locs: &mut [Loc],
    ) -> Result<(), JitError> {
        let nodes = g.nodes();
        for &(m, _) in &f.stores {
            if locs[m.index()] != Loc::Unused {
                continue;
            }
            let need = bytes_of(g, m)?;
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
                self.size[m.index()] = self.size[c.root.index()];
                self.in_place += 1;
            } else {
                let (off, size) = self.arena.alloc(need)?;
                locs[m.index()] = Loc::Ws(off);
                self.size[m.index()] = size;
            }
        }
        for r in &mut f.reductions {
            let id = r.node;
            self.home(g, id, locs)?;
            if f.chunks.count > 1 && r.out.strides.first() == Some(&0) {
                let bytes = bytes_of(g, id)?
                    .checked_mul(f.chunks.count)
                    .ok_or(too_large())?;
                let (off, size) = self.arena.alloc(bytes)?;
                r.partials = Some(off);
                temps.push((off, size));
            }
        }
        Ok(())
    }
}

/// The bytes of node `id`'s value.
fn bytes_of(g: &Graph, id: NodeId) -> Result<usize, JitError> {
    let ty = g.ty(id);
    ty.numel()
        .checked_mul(ty.dtype.size_bytes())
        .ok_or(too_large())
}

/// An operand that a stored member of a fused group may overwrite.
struct InPlace {
    root: NodeId,
    bytes: usize,
    /// The last member reading it.
    last_reader: NodeId,
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
                a.offset == 0 && a.strides == row_major_bytes(&f.dims, size as usize)
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

pub(super) fn const_of(g: &Graph, id: NodeId) -> &Arc<Tensor> {
    match &g.node(id).attrs {
        crate::ir::Attrs::Const(t) => t,
        _ => unreachable!("verified const nodes hold a tensor"),
    }
}

/// The common bits of every element, if all elements are bitwise equal.
fn splat_bits(t: &Tensor) -> Option<u64> {
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
pub(super) struct Arena {
    top: usize,
    /// Free ranges below [`BIG_ALIGN`] bytes, by size / 8 (the common scalar case: no tree).
    small: [Vec<usize>; BIG_ALIGN / 8],
    /// Free ranges of [`BIG_ALIGN`] bytes or more, by size.
    free: BTreeMap<usize, Vec<usize>>,
    pub(super) reused: u64,
}

/// The largest workspace we plan (offsets must fit Cranelift's signed 64-bit immediates with
/// room to spare).
const MAX_WS: usize = isize::MAX as usize / 2;

impl Arena {
    /// Allocates a range for `bytes` and returns `(offset, size)`; pass both to
    /// [`Arena::free`]. Sizes are rounded to 8 bytes (so f64 stays aligned), or to 64 bytes
    /// with 64-byte alignment for anything of a cache line or more.
    pub(super) fn alloc(&mut self, bytes: usize) -> Result<(usize, usize), JitError> {
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

    pub(super) fn free(&mut self, off: usize, size: usize) {
        if size < BIG_ALIGN {
            self.small[size / 8].push(off);
        } else {
            self.free.entry(size).or_default().push(off);
        }
    }
}
