//! Elementwise ops: unary math, binary arithmetic with NumPy broadcasting, comparisons,
//! `select` and `cast`.
//!
//! Each constant states the function and its derivative, with its JVP rule next to its VJP rule.
//! For an elementwise op the Jacobian is diagonal (per broadcast element), so the two rules
//! multiply by the same local derivative: the JVP by the tangent, the VJP by the cotangent.
//! Both work unchanged on batched tangents/cotangents (a leading batch axis broadcasts against
//! the primal operands). The interpreter math (`math`) and the JIT lowering (`lower`) are written
//! separately on purpose: they must agree, and the tests check that they do.

use super::{
    Arity, AttrKind, Cmp, Elementwise, FBinary, FUnary, MathFn, OpProps, OpRules, SVal, ScalarEmit,
    add_opt, broadcast_all, same_float,
};
use crate::ir::{Attrs, DType, GraphBuilder, Node, NodeId, TensorType, Var, broadcast_strides};
use crate::tensor::{Data, Tensor};

const UNARY: OpProps = OpProps {
    commutative: false,
    elementwise: true,
    differentiable: true,
};
const COMMUTATIVE: OpProps = OpProps {
    commutative: true,
    elementwise: true,
    differentiable: true,
};
const COMPARE: OpProps = OpProps {
    commutative: false,
    elementwise: true,
    differentiable: false,
};

// ---- shape rules ---------------------------------------------------------------------------

fn infer_unary(tys: &[&TensorType], _: &Attrs) -> Result<TensorType, String> {
    same_float(tys)?;
    Ok(tys[0].clone())
}

fn infer_binary(tys: &[&TensorType], _: &Attrs) -> Result<TensorType, String> {
    let d = same_float(tys)?;
    Ok(TensorType::new(d, broadcast_all(tys)?))
}

fn infer_compare(tys: &[&TensorType], _: &Attrs) -> Result<TensorType, String> {
    same_float_or_i32(tys)?;
    Ok(TensorType::new(DType::Bool, broadcast_all(tys)?))
}

/// Like `same_float`, also accepting `i32` operands (comparisons and `select` work on indices).
fn same_float_or_i32(tys: &[&TensorType]) -> Result<DType, String> {
    if tys.iter().all(|t| t.dtype == DType::I32) {
        return Ok(DType::I32);
    }
    same_float(tys)
}

fn infer_select(tys: &[&TensorType], _: &Attrs) -> Result<TensorType, String> {
    if tys[0].dtype != DType::Bool {
        return Err(format!(
            "the condition must be bool, found {}",
            tys[0].dtype
        ));
    }
    let d = same_float_or_i32(&tys[1..])?;
    Ok(TensorType::new(d, broadcast_all(tys)?))
}

fn infer_cast(tys: &[&TensorType], attrs: &Attrs) -> Result<TensorType, String> {
    let Attrs::Cast { to } = attrs else {
        unreachable!("attribute kind checked by ops::infer")
    };
    if *to == DType::Bool {
        return Err(format!("cast target must be f32, f64 or i32, found {to}"));
    }
    Ok(TensorType::new(*to, tys[0].shape.clone()))
}

// ---- the interpreter kernel shared by all elementwise ops ----------------------------------

/// Reads operand `k` of an elementwise op at every output index (broadcasting), as f64/f32/bool
/// vectors of the output's length.
fn gather<T: Copy>(v: &[T], from: &[usize], to: &[usize]) -> Vec<T> {
    let n: usize = to.iter().product();
    if from == to {
        return v.to_vec();
    }
    if v.len() == 1 {
        return vec![v[0]; n];
    }
    let st = broadcast_strides(from, to);
    let mut idx = vec![0usize; to.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(v[idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>()]);
        super::next_index(&mut idx, to);
    }
    out
}

fn f64s(t: &Tensor, to: &[usize]) -> Vec<f64> {
    match t.data() {
        Data::F64(v) => gather(v, t.shape(), to),
        _ => gather(&t.to_f64_vec(), t.shape(), to),
    }
}

fn f32s(t: &Tensor, to: &[usize]) -> Vec<f32> {
    match t.data() {
        Data::F32(v) => gather(v, t.shape(), to),
        _ => unreachable!("dtype checked by infer"),
    }
}

fn i32s(t: &Tensor, to: &[usize]) -> Vec<i32> {
    match t.data() {
        Data::I32(v) => gather(v, t.shape(), to),
        _ => unreachable!("dtype checked by infer"),
    }
}

