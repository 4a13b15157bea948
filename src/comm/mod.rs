//! Communicators: how the ranks of a data-parallel program combine their values.
//!
//! The collective ops (`all_reduce_sum`, `all_gather`, ..., see [`crate::ops::collective`]) are
//! graph nodes; what they combine over is decided at call time by the [`Communicator`] handed
//! to [`crate::interp::run_with_comm`] or [`crate::jit::Kernel::call_with_comm`]. The graph,
//! and the compiled kernel, are the same on every rank and for every number of ranks.
//!
//! Three implementations:
//! - [`SingleProcess`]: one rank; every collective is the identity (or a copy). What the plain
//!   [`crate::interp::run`] and [`crate::jit::Kernel::call`] use.
//! - [`ThreadComm`]: the ranks are threads of one process sharing a barrier and one slot per
//!   rank. Used by tests and by the demo's `--ranks N` mode, so the default build exercises
//!   the data-parallel path with no MPI installed.
//! - `MpiComm` (cargo feature `mpi`): the ranks are MPI processes (`mpirun -np P ...`), the
//!   world communicator of the `mpi` crate.
//!
//! Groups: a collective combines over the ranks of its group ([`Groups`], from its `groups=`
//! attribute; without one, over every rank). A communicator makes the communicator of a
//! rank's group with [`Communicator::split`] (MPI's `MPI_Comm_split`), once per distinct set of
//! groups: implementations cache it, so a collective's call costs a lookup, not a split. The
//! groups must list exactly the communicator's ranks, or the call fails with
//! [`CommError::Groups`].
//!
//! Determinism: [`ThreadComm`] sums in rank order (`((x₀ + x₁) + x₂) + …`) on every rank, so
//! every rank gets the same bits, and the same bits on every run. MPI leaves the order to the
//! library (the standard advises, without requiring, that every process get the same result);
//! with two ranks any order gives both the same bits, as addition is commutative.
//! (`tests/it/collectives.rs` checks every rank's bits with [`ThreadComm`].)
//!
//! Threading: a kernel or the interpreter calls its communicator only on the thread that
//! called it, in graph order; every rank must run the same graph (the same collectives in the
//! same order with the same lengths), or the ranks wait for each other forever (MPI) or get
//! [`CommError::LengthMismatch`] ([`ThreadComm`]).

#[cfg(feature = "mpi")]
mod mpi;
mod threads;

#[cfg(feature = "mpi")]
pub use self::mpi::MpiComm;
pub use threads::ThreadComm;

pub use crate::ir::Groups;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A failed collective.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommError {
    /// The ranks passed buffers of different lengths to the same collective (they run
    /// different graphs).
    #[error(
        "collective: rank {rank} passed {len} elements, rank {other} passed {other_len} (every rank must run the same graph)"
    )]
    LengthMismatch {
        /// This rank.
        rank: usize,
        /// Its length.
        len: usize,
        /// The first rank that disagreed.
        other: usize,
        /// That rank's length.
        other_len: usize,
    },
    /// The ranks passed buffers of different dtypes to the same collective.
    #[error("collective: rank {rank} and rank {other} pass different dtypes")]
    DtypeMismatch {
        /// This rank.
        rank: usize,
        /// The first rank that disagreed.
        other: usize,
    },
    /// A collective's groups do not fit the communicator (they list another number of ranks,
    /// or a broadcast's root is not in every group).
    #[error("collective groups: {0}")]
    Groups(String),
    /// The underlying transport failed.
    #[error("collective failed: {0}")]
    Transport(String),
    /// A buffer passed on this rank has the wrong length for the other: `all_gather`'s
    /// receive buffer holds `size()` send buffers, `reduce_scatter`'s send buffer `size()`
    /// receive buffers.
    #[error(
        "{op}: the {which} buffer has {got} elements, expected {expected} (size() × the other buffer's)"
    )]
    BufferLength {
        /// The collective.
        op: &'static str,
        /// `"receive"` or `"send"`.
        which: &'static str,
        /// Its length.
        got: usize,
        /// The length the other buffer and the communicator's size ask for.
        expected: usize,
    },
}

/// Checks that `all_gather`'s `recv` holds `size` times `send`.
///
/// # Errors
/// [`CommError::BufferLength`] otherwise.
pub(crate) fn check_gather(size: usize, send: usize, recv: usize) -> Result<(), CommError> {
    check_blocks("all_gather", "receive", recv, send, size)
}

