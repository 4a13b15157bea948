//! Batched transcendentals: every vectorized math function (`exp`, `expm1`, `log`, `log1p`,
//! `sin`, `cos`, `tanh`, `sigmoid`; not `pow`) over a whole segment of elements in one call,
//! compiled by rustc for the widest vectors the host has (AVX-512, else AVX2).
//!
//! Cranelift's x86-64 vectors are 128 bits wide, so a transcendental in a fused loop costs
//! ~25 vector instructions per 4 `f32` lanes. These helpers run the *same algorithms* as
//! [`super::vmath`] (same reduction, polynomial, special-case selects and fast ranges,
//! operation for operation, `fma` where vmath uses `fma`) as plain scalar Rust that LLVM
//! vectorizes to 16 `f32` / 8 `f64` lanes, so their results are bitwise those of the in-loop
//! code. An element outside the fast range gets the libm function, alone (the in-loop code
//! instead reruns its whole chunk with libm). Tests compile graphs with and without batching
//! and compare every bit.
//!
//! Each helper first runs its function's fast path alone (for `exp`, the polynomial without
//! the overflow and underflow selects) over tiles of 16, and redoes a tile with the full
//! function only if an element is outside the fast range, so the common case pays for no
//! special-value handling. `sigmoid` (`1/(1+exp(-x))`) is batched whole, division included:
//! the wide divider is no faster per element than the 128-bit one, but inside the helper the
//! division overlaps the `exp` polynomial instead of the loop's other arithmetic.
//!
//! `sin` and `cos` of `f32` are computed in `f64` and rounded, as the vector code does (8
//! lanes per AVX-512 vector instead of 16).
//!
//! How compiled code uses them (see `lower.rs`, "staged" groups): a long vector loop whose
//! body calls one of these functions runs in segments of [`SEGMENT`] elements. Per segment, a first
//! pass stores the argument of every batchable call into its stack scratch area, one helper
//! call per area computes it in place, and a last pass runs the body with those calls
//! replaced by loads from the scratch. A call whose argument depends on another call's
//! result (`log1p(exp(x))`) is one round later: a further pass, which loads the first
//! round's results, stores its argument, and its helpers run after that pass (up to 4
//! rounds; deeper calls stay in the loop).
//!
//! Used only on x86-64 hosts with AVX2 and FMA ([`available`]); elsewhere the in-loop
//! polynomials do all the work.
#![allow(unsafe_code)]
// Constants are written with the digits fdlibm publishes them with (as in vmath).
#![allow(clippy::excessive_precision)]

use super::vmath::{LG32, LG64};
use crate::ir::DType;
use crate::ops::MathFn;

/// Elements per segment of a staged loop (a multiple of every vector width and unroll factor).
pub(super) const SEGMENT: usize = 1024;

/// True if `f` has a batched helper.
pub(super) fn supported(f: MathFn) -> bool {
    !matches!(f, MathFn::Pow | MathFn::Tan | MathFn::Erf | MathFn::Atan2)
}

/// True if this host runs the helpers with wide vectors (x86-64 with AVX2 and FMA); only then
/// does the lowering stage loops around them.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `1/k!` for `k = 0..N` (the same values as vmath's `inv_factorials`).
const fn inv_factorials<const N: usize>() -> [f64; N] {
    let mut out = [0.0; N];
    let mut f = 1.0f64;
    let mut k = 0;
    while k < N {
        if k > 0 {
            f *= k as f64;
        }
        out[k] = 1.0 / f;
        k += 1;
    }
    out
}

/// `out[j] = from[j + 2]`: the coefficients `1/(j+2)!` of vmath's `expm1` polynomial `q`.
const fn drop2<const N: usize, const M: usize>(from: [f64; N]) -> [f64; M] {
    let mut out = [0.0; M];
    let mut j = 0;
    while j < M {
        out[j] = from[j + 2];
        j += 1;
    }
    out
}