fn bools(t: &Tensor, to: &[usize]) -> Vec<bool> {
    match t.data() {
        Data::Bool(v) => gather(v, t.shape(), to),
        _ => unreachable!("dtype checked by infer"),
    }
}

fn eval_elementwise(node: &Node, args: &[&Tensor]) -> Tensor {
    let shape = &node.ty.shape;
    let math = super::rules(node.op).math.expect("elementwise op has math");
    let f32_in = args.last().is_some_and(|a| a.dtype() == DType::F32);
    let data = match math {
        Elementwise::Unary { f64, f32 } => match f32_in {
            true => Data::F32(f32s(args[0], shape).into_iter().map(f32).collect()),
            false => Data::F64(f64s(args[0], shape).into_iter().map(f64).collect()),
        },
        Elementwise::UnaryInt { f64, f32 } => {
            let Attrs::Powi { n } = node.attrs else {
                unreachable!("powi has an exponent")
            };
            match f32_in {
                true => Data::F32(
                    f32s(args[0], shape)
                        .into_iter()
                        .map(|x| f32(x, n))
                        .collect(),
                ),
                false => Data::F64(
                    f64s(args[0], shape)
                        .into_iter()
                        .map(|x| f64(x, n))
                        .collect(),
                ),
            }
        }
        Elementwise::Binary { f64, f32 } => match f32_in {
            true => {
                let (a, b) = (f32s(args[0], shape), f32s(args[1], shape));
                Data::F32(a.into_iter().zip(b).map(|(a, b)| f32(a, b)).collect())
            }
            false => {
                let (a, b) = (f64s(args[0], shape), f64s(args[1], shape));
                Data::F64(a.into_iter().zip(b).map(|(a, b)| f64(a, b)).collect())
            }
        },
        Elementwise::Compare(f) => {
            let (a, b) = (f64s(args[0], shape), f64s(args[1], shape));
            Data::Bool(a.into_iter().zip(b).map(|(a, b)| f(a, b)).collect())
        }
        Elementwise::Select => {
            let c = bools(args[0], shape);
            match f32_in {
                _ if args[1].dtype() == DType::I32 => {
                    let (a, b) = (i32s(args[1], shape), i32s(args[2], shape));
                    Data::I32(
                        (0..c.len())
                            .map(|i| if c[i] { a[i] } else { b[i] })
                            .collect(),
                    )
                }
                true => {
                    let (a, b) = (f32s(args[1], shape), f32s(args[2], shape));
                    Data::F32(
                        (0..c.len())
                            .map(|i| if c[i] { a[i] } else { b[i] })
                            .collect(),
                    )
                }
                false => {
                    let (a, b) = (f64s(args[1], shape), f64s(args[2], shape));
                    Data::F64(
                        (0..c.len())
                            .map(|i| if c[i] { a[i] } else { b[i] })
                            .collect(),
                    )
                }
            }
        }
        Elementwise::Cast => match (args[0].data(), node.ty.dtype) {
            (Data::I32(v), DType::I32) => Data::I32(v.clone()),
            // Truncation toward zero, saturating at the i32 range, NaN to 0 (Rust's `as`).
            (_, DType::I32) => {
                Data::I32(args[0].to_f64_vec().into_iter().map(|x| x as i32).collect())
            }
            (Data::F32(v), DType::F32) => Data::F32(v.clone()),
            (Data::F64(v), DType::F32) => Data::F32(v.iter().map(|&x| x as f32).collect()),
            (_, DType::F32) => {
                Data::F32(args[0].to_f64_vec().into_iter().map(|x| x as f32).collect())
            }
            (_, _) => Data::F64(args[0].to_f64_vec()),
        },
    };
    Tensor::new(shape.clone(), data)
}

// ---- reference scalar math -----------------------------------------------------------------

/// `x^n` by binary exponentiation (`acc *= base` on set bits, `base *= base`), then `1/acc` for
/// negative `n`; `x^0 = 1`. The JIT unrolls exactly these multiplications, so the two agree
/// bitwise.
pub fn powi_ref<T: Copy + std::ops::Mul<Output = T> + std::ops::Div<Output = T>>(
    x: T,
    n: i32,
    one: T,
) -> T {
    let mut k = n.unsigned_abs();
    let mut acc: Option<T> = None;
    let mut base = x;
    while k > 0 {
        if k & 1 == 1 {
            acc = Some(match acc {
                None => base,
                Some(a) => a * base,
            });
        }
        k >>= 1;
        if k > 0 {
            base = base * base;
        }
    }
    let acc = acc.unwrap_or(one);
    if n < 0 { one / acc } else { acc }
}

