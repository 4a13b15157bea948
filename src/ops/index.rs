//! Integer indexing: `iota`, `gather`, `scatter_add`, `argmax`, `argmin`.
//!
//! | `.gir` | operands | attributes | result |
//! |---|---|---|---|
//! | `%y = iota type=TYPE axis=A` | none | `type` (`i32`, `f32` or `f64` type, rank ≥ 1), `axis` < rank | `y[…, i, …] = i` along `axis` |
//! | `%y = gather %x, %idx axis=A` | any dtype, `i32` indices of any rank | `axis` < rank of `x` | `x.shape[:A] + idx.shape + x.shape[A+1:]`, `jnp.take(x, idx, A)` |
//! | `%y = scatter_add %u, %idx axis=A size=N` | float updates, `i32` indices | `axis`, `size` ≥ 1 | `y.shape[:A] + [N] + y.shape[A+1:]` with `u.shape = y.shape[:A] + idx.shape + y.shape[A+1:]` |
//! | `%y = argmax %x axis=A`, `argmin` | float or `i32` | `axis` < rank | `i32`, `x.shape` without axis `A` |
//!
//! `i32` is also accepted by `cast` (`to=i32` truncates toward zero and saturates, NaN gives
//! 0; from `i32` converts exactly to `f64`, rounded to `f32`), by the comparisons
//! (`lt le gt ge eq ne`, both operands `i32`) and as the branches of `select`. `i32` constants
//! are integer literals (`const [0, -1, 2] : i32[3]`), and the CLI reads and writes them as JSON
//! integers. Random numbers: [`super::random`].
//!
//! Index operands are `i32` tensors. **Out-of-range indices are clamped** to `0..=n-1` (`n` the
//! size of the indexed axis), in the interpreter and the JIT alike, so no index can read or
//! write outside its tensor; a negative index selects element 0 (there is no negative
//! indexing). `gather` and `scatter_add` are linear maps defined by the same clamped indices,
//! so each is exactly the other's transpose: the VJP of `gather` is `scatter_add` and the VJP
//! of `scatter_add` is `gather`; the JVP of each is itself applied to the tangent. No
//! derivative flows to an index operand (an `i32` value carries none).
//!
//! `scatter_add` accumulates in row-major order of its update operand, starting from zeros, so
//! repeated indices sum in a fixed order (the JIT follows the same order, so the two agree
//! bitwise). `argmax`/`argmin` return the first index of the extreme along the axis (ties go
//! to the lowest index); if the slice holds a NaN the result is the index of its first NaN
//! (NaN counts as the extreme, as in NumPy and JAX). They have no derivative, nor does `iota`.

use super::{Arity, AttrKind, OpProps, OpRules, Tangents, batch_dims};
use crate::ir::{Attrs, DType, GraphBuilder, Node, TensorType, Var};
use crate::tensor::{Data, Tensor};

const LINEAR: OpProps = OpProps {
    commutative: false,
    elementwise: false,
    differentiable: true,
};
const NO_GRAD: OpProps = OpProps {
    commutative: false,
    elementwise: false,
    differentiable: false,
};

/// `(outer, n, inner)`: the products of the dims before `axis`, at `axis`, and after it.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// An index clamped to `0..n` (`n >= 1`).
fn clamp_index(i: i32, n: usize) -> usize {
    usize::try_from(i).map_or(0, |i| i.min(n - 1))
}

fn indices(t: &Tensor) -> &[i32] {
    match t.data() {
        Data::I32(v) => v,
        _ => unreachable!("index dtype checked by infer"),
    }
}

fn need_index(t: &TensorType, what: &str) -> Result<(), String> {
    if t.dtype == DType::I32 {
        Ok(())
    } else {
        Err(format!("{what} must be i32, found {}", t.dtype))
    }
}

// ---- iota ----------------------------------------------------------------------------------