/// The scalar algorithms of vmath for one float type. Every constant goes through `c` (a
/// rounding of the f64 value to the type, as vmath's `c` does).
macro_rules! kernels {
    (
        $m:ident, $t:ty, $u:ty, shift: $shift:expr, shifter: $shifter:expr, ln2: ($hi:expr, $lo:expr),
        exp: ($expc:expr, $fast:expr, $ovf:expr, $unf:expr),
        expm1: ($mdeg:expr, $big_k:expr, $tiny:expr, $mlo:expr, $mhi:expr, $movf:expr),
        tanh_clamp: $clamp:expr,
        log: (split: $split:path, lg: ($($lge:expr),*; $($lgo:expr),*), ln2: ($lhi:expr, $llo:expr),
              kmax: $kmax:expr, tiny: $ltiny:expr)
    ) => {
        mod $m {
            type T = $t;
            const EXP_C: &[f64] = &$expc;
            const EXPM1_Q: [f64; $mdeg + 1] = super::drop2::<{ $mdeg + 3 }, { $mdeg + 1 }>(
                super::inv_factorials::<{ $mdeg + 3 }>(),
            );

            #[inline(always)]
            fn c(x: f64) -> T {
                x as T
            }

            #[inline(always)]
            fn fma(a: T, b: T, c: T) -> T {
                a.mul_add(b, c)
            }

            #[inline(always)]
            fn horner(x: T, coeffs: &[f64]) -> T {
                let (&last, rest) = coeffs.split_last().expect("a polynomial");
                let mut acc = c(last);
                for &k in rest.iter().rev() {
                    acc = fma(acc, x, c(k));
                }
                acc
            }

            /// `(k as float, bits of x·log2e + shifter)` (vmath's `round_mul`).
            #[inline(always)]
            fn round_mul(x: T) -> (T, $u) {
                let sh = c($shifter);
                let t = fma(x, c(std::f64::consts::LOG2_E), sh);
                (t - sh, t.to_bits())
            }

            #[inline(always)]
            fn pow2(tb: $u) -> T {
                T::from_bits((tb << $shift).wrapping_add((1.0 as T).to_bits()))
            }

            #[inline(always)]
            fn reduce_ln2(x: T, kf: T) -> T {
                let r = fma(kf, c(-$hi), x);
                fma(kf, c(-$lo), r)
            }

            /// `exp(x)` for `|x| <= fast` (the polynomial alone), and whether `x` is outside
            /// that range (or NaN) and so needs [`exp`].
            #[inline(always)]
            pub(super) fn exp_fast(x: T) -> (T, bool) {
                let (kf, tb) = round_mul(x);
                let r = reduce_ln2(x, kf);
                let p = horner(r, EXP_C);
                (p * pow2(tb), x.abs() > c($fast) || x.is_nan())
            }

            /// `exp(x)` and whether libm must recompute it.
            #[inline(always)]
            pub(super) fn exp(x: T) -> (T, bool) {
                let y = exp_fast(x).0;
                let over = x > c($ovf);
                let under = x < c($unf);
                let y = if over { T::INFINITY } else { y };
                let y = if under { 0.0 } else { y };
                (y, x.abs() > c($fast) && !(over || under))
            }

            /// `1/(1 + exp(-x))` for `|x| <= fast`, and whether `x` needs [`sigmoid`].
            #[inline(always)]
            pub(super) fn sigmoid_fast(x: T) -> (T, bool) {
                let (e, odd) = exp_fast(-x);
                (1.0 / (1.0 + e), odd)
            }

            /// `1/(1 + exp(-x))` and whether libm's `exp` must be used instead.
            #[inline(always)]
            pub(super) fn sigmoid(x: T) -> (T, bool) {
                let (e, libm) = exp(-x);
                (1.0 / (1.0 + e), libm)
            }

            #[inline(always)]
            fn expm1_core(x: T, for_tanh: bool) -> T {
                let (kf, tb) = round_mul(x);
                let r = reduce_ln2(x, kf);
                let q = horner(r, &EXPM1_Q);
                let p = fma(r * r, q, r);
                let s = pow2(tb);
                let small = fma(s, p, s - 1.0);
                if for_tanh {
                    return small;
                }
                let large = s * (p + 1.0);
                let y = if kf > c($big_k) { large } else { small };
                if x.abs() < c($tiny) { x } else { y }
            }

            /// `expm1(x)` and whether libm must recompute it.
            #[inline(always)]
            pub(super) fn expm1(x: T) -> (T, bool) {
                let y = expm1_core(x, false);
                let over = x > c($movf);
                let y = if over { T::INFINITY } else { y };
                let y = if x < c($mlo) { -1.0 } else { y };
                (y, x > c($mhi) && !over)
            }

            /// `tanh(x)` (never needs libm).
            #[inline(always)]
            pub(super) fn tanh(x: T) -> (T, bool) {
                let a = x.abs();
                let a = if a > c($clamp) { c($clamp) } else { a };
                let t = expm1_core(a + a, true);
                let y = t / (t + 2.0);
                let sign = x.to_bits() & (1 << (<$u>::BITS - 1));
                (T::from_bits(y.to_bits() | sign), false)
            }

            /// fdlibm's `log(1+f) + k·ln2 + c` kernel (vmath's `log_kernel`).
            #[inline(always)]
            fn log_kernel(f: T, dk: T, c_: Option<T>) -> T {
                let hf = c(0.5) * f;
                let hfsq = hf * f;
                let s = f / (c(2.0) + f);
                let z = s * s;
                let w = z * z;
                let t1 = w * horner(w, &[$($lge),*]);
                let t2 = z * horner(w, &[$($lgo),*]);
                let r = t2 + t1;
                let mut l = dk * c($llo);
                if let Some(cc) = c_ {
                    l += cc;
                }
                let a = s * (hfsq + r) + l;
                let a = a - hfsq;
                let a = a + f;
                a + dk * c($lhi)
            }

            /// `log(x)` for positive normal finite `x`, and whether `x` is anything else.
            #[inline(always)]
            pub(super) fn log_fast(x: T) -> (T, bool) {
                let (k, f) = $split(x);
                // vmath converts k exactly too (|k| is far below 2^22).
                let y = log_kernel(f, k as T, None);
                (y, !(T::MIN_POSITIVE..T::INFINITY).contains(&x))
            }

            /// `log(x)` and whether libm must recompute it (positive subnormals).
            #[inline(always)]
            pub(super) fn log(x: T) -> (T, bool) {
                let y = log_fast(x).0;
                let y = if x == 0.0 { T::NEG_INFINITY } else { y };
                let y = if x == T::INFINITY { T::INFINITY } else { y };
                let y = if x.is_nan() || x < 0.0 { T::NAN } else { y };
                (y, x > 0.0 && x < T::MIN_POSITIVE)
            }

            /// `log1p(x)` (never needs libm).
            #[inline(always)]
            pub(super) fn log1p(x: T) -> (T, bool) {
                let u = 1.0 + x;
                let (k, f) = $split(u);
                let c_hi = 1.0 - (u - x);
                let c_lo = x - (u - 1.0);
                let cn = if k >= 2 { c_hi } else { c_lo };
                let cc = cn / u;
                let cc = if k < $kmax { cc } else { 0.0 };
                let (f, cc) = if k == 0 { (x, 0.0) } else { (f, cc) };
                let y = log_kernel(f, k as T, Some(cc));
                let y = if x.abs() < c($ltiny) { x } else { y };
                let y = if x == -1.0 { T::NEG_INFINITY } else { y };
                let y = if x == T::INFINITY { T::INFINITY } else { y };
                let y = if x.is_nan() || x < -1.0 { T::NAN } else { y };
                (y, false)
            }
        }
    };
}