macro_rules! fmax_fmin {
    ($name:ident, $t:ty, $cmp:tt, $neg_zero_wins:expr) => {
        fn $name(a: $t, b: $t) -> $t {
            if a.is_nan() || b.is_nan() {
                <$t>::NAN
            } else if a == b {
                // Equal values differ only in the sign of zero.
                if a.is_sign_negative() == $neg_zero_wins { a } else { b }
            } else if a $cmp b {
                a
            } else {
                b
            }
        }
    };
}
fmax_fmin!(max64, f64, >, false);
fmax_fmin!(max32, f32, >, false);
fmax_fmin!(min64, f64, <, true);
fmax_fmin!(min32, f32, <, true);

// ---- the JIT lowering helpers --------------------------------------------------------------

fn one(e: &mut dyn ScalarEmit, n: &Node) -> SVal {
    e.fconst(n.ty.dtype, 1.0)
}

fn call1(e: &mut dyn ScalarEmit, f: MathFn, x: SVal) -> SVal {
    e.call(f, &[x])
}

// ---- the VJP helpers -----------------------------------------------------------------------

fn out<'b>(b: &'b GraphBuilder, id: NodeId) -> Var<'b> {
    b.var(id)
}

fn arg<'b>(b: &'b GraphBuilder, n: &Node, i: usize) -> Var<'b> {
    b.var(n.inputs[i])
}

// ---- unary ops -----------------------------------------------------------------------------

