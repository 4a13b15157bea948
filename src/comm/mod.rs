//! Communicators: how the ranks of a data-parallel program reduce their values.
//!
//! The collective ops (`all_reduce_sum`, `all_reduce_mean`, see [`crate::ops::collective`]) are
//! graph nodes; what they reduce over is decided at call time by the [`Communicator`] handed
//! to [`crate::interp::run_with_comm`] or [`crate::jit::Kernel::call_with_comm`]. The graph,
//! and the compiled kernel, are the same on every rank and for every number of ranks.
//!
//! Three implementations:
//! - [`SingleProcess`]: one rank; every all-reduce is the identity. What the plain
//!   [`crate::interp::run`] and [`crate::jit::Kernel::call`] use.
//! - [`ThreadComm`]: the ranks are threads of one process sharing a barrier and one slot per
//!   rank. Used by tests and by the demo's `--ranks N` mode, so the default build exercises
//!   the data-parallel path with no MPI installed.
//! - `MpiComm` (cargo feature `mpi`): the ranks are MPI processes (`mpirun -np P ...`), the
//!   world communicator of the `mpi` crate.
//!
//! A communicator reduces over all of its ranks (the "world" group): the collective ops have no
//! group attribute, and sub-groups are not supported.
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

/// A failed collective.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommError {
    /// The ranks passed buffers of different lengths to the same all-reduce (they run
    /// different graphs).
    #[error(
        "all-reduce: rank {rank} passed {len} elements, rank {other} passed {other_len} (every rank must run the same graph)"
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
    /// The ranks passed buffers of different dtypes to the same all-reduce.
    #[error("all-reduce: rank {rank} and rank {other} reduce different dtypes")]
    DtypeMismatch {
        /// This rank.
        rank: usize,
        /// The first rank that disagreed.
        other: usize,
    },
    /// The underlying transport failed.
    #[error("all-reduce failed: {0}")]
    Transport(String),
}

/// A group of ranks that can sum buffers elementwise across all of them.
///
/// Every rank calls the same sequence of all-reduces with buffers of the same lengths; each
/// call returns when every rank's buffer holds the elementwise sum over the ranks (every rank
/// the same bits).
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
}

impl<C: Communicator + ?Sized> Communicator for &C {
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
}

/// Wraps a communicator and counts its all-reduce calls and the bytes they reduce (the
/// per-step traffic a data-parallel program reports, and what tests check bucketing with).
#[derive(Debug)]
pub struct Counting<C> {
    inner: C,
    calls: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl<C: Communicator> Counting<C> {
    /// Counts the calls made through `inner`.
    pub fn new(inner: C) -> Counting<C> {
        Counting {
            inner,
            calls: 0.into(),
            bytes: 0.into(),
        }
    }

    /// All-reduce calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes of the buffers all-reduced so far (this rank's, each counted once per call).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
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
}