/// vmath's `split_log` for f32: `u = 2^k·(1+f)` with `1+f` in [√2/2, √2) (wrapping integer
/// arithmetic on the bits, as the vector code does on any lane).
#[inline(always)]
fn split_log32(u: f32) -> (i32, f32) {
    let ix = u.to_bits().wrapping_add(0x3f80_0000 - 0x3f35_04f3);
    let k = ((ix >> 23) as i32).wrapping_sub(0x7f);
    let m = (ix & 0x7f_ffff).wrapping_add(0x3f35_04f3);
    (k, f32::from_bits(m) - 1.0)
}

/// vmath's `split_log` for f64 (on the high word, as fdlibm).
#[inline(always)]
fn split_log64(u: f64) -> (i64, f64) {
    let ub = u.to_bits();
    let hx = (ub >> 32).wrapping_add(0x3ff0_0000 - 0x3fe6_a09e);
    let k = ((hx >> 20) as i64).wrapping_sub(0x3ff);
    let hm = ((hx & 0xf_ffff).wrapping_add(0x3fe6_a09e)) << 32;
    let m = hm | (ub & 0xffff_ffff);
    (k, f64::from_bits(m) - 1.0)
}

/// vmath's `sin_cos64`: sin (or cos) in f64 without the range check (`f32` lanes are promoted
/// to it and the result rounded back, as the vector code does).
#[inline(always)]
fn sin_cos64(x: f64, cos: bool) -> f64 {
    use super::vmath::{C64, S64};
    let fma = |a: f64, b: f64, c: f64| a.mul_add(b, c);
    let horner = |z: f64, cs: &[f64]| {
        let (&last, rest) = cs.split_last().expect("a polynomial");
        rest.iter().rev().fold(last, |acc, &k| fma(acc, z, k))
    };
    let sh = 6_755_399_441_055_744.0;
    let t = fma(x, std::f64::consts::FRAC_2_PI, sh);
    let kf = t - sh;
    let tb = t.to_bits();
    let r = fma(kf, f64::from_bits(0xbff9_21fb_5444_2d18), x);
    let r = fma(kf, f64::from_bits(0xbc91_a626_3314_5c07), r);
    let r = fma(kf, f64::from_bits(0x391f_1976_b7ed_8fbc), r);
    let n = if cos { tb.wrapping_add(1) } else { tb };
    let z = r * r;
    let w = z * z;
    let a = horner(z, &[S64[1], S64[2], S64[3]]);
    let bq = horner(z, &[S64[4], S64[5]]);
    let rr = fma(z * w, bq, a);
    let inner = fma(z, rr, S64[0]);
    let sin_r = fma(z * r, inner, r);
    let ca = z * horner(z, &[C64[0], C64[1], C64[2]]);
    let cb = horner(z, &[C64[3], C64[4], C64[5]]);
    let rc = fma(w * w, cb, ca);
    let hz = 0.5 * z;
    let w1 = 1.0 - hz;
    let t = (1.0 - w1) - hz;
    let t = fma(z, rc, t);
    let cos_r = w1 + t;
    let y = if n & 1 == 1 { cos_r } else { sin_r };
    let y = f64::from_bits(y.to_bits() ^ ((n & 2) << 62));
    if !cos && x.abs() < 2f64.powi(-26) {
        x
    } else {
        y
    }
}

