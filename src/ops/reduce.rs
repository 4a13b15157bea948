//! Reductions over a set of axes: `reduce_sum`, `reduce_mean`, `reduce_max`, `reduce_min`.
//!
//! Attributes are canonical: `axes` strictly increasing (the parser and builder sort them).
//! The interpreter accumulates in the operand's dtype, in row-major order of the operand.
//!
//! Reductions are linear (sum, mean) or piecewise linear (max, min: the tangent of the tied
//! extreme elements, averaged), so the JVP reduces the tangent the same way and the VJP
//! broadcasts the cotangent back. Both shift the reduced axes past any batch axis.

use super::{Arity, AttrKind, OpProps, OpRules, Tangents, batch_dims, same_float};
use crate::ir::{Attrs, GraphBuilder, Node, NodeId, Op, TensorType, Var};
use crate::tensor::{Data, Tensor};

const REDUCE: OpProps = OpProps {
    commutative: false,
    elementwise: false,
    differentiable: true,
};

fn infer_reduce(tys: &[&TensorType], attrs: &Attrs) -> Result<TensorType, String> {
    let d = same_float(tys)?;
    let Attrs::Reduce { axes, keepdims } = attrs else {
        unreachable!("attribute kind checked")
    };
    let rank = tys[0].rank();
    if let Some(a) = axes.iter().find(|&&a| a >= rank) {
        return Err(format!("axis {a} is out of range for rank {rank}"));
    }
    if axes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "axes {axes:?} must be distinct (and are kept sorted)"
        ));
    }
    Ok(TensorType::new(
        d,
        reduced_shape(&tys[0].shape, axes, *keepdims),
    ))
}

/// The shape after reducing `axes` of `shape`.
pub(crate) fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(shape.len());
    for (i, &d) in shape.iter().enumerate() {
        if !axes.contains(&i) {
            out.push(d);
        } else if keepdims {
            out.push(1);
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
}

/// For every operand element (row-major), the index of the output element it folds into.
fn fold_targets(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    let kept: Vec<usize> = (0..shape.len()).filter(|a| !axes.contains(a)).collect();
    let kept_shape: Vec<usize> = kept.iter().map(|&a| shape[a]).collect();
    let kept_strides = crate::ir::strides(&kept_shape);
    let n: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            kept.iter()
                .zip(&kept_strides)
                .map(|(&a, s)| idx[a] * s)
                .sum(),
        );
        super::next_index(&mut idx, shape);
    }
    out
}

macro_rules! reduce_in {
    ($v:expr, $t:ty, $targets:expr, $m:expr, $count:expr, $kind:expr) => {{
        let (v, targets, m, count): (&[$t], &[usize], usize, usize) = ($v, $targets, $m, $count);
        let init: $t = match $kind {
            Kind::Sum | Kind::Mean => 0.0,
            Kind::Max => <$t>::NEG_INFINITY,
            Kind::Min => <$t>::INFINITY,
        };
        let mut acc = vec![init; m];
        for (x, &t) in v.iter().zip(targets) {
            let a = &mut acc[t];
            *a = match $kind {
                Kind::Sum | Kind::Mean => *a + *x,
                Kind::Max if a.is_nan() || x.is_nan() => <$t>::NAN,
                Kind::Min if a.is_nan() || x.is_nan() => <$t>::NAN,
                Kind::Max => {
                    if *x > *a {
                        *x
                    } else {
                        *a
                    }
                }
                Kind::Min => {
                    if *x < *a {
                        *x
                    } else {
                        *a
                    }
                }
            };
        }
        if let Kind::Mean = $kind {
            let c = count as $t;
            for a in &mut acc {
                *a /= c;
            }
        }
        acc
    }};
}

fn eval_reduce(node: &Node, args: &[&Tensor], kind: Kind) -> Tensor {
    let Attrs::Reduce { axes, .. } = &node.attrs else {
        unreachable!("reduce attrs")
    };
    let x = args[0];
    let targets = fold_targets(x.shape(), axes);
    let m = node.ty.numel();
    let count = x.numel() / m;
    let data = match x.data() {
        Data::F64(v) => Data::F64(reduce_in!(v, f64, &targets, m, count, kind)),
        Data::F32(v) => Data::F32(reduce_in!(v, f32, &targets, m, count, kind)),
        Data::Bool(_) | Data::I32(_) => unreachable!("dtype checked by infer"),
    };
    Tensor::new(node.ty.shape.clone(), data)
}

