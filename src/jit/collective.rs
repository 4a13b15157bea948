//! Collectives in compiled code: the communicator a call brings, and the `extern "C"`
//! trampoline that compiled code calls for each collective node.
//!
//! Each call of a kernel puts a pointer to a [`CommCtx`] (the call's communicator, the kernel's
//! table of collective nodes, the workspace's staging region and the first error) into the
//! last slot of the workspace's address table, after the input and output addresses. Each
//! collective node but `pvary` has a [`Desc`] in the kernel's table (its op, dtype, groups and
//! block sizes, made from the graph at compile time); compiled code names the node by its id,
//! and the trampoline `gradlift_collective(ctx, node, ptr, phase)` does the rest. A node is lowered
//! (`lower/collective.rs`) as:
//! - `all_reduce_sum`, `all_reduce_mean`, `collective_broadcast`: a copy of the operand into
//!   the node's home, then one call that combines the home in place;
//! - `num_ranks`, `axis_index`: one call that fills the home;
//! - `all_gather`, `reduce_scatter` (whose result has another size than their operand): a
//!   [`Phase::Stage`] call that returns the staging region, a copy of the operand into it,
//!   then one call that writes the result into the home.
//!
//! The staging region is part of the kernel's workspace, reserved past the plan's peak for
//! the largest staged node ([`reserve_stage`]): the operand, then the rank-major blocks the
//! communicator gathers into or sums from. Collectives run one after another on the calling
//! thread, so one region serves them all, and a call allocates nothing here. A collective over
//! one group listing every rank in rank order runs on the call's communicator; one over
//! smaller groups on the communicator's `split`, which [`crate::comm::ThreadComm`] hands out
//! as a new `Rc` per collective (MPI's is cached).
//!
//! `pvary` costs nothing: it is a view of its operand.
//!
//! Collective nodes are lowered in serial functions only, and a kernel whose collectives move
//! data runs its serial functions on the calling thread (it never hands the call to a pool
//! thread) unless the communicator has one rank, when collectives never call it, so the
//! communicator is called on the caller's thread, in graph order. MPI needs this (its
//! default threading level), and it keeps ranks that are threads from waiting for each other
//! inside a rayon pool with fewer threads than ranks.
#![allow(unsafe_code)]

use super::buf::{Buf, BufMut};
use super::plan::BIG_ALIGN;
use super::{CallError, JitError, Kernel, Workspace};
use crate::comm::{CommError, Communicator, locate};
use crate::ir::{DType, Graph, GroupParam, Groups, Op};
use crate::ops::collective::{group_attrs, is_collective};
use std::cell::RefCell;
use std::rc::Rc;

/// The trampoline's symbol.
pub(super) const SYMBOL: &str = "gradlift_collective";

/// The trampoline's argument count (all pointer-sized integers; it returns a pointer).
pub(super) const ARITY: usize = 4;

/// What a trampoline call does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Run the collective (the result goes to `ptr`).
    Run = 0,
    /// Return the staging region, for the operand of an `all_gather`/`reduce_scatter`.
    Stage = 1,
}

/// One collective node of a kernel.
#[derive(Clone, Debug)]
pub(super) struct Desc {
    node: u32,
    op: Op,
    dtype: DType,
    groups: Groups,
    /// Whether `groups` is the world, or one group listing every rank in rank order (the
    /// same ranks at the same positions): the call's communicator serves, with no split.
    whole: bool,
    /// `collective_broadcast`'s root.
    root: usize,
    /// The product of the dimensions before the axis (`all_gather`, `reduce_scatter`).
    outer: usize,
    /// Elements of the operand and of the result.
    len_in: usize,
    len_out: usize,
}

/// The collective nodes of `g` but `pvary`, in id order.
pub(super) fn descriptors(g: &Graph) -> Vec<Desc> {
    let mut out = Vec::new();
    for (i, n) in g.nodes().iter().enumerate() {
        if !is_collective(n.op) || n.op == Op::Pvary {
            continue;
        }
        let (groups, param) = group_attrs(n);
        let (root, axis) = match param {
            GroupParam::Root(r) => (r, 0),
            GroupParam::Axis(a) => (0, a),
            _ => (0, 0),
        };
        out.push(Desc {
            node: i as u32,
            op: n.op,
            dtype: n.ty.dtype,
            whole: match groups.lists() {
                [] => true,
                [one] => one.iter().enumerate().all(|(i, &r)| i == r),
                _ => false,
            },
            groups: groups.clone(),
            root,
            outer: n.ty.shape[..axis.min(n.ty.rank())].iter().product(),
            len_in: n.inputs.first().map_or(0, |&x| g.ty(x).numel()),
            len_out: n.ty.numel(),
        });
    }
    out
}