/// `sin` (or `cos`) and whether vmath sends `x` to libm instead (huge finite arguments).
#[inline(always)]
fn trig(x: f64, cos: bool) -> (f64, bool) {
    let a = x.abs();
    (sin_cos64(x, cos), a > 2f64.powi(20) && a < f64::INFINITY)
}

fn sin64(x: f64) -> (f64, bool) {
    trig(x, false)
}
fn cos64(x: f64) -> (f64, bool) {
    trig(x, true)
}
fn sin32(x: f32) -> (f32, bool) {
    let (y, libm) = trig(f64::from(x), false);
    (y as f32, libm)
}
fn cos32(x: f32) -> (f32, bool) {
    let (y, libm) = trig(f64::from(x), true);
    (y as f32, libm)
}

kernels!(k32, f32, u32, shift: 23, shifter: 12582912.0,
    ln2: (f64::from(f32::from_bits(0x3f31_7218)), f64::from(f32::from_bits(0xb102_e308))),
    exp: (super::inv_factorials::<8>(), 87.0, 88.73, -104.0),
    expm1: (5, 23.0, 2f64.powi(-30), -18.0, 88.0, 88.73),
    tanh_clamp: 9.5,
    log: (split: super::split_log32,
          lg: (f64::from(super::LG32[1]), f64::from(super::LG32[3]);
               f64::from(super::LG32[0]), f64::from(super::LG32[2])),
          ln2: (6.9313812256e-01, 9.0580006145e-06),
          kmax: 25, tiny: 2f64.powi(-25)));
