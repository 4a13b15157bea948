//! `matmul` with `jnp.matmul` semantics: operands of rank >= 2, batch dimensions broadcast.

use super::{Arity, AttrKind, OpProps, OpRules, add_opt, same_float};
use crate::ir::{Attrs, TensorType, broadcast_shapes, broadcast_strides};
use crate::tensor::{Data, Tensor};

/// `C = A·B` over the last two axes (batch axes broadcast); Ċ = Ȧ·B + A·Ḃ, Ā = C̄·Bᵀ,
/// B̄ = Aᵀ·C̄ (the reverse driver sums over broadcast batch axes). A tangent or cotangent batch
/// axis is just one more matmul batch axis.
pub(super) const MATMUL: OpRules = OpRules {
    name: "matmul",
    arity: Arity::Exact(2),
    attrs: AttrKind::None,
    props: OpProps {
        commutative: false,
        elementwise: false,
        differentiable: true,
    },
    infer: infer_matmul,
    eval: |n, a| {
        let (x, y) = (a[0], a[1]);
        let (xs, ys) = (x.shape(), y.shape());
        let (m, k, nn) = (xs[xs.len() - 2], xs[xs.len() - 1], ys[ys.len() - 1]);
        let batch = &n.ty.shape[..n.ty.rank() - 2];
        let bx = batch_offsets(&xs[..xs.len() - 2], batch, m * k);
        let by = batch_offsets(&ys[..ys.len() - 2], batch, k * nn);
        macro_rules! mm {
            ($xv:expr, $yv:expr, $zero:expr) => {{
                let mut out = Vec::with_capacity(n.ty.numel());
                for (ox, oy) in bx.iter().zip(&by) {
                    for i in 0..m {
                        for j in 0..nn {
                            let mut acc = $zero;
                            for p in 0..k {
                                acc += $xv[ox + i * k + p] * $yv[oy + p * nn + j];
                            }
                            out.push(acc);
                        }
                    }
                }
                out
            }};
        }
        let data = match (x.data(), y.data()) {
            (Data::F64(xv), Data::F64(yv)) => Data::F64(mm!(xv, yv, 0.0f64)),
            (Data::F32(xv), Data::F32(yv)) => Data::F32(mm!(xv, yv, 0.0f32)),
            _ => unreachable!("dtypes checked by infer"),
        };
        Tensor::new(n.ty.shape.clone(), data)
    },
    jvp: Some(|b, _, n, tg| {
        let (x, y) = (b.var(n.inputs[0]), b.var(n.inputs[1]));
        add_opt(
            tg.get(0).map(|t| t.matmul(y)),
            tg.get(1).map(|t| x.matmul(t)),
        )
    }),
    vjp: Some(|b, _, n, ct| {
        let (x, y) = (b.var(n.inputs[0]), b.var(n.inputs[1]));
        vec![Some(ct.matmul(y.mt())), Some(x.mt().matmul(ct))]
    }),
    math: None,
    lower: None,
};

fn infer_matmul(t: &[&TensorType], _: &Attrs) -> Result<TensorType, String> {
    let d = same_float(t)?;
    let (a, b) = (&t[0].shape, &t[1].shape);
    if a.len() < 2 || b.len() < 2 {
        return Err("matmul operands must have rank >= 2".into());
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
    if k != k2 {
        return Err(format!(
            "inner dimensions differ: [.., {m}, {k}] x [.., {k2}, {n}]"
        ));
    }
    let mut shape = broadcast_shapes(&a[..a.len() - 2], &b[..b.len() - 2])
        .ok_or_else(|| "batch dimensions do not broadcast".to_string())?;
    shape.extend([m, n]);
    Ok(TensorType::new(d, shape))
}

/// Element offsets of each matrix of an operand with batch shape `from`, for every batch index
/// of the result's batch shape `to` (row-major), given the matrix size.
pub(crate) fn batch_offsets(from: &[usize], to: &[usize], mat: usize) -> Vec<usize> {
    let st = broadcast_strides(from, to);
    let n: usize = to.iter().product();
    let mut idx = vec![0usize; to.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>() * mat);
        super::next_index(&mut idx, to);
    }
    out
}
