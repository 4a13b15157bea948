//! [`eval_with`]: the collectives over a communicator (the interpreter's semantics).

use super::{group_attrs, root_of};
use crate::comm::{CommError, Communicator, locate};
use crate::ir::{GroupParam, Node, Op};
use crate::tensor::{Data, Tensor};
use std::rc::Rc;

/// Evaluates a collective node on `args` as this rank of `comm`.
///
/// # Errors
/// The communicator's [`CommError`]; [`CommError::Groups`] if the node's groups do not list
/// exactly the communicator's ranks.
pub fn eval_with(
    node: &Node,
    args: &[&Tensor],
    comm: &dyn Communicator,
) -> Result<Tensor, CommError> {
    let (groups, param) = group_attrs(node);
    let place = locate(groups, comm)?;
    match node.op {
        Op::NumRanks => return Ok(Tensor::splat(&node.ty, place.size as f64)),
        Op::AxisIndex => return Ok(Tensor::splat(&node.ty, place.position as f64)),
        Op::Pvary => return Ok(args[0].clone()),
        _ => {}
    }
    if node.op == Op::CollectiveBroadcast && root_of(node) >= place.size {
        return Err(CommError::Groups(format!(
            "broadcast root {} is not a position in a group of {}",
            root_of(node),
            place.size
        )));
    }
    let sub: Rc<dyn Communicator>;
    let c: &dyn Communicator = if groups.is_world() {
        comm
    } else {
        sub = comm.split(groups)?;
        &*sub
    };
    let p = place.size;
    let x = args[0].data();
    let axis = match param {
        GroupParam::Axis(a) => a,
        _ => 0,
    };
    // Blocks along `axis`: `outer` runs of `inner` contiguous elements per rank.
    let outer: usize = node.ty.shape[..axis.min(node.ty.rank())].iter().product();
    let data = match x {
        Data::F32(v) => Data::F32(on(node, v, c, p, outer, Kernels::F32)?),
        Data::F64(v) => Data::F64(on(node, v, c, p, outer, Kernels::F64)?),
        Data::Bool(_) | Data::I32(_) => unreachable!("float operand checked by infer"),
    };
    Ok(Tensor::new(node.ty.shape.clone(), data))
}

/// A communicator method from one buffer into another.
type Move<T> = fn(&dyn Communicator, &[T], &mut [T]) -> Result<(), CommError>;

/// The communicator's methods for one dtype.
struct Kernels<T> {
    sum: fn(&dyn Communicator, &mut [T]) -> Result<(), CommError>,
    gather: Move<T>,
    scatter: Move<T>,
    bcast: fn(&dyn Communicator, &mut [T], usize) -> Result<(), CommError>,
    from: fn(usize) -> T,
}

impl Kernels<f32> {
    const F32: Kernels<f32> = Kernels {
        sum: |c, b| c.all_reduce_sum_f32(b),
        gather: |c, s, r| c.all_gather_f32(s, r),
        scatter: |c, s, r| c.reduce_scatter_f32(s, r),
        bcast: |c, b, root| c.broadcast_f32(b, root),
        from: |p| p as f32,
    };
}

impl Kernels<f64> {
    const F64: Kernels<f64> = Kernels {
        sum: |c, b| c.all_reduce_sum_f64(b),
        gather: |c, s, r| c.all_gather_f64(s, r),
        scatter: |c, s, r| c.reduce_scatter_f64(s, r),
        bcast: |c, b, root| c.broadcast_f64(b, root),
        from: |p| p as f64,
    };
}

/// One collective on this rank's elements `x`, over `c` (a group of `p` ranks).
fn on<T: Copy + Default + std::ops::Div<Output = T>>(
    node: &Node,
    x: &[T],
    c: &dyn Communicator,
    p: usize,
    outer: usize,
    k: Kernels<T>,
) -> Result<Vec<T>, CommError> {
    let mut v = x.to_vec();
    match node.op {
        Op::AllReduceSum => (k.sum)(c, &mut v)?,
        Op::AllReduceMean => {
            (k.sum)(c, &mut v)?;
            let d = (k.from)(p);
            v.iter_mut().for_each(|e| *e = *e / d);
        }
        Op::CollectiveBroadcast => (k.bcast)(c, &mut v, root_of(node))?,
        Op::AllGather => {
            // The communicator gathers whole buffers rank after rank; the result joins them
            // along the axis: for each outer index, rank 0's run, rank 1's run, ...
            let mut all = vec![T::default(); x.len() * p];
            (k.gather)(c, x, &mut all)?;
            let run = x.len() / outer;
            v = Vec::with_capacity(all.len());
            for o in 0..outer {
                for r in 0..p {
                    let at = r * x.len() + o * run;
                    v.extend_from_slice(&all[at..at + run]);
                }
            }
        }
        Op::ReduceScatter => {
            // Reorder so each rank's block is contiguous (rank-major), then reduce-scatter.
            let run = x.len() / outer / p;
            let mut send = Vec::with_capacity(x.len());
            for r in 0..p {
                for o in 0..outer {
                    let at = (o * p + r) * run;
                    send.extend_from_slice(&x[at..at + run]);
                }
            }
            v = vec![T::default(); x.len() / p];
            (k.scatter)(c, &send, &mut v)?;
        }
        op => unreachable!("{op} is not a communicating collective"),
    }
    Ok(v)
}
