//! Compile-time planning: where every value lives, and which nodes go into which function.
//!
//! Phases:
//! 1. Liveness: a backward pass from the outputs marks the nodes whose values are needed; the
//!    rest get no code. For each live node, its last reader is recorded.
//! 2. Homes: inputs stay in the caller's input buffers, computed outputs are written straight
//!    into the caller's output buffers, constants whose elements are all bitwise equal become
//!    immediates ([`Loc::Splat`]) and other constants go into one constant blob. Every other
//!    value gets a byte range of the workspace, assigned by a linear scan in node order that
//!    reuses the range of a value after its last reader (best fit, at most 2x the needed size).
//!    A node never shares memory with its own operands, so no lowering has to care about
//!    aliasing.
//! 3. Splitting: the nodes that need code are cut into chunks of at most
//!    `max_ops_per_function`, one Cranelift function each.
//!
//! Outputs that are inputs or constants are copied into their output buffers by the kernel
//! (in Rust) after the compiled functions ran ([`PostCopy`]).
//!
//! Deliberately absent: anything Cranelift-specific, and any reordering of nodes (the order is
//! the graph's id order, which the interpreter uses too).

use super::JitError;
use crate::ir::{Graph, NodeId, Op};
use crate::tensor::{Data, Tensor};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Alignment of large workspace and constant buffers (one cache line).
pub(super) const BIG_ALIGN: usize = 64;

/// Where a value lives while the kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Loc {
    /// The value is never read: no code, no memory.
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

/// The layout of a compiled graph.
#[derive(Debug)]
pub(super) struct Plan {
    /// The home of each node's value.
    pub locs: Vec<Loc>,
    /// The nodes that need code, in id order.
    pub steps: Vec<NodeId>,
    /// `steps` cut into function-sized ranges.
    pub chunks: Vec<std::ops::Range<usize>>,
    /// Workspace bytes needed.
    pub ws_bytes: usize,
    /// The constant blob (native-endian element bytes, bool as 0/1).
    pub consts: Vec<u8>,
    /// Copies done after the compiled code.
    pub post: Vec<PostCopy>,
    /// Number of workspace values whose range was reused from a dead value.
    pub buffers_reused: u64,
    /// Number of non-leaf nodes that get no code (no output depends on them).
    pub nodes_dead: u64,
}