/// `y[..., i, ...] = i` along `axis` (`type=TYPE axis=INT`; `i32`, `f32` or `f64`); no
/// derivative.
pub(super) const IOTA: OpRules = OpRules {
    name: "iota",
    arity: Arity::Exact(0),
    attrs: AttrKind::Iota,
    props: NO_GRAD,
    infer: |_, a| {
        let Attrs::Iota { ty, axis } = a else {
            unreachable!("attribute kind checked")
        };
        if ty.dtype == DType::Bool {
            return Err("iota type must be i32, f32 or f64, found bool".into());
        }
        if !ty.is_valid() {
            return Err(format!("invalid iota type {ty}"));
        }
        if *axis >= ty.rank() {
            return Err(format!("axis {axis} is out of range for {ty}"));
        }
        Ok(ty.clone())
    },
    eval: |n, _| {
        let Attrs::Iota { ty, axis } = &n.attrs else {
            unreachable!("iota attrs")
        };
        let (_, len, inner) = split_at_axis(&ty.shape, *axis);
        Tensor::from_fn(ty, |e| ((e / inner) % len) as f64)
    },
    jvp: None,
    vjp: None,
    math: None,
    lower: None,
};

// ---- gather and scatter_add ----------------------------------------------------------------

fn infer_gather(t: &[&TensorType], a: &Attrs) -> Result<TensorType, String> {
    let Attrs::Axis { axis } = a else {
        unreachable!("attribute kind checked")
    };
    let (x, idx) = (t[0], t[1]);
    need_index(idx, "the index operand")?;
    if *axis >= x.rank() {
        return Err(format!(
            "axis {axis} is out of range for an operand of rank {}",
            x.rank()
        ));
    }
    let mut shape = x.shape[..*axis].to_vec();
    shape.extend(&idx.shape);
    shape.extend(&x.shape[axis + 1..]);
    Ok(TensorType::new(x.dtype, shape))
}

fn eval_gather(n: &Node, a: &[&Tensor]) -> Tensor {
    let Attrs::Axis { axis } = n.attrs else {
        unreachable!("gather attrs")
    };
    let (outer, len, inner) = split_at_axis(a[0].shape(), axis);
    let idx = indices(a[1]);
    let mut src = Vec::with_capacity(n.ty.numel());
    for o in 0..outer {
        for &j in idx {
            let base = (o * len + clamp_index(j, len)) * inner;
            src.extend(base..base + inner);
        }
    }
    let data = match a[0].data() {
        Data::F32(v) => Data::F32(src.iter().map(|&i| v[i]).collect()),
        Data::F64(v) => Data::F64(src.iter().map(|&i| v[i]).collect()),
        Data::Bool(v) => Data::Bool(src.iter().map(|&i| v[i]).collect()),
        Data::I32(v) => Data::I32(src.iter().map(|&i| v[i]).collect()),
    };
    Tensor::new(n.ty.shape.clone(), data)
}

/// Operand `i`'s tangent with exactly its tangent shape (the forward driver lifts a tangent
/// whose operand has a lower rank than the output, which an axis-addressing rule must undo).
fn tangent_of<'b>(b: &'b GraphBuilder, n: &Node, tg: &Tangents<'b>, i: usize) -> Option<Var<'b>> {
    let t = tg.get(i)?;
    let want = tg.shape(&b.ty(n.inputs[i]).shape);
    Some(if t.shape() == want {
        t
    } else {
        t.reshape(&want)
    })
}

/// `y = take(x, idx, axis)` (`jnp.take` with clamped indices): `y` has shape
/// `x.shape[:axis] + idx.shape + x.shape[axis+1:]`. ẏ = gather(ẋ, idx);
/// x̄ = `scatter_add(ȳ, idx, axis, x.shape[axis])`; no derivative for `idx`.
pub(super) const GATHER: OpRules = OpRules {
    name: "gather",
    arity: Arity::Exact(2),
    attrs: AttrKind::Axis,
    props: LINEAR,
    infer: infer_gather,
    eval: eval_gather,
    jvp: Some(|b, _, n, tg| {
        let Attrs::Axis { axis } = n.attrs else {
            unreachable!("gather attrs")
        };
        let t = tangent_of(b, n, tg, 0)?;
        Some(b.gather(t, b.var(n.inputs[1]), tg.axis(axis)))
    }),
    vjp: Some(|b, _, n, ct| {
        let Attrs::Axis { axis } = n.attrs else {
            unreachable!("gather attrs")
        };
        let lead = batch_dims(ct, n).len();
        let size = b.ty(n.inputs[0]).shape[axis];
        let idx = b.var(n.inputs[1]);
        vec![Some(b.scatter_add(ct, idx, lead + axis, size)), None]
    }),
    math: None,
    lower: None,
};

