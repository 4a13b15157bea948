//! Graph leaves (`input`, `const`) and data-movement ops: `reshape`, `transpose`, `broadcast`,
//! `slice`, `concat`. None of these does arithmetic, so their JVPs (the same movement applied to
//! the tangent) and VJPs (the transposed movement) are data movement too. Both shift axes and
//! shapes past a batch axis when there is one.

use super::{Arity, AttrKind, OpProps, OpRules, batch_dims};
use crate::ir::{Attrs, DType, TensorType, broadcast_strides, shape_problem, strides};
use crate::tensor::{Data, Tensor};

const MOVE: OpProps = OpProps {
    commutative: false,
    elementwise: false,
    differentiable: true,
};
const LEAF: OpProps = OpProps {
    commutative: false,
    elementwise: false,
    differentiable: false,
};

/// A graph input (a leaf; its value is supplied by the caller).
pub(super) const INPUT: OpRules = OpRules {
    name: "input",
    arity: Arity::Exact(0),
    attrs: AttrKind::None,
    props: LEAF,
    infer: |_, _| Err("inputs are created with Graph::add_input".into()),
    eval: |_, _| unreachable!("the interpreter supplies input values"),
    jvp: None,
    vjp: None,
    math: None,
    lower: None,
};

/// A constant (a leaf; its value is the attribute).
pub(super) const CONST: OpRules = OpRules {
    name: "const",
    arity: Arity::Exact(0),
    attrs: AttrKind::Const,
    props: LEAF,
    infer: |_, _| Err("constants are created with Graph::add_const".into()),
    eval: |n, _| {
        n.attrs
            .as_const()
            .expect("const node holds a tensor")
            .clone()
    },
    jvp: None,
    vjp: None,
    math: None,
    lower: None,
};

/// Gathers `x` through an index map: output element `i` is `x[src(i)]`.
fn gather(x: &Tensor, shape: &[usize], src: impl Iterator<Item = usize>) -> Tensor {
    let data = match x.data() {
        Data::F32(v) => Data::F32(src.map(|i| v[i]).collect()),
        Data::F64(v) => Data::F64(src.map(|i| v[i]).collect()),
        Data::Bool(v) => Data::Bool(src.map(|i| v[i]).collect()),
        Data::I32(v) => Data::I32(src.map(|i| v[i]).collect()),
    };
    Tensor::new(shape.to_vec(), data)
}

/// Source offsets for reading a tensor with per-output-axis `strides` (in elements) plus `base`,
/// in row-major order of `shape`.
fn strided(shape: &[usize], st: Vec<usize>, base: usize) -> impl Iterator<Item = usize> {
    let n: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    let shape = shape.to_vec();
    (0..n).map(move |_| {
        let off = base + idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>();
        super::next_index(&mut idx, &shape);
        off
    })
}

/// `y = reshape(x)` (row-major, same element count); ẏ = reshape(ẋ), x̄ = reshape(ȳ) back.
pub(super) const RESHAPE: OpRules = OpRules {
    name: "reshape",
    arity: Arity::Exact(1),
    attrs: AttrKind::Shape,
    props: MOVE,
    infer: |t, a| {
        let Attrs::Shape { shape } = a else {
            unreachable!("attribute kind checked")
        };
        let ty = TensorType::checked(t[0].dtype, shape.clone()).ok_or_else(|| {
            format!(
                "invalid target shape: {}",
                shape_problem(shape).unwrap_or_default()
            )
        })?;
        if ty.numel() != t[0].numel() {
            return Err(format!(
                "cannot reshape {} elements into {shape:?} ({} elements)",
                t[0].numel(),
                ty.numel()
            ));
        }
        Ok(ty)
    },
    eval: |n, a| Tensor::new(n.ty.shape.clone(), a[0].data().clone()),
    jvp: Some(|_, _, n, tg| Some(tg.get(0)?.reshape(&tg.shape(&n.ty.shape)))),
    vjp: Some(|b, _, n, ct| {
        let mut shape = batch_dims(ct, n);
        shape.extend(b.ty(n.inputs[0]).shape);
        vec![Some(ct.reshape(&shape))]
    }),
    math: None,
    lower: None,
};

