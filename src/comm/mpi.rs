//! [`MpiComm`]: ranks that are MPI processes (the `mpi` feature).

use super::{CommError, Communicator, Groups, locate};
use mpi::collective::SystemOperation;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// MPI's world communicator. Start the program with `mpirun -np P ...`; each process is one
/// rank. Holds the MPI environment: MPI is finalized when this is dropped, and can be
/// initialized only once per process. Sub-group communicators ([`Communicator::split`]) are
/// made with `MPI_Comm_split` once per set of groups and kept until this is dropped.
pub struct MpiComm {
    world: Mpi,
    // Dropped after `world` (fields drop in declaration order): finalizes MPI.
    _universe: mpi::environment::Universe,
}

/// One MPI communicator and the sub-group communicators split off it.
struct Mpi {
    comm: SimpleCommunicator,
    splits: RefCell<HashMap<Groups, Rc<dyn Communicator>>>,
    /// The send copies of the all-reduces (see [`Mpi::all_reduce`]), kept between calls.
    send_f32: RefCell<Vec<f32>>,
    send_f64: RefCell<Vec<f64>>,
}

impl Mpi {
    fn new(comm: SimpleCommunicator) -> Mpi {
        Mpi {
            comm,
            splits: RefCell::default(),
            send_f32: RefCell::default(),
            send_f64: RefCell::default(),
        }
    }

    /// Sums `buf` over the ranks. `MPI_IN_PLACE` is not exposed by the crate's safe API, so
    /// the reduction reads a copy of `buf`: in `send`, which keeps its memory, so a call
    /// allocates only when it is longer than every earlier one.
    fn all_reduce<T: Copy + mpi::datatype::Equivalence>(
        &self,
        send: &RefCell<Vec<T>>,
        buf: &mut [T],
    ) {
        let mut send = send.borrow_mut();
        send.clear();
        send.extend_from_slice(buf);
        self.comm
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
    }
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
            world: Mpi::new(universe.world()),
            _universe: universe,
        })
    }

    /// Waits until every rank reaches this point.
    pub fn barrier(&self) {
        self.world.comm.barrier();
    }
}

fn root_of(comm: &SimpleCommunicator, root: usize) -> Result<i32, CommError> {
    let size = usize::try_from(comm.size()).expect("MPI sizes are positive");
    if root >= size {
        return Err(CommError::Groups(format!(
            "broadcast root {root} is not a rank of a group of {size}"
        )));
    }
    Ok(i32::try_from(root).expect("below an MPI size"))
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        usize::try_from(self.comm.rank()).expect("MPI ranks are non-negative")
    }
    fn size(&self) -> usize {
        usize::try_from(self.comm.size()).expect("MPI sizes are positive")
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CommError> {
        self.all_reduce(&self.send_f32, buf);
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
        self.all_reduce(&self.send_f64, buf);
        Ok(())
    }
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        super::check_gather(self.size(), send.len(), recv.len())?;
        self.comm.all_gather_into(send, recv);
        Ok(())
    }
    fn all_gather_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
        super::check_gather(self.size(), send.len(), recv.len())?;
        self.comm.all_gather_into(send, recv);
        Ok(())
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        let root = root_of(&self.comm, root)?;
        self.comm.process_at_rank(root).broadcast_into(buf);
        Ok(())
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<(), CommError> {
        let root = root_of(&self.comm, root)?;
        self.comm.process_at_rank(root).broadcast_into(buf);
        Ok(())
    }
    fn reduce_scatter_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        super::check_scatter(self.size(), send.len(), recv.len())?;
        self.comm
            .reduce_scatter_block_into(send, recv, SystemOperation::sum());
        Ok(())
    }
    fn reduce_scatter_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
        super::check_scatter(self.size(), send.len(), recv.len())?;
        self.comm
            .reduce_scatter_block_into(send, recv, SystemOperation::sum());
        Ok(())
    }
    fn split(&self, groups: &Groups) -> Result<Rc<dyn Communicator>, CommError> {
        if let Some(c) = self.splits.borrow().get(groups) {
            return Ok(Rc::clone(c));
        }
        let place = locate(groups, self)?;
        // Color: the group; key: the position in it, so sub-ranks follow the group's list.
        let color = Color::with_value(i32::try_from(place.index).expect("fewer groups than ranks"));
        let key = i32::try_from(place.position).expect("positions are below an MPI size");
        let comm = self
            .comm
            .split_by_color_with_key(color, key)
            .ok_or_else(|| CommError::Transport("MPI_Comm_split gave no communicator".into()))?;
        let sub: Rc<dyn Communicator> = Rc::new(Mpi::new(comm));
        self.splits
            .borrow_mut()
            .insert(groups.clone(), Rc::clone(&sub));
        Ok(sub)
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank()
    }
    fn size(&self) -> usize {
        self.world.size()
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CommError> {
        self.world.all_reduce_sum_f32(buf)
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
        self.world.all_reduce_sum_f64(buf)
    }
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        self.world.all_gather_f32(send, recv)
    }
    fn all_gather_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
        self.world.all_gather_f64(send, recv)
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        self.world.broadcast_f32(buf, root)
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<(), CommError> {
        self.world.broadcast_f64(buf, root)
    }
    fn reduce_scatter_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        self.world.reduce_scatter_f32(send, recv)
    }
    fn reduce_scatter_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
        self.world.reduce_scatter_f64(send, recv)
    }
    fn split(&self, groups: &Groups) -> Result<Rc<dyn Communicator>, CommError> {
        self.world.split(groups)
    }
}
