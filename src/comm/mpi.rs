//! [`MpiComm`]: ranks that are MPI processes (the `mpi` feature).

use super::{CommError, Communicator};
use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives};

/// MPI's world communicator. Start the program with `mpirun -np P ...`; each process is one
/// rank. Holds the MPI environment: MPI is finalized when this is dropped, and can be
/// initialized only once per process.
pub struct MpiComm {
    world: SimpleCommunicator,
    // Dropped after `world` (fields drop in declaration order): finalizes MPI.
    _universe: mpi::environment::Universe,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiComm")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .finish()
    }
}

impl MpiComm {
    /// Initializes MPI and returns the world communicator.
    ///
    /// # Errors
    /// [`CommError::Transport`] if MPI was already initialized in this process.
    pub fn init() -> Result<MpiComm, CommError> {
        let universe = mpi::initialize()
            .ok_or_else(|| CommError::Transport("MPI is already initialized".into()))?;
        Ok(MpiComm {
            world: universe.world(),
            _universe: universe,
        })
    }

    /// Waits until every rank reaches this point.
    pub fn barrier(&self) {
        self.world.barrier();
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        usize::try_from(self.world.rank()).expect("MPI ranks are non-negative")
    }
    fn size(&self) -> usize {
        usize::try_from(self.world.size()).expect("MPI sizes are positive")
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CommError> {
        // MPI_IN_PLACE is not exposed by the crate's safe API: reduce from a copy.
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
}
