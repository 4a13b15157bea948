//! The math-library functions compiled code calls: one `extern "C"` wrapper per
//! ([`MathFn`], dtype), each calling the function the interpreter uses (a Rust `f32`/`f64`
//! method, or the `libm` crate's `erf`), so JIT results equal interpreter results bit for bit.
//!
//! Every wrapper is registered by name with the JIT module ([`symbols`]); nothing is resolved
//! through `dlsym`. Deliberately absent: vectorized or polynomial versions (a later tier).

use crate::ir::DType;
use crate::ops::MathFn;

macro_rules! wrappers {
    ($($name:ident: $t:ty => |$x:ident| $body:expr;)*) => {
        $(
            extern "C" fn $name($x: $t) -> $t {
                $body
            }
        )*
    };
}

wrappers! {
    gl_exp_f64: f64 => |x| x.exp();
    gl_exp_f32: f32 => |x| x.exp();
    gl_log_f64: f64 => |x| x.ln();
    gl_log_f32: f32 => |x| x.ln();
    gl_sin_f64: f64 => |x| x.sin();
    gl_sin_f32: f32 => |x| x.sin();
    gl_cos_f64: f64 => |x| x.cos();
    gl_cos_f32: f32 => |x| x.cos();
    gl_tanh_f64: f64 => |x| x.tanh();
    gl_tanh_f32: f32 => |x| x.tanh();
    gl_log1p_f64: f64 => |x| x.ln_1p();
    gl_log1p_f32: f32 => |x| x.ln_1p();
    gl_expm1_f64: f64 => |x| x.exp_m1();
    gl_expm1_f32: f32 => |x| x.exp_m1();
    gl_sigmoid_f64: f64 => |x| 1.0 / (1.0 + (-x).exp());
    gl_sigmoid_f32: f32 => |x| 1.0 / (1.0 + (-x).exp());
    gl_tan_f64: f64 => |x| x.tan();
    gl_tan_f32: f32 => |x| x.tan();
    gl_erf_f64: f64 => |x| crate::ops::erf_ref(x);
    gl_erf_f32: f32 => |x| crate::ops::erf_ref(x);
}

extern "C" fn gl_pow_f64(x: f64, y: f64) -> f64 {
    x.powf(y)
}

extern "C" fn gl_pow_f32(x: f32, y: f32) -> f32 {
    x.powf(y)
}

extern "C" fn gl_atan2_f64(y: f64, x: f64) -> f64 {
    y.atan2(x)
}

extern "C" fn gl_atan2_f32(y: f32, x: f32) -> f32 {
    y.atan2(x)
}

/// The symbol name and address of the wrapper for `f` in `dtype` (a float dtype).
pub(super) fn symbol(f: MathFn, dtype: DType) -> (&'static str, *const u8) {
    type U64 = extern "C" fn(f64) -> f64;
    type U32 = extern "C" fn(f32) -> f32;
    type B64 = extern "C" fn(f64, f64) -> f64;
    type B32 = extern "C" fn(f32, f32) -> f32;
    let f64_ = dtype == DType::F64;
    macro_rules! pick {
        ($n64:ident, $n32:ident, $t64:ty, $t32:ty) => {
            if f64_ {
                (stringify!($n64), $n64 as $t64 as *const u8)
            } else {
                (stringify!($n32), $n32 as $t32 as *const u8)
            }
        };
    }
    match f {
        MathFn::Exp => pick!(gl_exp_f64, gl_exp_f32, U64, U32),
        MathFn::Log => pick!(gl_log_f64, gl_log_f32, U64, U32),
        MathFn::Sin => pick!(gl_sin_f64, gl_sin_f32, U64, U32),
        MathFn::Cos => pick!(gl_cos_f64, gl_cos_f32, U64, U32),
        MathFn::Tanh => pick!(gl_tanh_f64, gl_tanh_f32, U64, U32),
        MathFn::Log1p => pick!(gl_log1p_f64, gl_log1p_f32, U64, U32),
        MathFn::Expm1 => pick!(gl_expm1_f64, gl_expm1_f32, U64, U32),
        MathFn::Sigmoid => pick!(gl_sigmoid_f64, gl_sigmoid_f32, U64, U32),
        MathFn::Pow => pick!(gl_pow_f64, gl_pow_f32, B64, B32),
        MathFn::Tan => pick!(gl_tan_f64, gl_tan_f32, U64, U32),
        MathFn::Erf => pick!(gl_erf_f64, gl_erf_f32, U64, U32),
        MathFn::Atan2 => pick!(gl_atan2_f64, gl_atan2_f32, B64, B32),
    }
}

/// Every wrapper: (function, dtype, symbol name, address).
pub(super) fn symbols() -> impl Iterator<Item = (MathFn, DType, &'static str, *const u8)> {
    MathFn::ALL.into_iter().flat_map(|f| {
        [DType::F32, DType::F64].into_iter().map(move |d| {
            let (name, ptr) = symbol(f, d);
            (f, d, name, ptr)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_has_two_distinct_wrappers() {
        let all: Vec<_> = symbols().collect();
        assert_eq!(all.len(), 2 * MathFn::ALL.len());
        let mut names: Vec<_> = all.iter().map(|s| s.2).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(all.iter().all(|s| !s.3.is_null()));
    }

    #[test]
    fn wrappers_compute_what_their_names_say() {
        assert_eq!(gl_exp_f64(1.0), std::f64::consts::E);
        assert_eq!(gl_log_f32(1.0), 0.0);
        assert_eq!(gl_pow_f64(2.0, 10.0), 1024.0);
        assert_eq!(gl_expm1_f64(0.0), 0.0);
        assert_eq!(gl_atan2_f64(1.0, 0.0), std::f64::consts::FRAC_PI_2);
        assert_eq!(gl_tan_f64(0.0), 0.0);
        assert_eq!(gl_erf_f64(0.0), 0.0);
    }
}