fn infer_scatter(t: &[&TensorType], a: &Attrs) -> Result<TensorType, String> {
    let Attrs::Scatter { axis, size } = a else {
        unreachable!("attribute kind checked")
    };
    let (u, idx) = (t[0], t[1]);
    need_index(idx, "the index operand")?;
    if !u.dtype.is_float() {
        return Err(format!("the updates must be float, found {}", u.dtype));
    }
    let k = idx.rank();
    let fits = axis
        .checked_add(k)
        .is_some_and(|end| end <= u.rank() && u.shape[*axis..end] == idx.shape[..]);
    if !fits {
        return Err(format!(
            "the updates' shape {:?} must hold the index shape {:?} at axis {axis}",
            u.shape, idx.shape
        ));
    }
    if *size == 0 {
        return Err("size must be positive".into());
    }
    let mut shape = u.shape[..*axis].to_vec();
    shape.push(*size);
    shape.extend(&u.shape[axis + k..]);
    Ok(TensorType::new(u.dtype, shape))
}

macro_rules! scatter_in {
    ($v:expr, $t:ty, $n:expr, $idx:expr, $axis:expr) => {{
        let (v, n, idx, axis): (&[$t], &Node, &[i32], usize) = ($v, $n, $idx, $axis);
        let (outer, len, inner) = split_at_axis(&n.ty.shape, axis);
        let mut out: Vec<$t> = vec![0.0; n.ty.numel()];
        let mut src = v.iter();
        for o in 0..outer {
            for &j in idx {
                let base = (o * len + clamp_index(j, len)) * inner;
                for slot in &mut out[base..base + inner] {
                    *slot += *src.next().expect("update count checked by infer");
                }
            }
        }
        out
    }};
}

fn eval_scatter(n: &Node, a: &[&Tensor]) -> Tensor {
    let Attrs::Scatter { axis, .. } = n.attrs else {
        unreachable!("scatter_add attrs")
    };
    let idx = indices(a[1]);
    let data = match a[0].data() {
        Data::F32(v) => Data::F32(scatter_in!(v, f32, n, idx, axis)),
        Data::F64(v) => Data::F64(scatter_in!(v, f64, n, idx, axis)),
        _ => unreachable!("float updates checked by infer"),
    };
    Tensor::new(n.ty.shape.clone(), data)
}

/// `y = zeros(...).at[..., idx, ...].add(u)` along `axis` with `size=` elements there (the
/// transpose of `gather`): `u` has shape `y.shape[:axis] + idx.shape + y.shape[axis+1:]`.
/// ẏ = scatter_add(u̇, idx); ū = gather(ȳ, idx, axis); no derivative for `idx`.
pub(super) const SCATTER_ADD: OpRules = OpRules {
    name: "scatter_add",
    arity: Arity::Exact(2),
    attrs: AttrKind::Scatter,
    props: LINEAR,
    infer: infer_scatter,
    eval: eval_scatter,
    jvp: Some(|b, _, n, tg| {
        let Attrs::Scatter { axis, size } = n.attrs else {
            unreachable!("scatter_add attrs")
        };
        let t = tangent_of(b, n, tg, 0)?;
        Some(b.scatter_add(t, b.var(n.inputs[1]), tg.axis(axis), size))
    }),
    vjp: Some(|b, _, n, ct| {
        let Attrs::Scatter { axis, .. } = n.attrs else {
            unreachable!("scatter_add attrs")
        };
        let lead = batch_dims(ct, n).len();
        vec![Some(b.gather(ct, b.var(n.inputs[1]), lead + axis)), None]
    }),
    math: None,
    lower: None,
};