/// The bytes of the staging region of a kernel with collective nodes `descs`: the largest
/// of their [`Desc::stage_bytes`] (0 without `all_gather` or `reduce_scatter`).
pub(super) fn stage_bytes(descs: &[Desc]) -> usize {
    descs.iter().map(Desc::stage_bytes).max().unwrap_or(0)
}

/// Reserves the staging region of `g`'s collectives past the plan's peak `ws_bytes` (growing
/// it), like a donated input's copy: no planned value lives there, so the trampoline and the
/// copies into it touch nothing else. Returns its offset, `None` if `g` stages nothing.
///
/// # Errors
/// [`JitError::TooLarge`] if the workspace size overflows.
pub(super) fn reserve_stage(g: &Graph, ws_bytes: &mut usize) -> Result<Option<usize>, JitError> {
    let bytes = stage_bytes(&descriptors(g));
    if bytes == 0 {
        return Ok(None);
    }
    let off = ws_bytes.div_ceil(BIG_ALIGN) * BIG_ALIGN;
    *ws_bytes = off.checked_add(bytes).ok_or_else(|| JitError::TooLarge {
        what: "the workspace size overflows".into(),
    })?;
    Ok(Some(off))
}

impl Desc {
    /// Where the scratch of an `all_gather`/`reduce_scatter` starts in the staging region
    /// (bytes, after the operand, 64-byte aligned), and its element count: the rank-major
    /// blocks the communicator gathers into, or sends to be summed and scattered.
    fn scratch(&self) -> (usize, usize) {
        let at = (self.len_in * self.dtype.size_bytes()).div_ceil(BIG_ALIGN) * BIG_ALIGN;
        let len = if self.op == Op::AllGather {
            self.len_out
        } else {
            self.len_in
        };
        (at, len)
    }

    /// The staging bytes this node uses: its operand, then its scratch (0 for ops that
    /// combine in their home).
    fn stage_bytes(&self) -> usize {
        if matches!(self.op, Op::AllGather | Op::ReduceScatter) {
            let (at, len) = self.scratch();
            at + len * self.dtype.size_bytes()
        } else {
            0
        }
    }
}

/// What the trampoline reads for one kernel call.
pub(super) struct CommCtx<'a> {
    comm: &'a dyn Communicator,
    descs: &'a [Desc],
    /// `comm.size()`, asked on the calling thread.
    size: usize,
    /// The staging region of the call's workspace ([`reserve_stage`]; null if the kernel has
    /// none).
    stage: *mut u8,
    error: RefCell<Option<CommError>>,
}

impl<'a> CommCtx<'a> {
    /// The context of a call over `comm`; `stage` is the staging region of the call's
    /// workspace (at least [`stage_bytes`] of `descs`, 64-byte aligned, used by nothing but
    /// the collectives during the call), or null if that is 0.
    pub(super) fn new(
        comm: &'a dyn Communicator,
        descs: &'a [Desc],
        stage: *mut u8,
    ) -> CommCtx<'a> {
        CommCtx {
            comm,
            descs,
            size: comm.size(),
            stage,
            error: RefCell::new(None),
        }
    }

    /// The first error of the call, if any.
    pub(super) fn finish(self) -> Result<(), CallError> {
        match self.error.into_inner() {
            Some(e) => Err(CallError::Comm(e)),
            None => Ok(()),
        }
    }

    fn desc(&self, node: usize) -> &'a Desc {
        let at = self
            .descs
            .binary_search_by_key(&node, |d| d.node as usize)
            .expect("compiled code names a collective node of its kernel");
        &self.descs[at]
    }

    fn run(&self, d: &Desc, ptr: *mut u8) -> Result<(), CommError> {
        let place = locate(&d.groups, self.comm)?;
        if d.op == Op::NumRanks || d.op == Op::AxisIndex {
            let x = if d.op == Op::NumRanks {
                place.size
            } else {
                place.position
            };
            // SAFETY: see `collective`: `ptr` holds the scalar result.
            unsafe {
                match d.dtype {
                    DType::F64 => ptr.cast::<f64>().write(x as f64),
                    DType::F32 => ptr.cast::<f32>().write(x as f32),
                    _ => ptr.cast::<i32>().write(x as i32),
                }
            }
            return Ok(());
        }
        if d.op == Op::CollectiveBroadcast && d.root >= place.size {
            return Err(CommError::Groups(format!(
                "broadcast root {} is not a position in a group of {}",
                d.root, place.size
            )));
        }
        // Every rank splits (MPI's split is collective over the whole communicator), even
        // one alone in its group, which then needs no call; or none does (the same `whole`
        // on every rank, as every rank runs the same graph).
        let sub: Rc<dyn Communicator>;
        let c: Option<&dyn Communicator> = if self.size == 1 {
            None
        } else if d.whole {
            Some(self.comm)
        } else {
            sub = self.comm.split(&d.groups)?;
            (place.size > 1).then_some(&*sub)
        };
        if d.dtype == DType::F64 {
            // SAFETY: see `collective`: `ptr` holds the result, the staging region the
            // operand; the region is reserved past every planned value's range and is not a
            // caller's buffer, so it does not overlap the result.
            let (out, staged) = unsafe { (result::<f64>(d, ptr), staged::<f64>(d, self.stage)) };
            run_typed(d, c, place.size, out, staged, F64)
        } else {
            // SAFETY: as above.
            let (out, staged) = unsafe { (result::<f32>(d, ptr), staged::<f32>(d, self.stage)) };
            run_typed(d, c, place.size, out, staged, F32)
        }
    }
}