kernels!(k64, f64, u64, shift: 52, shifter: 6755399441055744.0,
    ln2: (f64::from_bits(0x3fe6_2e42_fefa_39ef), f64::from_bits(0x3c7a_bc9e_3b39_803f)),
    exp: (crate::jit::vmath::EXP64, 708.0, 709.79, -745.2),
    expm1: (12, 52.0, 2f64.powi(-60), -40.0, 709.0, 709.79),
    tanh_clamp: 20.0,
    log: (split: super::split_log64,
          lg: (super::LG64[1], super::LG64[3], super::LG64[5];
               super::LG64[0], super::LG64[2], super::LG64[4], super::LG64[6]),
          ln2: (6.93147180369123816490e-01, 1.90821492927058770002e-10),
          kmax: 54, tiny: 2f64.powi(-54)));

/// Applies `f` to every element of `xs` in place; elements `f` flags get `libm` instead.
/// Works in tiles of 16 so the vectorizer sees a fixed-length loop and the rare fix-ups
/// stay outside it. `fast` is `f` on its common range: its value is `f`'s wherever its flag
/// is clear, and a tile with a flagged element is redone with `f` (so `f`'s selects for
/// saturation and its own flags cost nothing on ordinary tiles).
#[inline(always)]
fn apply<T: Copy + Default>(
    xs: &mut [T],
    fast: impl Fn(T) -> (T, bool),
    f: impl Fn(T) -> (T, bool),
    libm: impl Fn(T) -> T,
) {
    let mut tiles = xs.chunks_exact_mut(16);
    for tile in &mut tiles {
        let mut y = [T::default(); 16];
        let mut odd = false;
        for (yi, &x) in y.iter_mut().zip(tile.iter()) {
            let (v, b) = fast(x);
            *yi = v;
            odd |= b;
        }
        if odd {
            for (yi, &x) in y.iter_mut().zip(tile.iter()) {
                let (v, b) = f(x);
                *yi = if b { libm(x) } else { v };
            }
        }
        tile.copy_from_slice(&y);
    }
    for x in tiles.into_remainder() {
        let (v, b) = f(*x);
        *x = if b { libm(*x) } else { v };
    }
}

macro_rules! helpers {
    ($($name:ident: $t:ty, $f:ident, $d:ident, $fast:path, $k:path, $libm:expr;)*) => {
        $(
            /// The batched helper (see the module docs): `n` elements at `p`, in place.
            extern "C" fn $name(p: *mut $t, n: usize) {
                if n == 0 {
                    return;
                }
                // SAFETY: compiled code passes the address of its own stack scratch area,
                // which holds at least `n` initialized elements (a segment is at most `SEGMENT`
                // elements, the area is `SEGMENT` elements of 8 bytes, aligned for the type) and
                // is not otherwise accessed during the call.
                let xs = unsafe { std::slice::from_raw_parts_mut(p, n) };
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                    fn wide(xs: &mut [$t]) {
                        apply(xs, $fast, $k, $libm)
                    }
                    #[target_feature(enable = "avx2,fma")]
                    fn avx2(xs: &mut [$t]) {
                        apply(xs, $fast, $k, $libm)
                    }
                    if std::arch::is_x86_feature_detected!("avx512f")
                        && std::arch::is_x86_feature_detected!("avx512vl")
                        && std::arch::is_x86_feature_detected!("avx512dq")
                        && std::arch::is_x86_feature_detected!("avx512bw")
                        && std::arch::is_x86_feature_detected!("fma")
                    {
                        // SAFETY: the features this function is compiled for were detected.
                        return unsafe { wide(xs) };
                    }
                    if std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                    {
                        // SAFETY: the features this function is compiled for were detected.
                        return unsafe { avx2(xs) };
                    }
                }
                apply(xs, $fast, $k, $libm)
            }
        )*

        /// Every helper: (function, dtype, symbol name, address).
        pub(super) fn symbols() -> impl Iterator<Item = (MathFn, DType, &'static str, *const u8)> {
            [$((
                MathFn::$f,
                DType::$d,
                stringify!($name),
                $name as extern "C" fn(*mut $t, usize) as *const u8,
            )),*]
            .into_iter()
        }
    };
}

