//! Vectorized transcendentals, emitted as Cranelift IR on `F32X4` / `F64X2` lanes: `exp`,
//! `expm1`, `log`, `log1p`, `sin`, `cos`, `tanh` and `sigmoid` (`1/(1+exp(-x))` through this
//! module's `exp`, as the interpreter computes it through libm's).
//!
//! Special values are handled inline: NaN propagates through the arithmetic, overflow gives
//! +inf and underflow +0 (or -1 for `expm1`), `log` of ±0, +inf and negative arguments and
//! `log1p` of -1, +inf and arguments below -1 are selected, and `tanh` saturates to ±1. Each
//! function reports the lanes it cannot compute (subnormal `exp` results and `log`
//! arguments, `exp`/`expm1` just below overflow, `sin`/`cos` of huge finite arguments); the
//! caller recomputes those with the scalar libm function, so they come out exactly as libm
//! gives them.
//!
//! Methods (argument reduction, then a polynomial evaluated with `fma` when the host has it):
//! - `exp`: `x = k·ln2 + r` (Cody-Waite, two-part ln2), a minimax polynomial of degree 11
//!   ([`EXP64`], f64) / Taylor polynomial of degree 7 (f32) for `e^r`, scaled by `2^k` built
//!   in the exponent bits. Fast for `|x| ≤ 708` (f64) /
//!   `87` (f32), where the result is normal.
//! - `expm1`: the same reduction; `expm1(r) = r + r²·q(r)` (Taylor), then
//!   `2^k·expm1(r) + (2^k - 1)` with one `fma` (or `2^k·(1 + expm1(r))` once `2^k - 1` is
//!   inexact). Fast for `-40 ≤ x ≤ 709` (f64) / `-17 ≤ x ≤ 88` (f32).
//! - `log`, `log1p`: fdlibm's method (`x = 2^k·(1+f)`, `s = f/(2+f)`, minimax polynomial in
//!   `s²`, and for `log1p` the rounding error of `1 + x` as a correction term), branch-free.
//!   Fast for normal positive `x` (log) and `-1 < x < ∞` (log1p).
//! - `sin`, `cos`: `x = k·π/2 + r` with a three-part π/2 and `fma` (exact first step for
//!   `|x| ≤ 2^20`), fdlibm's kernels on `[-π/4, π/4]`, the quadrant selecting kernel and sign.
//!   f32 lanes are computed in f64. Hosts without `fma` use libm on every lane.
//! - `tanh`: `t = expm1(2|x|)` on `|x|` clamped where tanh rounds to 1, `tanh = ±t/(t+2)`
//!   (NaN propagates through the arithmetic).
//!
//! The measured accuracy against Rust's `f32`/`f64` methods is in `tests/it/simd.rs` and the
//! `jit` module docs. Deliberately absent: `pow`, `tan`, `erf` and `atan2` (libm on every
//! lane), and any table lookups.

// Constants are written with the digits fdlibm publishes them with.
#![allow(clippy::excessive_precision)]

use crate::ops::MathFn;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_frontend::FunctionBuilder;

/// A vector transcendental: the fast-path value, and the lanes (an integer mask vector) that
/// need the scalar libm function instead.
pub(super) struct Approx {
    pub value: Value,
    pub bad: Option<Value>,
}

/// True if `f` has a vector implementation on this host.
pub(super) fn supported(f: MathFn, fma: bool) -> bool {
    match f {
        MathFn::Pow | MathFn::Tan | MathFn::Erf | MathFn::Atan2 => false,
        MathFn::Sin | MathFn::Cos => fma,
        _ => true,
    }
}

/// Emits `f(x)` for the lanes of `x` (`F32X4` or `F64X2`). `f` must be [`supported`].
pub(super) fn emit(b: &mut FunctionBuilder<'_>, fma: bool, f: MathFn, x: Value) -> Approx {
    let vt = b.func.dfg.value_type(x);
    let mut v = Vm { b, vt, fma };
    match f {
        MathFn::Exp => v.exp(x),
        MathFn::Expm1 => v.expm1(x),
        MathFn::Log => v.log(x),
        MathFn::Log1p => v.log1p(x),
        MathFn::Tanh => v.tanh(x),
        MathFn::Sigmoid => v.sigmoid(x),
        MathFn::Sin => v.sin_cos(x, false),
        MathFn::Cos => v.sin_cos(x, true),
        MathFn::Pow | MathFn::Tan | MathFn::Erf | MathFn::Atan2 => {
            unreachable!("{f:?} has no vector implementation")
        }
    }
}