// ---- argmax and argmin ---------------------------------------------------------------------

fn infer_arg(t: &[&TensorType], a: &Attrs) -> Result<TensorType, String> {
    let Attrs::Axis { axis } = a else {
        unreachable!("attribute kind checked")
    };
    let x = t[0];
    if !(x.dtype.is_float() || x.dtype == DType::I32) {
        return Err(format!(
            "expected a float or i32 operand, found {}",
            x.dtype
        ));
    }
    if *axis >= x.rank() {
        return Err(format!(
            "axis {axis} is out of range for an operand of rank {}",
            x.rank()
        ));
    }
    let mut shape = x.shape.clone();
    shape.remove(*axis);
    Ok(TensorType::new(DType::I32, shape))
}

/// The index of the first extreme along `axis` (`max`: the largest), a NaN winning over
/// everything (its first occurrence).
fn eval_arg(n: &Node, a: &[&Tensor], max: bool) -> Tensor {
    let Attrs::Axis { axis } = n.attrs else {
        unreachable!("argmax/argmin attrs")
    };
    let x = a[0].data();
    let (outer, len, inner) = split_at_axis(a[0].shape(), axis);
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| x.get_f64((o * len + j) * inner + i);
            let mut best = 0usize;
            let mut bv = at(0);
            for j in 1..len {
                if bv.is_nan() {
                    break;
                }
                let v = at(j);
                if v.is_nan() || (max && v > bv) || (!max && v < bv) {
                    best = j;
                    bv = v;
                }
            }
            out.push(i32::try_from(best).expect("axis sizes fit i32"));
        }
    }
    Tensor::new(n.ty.shape.clone(), Data::I32(out))
}

/// `y = argmax(x, axis)` (i32; first index of the maximum, or of the first NaN); no derivative.
pub(super) const ARGMAX: OpRules = OpRules {
    name: "argmax",
    arity: Arity::Exact(1),
    attrs: AttrKind::Axis,
    props: NO_GRAD,
    infer: infer_arg,
    eval: |n, a| eval_arg(n, a, true),
    jvp: None,
    vjp: None,
    math: None,
    lower: None,
};

/// `y = argmin(x, axis)` (i32; first index of the minimum, or of the first NaN); no derivative.
pub(super) const ARGMIN: OpRules = OpRules {
    name: "argmin",
    arity: Arity::Exact(1),
    attrs: AttrKind::Axis,
    props: NO_GRAD,
    infer: infer_arg,
    eval: |n, a| eval_arg(n, a, false),
    jvp: None,
    vjp: None,
    math: None,
    lower: None,
};

#[cfg(test)]
mod tests {
    use crate::autodiff::GradError;
    use crate::ir::text::{parse, print};
    use crate::ir::{BuildError, BuildErrorKind};
    use crate::{DType, Error, GraphBuilder, Tensor, interp};

    fn run1(g: &crate::Graph, inputs: &[Tensor]) -> Vec<f64> {
        interp::run(g, inputs).unwrap()[0].to_f64_vec()
    }