helpers! {
    gl_batch_exp_f32: f32, Exp, F32, k32::exp_fast, k32::exp, f32::exp;
    gl_batch_exp_f64: f64, Exp, F64, k64::exp_fast, k64::exp, f64::exp;
    gl_batch_expm1_f32: f32, Expm1, F32, k32::expm1, k32::expm1, f32::exp_m1;
    gl_batch_expm1_f64: f64, Expm1, F64, k64::expm1, k64::expm1, f64::exp_m1;
    gl_batch_tanh_f32: f32, Tanh, F32, k32::tanh, k32::tanh, f32::tanh;
    gl_batch_tanh_f64: f64, Tanh, F64, k64::tanh, k64::tanh, f64::tanh;
    gl_batch_sigmoid_f32: f32, Sigmoid, F32, k32::sigmoid_fast, k32::sigmoid, |x: f32| 1.0 / (1.0 + (-x).exp());
    gl_batch_sigmoid_f64: f64, Sigmoid, F64, k64::sigmoid_fast, k64::sigmoid, |x: f64| 1.0 / (1.0 + (-x).exp());
    gl_batch_log_f32: f32, Log, F32, k32::log_fast, k32::log, f32::ln;
    gl_batch_log_f64: f64, Log, F64, k64::log_fast, k64::log, f64::ln;
    gl_batch_log1p_f32: f32, Log1p, F32, k32::log1p, k32::log1p, f32::ln_1p;
    gl_batch_log1p_f64: f64, Log1p, F64, k64::log1p, k64::log1p, f64::ln_1p;
    gl_batch_sin_f32: f32, Sin, F32, sin32, sin32, f32::sin;
    gl_batch_sin_f64: f64, Sin, F64, sin64, sin64, f64::sin;
    gl_batch_cos_f32: f32, Cos, F32, cos32, cos32, f32::cos;
    gl_batch_cos_f64: f64, Cos, F64, cos64, cos64, f64::cos;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps32(a: f32, b: f32) -> u32 {
        if a == b || (a.is_nan() && b.is_nan()) {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// The helpers against libm on a sweep with special values (the bitwise comparison with
    /// the in-loop code is `tests/it/simd.rs`).
    #[test]
    fn helpers_are_close_to_libm_and_exact_on_special_values() {
        let mut xs: Vec<f32> = (0..20_000).map(|i| (i as f32 - 10_000.0) / 97.0).collect();
        xs.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            88.5,
            -103.5,
            1e-30,
        ]);
        for (f, libm, tol) in [
            (MathFn::Exp, f32::exp as fn(f32) -> f32, 1),
            (MathFn::Expm1, f32::exp_m1, 2),
            (MathFn::Tanh, f32::tanh, 4),
            (MathFn::Sigmoid, |x: f32| 1.0 / (1.0 + (-x).exp()), 3),
            (MathFn::Log, f32::ln, 1),
            (MathFn::Log1p, f32::ln_1p, 2),
            (MathFn::Sin, f32::sin, 1),
            (MathFn::Cos, f32::cos, 1),
        ] {
            let mut ys = xs.clone();
            let h = symbols().find(|s| s.0 == f && s.1 == DType::F32).unwrap().3;
            // SAFETY: `h` is the address of an `extern "C" fn(*mut f32, usize)`.
            let h = unsafe { std::mem::transmute::<*const u8, extern "C" fn(*mut f32, usize)>(h) };
            h(ys.as_mut_ptr(), ys.len());
            for (&x, &y) in xs.iter().zip(&ys) {
                let want = libm(x);
                assert!(ulps32(y, want) <= tol, "{f:?}({x}) = {y}, libm {want}");
            }
        }
        assert_eq!(k32::exp(0.0).0, 1.0);
        assert_eq!(k64::tanh(-0.0).0.to_bits(), (-0.0f64).to_bits());
        assert_eq!(k64::expm1(-50.0).0, -1.0);
    }
}
