//! The collectives' builder methods (see [`crate::ops::collective`]).

use super::{GraphBuilder, Var};
use crate::ir::{Attrs, DType, GroupParam, Groups, Op};

fn attrs(groups: &Groups, param: GroupParam) -> Attrs {
    Attrs::Group {
        groups: groups.clone(),
        param,
    }
}

impl GraphBuilder {
    /// The size of this rank's group in `groups`, as a scalar of float `dtype`.
    #[track_caller]
    pub fn num_ranks_in(&self, dtype: DType, groups: &Groups) -> Var<'_> {
        self.push(Op::NumRanks, &[], attrs(groups, GroupParam::To(dtype)))
    }

    /// This rank's position in its group in `groups` (JAX's `axis_index`), as a scalar of
    /// `dtype` (`i32`, `f32` or `f64`).
    #[track_caller]
    pub fn axis_index(&self, dtype: DType, groups: &Groups) -> Var<'_> {
        self.push(Op::AxisIndex, &[], attrs(groups, GroupParam::To(dtype)))
    }
}

impl<'b> Var<'b> {
    /// The elementwise sum of this value over the ranks of each group (`psum`).
    #[track_caller]
    pub fn all_reduce_sum_in(self, groups: &Groups) -> Var<'b> {
        (self.b).push(Op::AllReduceSum, &[self], attrs(groups, GroupParam::None))
    }

    /// The elementwise mean of this value over the ranks of each group (`pmean`).
    #[track_caller]
    pub fn all_reduce_mean_in(self, groups: &Groups) -> Var<'b> {
        (self.b).push(Op::AllReduceMean, &[self], attrs(groups, GroupParam::None))
    }

    /// [`Var::pvary`] for the ranks of each group: the identity, whose transpose sums the
    /// cotangents over each group.
    #[track_caller]
    pub fn pvary_in(self, groups: &Groups) -> Var<'b> {
        (self.b).push(Op::Pvary, &[self], attrs(groups, GroupParam::None))
    }

    /// The blocks of every rank of the group joined along `axis`, in group order (JAX's
    /// `all_gather(tiled=True)`). `groups` must be explicit, all of one size.
    #[track_caller]
    pub fn all_gather(self, axis: usize, groups: &Groups) -> Var<'b> {
        (self.b).push(
            Op::AllGather,
            &[self],
            attrs(groups, GroupParam::Axis(axis)),
        )
    }

    /// The sum over the group, split along `axis` into one block per rank, each rank keeping
    /// its own (JAX's `psum_scatter(tiled=True)`). `groups` must be explicit, all of one size
    /// dividing the axis.
    #[track_caller]
    pub fn reduce_scatter(self, axis: usize, groups: &Groups) -> Var<'b> {
        (self.b).push(
            Op::ReduceScatter,
            &[self],
            attrs(groups, GroupParam::Axis(axis)),
        )
    }

    /// The value of the rank at position `root` of each group, on every rank of the group.
    #[track_caller]
    pub fn collective_broadcast(self, root: usize, groups: &Groups) -> Var<'b> {
        (self.b).push(
            Op::CollectiveBroadcast,
            &[self],
            attrs(groups, GroupParam::Root(root)),
        )
    }
}