/// Plans `g` (already verified). With `reuse` false, no workspace range is ever reused (every
/// value stays readable after the code ran: the JIT's checked mode).
///
/// # Errors
/// [`JitError::TooLarge`] if the workspace or the constant blob would exceed the address space.
pub(super) fn plan(g: &Graph, max_ops_per_function: usize, reuse: bool) -> Result<Plan, JitError> {
    let n = g.len();
    let nodes = g.nodes();

    // Phase 1: liveness and last readers.
    let mut live = vec![false; n];
    for o in g.outputs() {
        live[o.index()] = true;
    }
    let mut last_use = vec![0usize; n];
    for i in (0..n).rev() {
        if !live[i] {
            continue;
        }
        for x in &nodes[i].inputs {
            live[x.index()] = true;
            last_use[x.index()] = last_use[x.index()].max(i);
        }
    }

    // Phase 2: homes.
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
        let node = &nodes[o.index()];
        match node.op {
            Op::Input => post.push(PostCopy::Input {
                out: k,
                input: input_index[o.index()].expect("input nodes are inputs"),
            }),
            Op::Const => post.push(PostCopy::Const {
                out: k,
                value: Arc::clone(const_of(g, o)),
            }),
            _ if locs[o.index()] == Loc::Unused => locs[o.index()] = Loc::Output(k),
            // A value listed twice (the verifier rejects this): copy from the first home.
            _ => unreachable!("verified graphs have distinct outputs"),
        }
    }
    let read_by_code: Vec<bool> = {
        let mut v = vec![false; n];
        for node in nodes {
            if live_code(node.op) {
                for x in &node.inputs {
                    v[x.index()] = true;
                }
            }
        }
        v
    };
    let mut consts: Vec<u8> = Vec::new();
    let mut ws = Arena::default();
    let mut ws_size = vec![0usize; n];
    let mut steps = Vec::new();
    for i in 0..n {
        if !live[i] {
            continue;
        }
        let node = &nodes[i];
        match node.op {
            Op::Input => locs[i] = Loc::Input(input_index[i].expect("input nodes are inputs")),
            Op::Const => {
                if read_by_code[i] {
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
            _ => {
                steps.push(NodeId(i as u32));
                if locs[i] == Loc::Unused {
                    let bytes = node
                        .ty
                        .numel()
                        .checked_mul(node.ty.dtype.size_bytes())
                        .ok_or(too_large())?;
                    let (off, size) = ws.alloc(bytes)?;
                    locs[i] = Loc::Ws(off);
                    ws_size[i] = size;
                }
                // Free the operands read for the last time here (after allocating this node's
                // own range, so a node never overwrites its operands).
                for (k, x) in node.inputs.iter().enumerate() {
                    if reuse
                        && last_use[x.index()] == i
                        && !node.inputs[..k].contains(x)
                        && let Loc::Ws(off) = locs[x.index()]
                    {
                        ws.free(off, ws_size[x.index()]);
                    }
                }
            }
        }
    }
    // A value nobody reads (only possible for computed outputs, which are not in the
    // workspace) needs no freeing.

    // Phase 3: splitting.
    let per = max_ops_per_function.max(1);
    let chunks = (0..steps.len())
        .step_by(per)
        .map(|s| s..(s + per).min(steps.len()))
        .collect();
    Ok(Plan {
        locs,
        steps,
        chunks,
        ws_bytes: ws.top,
        consts,
        post,
        buffers_reused: ws.reused,
        nodes_dead: (0..n)
            .filter(|&i| !live[i] && live_code(nodes[i].op))
            .count() as u64,
    })
}

/// True for ops that get code (everything but the leaves).
fn live_code(op: Op) -> bool {
    !matches!(op, Op::Input | Op::Const)
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
    use crate::ir::{Attrs, DType, TensorType};

    fn scalar_chain(len: usize) -> Graph {
        let mut g = Graph::new("chain");
        let x = g.add_input("x", TensorType::scalar(DType::F64)).unwrap();
        let mut v = x;
        for _ in 0..len {
            v = g.push(Op::Sin, vec![v], Attrs::None).unwrap();
        }
        g.set_outputs(vec![v]);
        g
    }

    #[test]
    fn a_chain_reuses_two_slots() {
        let g = scalar_chain(100);
        let p = plan(&g, 30, true).unwrap();
        // Each value dies when its successor is computed, so two 8-byte slots suffice.
        assert_eq!(p.ws_bytes, 16);
        assert_eq!(p.steps.len(), 100);
        assert_eq!(p.chunks, vec![0..30, 30..60, 60..90, 90..100]);
        assert_eq!(p.locs[100], Loc::Output(0));
        assert_eq!(p.locs[0], Loc::Input(0));
    }

    #[test]
    fn dead_nodes_get_no_code_and_a_node_never_shares_its_operands_memory() {
        let mut g = Graph::new("t");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![4]))
            .unwrap();
        let dead = g.push(Op::Exp, vec![x], Attrs::None).unwrap();
        let a = g.push(Op::Neg, vec![x], Attrs::None).unwrap();
        let b = g.push(Op::Abs, vec![a], Attrs::None).unwrap();
        let c = g.push(Op::Mul, vec![b, b], Attrs::None).unwrap();
        g.set_outputs(vec![c]);
        let p = plan(&g, 100, true).unwrap();
        assert_eq!(p.locs[dead.index()], Loc::Unused);
        assert_eq!(p.steps, vec![a, b, c]);
        let (Loc::Ws(oa), Loc::Ws(ob)) = (p.locs[a.index()], p.locs[b.index()]) else {
            panic!("workspace homes expected: {:?}", p.locs)
        };
        assert_ne!(oa, ob);
        assert_eq!(p.locs[c.index()], Loc::Output(0));
    }

    #[test]
    fn splat_constants_become_immediates_and_others_go_to_the_blob() {
        let mut g = Graph::new("t");
        let x = g
            .add_input("x", TensorType::new(DType::F64, vec![2]))
            .unwrap();
        let s = g.add_const(Tensor::from_f64(vec![2], vec![-0.0, -0.0]));
        let c = g.add_const(Tensor::from_f64(vec![2], vec![1.0, 2.0]));
        let y = g.push(Op::Add, vec![x, s], Attrs::None).unwrap();
        let z = g.push(Op::Add, vec![y, c], Attrs::None).unwrap();
        g.set_outputs(vec![z, c, x]);
        let p = plan(&g, 100, true).unwrap();
        assert_eq!(p.locs[s.index()], Loc::Splat((-0.0f64).to_bits()));
        assert_eq!(p.locs[c.index()], Loc::Const(0));
        assert_eq!(p.consts.len(), 16);
        assert_eq!(p.post.len(), 2);
    }

    #[test]
    fn best_fit_reuses_only_ranges_up_to_twice_the_size() {
        let mut a = Arena::default();
        let big = a.alloc(1000).unwrap();
        assert_eq!(big, (0, 1024));
        a.free(big.0, big.1);
        // 100 bytes would waste more than half of the 1024-byte range: fresh allocation.
        let small = a.alloc(100).unwrap();
        assert_eq!(small, (1024, 128));
        let again = a.alloc(600).unwrap();
        assert_eq!(again, big);
        assert_eq!(a.reused, 1);
        // Small ranges: an 8-byte value may take a free 16-byte range, but not a 24-byte one.
        let (o24, s24) = a.alloc(20).unwrap();
        assert_eq!(s24, 24);
        a.free(o24, s24);
        assert_ne!(a.alloc(8).unwrap().0, o24);
        assert_eq!(a.alloc(12).unwrap(), (o24, 24));
    }
}
