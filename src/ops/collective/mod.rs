//! Collectives: `all_reduce_sum`, `all_reduce_mean`, `pvary`, `num_ranks`, `axis_index`,
//! `all_gather`, `reduce_scatter` and `collective_broadcast`, over the ranks of a group (see
//! [`crate::comm`]).
//!
//! A data-parallel program runs the same graph on every rank. Some values are *varying* (each
//! rank has its own: its share of the batch and everything computed from it) and some are
//! *invariant* (the same on every rank of a group: replicated parameters, and the result of an
//! all-reduce). The ops, in JAX `shard_map`'s terms (JAX design note 17111, "Efficient
//! transposition of replication-inducing collectives"):
//! - `all_reduce_sum x` (`psum`): varying → invariant, the elementwise sum over the group.
//! - `all_reduce_mean x` (`pmean`): the sum divided by the group's size `P` (`sum / P` in
//!   the operand's dtype).
//! - `pvary x` (`pvary`/`pbroadcast`): invariant → varying, the identity on each rank.
//! - `num_ranks to=TYPE` (`psum(1)`, without the communication): the group's size `P` as
//!   a scalar of float type TYPE; `axis_index to=TYPE` (`axis_index`): this rank's position
//!   in its group (`i32`, `f32` or `f64`). Both are known locally.
//! - `all_gather x axis=A` (`all_gather(tiled=True)`): every rank's block joined along `A` in
//!   group order; `reduce_scatter x axis=A` (`psum_scatter(tiled=True)`): the sum over the
//!   group cut along `A` into `P` blocks, rank at position `i` keeping block `i`. Their
//!   results' shapes depend on `P`, so they need explicit groups, all of one size.
//! - `collective_broadcast x root=R` (XLA's `collective-broadcast`): the value of the rank at
//!   position `R` of each group, on every rank of that group.
//!
//! Groups: every op takes `groups=[[..],[..]]` (a [`Groups`]: explicit rank lists, XLA's
//! `replica_groups`), or none for one group of every rank. Why rank lists rather than a mesh
//! axis: a mesh axis is one particular partition (`mesh=[2,2] axis=0` is `[[0,2],[1,3]]`), and
//! lists also spell irregular groups (a pipeline stage of one rank beside one of three);
//! [`Groups::mesh_axis`] writes the lists of a mesh axis.
//!
//! Their transposes follow the note, so the gradient of a replicated parameter is reduced
//! once, where it is needed, and never twice:
//! - VJP of `all_reduce_sum`: `x̄ = pvary(ȳ)` (the cotangent of an invariant value is
//!   invariant; broadcasting it to the ranks moves no data), *not* another all-reduce.
//! - VJP of `all_reduce_mean`: `x̄ = pvary(ȳ / num_ranks)`.
//! - VJP of `pvary`: `x̄ = all_reduce_sum(ȳ)`: the per-rank cotangents summed.
//! - `all_gather` and `reduce_scatter` are each other's transposes (their results are
//!   varying: each rank holds its own copy, as JAX's `all_gather` under `check_vma`).
//! - VJP of `collective_broadcast`: the cotangents summed over the group, kept by the root
//!   and zero on the other ranks (`select(axis_index == R, all_reduce_sum(ȳ), 0)`).
//! - JVPs: the same collective applied to the tangent.
//!
//! So for a data-parallel loss `all_reduce_mean(local_loss(pvary(w), x_rank))`, the
//! gradient with respect to `w` is the mean over ranks of the local gradients, computed by one
//! all-reduce in the backward pass, and the same on every rank.
//!
//! Typing is the user's job: gradlift does not track which values vary. Apply `pvary` where a
//! replicated parameter meets rank-local data; without it, the gradient of `w` above would be
//! each rank's own local gradient divided by `P` (not reduced).
//!
//! `eval` here is the meaning on rank 0 of a run where every rank holds the same operand and
//! there are as many ranks as the groups list (one for the world): the plain interpreter never
//! uses it; [`eval_with`] is the semantics over a communicator. Constant folding skips
//! collectives ([`is_collective`]): their value depends on the ranks.

mod eval;

pub use eval::eval_with;

use super::{Arity, AttrKind, OpProps, OpRules, Tangents, batch_dims, same_float};
use crate::ir::{Attrs, DType, GraphBuilder, GroupParam, Groups, Node, Op, TensorType, Var};
use crate::tensor::Tensor;