macro_rules! unary_op {
    ($(#[$doc:meta])* $name:ident, $gir:literal, |$x:ident| $f:expr, $lower:expr, $jvp:expr, $vjp:expr) => {
        $(#[$doc])*
        pub(super) const $name: OpRules = OpRules {
            name: $gir,
            arity: Arity::Exact(1),
            attrs: AttrKind::None,
            props: UNARY,
            infer: infer_unary,
            eval: eval_elementwise,
            jvp: Some($jvp),
            vjp: Some($vjp),
            math: Some(Elementwise::Unary { f64: |$x: f64| $f, f32: |$x: f32| $f }),
            lower: Some($lower),
        };
    };
}

unary_op!(
    /// `y = -x`; dx = -ȳ.
    NEG, "neg", |x| -x,
    |e, _, a| e.unary(FUnary::Neg, a[0]),
    |_, _, _, tg| Some(-tg.get(0)?),
    |_, _, _, ct| vec![Some(-ct)]
);
unary_op!(
    /// `y = |x|`; dx = ȳ·sign(x), with `abs'(0) = 0`.
    ABS, "abs", |x| x.abs(),
    |e, _, a| e.unary(FUnary::Abs, a[0]),
    |b, _, n, tg| {
        let (t, x) = (tg.get(0)?, arg(b, n, 0));
        let zero = x.scalar_like(0.0);
        Some(b.select(x.gt(zero), t, b.select(x.lt(zero), -t, zero)))
    },
    |b, _, n, ct| {
        let x = arg(b, n, 0);
        let zero = x.scalar_like(0.0);
        vec![Some(b.select(x.gt(zero), ct, b.select(x.lt(zero), -ct, zero)))]
    }
);
unary_op!(
    /// `y = exp(x)`; dx = ȳ·y.
    EXP, "exp", |x| x.exp(),
    |e, _, a| call1(e, MathFn::Exp, a[0]),
    |b, id, _, tg| Some(tg.get(0)? * out(b, id)),
    |b, id, _, ct| vec![Some(ct * out(b, id))]
);
unary_op!(
    /// `y = ln(x)`; dx = ȳ/x.
    LOG, "log", |x| x.ln(),
    |e, _, a| call1(e, MathFn::Log, a[0]),
    |b, _, n, tg| Some(tg.get(0)? / arg(b, n, 0)),
    |b, _, n, ct| vec![Some(ct / arg(b, n, 0))]
);
unary_op!(
    /// `y = √x`; dx = (ȳ·0.5)/y.
    SQRT, "sqrt", |x| x.sqrt(),
    |e, _, a| e.unary(FUnary::Sqrt, a[0]),
    |b, id, _, tg| Some(tg.get(0)? * 0.5 / out(b, id)),
    |b, id, _, ct| vec![Some(ct * 0.5 / out(b, id))]
);
unary_op!(
    /// `y = 1/√x`; dx = -(ȳ·y·0.5)/x.
    RSQRT, "rsqrt", |x| 1.0 / x.sqrt(),
    |e, n, a| {
        let s = e.unary(FUnary::Sqrt, a[0]);
        let one = one(e, n);
        e.binary(FBinary::Div, one, s)
    },
    |b, id, n, tg| Some(-(tg.get(0)? * out(b, id) * 0.5) / arg(b, n, 0)),
    |b, id, n, ct| vec![Some(-(ct * out(b, id) * 0.5) / arg(b, n, 0))]
);
unary_op!(
    /// `y = sin(x)`; dx = ȳ·cos(x).
    SIN, "sin", |x| x.sin(),
    |e, _, a| call1(e, MathFn::Sin, a[0]),
    |b, _, n, tg| Some(tg.get(0)? * arg(b, n, 0).cos()),
    |b, _, n, ct| vec![Some(ct * arg(b, n, 0).cos())]
);
unary_op!(
    /// `y = cos(x)`; dx = -ȳ·sin(x).
    COS, "cos", |x| x.cos(),
    |e, _, a| call1(e, MathFn::Cos, a[0]),
    |b, _, n, tg| Some(-(tg.get(0)? * arg(b, n, 0).sin())),
    |b, _, n, ct| vec![Some(-(ct * arg(b, n, 0).sin()))]
);
unary_op!(
    /// `y = tanh(x)`; dx = ȳ·(1 - y²).
    TANH, "tanh", |x| x.tanh(),
    |e, _, a| call1(e, MathFn::Tanh, a[0]),
    |b, id, _, tg| {
        let y = out(b, id);
        Some(tg.get(0)? * (1.0 - y * y))
    },
    |b, id, _, ct| {
        let y = out(b, id);
        vec![Some(ct * (1.0 - y * y))]
    }
);
unary_op!(
    /// `y = 1/(1 + exp(-x))`; dx = ȳ·y·(1 - y).
    SIGMOID, "sigmoid", |x| 1.0 / (1.0 + (-x).exp()),
    |e, _, a| call1(e, MathFn::Sigmoid, a[0]),
    |b, id, _, tg| {
        let y = out(b, id);
        Some(tg.get(0)? * y * (1.0 - y))
    },
    |b, id, _, ct| {
        let y = out(b, id);
        vec![Some(ct * y * (1.0 - y))]
    }
);
unary_op!(
    /// `y = max(x, 0)`; dx = ȳ where x > 0, else 0 (`relu'(0) = 0`).
    RELU, "relu", |x| max_ref(x, 0.0),
    |e, n, a| {
        let z = e.fconst(n.ty.dtype, 0.0);
        e.binary(FBinary::Max, a[0], z)
    },
    |b, _, n, tg| {
        let (t, x) = (tg.get(0)?, arg(b, n, 0));
        let zero = x.scalar_like(0.0);
        Some(b.select(x.gt(zero), t, zero))
    },
    |b, _, n, ct| {
        let x = arg(b, n, 0);
        let zero = x.scalar_like(0.0);
        vec![Some(b.select(x.gt(zero), ct, zero))]
    }
);
unary_op!(
    /// `y = 1/x`; dx = -ȳ·y².
    RECIP, "recip", |x| 1.0 / x,
    |e, n, a| {
        let one = one(e, n);
        e.binary(FBinary::Div, one, a[0])
    },
    |b, id, _, tg| {
        let y = out(b, id);
        Some(-(tg.get(0)? * y * y))
    },
    |b, id, _, ct| {
        let y = out(b, id);
        vec![Some(-(ct * y * y))]
    }
);
unary_op!(
    /// `y = ln(1 + x)`; dx = ȳ/(1 + x).
    LOG1P, "log1p", |x| x.ln_1p(),
    |e, _, a| call1(e, MathFn::Log1p, a[0]),
    |b, _, n, tg| Some(tg.get(0)? / (arg(b, n, 0) + 1.0)),
    |b, _, n, ct| vec![Some(ct / (arg(b, n, 0) + 1.0))]
);
unary_op!(
    /// `y = exp(x) - 1`; dx = ȳ·(y + 1).
    EXPM1, "expm1", |x| x.exp_m1(),
    |e, _, a| call1(e, MathFn::Expm1, a[0]),
    |b, id, _, tg| Some(tg.get(0)? * (out(b, id) + 1.0)),
    |b, id, _, ct| vec![Some(ct * (out(b, id) + 1.0))]
);

unary_op!(
    /// `y = tan(x)`; dx = ȳ·(1 + y²).
    TAN, "tan", |x| x.tan(),
    |e, _, a| call1(e, MathFn::Tan, a[0]),
    |b, id, _, tg| {
        let y = out(b, id);
        Some(tg.get(0)? * (1.0 + y * y))
    },
    |b, id, _, ct| {
        let y = out(b, id);
        vec![Some(ct * (1.0 + y * y))]
    }
);
unary_op!(
    /// `y = erf(x)` (the `libm` crate's, in the operand's dtype); dx = ȳ·(2/√π)·exp(-x²).
    ERF, "erf", |x| erf_ref(x),
    |e, _, a| call1(e, MathFn::Erf, a[0]),
    |b, _, n, tg| Some(tg.get(0)? * erf_slope(arg(b, n, 0))),
    |b, _, n, ct| vec![Some(ct * erf_slope(arg(b, n, 0)))]
);
unary_op!(
    /// `y = ⌊x⌋`; derivative zero (JAX's convention for the rounding ops).
    FLOOR, "floor", |x| x.floor(),
    |e, _, a| e.unary(FUnary::Floor, a[0]),
    |_, _, _, _| None,
    |_, _, _, _| vec![None]
);
unary_op!(
    /// `y = ⌈x⌉`; derivative zero.
    CEIL, "ceil", |x| x.ceil(),
    |e, _, a| e.unary(FUnary::Ceil, a[0]),
    |_, _, _, _| None,
    |_, _, _, _| vec![None]
);
unary_op!(
    /// `y = x` rounded to the nearest integer, ties to even (`jnp.round`, IEEE
    /// `roundTiesToEven`: `round(0.5) = 0`, `round(1.5) = 2`, `round(-2.5) = -2`); derivative zero.
    ROUND, "round", |x| x.round_ties_even(),
    |e, _, a| e.unary(FUnary::RoundEven, a[0]),
    |_, _, _, _| None,
    |_, _, _, _| vec![None]
);
unary_op!(
    /// `y = 1` where `x > 0`, `-1` where `x < 0`, else `x` (so `sign(±0) = ±0` and
    /// `sign(NaN) = NaN`, as `lax.sign`); derivative zero.
    SIGN, "sign", |x| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { x },
    |e, n, a| {
        let dt = n.ty.dtype;
        let (zero, one, minus) = (e.fconst(dt, 0.0), e.fconst(dt, 1.0), e.fconst(dt, -1.0));
        let pos = e.compare(Cmp::Gt, a[0], zero);
        let neg = e.compare(Cmp::Lt, a[0], zero);
        let rest = e.select(neg, minus, a[0]);
        e.select(pos, one, rest)
    },
    |_, _, _, _| None,
    |_, _, _, _| vec![None]
);

/// `erf'(x) = (2/√π)·exp(-x²)`.
fn erf_slope(x: Var<'_>) -> Var<'_> {
    (-(x * x)).exp() * std::f64::consts::FRAC_2_SQRT_PI
}

/// `erf` in the operand's dtype. Rust's `std` has no `erf`; the `libm` crate's (a port of
/// musl's) is called by both the interpreter and the JIT's wrapper, so the two agree bitwise.
pub(crate) fn erf_ref<T: ErfRef>(x: T) -> T {
    T::erf_ref(x)
}
pub(crate) trait ErfRef {
    fn erf_ref(x: Self) -> Self;
}
impl ErfRef for f64 {
    fn erf_ref(x: f64) -> f64 {
        libm::erf(x)
    }
}
impl ErfRef for f32 {
    fn erf_ref(x: f32) -> f32 {
        libm::erff(x)
    }
}

/// Generic max over f32/f64 through a tiny trait so `relu` can be written once.
fn max_ref<T: MaxRef>(a: T, b: T) -> T {
    T::max_ref(a, b)
}
trait MaxRef {
    fn max_ref(a: Self, b: Self) -> Self;
}
impl MaxRef for f64 {
    fn max_ref(a: f64, b: f64) -> f64 {
        max64(a, b)
    }
}
impl MaxRef for f32 {
    fn max_ref(a: f32, b: f32) -> f32 {
        max32(a, b)
    }
}

/// `y = xⁿ` (integer `n`, may be ≤ 0); dx = ȳ·n·xⁿ⁻¹ (no gradient when `n = 0`).
pub(super) const POWI: OpRules = OpRules {
    name: "powi",
    arity: Arity::Exact(1),
    attrs: AttrKind::Powi,
    props: UNARY,
    infer: infer_unary,
    eval: eval_elementwise,
    jvp: Some(|b, _, n, tg| {
        let Attrs::Powi { n: k } = n.attrs else {
            unreachable!("powi has an exponent")
        };
        if k == 0 {
            return None;
        }
        Some(tg.get(0)? * f64::from(k) * arg(b, n, 0).powi(k - 1))
    }),
    vjp: Some(|b, _, n, ct| {
        let Attrs::Powi { n: k } = n.attrs else {
            unreachable!("powi has an exponent")
        };
        if k == 0 {
            return vec![None];
        }
        let x = arg(b, n, 0);
        vec![Some(ct * f64::from(k) * x.powi(k - 1))]
    }),
    math: Some(Elementwise::UnaryInt {
        f64: |x, n| powi_ref(x, n, 1.0),
        f32: |x, n| powi_ref(x, n, 1.0),
    }),
    lower: Some(|e, n, a| {
        let Attrs::Powi { n: k } = n.attrs else {
            unreachable!("powi has an exponent")
        };
        let one = one(e, n);
        // The same multiplication order as `powi_ref`.
        let mut kk = k.unsigned_abs();
        let mut acc: Option<SVal> = None;
        let mut base = a[0];
        while kk > 0 {
            if kk & 1 == 1 {
                acc = Some(match acc {
                    None => base,
                    Some(p) => e.binary(FBinary::Mul, p, base),
                });
            }
            kk >>= 1;
            if kk > 0 {
                base = e.binary(FBinary::Mul, base, base);
            }
        }
        let acc = acc.unwrap_or(one);
        if k < 0 {
            e.binary(FBinary::Div, one, acc)
        } else {
            acc
        }
    }),
};

// ---- binary ops ----------------------------------------------------------------------------

macro_rules! binary_op {
    ($(#[$doc:meta])* $name:ident, $gir:literal, $props:expr, $f64:expr, $f32:expr, $fb:expr, $jvp:expr, $vjp:expr) => {
        $(#[$doc])*
        pub(super) const $name: OpRules = OpRules {
            name: $gir,
            arity: Arity::Exact(2),
            attrs: AttrKind::None,
            props: $props,
            infer: infer_binary,
            eval: eval_elementwise,
            jvp: Some($jvp),
            vjp: Some($vjp),
            math: Some(Elementwise::Binary { f64: $f64, f32: $f32 }),
            lower: Some(|e, _, a| e.binary($fb, a[0], a[1])),
        };
    };
}

binary_op!(
    /// `y = a + b`; da = ȳ, db = ȳ.
    ADD, "add", COMMUTATIVE, |a, b| a + b, |a, b| a + b, FBinary::Add,
    |_, _, _, tg| add_opt(tg.get(0), tg.get(1)),
    |_, _, _, ct| vec![Some(ct), Some(ct)]
);
binary_op!(
    /// `y = a - b`; da = ȳ, db = -ȳ.
    SUB, "sub", UNARY, |a, b| a - b, |a, b| a - b, FBinary::Sub,
    |_, _, _, tg| add_opt(tg.get(0), tg.get(1).map(|t| -t)),
    |_, _, _, ct| vec![Some(ct), Some(-ct)]
);
binary_op!(
    /// `y = a·b`; da = ȳ·b, db = ȳ·a.
    MUL, "mul", COMMUTATIVE, |a, b| a * b, |a, b| a * b, FBinary::Mul,
    |b, _, n, tg| add_opt(tg.get(0).map(|t| t * arg(b, n, 1)), tg.get(1).map(|t| t * arg(b, n, 0))),
    |b, _, n, ct| vec![Some(ct * arg(b, n, 1)), Some(ct * arg(b, n, 0))]
);
binary_op!(
    /// `y = a/b`; da = ȳ/b, db = -(ȳ·y)/b.
    DIV, "div", UNARY, |a, b| a / b, |a, b| a / b, FBinary::Div,
    |b, id, n, tg| {
        let d = arg(b, n, 1);
        add_opt(tg.get(0).map(|t| t / d), tg.get(1).map(|t| -(t * out(b, id)) / d))
    },
    |b, id, n, ct| {
        let d = arg(b, n, 1);
        vec![Some(ct / d), Some(-(ct * out(b, id)) / d)]
    }
);
binary_op!(
    /// `y = max(a, b)` (NaN if either is NaN); ties split ȳ equally.
    MAX, "max", COMMUTATIVE, max64, max32, FBinary::Max,
    |b, _, n, tg| {
        let (x, y) = (arg(b, n, 0), arg(b, n, 1));
        add_opt(
            tg.get(0).map(|t| t * tie_mask(b, x.gt(y), x, y)),
            tg.get(1).map(|t| t * tie_mask(b, y.gt(x), x, y)),
        )
    },
    |b, _, n, ct| {
        let (x, y) = (arg(b, n, 0), arg(b, n, 1));
        vec![Some(ct * tie_mask(b, x.gt(y), x, y)), Some(ct * tie_mask(b, y.gt(x), x, y))]
    }
);
binary_op!(
    /// `y = min(a, b)` (NaN if either is NaN); ties split ȳ equally.
    MIN, "min", COMMUTATIVE, min64, min32, FBinary::Min,
    |b, _, n, tg| {
        let (x, y) = (arg(b, n, 0), arg(b, n, 1));
        add_opt(
            tg.get(0).map(|t| t * tie_mask(b, x.lt(y), x, y)),
            tg.get(1).map(|t| t * tie_mask(b, y.lt(x), x, y)),
        )
    },
    |b, _, n, ct| {
        let (x, y) = (arg(b, n, 0), arg(b, n, 1));
        vec![Some(ct * tie_mask(b, x.lt(y), x, y)), Some(ct * tie_mask(b, y.lt(x), x, y))]
    }
);

/// 1 where `wins`, 0.5 where `x == y`, else 0.
fn tie_mask<'b>(b: &'b GraphBuilder, wins: Var<'b>, x: Var<'b>, y: Var<'b>) -> Var<'b> {
    let (one, half, zero) = (x.scalar_like(1.0), x.scalar_like(0.5), x.scalar_like(0.0));
    b.select(wins, one, b.select(x.equal(y), half, zero))
}

/// `y = aᵇ`; da = ȳ·b·aᵇ⁻¹, db = ȳ·y·ln(a) (taken as 0 where a = 0).
pub(super) const POW: OpRules = OpRules {
    name: "pow",
    arity: Arity::Exact(2),
    attrs: AttrKind::None,
    props: UNARY,
    infer: infer_binary,
    eval: eval_elementwise,
    jvp: Some(|b, id, n, tg| {
        let (x, p) = (arg(b, n, 0), arg(b, n, 1));
        add_opt(
            tg.get(0).map(|t| t * p * x.pow(p - 1.0)),
            tg.get(1).map(|t| t * out(b, id) * safe_log(b, x)),
        )
    }),
    vjp: Some(|b, id, n, ct| {
        let (x, p) = (arg(b, n, 0), arg(b, n, 1));
        vec![
            Some(ct * p * x.pow(p - 1.0)),
            Some(ct * out(b, id) * safe_log(b, x)),
        ]
    }),
    math: Some(Elementwise::Binary {
        f64: f64::powf,
        f32: f32::powf,
    }),
    lower: Some(|e, _, a| e.call(MathFn::Pow, &[a[0], a[1]])),
};

/// `y = atan2(a, b)`, the angle of the point `(b, a)` in `(-π, π]` (operand order as
/// `jnp.arctan2(y, x)`); with `r² = a² + b²`: da = ȳ·b/r², db = -(ȳ·a)/r² (NaN at the origin,
/// where the angle has no derivative).
pub(super) const ATAN2: OpRules = OpRules {
    name: "atan2",
    arity: Arity::Exact(2),
    attrs: AttrKind::None,
    props: UNARY,
    infer: infer_binary,
    eval: eval_elementwise,
    jvp: Some(|b, _, n, tg| {
        let (y, x) = (arg(b, n, 0), arg(b, n, 1));
        let r2 = x * x + y * y;
        add_opt(
            tg.get(0).map(|t| t * x / r2),
            tg.get(1).map(|t| -(t * y) / r2),
        )
    }),
    vjp: Some(|b, _, n, ct| {
        let (y, x) = (arg(b, n, 0), arg(b, n, 1));
        let r2 = x * x + y * y;
        vec![Some(ct * x / r2), Some(-(ct * y) / r2)]
    }),
    math: Some(Elementwise::Binary {
        f64: f64::atan2,
        f32: f32::atan2,
    }),
    lower: Some(|e, _, a| e.call(MathFn::Atan2, &[a[0], a[1]])),
};

/// `ln(x)`, taken as 0 where `x = 0` (the `pow` exponent derivative at a zero base).
fn safe_log<'b>(b: &'b GraphBuilder, x: Var<'b>) -> Var<'b> {
    let zero = x.scalar_like(0.0);
    b.select(x.equal(zero), zero, x.log())
}

// ---- comparisons, select, cast -------------------------------------------------------------

macro_rules! compare_op {
    ($(#[$doc:meta])* $name:ident, $gir:literal, $cmp:expr, $f:expr) => {
        $(#[$doc])*
        pub(super) const $name: OpRules = OpRules {
            name: $gir,
            arity: Arity::Exact(2),
            attrs: AttrKind::None,
            props: COMPARE,
            infer: infer_compare,
            eval: eval_elementwise,
            jvp: None,
            vjp: None,
            math: Some(Elementwise::Compare($f)),
            lower: Some(|e, _, a| e.compare($cmp, a[0], a[1])),
        };
    };
}

compare_op!(/// `a < b` (bool; no derivative).
    LT, "lt", Cmp::Lt, |a, b| a < b);
compare_op!(/// `a <= b` (bool; no derivative).
    LE, "le", Cmp::Le, |a, b| a <= b);
compare_op!(/// `a > b` (bool; no derivative).
    GT, "gt", Cmp::Gt, |a, b| a > b);
compare_op!(/// `a >= b` (bool; no derivative).
    GE, "ge", Cmp::Ge, |a, b| a >= b);
compare_op!(/// `a == b` (bool; no derivative; NaN is unequal to everything).
    EQ, "eq", Cmp::Eq, |a, b| a == b);
compare_op!(/// `a != b` (bool; no derivative; true if either is NaN).
    NE, "ne", Cmp::Ne, |a, b| a != b);

/// `y = c ? a : b` (broadcast); the cotangent goes to the chosen branch.
pub(super) const SELECT: OpRules = OpRules {
    name: "select",
    arity: Arity::Exact(3),
    attrs: AttrKind::None,
    props: OpProps {
        commutative: false,
        elementwise: true,
        differentiable: true,
    },
    infer: infer_select,
    eval: eval_elementwise,
    jvp: Some(|b, _, n, tg| {
        let (ta, tb) = (tg.get(1), tg.get(2));
        if ta.is_none() && tb.is_none() {
            return None;
        }
        let zero = b.scalar(n.ty.dtype, 0.0);
        Some(b.select(arg(b, n, 0), ta.unwrap_or(zero), tb.unwrap_or(zero)))
    }),
    vjp: Some(|b, _, n, ct| {
        let c = arg(b, n, 0);
        let zero = ct.scalar_like(0.0);
        vec![
            None,
            Some(b.select(c, ct, zero)),
            Some(b.select(c, zero, ct)),
        ]
    }),
    math: Some(Elementwise::Select),
    lower: Some(|e, _, a| e.select(a[0], a[1], a[2])),
};

/// `y = cast(x)`; the tangent is cast forward and the cotangent cast back (none flows to or from
/// a `bool` operand).
pub(super) const CAST: OpRules = OpRules {
    name: "cast",
    arity: Arity::Exact(1),
    attrs: AttrKind::Cast,
    props: UNARY,
    infer: infer_cast,
    eval: eval_elementwise,
    jvp: Some(|_, _, n, tg| Some(tg.get(0)?.cast(n.ty.dtype))),
    vjp: Some(|b, _, n, ct| {
        let from = b.ty(n.inputs[0]).dtype;
        vec![from.is_float().then(|| ct.cast(from))]
    }),
    math: Some(Elementwise::Cast),
    lower: Some(|e, n, a| e.cast(a[0], n.ty.dtype)),
};

/// `y = x`, with no derivative: tangents and cotangents stop here (both rules absent, like a
/// comparison), so `x.stop_gradient()` is a constant as far as differentiation is concerned.
pub(super) const STOP_GRADIENT: OpRules = OpRules {
    name: "stop_gradient",
    arity: Arity::Exact(1),
    attrs: AttrKind::None,
    props: OpProps {
        commutative: false,
        elementwise: true,
        differentiable: false,
    },
    infer: infer_unary,
    eval: eval_elementwise,
    jvp: None,
    vjp: None,
    math: Some(Elementwise::Unary {
        f64: |x| x,
        f32: |x| x,
    }),
    lower: Some(|_, _, a| a[0]),
};

/// `y = x`, which the optimizer never merges, folds or removes while it is used (JAX's
/// `optimization_barrier`). The reverse driver reads a checkpoint region's outside values
/// through barriers when it recomputes the region (see [`crate::autodiff::checkpoint`]), so
/// the recomputed copies differ from the originals and CSE cannot merge them back; that merge
/// would keep the originals alive until the backward pass and undo the memory saving.
/// Derivatives pass straight through.
pub(super) const BARRIER: OpRules = OpRules {
    name: "optimization_barrier",
    arity: Arity::Exact(1),
    attrs: AttrKind::None,
    props: UNARY,
    infer: infer_unary,
    eval: eval_elementwise,
    jvp: Some(|_, _, _, tg| tg.get(0)),
    vjp: Some(|_, _, _, ct| vec![Some(ct)]),
    math: Some(Elementwise::Unary {
        f64: |x| x,
        f32: |x| x,
    }),
    // The JIT reads a barrier as a view of its operand (`jit::plan::fuse`), never as a
    // loop of its own, so it has no scalar lowering.
    lower: None,
};