/// `e^r ≈ Σ cₖ rᵏ` on `|r| ≤ ln2/2` (slightly widened for the reduction's rounding): the
/// minimax polynomial of degree 11 for the relative error with `c₀ = 1` (Remez exchange in
/// 60-digit arithmetic), 3.4·10⁻¹⁸ before the coefficients' rounding, far below the half-ULP
/// of the result; two `fma`s fewer than the degree-13 Taylor polynomial it replaces, which
/// bounded the batched `exp`'s throughput. The batched helpers use the same coefficients.
pub(super) const EXP64: [f64; 12] = [
    1.0,
    1.0,
    0.500_000_000_000_001_2,
    0.166_666_666_666_662_16,
    0.041_666_666_666_517_235,
    0.008_333_333_333_550_555,
    0.001_388_888_894_652_454_3,
    0.000_198_412_694_355_853_95,
    2.480_149_044_374_373e-5,
    2.755_762_731_080_462_6e-6,
    2.763_110_755_856_812e-7,
    2.499_137_236_976_466_7e-8,
];

/// `1/k!` for `k = 0..=n`.
fn inv_factorials(n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    let mut f = 1.0f64;
    for k in 0..=n {
        if k > 0 {
            f *= k as f64;
        }
        out.push(1.0 / f);
    }
    out
}

/// fdlibm's `log` polynomial (f64): `R(z) ≈ Lg1·s² + ... + Lg7·s¹⁴` (digits as published).
pub(super) const LG64: [f64; 7] = [
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
];
/// fdlibm's `logf` polynomial (f32).
pub(super) const LG32: [f32; 4] = [0.666_666_6, 0.400_009_72, 0.284_987_87, 0.242_790_79];
/// fdlibm's `sin` kernel on [-π/4, π/4] (digits as published).
pub(super) const S64: [f64; 6] = [
    -1.66666666666666324348e-01,
    8.33333333332248946124e-03,
    -1.98412698298579493134e-04,
    2.75573137070700676789e-06,
    -2.50507602534068634195e-08,
    1.58969099521155010221e-10,
];
/// fdlibm's `cos` kernel on [-π/4, π/4] (digits as published).
pub(super) const C64: [f64; 6] = [
    4.16666666666666019037e-02,
    -1.38888888888741095749e-03,
    2.48015872894767294178e-05,
    -2.75573143513906633035e-07,
    2.08757232129817482790e-09,
    -1.13596475577881948265e-11,
];

struct Vm<'a, 'f> {
    b: &'a mut FunctionBuilder<'f>,
    /// `F32X4` or `F64X2`.
    vt: Type,
    fma: bool,
}

fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

impl Vm<'_, '_> {
    fn is64(&self) -> bool {
        self.vt == types::F64X2
    }

    /// The integer vector type of the same lane layout.
    fn it(&self) -> Type {
        if self.is64() {
            types::I64X2
        } else {
            types::I32X4
        }
    }

    fn c(&mut self, x: f64) -> Value {
        let s = if self.is64() {
            self.b.ins().f64const(x)
        } else {
            self.b.ins().f32const(x as f32)
        };
        self.b.ins().splat(self.vt, s)
    }

    fn c32(&mut self, x: f32) -> Value {
        let s = self.b.ins().f32const(x);
        self.b.ins().splat(self.vt, s)
    }

    fn ci(&mut self, x: i64) -> Value {
        let it = self.it();
        // Immediates of narrow types are zero-extended.
        let imm = if it.lane_type() == types::I32 {
            i64::from(x as u32)
        } else {
            x
        };
        let s = self.b.ins().iconst(it.lane_type(), imm);
        self.b.ins().splat(it, s)
    }

    fn bits(&mut self, x: Value) -> Value {
        let it = self.it();
        self.b.ins().bitcast(it, little(), x)
    }

    fn float(&mut self, i: Value) -> Value {
        self.b.ins().bitcast(self.vt, little(), i)
    }

    fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }

    /// `a·b + c`, fused when the host has `fma`.
    fn fma(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let p = self.b.ins().fmul(a, b);
            self.b.ins().fadd(p, c)
        }
    }

    /// `Σ coeffs[j]·xʲ` by Horner's rule.
    fn horner(&mut self, x: Value, coeffs: &[f64]) -> Value {
        let (&last, rest) = coeffs.split_last().expect("a polynomial");
        let mut acc = self.c(last);
        for &c in rest.iter().rev() {
            let cv = self.c(c);
            acc = self.fma(acc, x, cv);
        }
        acc
    }

    /// Lane-wise `if mask { a } else { b }` (`mask` is an integer vector of all-ones/zero).
    fn sel(&mut self, mask: Value, a: Value, b: Value) -> Value {
        let m = self.float(mask);
        self.b.ins().bitselect(m, a, b)
    }

    fn fcmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(cc, a, b)
    }

    fn abs(&mut self, x: Value) -> Value {
        self.b.ins().fabs(x)
    }

    /// A small integer vector (lanes in ±2^22) converted to floats.
    fn int_to_float(&mut self, k: Value) -> Value {
        if self.is64() {
            // k + bits(1.5·2^52) is the double 1.5·2^52 + k.
            let magic: f64 = 6755399441055744.0; // 1.5·2^52
            let m = self.ci(magic.to_bits() as i64);
            let s = self.b.ins().iadd(k, m);
            let f = self.float(s);
            let mc = self.c(magic);
            self.sub(f, mc)
        } else {
            self.b.ins().fcvt_from_sint(self.vt, k)
        }
    }

    /// Rounds `x·scale` to an integer `k`: returns `(k as float, bits whose low bits are k)`.
    fn round_mul(&mut self, x: Value, scale: f64) -> (Value, Value) {
        let shifter = if self.is64() {
            6755399441055744.0 /* 1.5·2^52 */
        } else {
            12582912.0 /* 1.5·2^23 */
        };
        let sc = self.c(scale);
        let sh = self.c(shifter);
        let t = self.fma(x, sc, sh);
        let kf = self.sub(t, sh);
        let tb = self.bits(t);
        (kf, tb)
    }

    /// `2^k` from the bits returned by [`Vm::round_mul`] (`k` within the normal exponents).
    fn pow2(&mut self, tb: Value) -> Value {
        let (shift, one) = if self.is64() {
            (52, 1f64.to_bits() as i64)
        } else {
            (23, i64::from(1f32.to_bits()))
        };
        let s = self.b.ins().ishl_imm_u(tb, shift);
        let o = self.ci(one);
        let e = self.b.ins().iadd(s, o);
        self.float(e)
    }

    /// `x - k·ln2` with a two-part ln2 (exact first step: with `fma`, or with a short
    /// high part otherwise).
    fn reduce_ln2(&mut self, x: Value, kf: Value) -> Value {
        let (hi, lo) = match (self.is64(), self.fma) {
            // ln2 rounded to f64 (f32), and the rest of ln2 rounded.
            (true, true) => (
                f64::from_bits(0x3fe6_2e42_fefa_39ef),
                f64::from_bits(0x3c7a_bc9e_3b39_803f),
            ),
            (true, false) => (6.93147180369123816490e-01, 1.90821492927058770002e-10),
            (false, true) => (
                f64::from(f32::from_bits(0x3f31_7218)),
                f64::from(f32::from_bits(0xb102_e308)),
            ),
            (false, false) => (6.9314575195e-01, 1.4286067653e-06),
        };
        let nh = self.c(-hi);
        let nl = self.c(-lo);
        let r = self.fma(kf, nh, x);
        self.fma(kf, nl, r)
    }

    fn exp(&mut self, x: Value) -> Approx {
        // Normal results for |x| <= `fast`; +inf above `ovf`, +0 below `unf`; libm between.
        let (coeffs, fast, ovf, unf) = if self.is64() {
            (EXP64.to_vec(), 708.0, 709.79, -745.2)
        } else {
            (inv_factorials(7), 87.0, 88.73, -104.0)
        };
        let (kf, tb) = self.round_mul(x, std::f64::consts::LOG2_E);
        let r = self.reduce_ln2(x, kf);
        let p = self.horner(r, &coeffs);
        let s = self.pow2(tb);
        let y = self.mul(p, s);
        let (over, under) = self.saturate(x, ovf, unf);
        let inf = self.c(f64::INFINITY);
        let zero = self.c(0.0);
        let y = self.sel(over, inf, y);
        let value = self.sel(under, zero, y);
        let bad = self.between(x, fast, over, under);
        Approx { value, bad }
    }

    /// Masks of `x > ovf` and `x < unf`.
    fn saturate(&mut self, x: Value, ovf: f64, unf: f64) -> (Value, Value) {
        let o = self.c(ovf);
        let u = self.c(unf);
        let over = self.fcmp(FloatCC::GreaterThan, x, o);
        let under = self.fcmp(FloatCC::LessThan, x, u);
        (over, under)
    }

    /// Lanes with `|x| > fast` that neither saturates (NaN is not included).
    fn between(&mut self, x: Value, fast: f64, over: Value, under: Value) -> Option<Value> {
        let a = self.abs(x);
        let f = self.c(fast);
        let big = self.fcmp(FloatCC::GreaterThan, a, f);
        let sat = self.b.ins().bor(over, under);
        Some(self.b.ins().band_not(big, sat))
    }

    /// `expm1` without the range check. `for_tanh`: the argument is `+0` or positive and
    /// `2^k·(1 + expm1(r)) - 1` may round (tanh divides it away), so neither the tiny nor the
    /// large-`k` case needs a select.
    fn expm1_core(&mut self, x: Value, for_tanh: bool) -> Value {
        let (deg, big_k, tiny) = if self.is64() {
            (12, 52.0, 2f64.powi(-60))
        } else {
            (5, 23.0, 2f64.powi(-30))
        };
        let (kf, tb) = self.round_mul(x, std::f64::consts::LOG2_E);
        let r = self.reduce_ln2(x, kf);
        // q(r) = Σ r^j / (j+2)!, expm1(r) = r + r²·q(r).
        let q_coeffs: Vec<f64> = inv_factorials(deg + 2)[2..].to_vec();
        let q = self.horner(r, &q_coeffs);
        let r2 = self.mul(r, r);
        let p = self.fma(r2, q, r);
        let s = self.pow2(tb);
        let one = self.c(1.0);
        let sm1 = self.sub(s, one);
        let small = self.fma(s, p, sm1);
        if for_tanh {
            return small;
        }
        let p1 = self.add(p, one);
        let large = self.mul(s, p1);
        let bk = self.c(big_k);
        let is_big = self.fcmp(FloatCC::GreaterThan, kf, bk);
        let y = self.sel(is_big, large, small);
        // expm1(x) = x for tiny x (keeps -0).
        let ax = self.abs(x);
        let t = self.c(tiny);
        let is_tiny = self.fcmp(FloatCC::LessThan, ax, t);
        self.sel(is_tiny, x, y)
    }

    fn expm1(&mut self, x: Value) -> Approx {
        // The reduction is exact and 2^k normal on [lo, hi]; +inf above `ovf`, -1 below
        // `lo` (where expm1 rounds to -1); libm in (hi, ovf].
        let (lo, hi, ovf) = if self.is64() {
            (-40.0, 709.0, 709.79)
        } else {
            (-18.0, 88.0, 88.73)
        };
        let y = self.expm1_core(x, false);
        let (over, under) = self.saturate(x, ovf, lo);
        let inf = self.c(f64::INFINITY);
        let m1 = self.c(-1.0);
        let y = self.sel(over, inf, y);
        let value = self.sel(under, m1, y);
        let h = self.c(hi);
        let big = self.fcmp(FloatCC::GreaterThan, x, h);
        let bad = Some(self.b.ins().band_not(big, over));
        Approx { value, bad }
    }

    fn tanh(&mut self, x: Value) -> Approx {
        // Beyond `clamp`, tanh rounds to ±1 (and so does t/(t+2) at the clamp). NaN is not
        // above the clamp, so it flows through to the result.
        let clamp = if self.is64() { 20.0 } else { 9.5 };
        let a = self.abs(x);
        let c = self.c(clamp);
        let above = self.fcmp(FloatCC::GreaterThan, a, c);
        let a = self.sel(above, c, a);
        let a2 = self.add(a, a);
        let t = self.expm1_core(a2, true);
        let two = self.c(2.0);
        let d = self.add(t, two);
        let y = self.div(t, d);
        // y >= +0: copy the sign of x.
        let sign = if self.is64() {
            i64::MIN
        } else {
            i64::from(i32::MIN)
        };
        let sm = self.ci(sign);
        let xb = self.bits(x);
        let xs = self.b.ins().band(xb, sm);
        let yb = self.bits(y);
        let yb = self.b.ins().bor(yb, xs);
        let value = self.float(yb);
        Approx { value, bad: None }
    }

    /// `1/(1 + exp(-x))` with [`Vm::exp`]; its libm lanes are `exp`'s (whose libm value the
    /// scalar wrapper then uses, in the same formula).
    fn sigmoid(&mut self, x: Value) -> Approx {
        let m = self.c(-0.0);
        let m = self.b.ins().bxor(x, m);
        let e = self.exp(m);
        let one = self.c(1.0);
        let d = self.add(one, e.value);
        let value = self.div(one, d);
        Approx { value, bad: e.bad }
    }

    /// fdlibm's `log(1+f) + k·ln2 + c` kernel (`f` in [√2/2-1, √2-1], `dk = k` as float).
    fn log_kernel(&mut self, f: Value, dk: Value, c: Option<Value>) -> Value {
        let half = self.c(0.5);
        let two = self.c(2.0);
        let hf = self.mul(half, f);
        let hfsq = self.mul(hf, f);
        let d = self.add(two, f);
        let s = self.div(f, d);
        let z = self.mul(s, s);
        let w = self.mul(z, z);
        let r = if self.is64() {
            // t1 = w(Lg2 + w(Lg4 + w·Lg6)); t2 = z(Lg1 + w(Lg3 + w(Lg5 + w·Lg7))).
            let e = self.horner(w, &[LG64[1], LG64[3], LG64[5]]);
            let t1 = self.mul(w, e);
            let o = self.horner(w, &[LG64[0], LG64[2], LG64[4], LG64[6]]);
            let t2 = self.mul(z, o);
            self.add(t2, t1)
        } else {
            let e = self.horner(w, &[f64::from(LG32[1]), f64::from(LG32[3])]);
            let t1 = self.mul(w, e);
            let o = self.horner(w, &[f64::from(LG32[0]), f64::from(LG32[2])]);
            let t2 = self.mul(z, o);
            self.add(t2, t1)
        };
        let (hi, lo) = if self.is64() {
            (6.93147180369123816490e-01, 1.90821492927058770002e-10)
        } else {
            (6.9313812256e-01, 9.0580006145e-06)
        };
        let (hi, lo) = if self.is64() {
            (self.c(hi), self.c(lo))
        } else {
            (self.c32(hi as f32), self.c32(lo as f32))
        };
        // s·(hfsq+R) + (dk·ln2_lo + c) - hfsq + f + dk·ln2_hi, left to right.
        let hr = self.add(hfsq, r);
        let a = self.mul(s, hr);
        let mut l = self.mul(dk, lo);
        if let Some(c) = c {
            l = self.add(l, c);
        }
        let a = self.add(a, l);
        let a = self.sub(a, hfsq);
        let a = self.add(a, f);
        let h = self.mul(dk, hi);
        self.add(a, h)
    }

    /// Splits positive normal `u` into `(k, f)` with `u = 2^k·(1+f)`, `1+f` in [√2/2, √2).
    fn split_log(&mut self, u: Value) -> (Value, Value) {
        let ub = self.bits(u);
        let one = self.c(1.0);
        if self.is64() {
            let hi = self.b.ins().ushr_imm_u(ub, 32);
            let c1 = self.ci(0x3ff00000 - 0x3fe6a09e);
            let hx = self.b.ins().iadd(hi, c1);
            let e = self.b.ins().ushr_imm_u(hx, 20);
            let bias = self.ci(0x3ff);
            let k = self.b.ins().isub(e, bias);
            let mmask = self.ci(0xfffff);
            let hm = self.b.ins().band(hx, mmask);
            let c2 = self.ci(0x3fe6a09e);
            let hm = self.b.ins().iadd(hm, c2);
            let hm = self.b.ins().ishl_imm_u(hm, 32);
            let lomask = self.ci(0xffff_ffff);
            let lo = self.b.ins().band(ub, lomask);
            let m = self.b.ins().bor(hm, lo);
            let m = self.float(m);
            (k, self.sub(m, one))
        } else {
            let c1 = self.ci(0x3f800000 - 0x3f3504f3);
            let ix = self.b.ins().iadd(ub, c1);
            let e = self.b.ins().ushr_imm_u(ix, 23);
            let bias = self.ci(0x7f);
            let k = self.b.ins().isub(e, bias);
            let mmask = self.ci(0x7fffff);
            let m = self.b.ins().band(ix, mmask);
            let c2 = self.ci(0x3f3504f3);
            let m = self.b.ins().iadd(m, c2);
            let m = self.float(m);
            (k, self.sub(m, one))
        }
    }

    fn log(&mut self, x: Value) -> Approx {
        let min = if self.is64() {
            f64::MIN_POSITIVE
        } else {
            f64::from(f32::MIN_POSITIVE)
        };
        let (k, f) = self.split_log(x);
        let dk = self.int_to_float(k);
        let y = self.log_kernel(f, dk, None);
        // log(±0) = -inf, log(+inf) = +inf, log(x < 0) = log(NaN) = NaN; libm for subnormals.
        let zero = self.c(0.0);
        let inf = self.c(f64::INFINITY);
        let is_zero = self.fcmp(FloatCC::Equal, x, zero);
        let is_inf = self.fcmp(FloatCC::Equal, x, inf);
        let is_nan = self.fcmp(FloatCC::UnorderedOrLessThan, x, zero);
        let ninf = self.c(f64::NEG_INFINITY);
        let nan = self.c(f64::NAN);
        let y = self.sel(is_zero, ninf, y);
        let y = self.sel(is_inf, inf, y);
        let value = self.sel(is_nan, nan, y);
        let m = self.c(min);
        let pos = self.fcmp(FloatCC::GreaterThan, x, zero);
        let sub = self.fcmp(FloatCC::LessThan, x, m);
        let bad = Some(self.b.ins().band(pos, sub));
        Approx { value, bad }
    }

    fn log1p(&mut self, x: Value) -> Approx {
        let (kmax, tiny) = if self.is64() {
            (54, 2f64.powi(-54))
        } else {
            (25, 2f64.powi(-25))
        };
        let one = self.c(1.0);
        let u = self.add(one, x);
        let (k, f) = self.split_log(u);
        // c = (k >= 2 ? 1-(u-x) : x-(u-1)) / u, the rounding error of 1+x relative to u;
        // 0 once it is negligible (k >= kmax).
        let ux = self.sub(u, x);
        let c_hi = self.sub(one, ux);
        let u1 = self.sub(u, one);
        let c_lo = self.sub(x, u1);
        let two = self.ci(2);
        let ge2 = self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, k, two);
        let cn = self.sel(ge2, c_hi, c_lo);
        let c = self.div(cn, u);
        let km = self.ci(kmax);
        let small_k = self.b.ins().icmp(IntCC::SignedLessThan, k, km);
        let zero = self.c(0.0);
        let c = self.sel(small_k, c, zero);
        // k == 0: f = x exactly, no correction.
        let z = self.ci(0);
        let k0 = self.b.ins().icmp(IntCC::Equal, k, z);
        let f = self.sel(k0, x, f);
        let c = self.sel(k0, zero, c);
        let dk = self.int_to_float(k);
        let y = self.log_kernel(f, dk, Some(c));
        // log1p(x) = x for tiny x (keeps -0).
        let ax = self.abs(x);
        let t = self.c(tiny);
        let is_tiny = self.fcmp(FloatCC::LessThan, ax, t);
        let y = self.sel(is_tiny, x, y);
        // log1p(-1) = -inf, log1p(+inf) = +inf, log1p(x < -1) = log1p(NaN) = NaN.
        let m1 = self.c(-1.0);
        let inf = self.c(f64::INFINITY);
        let is_m1 = self.fcmp(FloatCC::Equal, x, m1);
        let is_inf = self.fcmp(FloatCC::Equal, x, inf);
        let is_nan = self.fcmp(FloatCC::UnorderedOrLessThan, x, m1);
        let ninf = self.c(f64::NEG_INFINITY);
        let nan = self.c(f64::NAN);
        let y = self.sel(is_m1, ninf, y);
        let y = self.sel(is_inf, inf, y);
        let value = self.sel(is_nan, nan, y);
        Approx { value, bad: None }
    }

    /// sin (or cos) of f64 lanes, without the range check.
    fn sin_cos64(&mut self, x: Value, cos: bool) -> Value {
        let (kf, tb) = self.round_mul(x, std::f64::consts::FRAC_2_PI);
        // -π/2 in three parts: RN(π/2), RN(π/2 - p1), RN(π/2 - p1 - p2), negated.
        let p1 = self.c(f64::from_bits(0xbff9_21fb_5444_2d18));
        let p2 = self.c(f64::from_bits(0xbc91_a626_3314_5c07));
        let p3 = self.c(f64::from_bits(0x391f_1976_b7ed_8fbc));
        let r = self.fma(kf, p1, x);
        let r = self.fma(kf, p2, r);
        let r = self.fma(kf, p3, r);
        let n = if cos {
            let one = self.ci(1);
            self.b.ins().iadd(tb, one)
        } else {
            tb
        };
        let z = self.mul(r, r);
        let w = self.mul(z, z);
        // sin(r) = r + r·z·(S1 + z·(S2 + z(S3 + z·S4) + z·w(S5 + z·S6))).
        let a = self.horner(z, &[S64[1], S64[2], S64[3]]);
        let bq = self.horner(z, &[S64[4], S64[5]]);
        let zw = self.mul(z, w);
        let rr = self.fma(zw, bq, a);
        let s1 = self.c(S64[0]);
        let inner = self.fma(z, rr, s1);
        let v = self.mul(z, r);
        let sin_r = self.fma(v, inner, r);
        // cos(r) = w1 + (((1 - w1) - hz) + z·rc), w1 = 1 - hz, hz = z/2.
        let ca = self.horner(z, &[C64[0], C64[1], C64[2]]);
        let ca = self.mul(z, ca);
        let cb = self.horner(z, &[C64[3], C64[4], C64[5]]);
        let ww = self.mul(w, w);
        let rc = self.fma(ww, cb, ca);
        let half = self.c(0.5);
        let hz = self.mul(half, z);
        let one = self.c(1.0);
        let w1 = self.sub(one, hz);
        let t = self.sub(one, w1);
        let t = self.sub(t, hz);
        let t = self.fma(z, rc, t);
        let cos_r = self.add(w1, t);
        // Quadrant n: odd → the other kernel; bit 1 → negate.
        let one_i = self.ci(1);
        let odd = self.b.ins().band(n, one_i);
        let odd = self.b.ins().icmp(IntCC::Equal, odd, one_i);
        let y = self.sel(odd, cos_r, sin_r);
        let two_i = self.ci(2);
        let neg = self.b.ins().band(n, two_i);
        let neg = self.b.ins().ishl_imm_u(neg, 62);
        let yb = self.bits(y);
        let yb = self.b.ins().bxor(yb, neg);
        let y = self.float(yb);
        if cos {
            y
        } else {
            // sin(x) = x for tiny x (keeps -0 and subnormals).
            let ax = self.abs(x);
            let t = self.c(2f64.powi(-26));
            let tiny = self.fcmp(FloatCC::LessThan, ax, t);
            self.sel(tiny, x, y)
        }
    }

    fn sin_cos(&mut self, x: Value, cos: bool) -> Approx {
        // NaN and ±inf give NaN through the arithmetic; libm for huge finite arguments.
        let a = self.abs(x);
        let bound = self.c(2f64.powi(20));
        let inf = self.c(f64::INFINITY);
        let huge = self.fcmp(FloatCC::GreaterThan, a, bound);
        let finite = self.fcmp(FloatCC::LessThan, a, inf);
        let bad = Some(self.b.ins().band(huge, finite));
        if self.is64() {
            let value = self.sin_cos64(x, cos);
            return Approx { value, bad };
        }
        // f32 lanes: two f64 halves.
        let lo = self.b.ins().fvpromote_low(x);
        let xi = self.b.ins().bitcast(types::I64X2, little(), x);
        let upper = self.b.ins().extractlane(xi, 1);
        let hv = self.b.ins().scalar_to_vector(types::I64X2, upper);
        let hv = self.b.ins().bitcast(types::F32X4, little(), hv);
        let hi = self.b.ins().fvpromote_low(hv);
        let mut v64 = Vm {
            b: &mut *self.b,
            vt: types::F64X2,
            fma: self.fma,
        };
        let rl = v64.sin_cos64(lo, cos);
        let rh = v64.sin_cos64(hi, cos);
        let dl = self.b.ins().fvdemote(rl);
        let dh = self.b.ins().fvdemote(rh);
        let dli = self.b.ins().bitcast(types::I64X2, little(), dl);
        let dhi = self.b.ins().bitcast(types::I64X2, little(), dh);
        let h0 = self.b.ins().extractlane(dhi, 0);
        let m = self.b.ins().insertlane(dli, h0, 1);
        let value = self.b.ins().bitcast(types::F32X4, little(), m);
        Approx { value, bad }
    }
}
