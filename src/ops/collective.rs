//! Collectives: `all_reduce_sum`, `all_reduce_mean` and `pvary`, over every rank of the
//! communicator a graph runs with (see [`crate::comm`]; the "world" group, the only one).
//!
//! A data-parallel program runs the same graph on every rank. Some values are *varying* (each
//! rank has its own: its share of the batch and everything computed from it) and some are
//! *invariant* (the same on every rank: replicated parameters, and the result of an
//! all-reduce). The ops, in JAX `shard_map`'s terms (JAX design note 17111, "Efficient
//! transposition of replication-inducing collectives"):
//! - `all_reduce_sum x` (`psum`): varying → invariant, the elementwise sum over ranks.
//! - `all_reduce_mean x` (`pmean`): the sum divided by the number of ranks `P` (`sum / P` in
//!   the operand's dtype).
//! - `pvary x` (`pbroadcast`): invariant → varying, the identity on each rank.
//! - `num_ranks to=TYPE` (`psum(1)`, without the communication): the number of ranks `P` as
//!   a scalar of float type TYPE; the communicator knows it locally.
//!
//! Their transposes follow the note, so the gradient of a replicated parameter is reduced
//! once, where it is needed, and never twice:
//! - VJP of `all_reduce_sum`: `x̄ = ȳ`, a `pvary` (the cotangent of an invariant value is
//!   invariant; broadcasting it to the ranks moves no data), *not* another all-reduce.
//! - VJP of `all_reduce_mean`: `x̄ = ȳ / num_ranks` (a graph does not know how many ranks
//!   will run it).
//! - VJP of `pvary`: `x̄ = all_reduce_sum(ȳ)`: the per-rank cotangents summed.
//! - JVPs: the same collective applied to the tangent (`pvary`: the tangent itself).
//!
//! So for a data-parallel loss `all_reduce_mean(local_loss(pvary(w), x_rank))`, the
//! gradient with respect to `w` is the mean over ranks of the local gradients, computed by one
//! all-reduce in the backward pass, and the same on every rank.
//!
//! Typing is the user's job: gradlift does not track which values vary. Apply `pvary` where a
//! replicated parameter meets rank-local data; without it, the gradient of `w` above would be
//! each rank's own local gradient divided by `P` (not reduced).
//!
//! `eval` here is the one-rank semantics (every op the identity), used by the plain
//! interpreter and the shape-level tests; [`eval_with`] is the semantics over a
//! communicator. Constant folding skips collectives ([`is_collective`]): their value depends
//! on the ranks.

use super::{Arity, AttrKind, OpProps, OpRules, same_float};
use crate::comm::{CommError, Communicator};
use crate::ir::{Node, Op, TensorType};
use crate::tensor::{Data, Tensor};

/// True for the ops whose value depends on the other ranks.
pub fn is_collective(op: Op) -> bool {
    matches!(
        op,
        Op::AllReduceSum | Op::AllReduceMean | Op::Pvary | Op::NumRanks
    )
}

fn infer(tys: &[&TensorType], _: &crate::ir::Attrs) -> Result<TensorType, String> {
    same_float(tys)?;
    Ok(tys[0].clone())
}

/// Evaluates a collective node on `x` over `comm`.
///
/// # Errors
/// The communicator's [`CommError`].
pub fn eval_with(
    node: &Node,
    args: &[&Tensor],
    comm: &dyn Communicator,
) -> Result<Tensor, CommError> {
    if node.op == Op::NumRanks {
        return Ok(Tensor::splat(&node.ty, comm.size() as f64));
    }
    let mut data = args[0].data().clone();
    if node.op == Op::Pvary {
        return Ok(Tensor::new(node.ty.shape.clone(), data));
    }
    let mean = node.op == Op::AllReduceMean;
    let p = comm.size();
    match &mut data {
        Data::F32(v) => {
            comm.all_reduce_sum_f32(v)?;
            if mean {
                v.iter_mut().for_each(|e| *e /= p as f32);
            }
        }
        Data::F64(v) => {
            comm.all_reduce_sum_f64(v)?;
            if mean {
                v.iter_mut().for_each(|e| *e /= p as f64);
            }
        }
        Data::Bool(_) | Data::I32(_) => unreachable!("float operand checked by infer"),
    }
    Ok(Tensor::new(node.ty.shape.clone(), data))
}

const PROPS: OpProps = OpProps {
    commutative: false,
    elementwise: false,
    differentiable: true,
};

/// `y = Σ_ranks x`; ẏ = all_reduce_sum(ẋ), x̄ = ȳ (the transpose of `psum` is `pbroadcast`).
pub(super) const ALL_REDUCE_SUM: OpRules = OpRules {
    name: "all_reduce_sum",
    arity: Arity::Exact(1),
    attrs: AttrKind::None,
    props: PROPS,
    infer,
    eval: |_, a| a[0].clone(),
    jvp: Some(|_, _, _, tg| Some(tg.get(0)?.all_reduce_sum())),
    vjp: Some(|_, _, _, ct| vec![Some(ct)]),
    math: None,
    lower: None,
};

/// `y = Σ_ranks x / P`; ẏ = all_reduce_mean(ẋ), x̄ = ȳ / num_ranks.
pub(super) const ALL_REDUCE_MEAN: OpRules = OpRules {
    name: "all_reduce_mean",
    arity: Arity::Exact(1),
    attrs: AttrKind::None,
    props: PROPS,
    infer,
    eval: |_, a| a[0].clone(),
    jvp: Some(|_, _, _, tg| Some(tg.get(0)?.all_reduce_mean())),
    vjp: Some(|b, _, n, ct| vec![Some(ct / b.num_ranks(n.ty.dtype))]),
    math: None,
    lower: None,
};

/// `y = x` on each rank (invariant → varying); ẏ = ẋ, x̄ = all_reduce_sum(ȳ).
pub(super) const PVARY: OpRules = OpRules {
    name: "pvary",
    arity: Arity::Exact(1),
    attrs: AttrKind::None,
    props: PROPS,
    infer,
    eval: |_, a| a[0].clone(),
    jvp: Some(|_, _, _, tg| tg.get(0)),
    vjp: Some(|_, _, _, ct| vec![Some(ct.all_reduce_sum())]),
    math: None,
    lower: None,
};

/// `y = P`, the number of ranks, as a scalar of type `to` (a float type); no derivative.
pub(super) const NUM_RANKS: OpRules = OpRules {
    name: "num_ranks",
    arity: Arity::Exact(0),
    attrs: AttrKind::Cast,
    props: OpProps {
        commutative: false,
        elementwise: false,
        differentiable: false,
    },
    infer: |_, a| {
        let crate::ir::Attrs::Cast { to } = a else {
            unreachable!("attribute kind checked")
        };
        if !to.is_float() {
            return Err(format!("the result type must be f32 or f64, found {to}"));
        }
        Ok(TensorType::scalar(*to))
    },
    eval: |n, _| Tensor::splat(&n.ty, 1.0),
    jvp: None,
    vjp: None,
    math: None,
    lower: None,
};