/// True for the ops whose value depends on the other ranks.
pub fn is_collective(op: Op) -> bool {
    matches!(
        op,
        Op::AllReduceSum
            | Op::AllReduceMean
            | Op::Pvary
            | Op::NumRanks
            | Op::AllGather
            | Op::ReduceScatter
            | Op::CollectiveBroadcast
            | Op::AxisIndex
    )
}

/// True for the collectives that move data between ranks (the others are known locally).
pub fn communicates(op: Op) -> bool {
    matches!(
        op,
        Op::AllReduceSum | Op::AllReduceMean | Op::AllGather | Op::ReduceScatter
    ) || op == Op::CollectiveBroadcast
}

/// A collective node's groups and parameter.
pub fn group_attrs(node: &Node) -> (&Groups, GroupParam) {
    match &node.attrs {
        Attrs::Group { groups, param } => (groups, *param),
        _ => unreachable!("verified collectives carry groups"),
    }
}

fn infer(tys: &[&TensorType], _: &Attrs) -> Result<TensorType, String> {
    same_float(tys)?;
    Ok(tys[0].clone())
}

/// The group size of a shape-changing collective, and its axis (checked against the rank).
fn sized(ty: &TensorType, a: &Attrs, op: &str) -> Result<(usize, usize), String> {
    let Attrs::Group {
        groups,
        param: GroupParam::Axis(axis),
    } = a
    else {
        unreachable!("attribute kind checked")
    };
    let k = groups.uniform_size().ok_or_else(|| {
        if groups.is_world() {
            format!(
                "`{op}` needs explicit `groups=` (its result's shape depends on the group size, which the world's is not known before the call)"
            )
        } else {
            format!("`{op}` needs groups of one size, found {groups}")
        }
    })?;
    if *axis >= ty.rank() {
        return Err(format!(
            "axis {axis} is out of range for an operand of rank {}",
            ty.rank()
        ));
    }
    Ok((k, *axis))
}

const PROPS: OpProps = OpProps {
    commutative: false,
    elementwise: false,
    differentiable: true,
};

/// A sum of `k` copies of `t` in rank order (the one-rank `eval` of a sum over a group of `k`
/// ranks holding the same value).
fn times(t: &Tensor, k: usize) -> Tensor {
    let mut acc = t.clone();
    for _ in 1..k {
        acc = super::eval(
            &Node {
                op: Op::Add,
                inputs: Vec::new(),
                attrs: Attrs::None,
                ty: t.ty(),
                name: None,
                origin: crate::ir::Origin::None,
            },
            &[&acc, t],
        );
    }
    acc
}

/// The size of rank 0's group (one for the world).
fn first_size(n: &Node) -> usize {
    group_attrs(n).0.lists().first().map_or(1, |l| l.len())
}

/// `y = Σ_group x`; ẏ = all_reduce_sum(ẋ), x̄ = pvary(ȳ) (the transpose of `psum`).
pub(super) const ALL_REDUCE_SUM: OpRules = OpRules {
    name: "all_reduce_sum",
    arity: Arity::Exact(1),
    attrs: AttrKind::Group,
    props: PROPS,
    infer,
    eval: |n, a| times(a[0], first_size(n)),
    jvp: Some(|_, _, n, tg| Some(tg.get(0)?.all_reduce_sum_in(group_attrs(n).0))),
    vjp: Some(|_, _, n, ct| vec![Some(ct.pvary_in(group_attrs(n).0))]),
    math: None,
    lower: None,
};

/// `y = Σ_group x / P`; ẏ = all_reduce_mean(ẋ), x̄ = pvary(ȳ / num_ranks).
pub(super) const ALL_REDUCE_MEAN: OpRules = OpRules {
    name: "all_reduce_mean",
    arity: Arity::Exact(1),
    attrs: AttrKind::Group,
    props: PROPS,
    infer,
    eval: |n, a| {
        let k = first_size(n);
        let p = Tensor::splat(&a[0].ty(), k as f64);
        let div = Node {
            op: Op::Div,
            ..n.clone()
        };
        super::eval(&div, &[&times(a[0], k), &p])
    },
    jvp: Some(|_, _, n, tg| Some(tg.get(0)?.all_reduce_mean_in(group_attrs(n).0))),
    vjp: Some(|b, _, n, ct| {
        let g = group_attrs(n).0;
        vec![Some((ct / b.num_ranks_in(n.ty.dtype, g)).pvary_in(g))]
    }),
    math: None,
    lower: None,
};