/// Reshapes a reduced value (with leading batch dims `batch`) to keepdims form and broadcasts it
/// back to the operand's shape (with the same batch dims).
fn broadcast_back<'b>(b: &'b GraphBuilder, n: &Node, v: Var<'b>, batch: &[usize]) -> Var<'b> {
    let Attrs::Reduce { axes, .. } = &n.attrs else {
        unreachable!("reduce attrs")
    };
    let in_shape = b.ty(n.inputs[0]).shape;
    let with = |s: &[usize]| -> Vec<usize> { batch.iter().chain(s).copied().collect() };
    v.reshape(&with(&reduced_shape(&in_shape, axes, true)))
        .broadcast_to(&with(&in_shape))
}

/// For `reduce_max`/`reduce_min`: where the operand elements tie for the extreme, and how many
/// tie (per output element, broadcast back to the operand's shape).
fn extreme_hits<'b>(b: &'b GraphBuilder, id: NodeId, n: &Node) -> (Var<'b>, Var<'b>) {
    let Attrs::Reduce { axes, .. } = &n.attrs else {
        unreachable!("reduce attrs")
    };
    let x = b.var(n.inputs[0]);
    let hit = x.equal(broadcast_back(b, n, b.var(id), &[]));
    let count = b
        .select(hit, x.scalar_like(1.0), x.scalar_like(0.0))
        .sum_axes_keepdims(axes)
        .broadcast_to(&x.shape());
    (hit, count)
}

/// `reduce_max`/`reduce_min` JVP: the mean tangent of the tied extreme elements.
fn jvp_extreme<'b>(
    b: &'b GraphBuilder,
    id: NodeId,
    n: &Node,
    tg: &Tangents<'b>,
) -> Option<Var<'b>> {
    let t = tg.get(0)?;
    let (hit, count) = extreme_hits(b, id, n);
    let zero = t.scalar_like(0.0);
    let picked = b.select(hit, t / count, zero);
    Some(reduce_tangent(tg, n, Op::ReduceSum, picked))
}

/// `reduce_max`/`reduce_min` VJP: ȳ split equally among the tied extreme elements.
fn vjp_extreme<'b>(b: &'b GraphBuilder, id: NodeId, n: &Node, ct: Var<'b>) -> Vec<Option<Var<'b>>> {
    let (hit, count) = extreme_hits(b, id, n);
    let share = broadcast_back(b, n, ct, &batch_dims(ct, n)) / count;
    vec![Some(b.select(hit, share, ct.scalar_like(0.0)))]
}

/// Reduces a tangent with `op` over the node's axes (shifted past the batch axis).
fn reduce_tangent<'b>(tg: &Tangents<'b>, n: &Node, op: Op, t: Var<'b>) -> Var<'b> {
    let Attrs::Reduce { axes, keepdims } = &n.attrs else {
        unreachable!("reduce attrs")
    };
    t.reduce(op, Some(&tg.axes(axes)), *keepdims)
}

macro_rules! reduce_op {
    ($(#[$doc:meta])* $name:ident, $gir:literal, $kind:expr, $jvp:expr, $vjp:expr) => {
        $(#[$doc])*
        pub(super) const $name: OpRules = OpRules {
            name: $gir,
            arity: Arity::Exact(1),
            attrs: AttrKind::Reduce,
            props: REDUCE,
            infer: infer_reduce,
            eval: |n, a| eval_reduce(n, a, $kind),
            jvp: Some($jvp),
            vjp: Some($vjp),
            math: None,
            lower: None,
        };
    };
}

reduce_op!(
    /// `y = Σ x` over `axes`; ẏ = Σ ẋ, x̄ = ȳ broadcast back.
    REDUCE_SUM, "reduce_sum", Kind::Sum,
    |_, _, n, tg| Some(reduce_tangent(tg, n, Op::ReduceSum, tg.get(0)?)),
    |b, _, n, ct| vec![Some(broadcast_back(b, n, ct, &batch_dims(ct, n)))]
);
reduce_op!(
    /// `y = mean(x)` over `axes`; ẏ = mean(ẋ), x̄ = ȳ broadcast back / count.
    REDUCE_MEAN, "reduce_mean", Kind::Mean,
    |_, _, n, tg| Some(reduce_tangent(tg, n, Op::ReduceMean, tg.get(0)?)),
    |b, id, n, ct| {
        let count = (b.ty(n.inputs[0]).numel() / b.ty(id).numel()) as f64;
        vec![Some(broadcast_back(b, n, ct, &batch_dims(ct, n)) / count)]
    }
);
reduce_op!(
    /// `y = max(x)` over `axes` (NaN if any is NaN); ẏ and x̄ split equally among tied maxima.
    REDUCE_MAX, "reduce_max", Kind::Max, jvp_extreme, vjp_extreme
);
reduce_op!(
    /// `y = min(x)` over `axes` (NaN if any is NaN); ẏ and x̄ split equally among tied minima.
    REDUCE_MIN, "reduce_min", Kind::Min, jvp_extreme, vjp_extreme
);