/// Checks that `reduce_scatter`'s `send` holds `size` times `recv`.
///
/// # Errors
/// [`CommError::BufferLength`] otherwise.
pub(crate) fn check_scatter(size: usize, send: usize, recv: usize) -> Result<(), CommError> {
    check_blocks("reduce_scatter", "send", send, recv, size)
}

fn check_blocks(
    op: &'static str,
    which: &'static str,
    got: usize,
    block: usize,
    size: usize,
) -> Result<(), CommError> {
    match block.checked_mul(size) {
        Some(expected) if expected == got => Ok(()),
        expected => Err(CommError::BufferLength {
            op,
            which,
            got,
            expected: expected.unwrap_or(usize::MAX),
        }),
    }
}

/// A group of ranks that can combine buffers across all of them.
///
/// Every rank calls the same sequence of collectives with buffers of the same lengths; each
/// call returns when every rank's buffer holds the result (every rank the same bits).
pub trait Communicator {
    /// This process's (or thread's) rank, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Replaces `buf` by its elementwise sum over all ranks.
    ///
    /// # Errors
    /// [`CommError`] if the ranks disagree or the transport fails.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CommError>;
    /// Replaces `buf` by its elementwise sum over all ranks.
    ///
    /// # Errors
    /// [`CommError`] if the ranks disagree or the transport fails.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError>;
    /// Fills `recv` (`size()` times `send`'s length) with every rank's `send`, rank 0's first.
    ///
    /// # Errors
    /// [`CommError`] if the ranks disagree or the transport fails.
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError>;
    /// Fills `recv` (`size()` times `send`'s length) with every rank's `send`, rank 0's first.
    ///
    /// # Errors
    /// [`CommError`] if the ranks disagree or the transport fails.
    fn all_gather_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError>;
    /// Replaces `buf` on every rank by rank `root`'s `buf`.
    ///
    /// # Errors
    /// [`CommError`] if the ranks disagree or the transport fails.
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<(), CommError>;
    /// Replaces `buf` on every rank by rank `root`'s `buf`.
    ///
    /// # Errors
    /// [`CommError`] if the ranks disagree or the transport fails.
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<(), CommError>;
    /// Sums `send` (`size()` times `recv`'s length) over the ranks and leaves rank `r` the
    /// `r`-th block of the sum. The default all-reduces a copy (the same sums, in the same
    /// order, as [`Communicator::all_reduce_sum_f32`]).
    ///
    /// # Errors
    /// [`CommError`] if the ranks disagree or the transport fails.
    fn reduce_scatter_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        check_scatter(self.size(), send.len(), recv.len())?;
        let mut sum = send.to_vec();
        self.all_reduce_sum_f32(&mut sum)?;
        let n = recv.len();
        recv.copy_from_slice(&sum[self.rank() * n..(self.rank() + 1) * n]);
        Ok(())
    }
    /// Sums `send` (`size()` times `recv`'s length) over the ranks and leaves rank `r` the
    /// `r`-th block of the sum (see [`Communicator::reduce_scatter_f32`]).
    ///
    /// # Errors
    /// [`CommError`] if the ranks disagree or the transport fails.
    fn reduce_scatter_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
        check_scatter(self.size(), send.len(), recv.len())?;
        let mut sum = send.to_vec();
        self.all_reduce_sum_f64(&mut sum)?;
        let n = recv.len();
        recv.copy_from_slice(&sum[self.rank() * n..(self.rank() + 1) * n]);
        Ok(())
    }
    /// The communicator of this rank's group in `groups`: its ranks are the group's members,
    /// numbered by their position in the group's list. Every rank calls it with the same
    /// groups (for MPI it is a collective call over this communicator). Implementations make
    /// it once per distinct `groups` and hand out the cached one (or a cheap handle to it)
    /// afterwards. (An `Rc`: a communicator is used on the thread of the call.)
    ///
    /// # Errors
    /// [`CommError::Groups`] if `groups` does not list exactly `size()` ranks.
    fn split(&self, groups: &Groups) -> Result<Rc<dyn Communicator>, CommError>;
}

/// Where this rank of `comm` is in `groups`, or [`CommError::Groups`].
///
/// # Errors
/// [`CommError::Groups`] if `groups` does not list exactly `comm.size()` ranks.
pub fn locate<'g>(
    groups: &'g Groups,
    comm: &dyn Communicator,
) -> Result<crate::ir::Place<'g>, CommError> {
    groups
        .locate(comm.rank(), comm.size())
        .map_err(CommError::Groups)
}