/// `y = x` on each rank (invariant → varying); ẏ = pvary(ẋ), x̄ = all_reduce_sum(ȳ).
pub(super) const PVARY: OpRules = OpRules {
    name: "pvary",
    arity: Arity::Exact(1),
    attrs: AttrKind::Group,
    props: PROPS,
    infer,
    eval: |_, a| a[0].clone(),
    jvp: Some(|_, _, n, tg| Some(tg.get(0)?.pvary_in(group_attrs(n).0))),
    vjp: Some(|_, _, n, ct| vec![Some(ct.all_reduce_sum_in(group_attrs(n).0))]),
    math: None,
    lower: None,
};

const NO_DERIVATIVE: OpProps = OpProps {
    commutative: false,
    elementwise: false,
    differentiable: false,
};

/// The `to=` dtype of `num_ranks`/`axis_index`.
fn to_of(a: &Attrs) -> DType {
    match a {
        Attrs::Group {
            param: GroupParam::To(to),
            ..
        } => *to,
        _ => unreachable!("attribute kind checked"),
    }
}

/// `y = P`, the group's size, as a scalar of type `to` (a float type); no derivative.
pub(super) const NUM_RANKS: OpRules = OpRules {
    name: "num_ranks",
    arity: Arity::Exact(0),
    attrs: AttrKind::GroupTo,
    props: NO_DERIVATIVE,
    infer: |_, a| {
        let to = to_of(a);
        if !to.is_float() {
            return Err(format!("the result type must be f32 or f64, found {to}"));
        }
        Ok(TensorType::scalar(to))
    },
    eval: |n, _| Tensor::splat(&n.ty, first_size(n) as f64),
    jvp: None,
    vjp: None,
    math: None,
    lower: None,
};

/// `y` = this rank's position in its group, as a scalar of type `to`; no derivative.
pub(super) const AXIS_INDEX: OpRules = OpRules {
    name: "axis_index",
    arity: Arity::Exact(0),
    attrs: AttrKind::GroupTo,
    props: NO_DERIVATIVE,
    infer: |_, a| {
        let to = to_of(a);
        if to == DType::Bool {
            return Err("the result type must be i32, f32 or f64, found bool".into());
        }
        Ok(TensorType::scalar(to))
    },
    eval: |n, _| Tensor::splat(&n.ty, 0.0),
    jvp: None,
    vjp: None,
    math: None,
    lower: None,
};

/// The cotangent's (or batched tangent's) axis of a node's primal `axis`.
fn shifted(ct: Var<'_>, n: &Node) -> usize {
    let (_, GroupParam::Axis(axis)) = group_attrs(n) else {
        unreachable!("attribute kind checked")
    };
    axis + batch_dims(ct, n).len()
}

fn tangent_axis(tg: &Tangents<'_>, n: &Node) -> usize {
    let (_, GroupParam::Axis(axis)) = group_attrs(n) else {
        unreachable!("attribute kind checked")
    };
    tg.axis(axis)
}

/// `y` = every rank's `x` joined along `axis` in group order; ẏ = all_gather(ẋ),
/// x̄ = reduce_scatter(ȳ).
pub(super) const ALL_GATHER: OpRules = OpRules {
    name: "all_gather",
    arity: Arity::Exact(1),
    attrs: AttrKind::GroupAxis,
    props: PROPS,
    infer: |tys, a| {
        same_float(tys)?;
        let (k, axis) = sized(tys[0], a, "all_gather")?;
        let mut ty = tys[0].clone();
        ty.shape[axis] = ty.shape[axis]
            .checked_mul(k)
            .ok_or_else(|| "the result is too large".to_string())?;
        Ok(ty)
    },
    eval: |n, a| {
        let (_, GroupParam::Axis(axis)) = group_attrs(n) else {
            unreachable!("attribute kind checked")
        };
        let k = first_size(n);
        let concat = Node {
            op: Op::Concat,
            attrs: Attrs::Axis { axis },
            ..n.clone()
        };
        super::eval(&concat, &vec![a[0]; k])
    },
    jvp: Some(|_, _, n, tg| {
        let axis = tangent_axis(tg, n);
        Some(tg.get(0)?.all_gather(axis, group_attrs(n).0))
    }),
    vjp: Some(|_, _, n, ct| {
        let axis = shifted(ct, n);
        vec![Some(ct.reduce_scatter(axis, group_attrs(n).0))]
    }),
    math: None,
    lower: None,
};

