//! `cumsum` along one axis (`lax.cumsum`).
//!
//! `y[.., i, ..] = x[.., 0, ..] + ... + x[.., i, ..]` (or, with `reverse`, the sum from `i` to
//! the end), accumulated in the operand's dtype in scan order: the first element is copied (so
//! `cumsum([-0.0]) = [-0.0]`, as NumPy) and each later one is the previous result plus the next
//! operand element. The JIT emits exactly this order, so the two agree bitwise.
//!
//! A scan is linear, so its JVP is the same scan of the tangent, and its VJP is the transposed
//! scan: the cotangent scanned in the opposite direction.

use super::{Arity, AttrKind, OpProps, OpRules, batch_dims, same_float};
use crate::ir::{Attrs, Node, TensorType};
use crate::tensor::{Data, Tensor};

fn infer_cumsum(tys: &[&TensorType], attrs: &Attrs) -> Result<TensorType, String> {
    same_float(tys)?;
    let Attrs::Cumsum { axis, .. } = attrs else {
        unreachable!("attribute kind checked")
    };
    let rank = tys[0].rank();
    if *axis >= rank {
        return Err(format!(
            "axis {axis} is out of range for an operand of rank {rank}"
        ));
    }
    Ok(tys[0].clone())
}

/// Scans `v` (row-major, `shape`) along `axis` in place.
fn scan_in<T: Copy + std::ops::Add<Output = T>>(
    v: &mut [T],
    shape: &[usize],
    axis: usize,
    reverse: bool,
) {
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| {
                let k = if reverse { n - 1 - j } else { j };
                o * n * inner + k * inner + i
            };
            for j in 1..n {
                v[at(j)] = v[at(j - 1)] + v[at(j)];
            }
        }
    }
}

fn eval_cumsum(node: &Node, args: &[&Tensor]) -> Tensor {
    let Attrs::Cumsum { axis, reverse } = node.attrs else {
        unreachable!("cumsum attrs")
    };
    let shape = &node.ty.shape;
    let data = match args[0].data() {
        Data::F64(v) => {
            let mut v = v.clone();
            scan_in(&mut v, shape, axis, reverse);
            Data::F64(v)
        }
        Data::F32(v) => {
            let mut v = v.clone();
            scan_in(&mut v, shape, axis, reverse);
            Data::F32(v)
        }
        Data::Bool(_) | Data::I32(_) => unreachable!("dtype checked by infer"),
    };
    Tensor::new(shape.clone(), data)
}

/// `y = cumsum(x, axis, reverse)`; ẏ = cumsum(ẋ, axis, reverse), x̄ = cumsum(ȳ, axis, !reverse)
/// (both shifted past any batch axis).
pub(super) const CUMSUM: OpRules = OpRules {
    name: "cumsum",
    arity: Arity::Exact(1),
    attrs: AttrKind::Cumsum,
    props: OpProps {
        commutative: false,
        elementwise: false,
        differentiable: true,
    },
    infer: infer_cumsum,
    eval: eval_cumsum,
    jvp: Some(|_, _, n, tg| {
        let Attrs::Cumsum { axis, reverse } = n.attrs else {
            unreachable!("cumsum attrs")
        };
        Some(tg.get(0)?.cumsum(tg.axis(axis), reverse))
    }),
    vjp: Some(|_, _, n, ct| {
        let Attrs::Cumsum { axis, reverse } = n.attrs else {
            unreachable!("cumsum attrs")
        };
        let lead = batch_dims(ct, n).len();
        vec![Some(ct.cumsum(lead + axis, !reverse))]
    }),
    math: None,
    lower: None,
};