macro_rules! forward_comm {
    () => {
        fn rank(&self) -> usize {
            (**self).rank()
        }
        fn size(&self) -> usize {
            (**self).size()
        }
        fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CommError> {
            (**self).all_reduce_sum_f32(buf)
        }
        fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
            (**self).all_reduce_sum_f64(buf)
        }
        fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
            (**self).all_gather_f32(send, recv)
        }
        fn all_gather_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
            (**self).all_gather_f64(send, recv)
        }
        fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
            (**self).broadcast_f32(buf, root)
        }
        fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<(), CommError> {
            (**self).broadcast_f64(buf, root)
        }
        fn reduce_scatter_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
            (**self).reduce_scatter_f32(send, recv)
        }
        fn reduce_scatter_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
            (**self).reduce_scatter_f64(send, recv)
        }
        fn split(&self, groups: &Groups) -> Result<Rc<dyn Communicator>, CommError> {
            (**self).split(groups)
        }
    };
}

impl<C: Communicator + ?Sized> Communicator for &C {
    forward_comm!();
}

impl<C: Communicator + ?Sized> Communicator for Rc<C> {
    forward_comm!();
}

/// One rank: every all-reduce leaves its buffer as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum_f32(&self, _: &mut [f32]) -> Result<(), CommError> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<(), CommError> {
        Ok(())
    }
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        check_gather(1, send.len(), recv.len())?;
        recv.copy_from_slice(send);
        Ok(())
    }
    fn all_gather_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
        check_gather(1, send.len(), recv.len())?;
        recv.copy_from_slice(send);
        Ok(())
    }
    fn broadcast_f32(&self, _: &mut [f32], _: usize) -> Result<(), CommError> {
        Ok(())
    }
    fn broadcast_f64(&self, _: &mut [f64], _: usize) -> Result<(), CommError> {
        Ok(())
    }
    fn split(&self, groups: &Groups) -> Result<Rc<dyn Communicator>, CommError> {
        // The one possible group, `[[0]]`.
        locate(groups, self)?;
        Ok(Rc::new(SingleProcess))
    }
}

/// Wraps a communicator and counts its collective calls and the bytes they send (the per-step
/// traffic a data-parallel program reports, and what tests check bucketing with). The
/// communicators of sub-groups it splits off count into the same totals.
#[derive(Debug)]
pub struct Counting<C> {
    inner: C,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    calls: AtomicU64,
    bytes: AtomicU64,
}

impl<C: Communicator> Counting<C> {
    /// Counts the calls made through `inner`.
    pub fn new(inner: C) -> Counting<C> {
        Counting {
            inner,
            counts: Arc::default(),
        }
    }

    /// Collective calls so far (all-reduces, all-gathers, broadcasts, reduce-scatters).
    pub fn calls(&self) -> u64 {
        self.counts.calls.load(Relaxed)
    }

    /// Bytes of the buffers this rank sent so far (each call's send buffer counted once).
    pub fn bytes(&self) -> u64 {
        self.counts.bytes.load(Relaxed)
    }

    fn count(&self, bytes: usize) {
        self.counts.calls.fetch_add(1, Relaxed);
        self.counts.bytes.fetch_add(bytes as u64, Relaxed);
    }
}

impl<C: Communicator> Communicator for Counting<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CommError> {
        self.count(size_of_val(buf));
        self.inner.all_reduce_sum_f32(buf)
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
        self.count(size_of_val(buf));
        self.inner.all_reduce_sum_f64(buf)
    }
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        self.count(size_of_val(send));
        self.inner.all_gather_f32(send, recv)
    }
    fn all_gather_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
        self.count(size_of_val(send));
        self.inner.all_gather_f64(send, recv)
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        self.count(size_of_val(buf));
        self.inner.broadcast_f32(buf, root)
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<(), CommError> {
        self.count(size_of_val(buf));
        self.inner.broadcast_f64(buf, root)
    }
    fn reduce_scatter_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        self.count(size_of_val(send));
        self.inner.reduce_scatter_f32(send, recv)
    }
    fn reduce_scatter_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
        self.count(size_of_val(send));
        self.inner.reduce_scatter_f64(send, recv)
    }
    fn split(&self, groups: &Groups) -> Result<Rc<dyn Communicator>, CommError> {
        // A wrapper per call around the inner communicator's cached split: cheap, and it
        // counts into this communicator's totals.
        Ok(Rc::new(Counting {
            inner: self.inner.split(groups)?,
            counts: Arc::clone(&self.counts),
        }))
    }
}