/// `y = transpose(x, perm)`: output axis `i` is input axis `perm[i]`; ẏ = transpose(ẋ, perm),
/// x̄ = transpose(ȳ, perm⁻¹).
pub(super) const TRANSPOSE: OpRules = OpRules {
    name: "transpose",
    arity: Arity::Exact(1),
    attrs: AttrKind::Perm,
    props: MOVE,
    infer: |t, a| {
        let Attrs::Perm { perm } = a else {
            unreachable!("attribute kind checked")
        };
        let r = t[0].rank();
        let mut seen = vec![false; r];
        if perm.len() != r
            || perm
                .iter()
                .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
        {
            return Err(format!(
                "perm {perm:?} is not a permutation of the {r} axes"
            ));
        }
        Ok(TensorType::new(
            t[0].dtype,
            perm.iter().map(|&p| t[0].shape[p]).collect::<Vec<_>>(),
        ))
    },
    eval: |n, a| {
        let Attrs::Perm { perm } = &n.attrs else {
            unreachable!("transpose attrs")
        };
        let s = strides(a[0].shape());
        gather(
            a[0],
            &n.ty.shape,
            strided(&n.ty.shape, perm.iter().map(|&p| s[p]).collect(), 0),
        )
    },
    jvp: Some(|_, _, n, tg| {
        let Attrs::Perm { perm } = &n.attrs else {
            unreachable!("transpose attrs")
        };
        Some(tg.get(0)?.transpose(&tg.perm(perm)))
    }),
    vjp: Some(|_, _, n, ct| {
        let Attrs::Perm { perm } = &n.attrs else {
            unreachable!("transpose attrs")
        };
        let lead = batch_dims(ct, n).len();
        let mut inv: Vec<usize> = (0..lead + perm.len()).collect();
        for (i, &p) in perm.iter().enumerate() {
            inv[lead + p] = lead + i;
        }
        vec![Some(ct.transpose(&inv))]
    }),
    math: None,
    lower: None,
};

/// `y = broadcast_to(x, shape)` (NumPy rules); ẏ = broadcast_to(ẋ, shape), x̄ = ȳ summed over
/// the broadcast axes (the reverse driver's un-broadcast does exactly that).
pub(super) const BROADCAST: OpRules = OpRules {
    name: "broadcast",
    arity: Arity::Exact(1),
    attrs: AttrKind::Shape,
    props: MOVE,
    infer: |t, a| {
        let Attrs::Shape { shape } = a else {
            unreachable!("attribute kind checked")
        };
        let ty = TensorType::checked(t[0].dtype, shape.clone()).ok_or_else(|| {
            format!(
                "invalid target shape: {}",
                shape_problem(shape).unwrap_or_default()
            )
        })?;
        let from = &t[0].shape;
        let off = shape.len().checked_sub(from.len());
        let ok = off.is_some_and(|off| {
            from.iter()
                .enumerate()
                .all(|(i, &d)| d == 1 || d == shape[i + off])
        });
        if !ok {
            return Err(format!("cannot broadcast shape {from:?} to {shape:?}"));
        }
        Ok(ty)
    },
    eval: |n, a| {
        let st = broadcast_strides(a[0].shape(), &n.ty.shape);
        gather(a[0], &n.ty.shape, strided(&n.ty.shape, st, 0))
    },
    jvp: Some(|_, _, n, tg| Some(tg.get(0)?.broadcast_to(&tg.shape(&n.ty.shape)))),
    vjp: Some(|_, _, _, ct| vec![Some(ct)]),
    math: None,
    lower: None,
};

/// `y = x[start..stop]` per axis (step 1); ẏ = ẋ[start..stop], x̄ = ȳ padded with zeros (built
/// from `concat`).
pub(super) const SLICE: OpRules = OpRules {
    name: "slice",
    arity: Arity::Exact(1),
    attrs: AttrKind::Slice,
    props: MOVE,
    infer: |t, a| {
        let Attrs::Slice { start, stop } = a else {
            unreachable!("attribute kind checked")
        };
        let sh = &t[0].shape;
        if start.len() != sh.len() || stop.len() != sh.len() {
            return Err(format!(
                "start and stop need one entry per axis ({} axes)",
                sh.len()
            ));
        }
        for ax in 0..sh.len() {
            if !(start[ax] < stop[ax] && stop[ax] <= sh[ax]) {
                return Err(format!(
                    "axis {ax}: need 0 <= start < stop <= {}, found start={} stop={}",
                    sh[ax], start[ax], stop[ax]
                ));
            }
        }
        Ok(TensorType::new(
            t[0].dtype,
            (0..sh.len())
                .map(|i| stop[i] - start[i])
                .collect::<Vec<_>>(),
        ))
    },
    eval: |n, a| {
        let Attrs::Slice { start, .. } = &n.attrs else {
            unreachable!("slice attrs")
        };
        let s = strides(a[0].shape());
        let base = start.iter().zip(&s).map(|(a, b)| a * b).sum();
        gather(a[0], &n.ty.shape, strided(&n.ty.shape, s, base))
    },
    jvp: Some(|_, _, n, tg| {
        let Attrs::Slice { start, stop } = &n.attrs else {
            unreachable!("slice attrs")
        };
        Some(tg.get(0)?.slice(&tg.prefixed(start, 0), &tg.shape(stop)))
    }),
    vjp: Some(|b, _, n, ct| {
        let Attrs::Slice { start, stop } = &n.attrs else {
            unreachable!("slice attrs")
        };
        let full = b.ty(n.inputs[0]).shape;
        let lead = batch_dims(ct, n).len();
        let mut g = ct;
        for ax in 0..full.len() {
            let mut parts = Vec::new();
            let mut shape = g.shape();
            if start[ax] > 0 {
                shape[lead + ax] = start[ax];
                parts.push(b.zeros(g.dtype(), &shape));
            }
            parts.push(g);
            if stop[ax] < full[ax] {
                shape[lead + ax] = full[ax] - stop[ax];
                parts.push(b.zeros(g.dtype(), &shape));
            }
            if parts.len() > 1 {
                g = b.concat(&parts, lead + ax);
            }
        }
        vec![Some(g)]
    }),
    math: None,
    lower: None,
};

