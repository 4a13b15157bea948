//! Collectives in compiled code: the communicator a call brings, and the `extern "C"`
//! trampoline that compiled code calls for each `all_reduce_sum`/`all_reduce_mean` node.
//!
//! Each call of a kernel puts a pointer to a [`CommCtx`] (the call's communicator and the first
//! error it returned) into the last slot of the workspace's address table, after the input
//! and output addresses. A collective node is lowered (`lower/collective.rs`) as a copy of its
//! operand into its own home followed by `gradlift_all_reduce(ctx, home, len, code)`, which
//! reduces the home in place; `num_ranks` is the same call filling its home with the rank
//! count. `pvary` costs nothing: it is a view of its operand.
//!
//! Collective nodes are lowered in serial functions only, and a kernel with collectives runs
//! its serial functions on the calling thread (it never hands the call to a pool thread)
//! unless the communicator has one rank, when reductions skip it altogether, so the
//! communicator is called on the caller's thread, in graph order. MPI needs this (its
//! default threading level), and it keeps ranks that are threads from waiting for each other
//! inside a rayon pool with fewer threads than ranks.
#![allow(unsafe_code)]

use super::buf::{Buf, BufMut};
use super::{CallError, Kernel, Workspace};
use crate::comm::{CommError, Communicator};
use crate::ir::DType;
use std::cell::RefCell;

/// The trampoline's symbol.
pub(super) const SYMBOL: &str = "gradlift_all_reduce";

/// The trampoline's argument count (all pointer-sized integers).
pub(super) const ARITY: usize = 4;

/// What the trampoline does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// `all_reduce_sum`.
    Sum = 0,
    /// `all_reduce_mean`.
    Mean = 2,
    /// `num_ranks`: fill the buffer with the number of ranks.
    Size = 4,
}

/// The `code` argument: bit 0 set for `f64` (else `f32`), plus the [`Action`].
pub(super) fn code(dtype: DType, action: Action) -> i64 {
    i64::from(dtype == DType::F64) | action as i64
}

/// What the trampoline reads for one kernel call.
pub(super) struct CommCtx<'a> {
    comm: &'a dyn Communicator,
    /// `comm.size()`, asked on the calling thread.
    size: usize,
    error: RefCell<Option<CommError>>,
}

impl<'a> CommCtx<'a> {
    pub(super) fn new(comm: &'a dyn Communicator) -> CommCtx<'a> {
        CommCtx {
            comm,
            size: comm.size(),
            error: RefCell::new(None),
        }
    }

    /// One rank: the collectives never call the communicator (a sum over one rank is the
    /// operand), so the call may run on any thread.
    pub(super) fn single(&self) -> bool {
        self.size == 1
    }

    /// The first error of the call, if any.
    pub(super) fn finish(self) -> Result<(), CallError> {
        match self.error.into_inner() {
            Some(e) => Err(CallError::Comm(e)),
            None => Ok(()),
        }
    }

    fn reduce(&self, data: *mut u8, len: usize, code: usize) {
        let size = code & Action::Size as usize != 0;
        let mean = code & Action::Mean as usize != 0;
        let p = self.size;
        if self.error.borrow().is_some() || (p == 1 && !size) {
            // One rank: the sum, and the mean (divided by 1), are the operand.
            return;
        }
        let r = if code & 1 == 1 {
            // SAFETY: see `all_reduce`.
            let v = unsafe { std::slice::from_raw_parts_mut(data.cast::<f64>(), len) };
            if size {
                v.fill(p as f64);
                return;
            }
            self.comm.all_reduce_sum_f64(v).map(|()| {
                if mean {
                    v.iter_mut().for_each(|e| *e /= p as f64);
                }
            })
        } else {
            // SAFETY: see `all_reduce`.
            let v = unsafe { std::slice::from_raw_parts_mut(data.cast::<f32>(), len) };
            if size {
                v.fill(p as f32);
                return;
            }
            self.comm.all_reduce_sum_f32(v).map(|()| {
                if mean {
                    v.iter_mut().for_each(|e| *e /= p as f32);
                }
            })
        };
        if let Err(e) = r {
            *self.error.borrow_mut() = Some(e);
        }
    }
}

/// Reduces `len` elements at `data` in place over the call's communicator (`code`: see
/// [`code`]). A communicator error is kept in the context (later collectives of the call are
/// skipped) and returned by the call; a panic in the communicator is caught and kept as an
/// error too (unwinding must not cross into compiled code).
///
/// # Safety
/// `ctx` is the [`CommCtx`] of the running call (alive for the whole call, used by this
/// thread only), and `data` points to `len` elements of the dtype `code` names, aligned to
/// their size, that nothing else reads or writes during this call.
unsafe extern "C" fn all_reduce(ctx: *const u8, data: *mut u8, len: usize, code: usize) {
    // SAFETY: the caller's contract; the kernel stored this pointer for the call.
    let ctx = unsafe { &*ctx.cast::<CommCtx<'_>>() };
    let run = std::panic::AssertUnwindSafe(|| ctx.reduce(data, len, code));
    if std::panic::catch_unwind(run).is_err() {
        *ctx.error.borrow_mut() = Some(CommError::Transport("the communicator panicked".into()));
    }
}

/// The trampoline's address, for the JIT's symbol table.
pub(super) fn symbol() -> (&'static str, *const u8) {
    type F = unsafe extern "C" fn(*const u8, *mut u8, usize, usize);
    (SYMBOL, all_reduce as F as *const u8)
}

impl Kernel {
    /// [`Kernel::call`] as one rank of `comm`: the graph's `all_reduce_sum` and
    /// `all_reduce_mean` nodes reduce over its ranks (see [`crate::comm`]). Every rank calls
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