    #[test]
    fn gather_and_scatter_add_by_hand_with_clamped_indices() {
        let b = GraphBuilder::new("g");
        let x = b.input("x", DType::F64, &[2, 3]);
        let idx = b.input("idx", DType::I32, &[4]);
        let rows = x.gather(idx, 1); // [2, 4]
        let back = rows.scatter_add(idx, 1, 3); // [2, 3]
        let g = b.finish(&[("rows", rows), ("back", back)]).unwrap();
        let xv = Tensor::from_f64(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // -1 clamps to 0, 9 to 2.
        let iv = Tensor::from_i32(vec![4], vec![2, -1, 9, 1]);
        let out = interp::run(&g, &[xv, iv]).unwrap();
        assert_eq!(out[0].shape(), &[2, 4]);
        assert_eq!(
            out[0].to_f64_vec(),
            [3.0, 1.0, 3.0, 2.0, 6.0, 4.0, 6.0, 5.0]
        );
        // Column 0 gets x[:,0] once, column 1 once, column 2 twice.
        assert_eq!(out[1].to_f64_vec(), [1.0, 2.0, 6.0, 4.0, 5.0, 12.0]);
    }

    #[test]
    fn argmax_argmin_take_the_first_tie_and_the_first_nan() {
        let b = GraphBuilder::new("a");
        let x = b.input("x", DType::F32, &[4, 3]);
        let g = b
            .finish(&[("mx", x.argmax(0)), ("mn", x.argmin(0)), ("r", x.argmax(1))])
            .unwrap();
        let nan = f32::NAN;
        #[rustfmt::skip]
        let xv = Tensor::from_f32(vec![4, 3], vec![
            1.0, nan, 2.0,
            3.0, 5.0, 2.0,
            3.0, nan, 0.0,
            -1.0, 9.0, 2.0,
        ]);
        let out = interp::run(&g, &[xv]).unwrap();
        assert_eq!(out[0].dtype(), DType::I32);
        assert_eq!(out[0].to_f64_vec(), [1.0, 0.0, 0.0]);
        assert_eq!(out[1].to_f64_vec(), [3.0, 0.0, 2.0]);
        assert_eq!(out[2].to_f64_vec(), [1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn iota_holds_the_index_along_its_axis() {
        let b = GraphBuilder::new("i");
        let g = b
            .finish(&[("i", b.iota(DType::F32, &[2, 2, 2], 0))])
            .unwrap();
        assert_eq!(run1(&g, &[]), [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn integers_are_never_differentiated() {
        let b = GraphBuilder::new("d");
        let x = b.input("x", DType::F64, &[3]);
        let k = b.input("k", DType::I32, &[]);
        let y = (x * k.cast(DType::F64)).sum();
        let line = line!() + 1;
        match b.grad(y, &[k]) {
            Err(Error::Build(BuildError {
                error: BuildErrorKind::Grad(GradError::NotFloat { name, dtype }),
                location,
            })) => {
                assert_eq!((name.as_str(), dtype.as_str()), ("%k", "i32"));
                assert!(location.contains(&format!("index.rs:{line}")), "{location}");
            }
            other => panic!("expected NotFloat, got {other:?}"),
        }
        // The cotangent stops at the index: d/dx sum(x[argmax x]) is one-hot.
        let b = GraphBuilder::new("d");
        let x = b.input("x", DType::F64, &[3]);
        let y = x.gather(x.argmax(0), 0);
        let dx = b.grad(y, &[x]).unwrap()[0];
        let g = b.finish(&[("dx", dx)]).unwrap();
        let xv = Tensor::from_f64(vec![3], vec![1.0, 5.0, 2.0]);
        assert_eq!(run1(&g, &[xv]), [0.0, 1.0, 0.0]);
    }

    #[test]
    fn new_ops_parse_and_print_round_trip() {
        let src = "graph @idx {
  %x = input f32[4,3]
  %idx = input i32[2,5]
  %seed = input i32[]
  %c = const [[0,-1,2],[7,1,2147483647]] : i32[2,3]
  %i = iota type=i32[4] axis=0 : i32[4]
  %g = gather %x, %idx axis=0 : f32[2,5,3]
  %s = scatter_add %g, %idx axis=0 size=6 : f32[6,3]
  %a = argmax %x axis=1 : i32[4]
  %m = argmin %x axis=0 : i32[3]
  %t = cast %x to=i32 : i32[4,3]
  %e = eq %a, %i : bool[4]
  %r = random_uniform %seed, %seed type=f64[2,2] : f64[2,2]
  output %c, %s, %m, %t, %e, %r
}
";
        let g = parse(src).unwrap();
        assert_eq!(print(&g), src);
        assert!(parse(&print(&g)).unwrap().same(&g));
    }
}