/// `y` = block `i` (along `axis`) of `Σ_group x` on the rank at position `i`;
/// ẏ = reduce_scatter(ẋ), x̄ = all_gather(ȳ).
pub(super) const REDUCE_SCATTER: OpRules = OpRules {
    name: "reduce_scatter",
    arity: Arity::Exact(1),
    attrs: AttrKind::GroupAxis,
    props: PROPS,
    infer: |tys, a| {
        same_float(tys)?;
        let (k, axis) = sized(tys[0], a, "reduce_scatter")?;
        let mut ty = tys[0].clone();
        if ty.shape[axis] % k != 0 {
            return Err(format!(
                "axis {axis} has {} elements, not a multiple of the group size {k}",
                ty.shape[axis]
            ));
        }
        ty.shape[axis] /= k;
        Ok(ty)
    },
    eval: |n, a| {
        let (_, GroupParam::Axis(axis)) = group_attrs(n) else {
            unreachable!("attribute kind checked")
        };
        let sum = times(a[0], first_size(n));
        let mut stop = sum.shape().to_vec();
        stop[axis] = n.ty.shape[axis];
        let slice = Node {
            op: Op::Slice,
            attrs: Attrs::Slice {
                start: vec![0; stop.len()],
                stop,
            },
            ..n.clone()
        };
        super::eval(&slice, &[&sum])
    },
    jvp: Some(|_, _, n, tg| {
        let axis = tangent_axis(tg, n);
        Some(tg.get(0)?.reduce_scatter(axis, group_attrs(n).0))
    }),
    vjp: Some(|_, _, n, ct| {
        let axis = shifted(ct, n);
        vec![Some(ct.all_gather(axis, group_attrs(n).0))]
    }),
    math: None,
    lower: None,
};

/// The root position of a `collective_broadcast`.
pub(crate) fn root_of(n: &Node) -> usize {
    match group_attrs(n).1 {
        GroupParam::Root(r) => r,
        _ => unreachable!("attribute kind checked"),
    }
}

/// `y` = the root's `x` on every rank of its group; ẏ = collective_broadcast(ẋ), x̄ = the
/// group's sum of ȳ on the root, zero elsewhere.
pub(super) const COLLECTIVE_BROADCAST: OpRules = OpRules {
    name: "collective_broadcast",
    arity: Arity::Exact(1),
    attrs: AttrKind::GroupRoot,
    props: PROPS,
    infer: |tys, a| {
        same_float(tys)?;
        let Attrs::Group {
            groups,
            param: GroupParam::Root(root),
        } = a
        else {
            unreachable!("attribute kind checked")
        };
        if let Some(min) = groups.min_size()
            && *root >= min
        {
            return Err(format!(
                "root {root} is not a position in every group (the smallest of {groups} has {min} rank(s))"
            ));
        }
        Ok(tys[0].clone())
    },
    eval: |_, a| a[0].clone(),
    jvp: Some(|_, _, n, tg| {
        Some(
            tg.get(0)?
                .collective_broadcast(root_of(n), group_attrs(n).0),
        )
    }),
    vjp: Some(|b, _, n, ct| vec![Some(broadcast_transpose(b, n, ct))]),
    math: None,
    lower: None,
};

/// Sum-to-root: `select(axis_index == root, all_reduce_sum(ȳ), 0)`.
fn broadcast_transpose<'b>(b: &'b GraphBuilder, n: &Node, ct: Var<'b>) -> Var<'b> {
    let groups = group_attrs(n).0;
    let here = b.axis_index(DType::I32, groups);
    let root = b.constant(Tensor::from_i32(vec![], vec![root_of(n) as i32]));
    let sum = ct.all_reduce_sum_in(groups);
    here.equal(root)
        .select(sum, b.zeros(ct.dtype(), &ct.shape()))
}