/// The result at `ptr`.
///
/// # Safety
/// `ptr` points to `d.len_out` elements of `T` that nothing else uses during the call.
unsafe fn result<'a, T>(d: &Desc, ptr: *mut u8) -> &'a mut [T] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(ptr.cast::<T>(), d.len_out) }
}

/// The staged operand of an `all_gather`/`reduce_scatter` and the node's scratch (both empty
/// for the other ops).
///
/// # Safety
/// For those ops, `stage` is the call's staging region (at least `d.stage_bytes()` bytes,
/// 64-byte aligned, which nothing else reads or writes during this trampoline call) and its
/// first `d.len_in` elements of `T` hold the operand.
unsafe fn staged<'s, T>(d: &Desc, stage: *mut u8) -> (&'s [T], &'s mut [T]) {
    if matches!(d.op, Op::AllGather | Op::ReduceScatter) {
        let (at, len) = d.scratch();
        // SAFETY: the caller's contract: the operand, `d.len_in` elements from the region's
        // start, and the scratch, `len` elements from `at` (past the operand, within
        // `d.stage_bytes()`), are disjoint ranges of the region, aligned (`at` is a multiple
        // of 64).
        unsafe {
            (
                std::slice::from_raw_parts(stage.cast::<T>(), d.len_in),
                std::slice::from_raw_parts_mut(stage.add(at).cast::<T>(), len),
            )
        }
    } else {
        (&[], &mut [])
    }
}

/// A communicator method from one buffer into another.
type Move<T> = fn(&dyn Communicator, &[T], &mut [T]) -> Result<(), CommError>;

/// The communicator's methods for one dtype.
struct Methods<T> {
    sum: fn(&dyn Communicator, &mut [T]) -> Result<(), CommError>,
    gather: Move<T>,
    scatter: Move<T>,
    bcast: fn(&dyn Communicator, &mut [T], usize) -> Result<(), CommError>,
    div: fn(&mut [T], usize),
}

const F32: Methods<f32> = Methods {
    sum: |c, b| c.all_reduce_sum_f32(b),
    gather: |c, s, r| c.all_gather_f32(s, r),
    scatter: |c, s, r| c.reduce_scatter_f32(s, r),
    bcast: |c, b, root| c.broadcast_f32(b, root),
    div: |v, p| v.iter_mut().for_each(|e| *e /= p as f32),
};

const F64: Methods<f64> = Methods {
    sum: |c, b| c.all_reduce_sum_f64(b),
    gather: |c, s, r| c.all_gather_f64(s, r),
    scatter: |c, s, r| c.reduce_scatter_f64(s, r),
    bcast: |c, b, root| c.broadcast_f64(b, root),
    div: |v, p| v.iter_mut().for_each(|e| *e /= p as f64),
};