/// `y = concat(x₀, x₁, …)` along `axis`; ẏ = concat(ẋ₀, ẋ₁, …) (zeros for zero tangents),
/// x̄ᵢ = the matching slice of ȳ.
pub(super) const CONCAT: OpRules = OpRules {
    name: "concat",
    arity: Arity::Variadic,
    attrs: AttrKind::Axis,
    props: MOVE,
    infer: |t, a| {
        let Attrs::Axis { axis } = a else {
            unreachable!("attribute kind checked")
        };
        let first = t[0];
        if first.rank() == 0 {
            return Err("concat operands must have rank >= 1".into());
        }
        if *axis >= first.rank() {
            return Err(format!(
                "axis {axis} is out of range for rank {}",
                first.rank()
            ));
        }
        let mut shape = first.shape.clone();
        shape[*axis] = 0;
        for (k, x) in t.iter().enumerate() {
            if x.dtype != first.dtype {
                return Err(format!(
                    "operand {k} has dtype {}, expected {}",
                    x.dtype, first.dtype
                ));
            }
            let same_rest = x.rank() == first.rank()
                && (0..x.rank()).all(|i| i == *axis || x.shape[i] == first.shape[i]);
            if !same_rest {
                return Err(format!(
                    "operand {k} shape {:?} does not match {:?} off axis {axis}",
                    x.shape, first.shape
                ));
            }
            shape[*axis] = shape[*axis].saturating_add(x.shape[*axis]);
        }
        Ok(TensorType::new(first.dtype, shape))
    },
    eval: |n, a| {
        let Attrs::Axis { axis } = n.attrs else {
            unreachable!("concat attrs")
        };
        let outer: usize = n.ty.shape[..axis].iter().product();
        let inner: usize = n.ty.shape[axis + 1..].iter().product();
        let mut src = Vec::with_capacity(n.ty.numel());
        for o in 0..outer {
            for (k, x) in a.iter().enumerate() {
                let run = x.shape()[axis] * inner;
                src.extend((0..run).map(|i| (k, o * run + i)));
            }
        }
        let data = match n.ty.dtype {
            DType::F32 => Data::F32(src.iter().map(|&(k, i)| pick(a[k], i) as f32).collect()),
            DType::F64 => Data::F64(src.iter().map(|&(k, i)| pick(a[k], i)).collect()),
            DType::Bool => Data::Bool(src.iter().map(|&(k, i)| pick(a[k], i) != 0.0).collect()),
            DType::I32 => Data::I32(src.iter().map(|&(k, i)| pick(a[k], i) as i32).collect()),
        };
        Tensor::new(n.ty.shape.clone(), data)
    },
    jvp: Some(|b, _, n, tg| {
        let Attrs::Axis { axis } = n.attrs else {
            unreachable!("concat attrs")
        };
        if tg.all_zero() {
            return None;
        }
        let parts: Vec<_> = (0..n.inputs.len())
            .map(|i| tg.or_zeros(b, i, &b.ty(n.inputs[i])))
            .collect();
        Some(b.concat(&parts, tg.axis(axis)))
    }),
    vjp: Some(|b, _, n, ct| {
        let Attrs::Axis { axis } = n.attrs else {
            unreachable!("concat attrs")
        };
        let full = ct.shape();
        let lead = batch_dims(ct, n).len();
        let mut at = 0;
        n.inputs
            .iter()
            .map(|&x| {
                let w = b.ty(x).shape[axis];
                let mut start = vec![0; full.len()];
                let mut stop = full.clone();
                start[lead + axis] = at;
                stop[lead + axis] = at + w;
                at += w;
                b.ty(x).dtype.is_float().then(|| ct.slice(&start, &stop))
            })
            .collect()
    }),
    math: None,
    lower: None,
};

/// Element `i` of `t` as f64 (exact for f32, i32 and bool, so concat copies bits faithfully
/// except NaN payloads).
fn pick(t: &Tensor, i: usize) -> f64 {
    t.data().get_f64(i)
}