/// One collective over `c` (`None`: a group of one rank, this one), `p` ranks; `staged` is
/// the operand and the scratch of an `all_gather`/`reduce_scatter` (see [`staged`]).
fn run_typed<T: Copy>(
    d: &Desc,
    c: Option<&dyn Communicator>,
    p: usize,
    out: &mut [T],
    (input, scratch): (&[T], &mut [T]),
    m: Methods<T>,
) -> Result<(), CommError> {
    match (d.op, c) {
        (Op::AllReduceSum | Op::AllReduceMean | Op::CollectiveBroadcast, None) => {}
        (Op::AllReduceSum, Some(c)) => (m.sum)(c, out)?,
        (Op::AllReduceMean, Some(c)) => {
            (m.sum)(c, out)?;
            (m.div)(out, p);
        }
        (Op::CollectiveBroadcast, Some(c)) => (m.bcast)(c, out, d.root)?,
        (Op::AllGather, c) => {
            let all = scratch;
            match c {
                Some(c) => (m.gather)(c, input, all)?,
                None => all.copy_from_slice(input),
            }
            // Rank-major blocks to blocks joined along the axis: per outer index, each rank's
            // run in group order.
            let run = input.len() / d.outer;
            let mut at = 0;
            for o in 0..d.outer {
                for r in 0..p {
                    let from = r * input.len() + o * run;
                    out[at..at + run].copy_from_slice(&all[from..from + run]);
                    at += run;
                }
            }
        }
        (Op::ReduceScatter, c) => {
            // Blocks along the axis to rank-major blocks.
            let run = out.len() / d.outer;
            let send = scratch;
            let mut at = 0;
            for r in 0..p {
                for o in 0..d.outer {
                    let from = (o * p + r) * run;
                    send[at..at + run].copy_from_slice(&input[from..from + run]);
                    at += run;
                }
            }
            match c {
                Some(c) => (m.scatter)(c, send, out)?,
                None => out.copy_from_slice(send),
            }
        }
        (op, _) => unreachable!("{op} is not a data collective"),
    }
    Ok(())
}

/// Runs phase `phase` of collective node `node` (see [`Phase`]) over the call's communicator.
/// A communicator error is kept in the context (later collectives of the call are skipped)
/// and returned by the call; a panic in the communicator is caught and kept as an error too
/// (unwinding must not cross into compiled code). Returns the staging region for
/// [`Phase::Stage`], null otherwise.
///
/// # Safety
/// `ctx` is the [`CommCtx`] of the running call (alive for the whole call, used by this
/// thread only), `node` a collective node of its kernel, and for [`Phase::Run`] `ptr` points
/// to the node's result (its dtype, aligned, with its element count) that nothing else reads
/// or writes during this call, after the operand was copied there (in-place ops) or to the
/// start of the staging region (`all_gather`, `reduce_scatter`), which nothing but this
/// node's copy and this call touches meanwhile.
unsafe extern "C" fn collective(
    ctx: *const u8,
    node: usize,
    ptr: *mut u8,
    phase: usize,
) -> *mut u8 {
    // SAFETY: the caller's contract; the kernel stored this pointer for the call.
    let ctx = unsafe { &*ctx.cast::<CommCtx<'_>>() };
    let d = ctx.desc(node);
    if phase == Phase::Stage as usize {
        debug_assert!(!ctx.stage.is_null() && d.stage_bytes() > 0);
        return ctx.stage;
    }
    if ctx.error.borrow().is_some() {
        return std::ptr::null_mut();
    }
    let run = std::panic::AssertUnwindSafe(|| ctx.run(d, ptr));
    let r = std::panic::catch_unwind(run)
        .unwrap_or_else(|_| Err(CommError::Transport("the communicator panicked".into())));
    if let Err(e) = r {
        *ctx.error.borrow_mut() = Some(e);
    }
    std::ptr::null_mut()
}

/// The trampoline's address, for the JIT's symbol table.
pub(super) fn symbol() -> (&'static str, *const u8) {
    type F = unsafe extern "C" fn(*const u8, usize, *mut u8, usize) -> *mut u8;
    (SYMBOL, collective as F as *const u8)
}

impl Kernel {
    /// [`Kernel::call`] as one rank of `comm`: the graph's collective nodes combine over its
    /// ranks (see [`crate::comm`]). Every rank calls
    /// the same kernel; [`Kernel::call`] is this with [`crate::comm::SingleProcess`].
    ///
    /// # Errors
    /// As [`Kernel::call`], and [`CallError::Comm`] if a collective failed.
    pub fn call_with_comm(
        &self,
        inputs: &[Buf<'_>],
        outputs: &mut [BufMut<'_>],
        ws: &mut Workspace,
        comm: &dyn Communicator,
    ) -> Result<(), CallError> {
        self.call_comm(inputs, outputs, ws, comm)
    }

    /// [`Kernel::call_iter`] as one rank of `comm` (see [`Kernel::call_with_comm`]).
    ///
    /// # Errors
    /// As [`Kernel::call_with_comm`].
    pub fn call_iter_with_comm<'a>(
        &self,
        inputs: impl IntoIterator<Item = Buf<'a>>,
        outputs: impl IntoIterator<Item = BufMut<'a>>,
        ws: &mut Workspace,
        comm: &dyn Communicator,
    ) -> Result<(), CallError> {
        self.call_iter_comm(inputs, outputs, ws, comm)
    }
}
