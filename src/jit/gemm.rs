//! Matrix products for compiled code: one `extern "C"` wrapper per dtype around the `gemm`
//! crate's tuned kernels, and the rule that decides when a `matmul` node calls it.
//!
//! A wrapper computes one (non-batched) product `C = A·B` with `C` row-major (`m×n`, row
//! stride `n`) and `A`, `B` read through arbitrary element strides, so a transpose feeding the
//! product is passed as swapped strides instead of being copied. Compiled code calls it once
//! per batch matrix. The wrappers are registered by name with the JIT module ([`symbols`]);
//! nothing is resolved through `dlsym`.
//!
//! Numerics: the GEMM tiles the `k` loop and uses fused multiply-adds and SIMD partial sums,
//! so results differ from the interpreter's left-to-right sum by rounding (both are within
//! `k·ε·Σ|a||b|` of the exact product). Results are deterministic: the kernels run on the
//! calling thread only ([`gemm::Parallelism::None`]), and the tiling depends only on the
//! shape and strides, so the same inputs give the same bits on every call.
//!
//! Memory: the crate allocates packing memory per call, keeps a packing slab the size of the
//! L2 cache (2 MB here) per calling thread for the thread's lifetime, and reads the cache
//! sizes from `/sys` once per process.
//!
//! Deliberately absent: threads (a [`super::Kernel`] may be shared by many threads, each
//! calling it; nested parallelism would oversubscribe the cores), and a preallocated packing
//! buffer in the workspace (so a kernel with GEMM calls is not allocation-free).
#![allow(unsafe_code)]

use crate::ir::DType;

/// Products with `m·n·k` at most this stay in the JIT's own loop nest, which sums in the
/// interpreter's order (bitwise equal results) and beats the GEMM's call and packing overhead
/// at these sizes. Measured (f64, best of many runs, ns; loop nest vs GEMM): 4³ 115 vs 321,
/// 5³ 129 vs 283, 6³ ~200 vs 297, 7³ ~262 vs 247, 8³ ~420 vs 144, and narrow shapes
/// 3×40×2 235 vs 596, 40×3×2 358 vs 938 (`benches/gemm.rs` has the same shapes).
pub(super) const LOOP_NEST_MAX_WORK: usize = 256;

/// True if a product of this size is computed by the GEMM wrapper (both operands must also
/// be in memory, not splat constants: the lowering checks that). Never in a crate that uses
/// gradlift unoptimized ([`super::DEPENDENCY_UNOPTIMIZED`]): the `gemm` crate unoptimized is
/// far slower than the JIT's loop nest.
pub(super) fn use_gemm(m: usize, k: usize, n: usize) -> bool {
    !super::DEPENDENCY_UNOPTIMIZED && m.saturating_mul(k).saturating_mul(n) > LOOP_NEST_MAX_WORK
}

macro_rules! wrapper {
    ($name:ident, $t:ty) => {
        /// `dst[i·n + j] = Σ_p lhs[i·lhs_rs + p·lhs_cs] · rhs[p·rhs_rs + j·rhs_cs]` for
        /// `i < m`, `j < n`, `p < k` (strides in elements).
        ///
        /// # Safety
        /// `dst` must be valid for writes of `m·n` elements; `lhs` and `rhs` must be valid for
        /// reads at every offset the strides produce; `dst` must not overlap either operand.
        /// Compiled code guarantees this: the plan gives every node memory of its own type's
        /// size that never overlaps its operands, and operand strides come from the operands'
        /// types.
        #[allow(clippy::too_many_arguments)]
        unsafe extern "C" fn $name(
            m: usize,
            n: usize,
            k: usize,
            dst: *mut $t,
            lhs: *const $t,
            lhs_rs: isize,
            lhs_cs: isize,
            rhs: *const $t,
            rhs_rs: isize,
            rhs_cs: isize,
        ) {
            if m == 0 || n == 0 {
                return;
            }
            if k == 0 {
                // SAFETY: `dst` is valid for `m·n` writes (the caller's contract).
                unsafe { std::ptr::write_bytes(dst, 0, m * n) };
                return;
            }
            // SAFETY: the caller's contract above is the `gemm` crate's: `dst` (column stride
            // 1, row stride n) is valid for writes and disjoint from the operands, and every
            // strided operand read stays in bounds. With `read_dst = false` the old contents
            // of `dst` are not read, so it may be uninitialized workspace.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst,
                    1,
                    n as isize,
                    false,
                    lhs,
                    lhs_cs,
                    lhs_rs,
                    rhs,
                    rhs_cs,
                    rhs_rs,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        }
    };
}

wrapper!(gl_gemm_f32, f32);
wrapper!(gl_gemm_f64, f64);

/// The number of arguments of a wrapper: `m, n, k, dst, lhs, lhs_rs, lhs_cs, rhs, rhs_rs,
/// rhs_cs`, all pointer-sized integers.
pub(super) const ARITY: usize = 10;

/// Every wrapper: (dtype, symbol name, address).
pub(super) fn symbols() -> [(DType, &'static str, *const u8); 2] {
    type F32 = unsafe extern "C" fn(
        usize,
        usize,
        usize,
        *mut f32,
        *const f32,
        isize,
        isize,
        *const f32,
        isize,
        isize,
    );
    type F64 = unsafe extern "C" fn(
        usize,
        usize,
        usize,
        *mut f64,
        *const f64,
        isize,
        isize,
        *const f64,
        isize,
        isize,
    );
    [
        (DType::F32, "gl_gemm_f32", gl_gemm_f32 as F32 as *const u8),
        (DType::F64, "gl_gemm_f64", gl_gemm_f64 as F64 as *const u8),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interpreter's order, as the independent reference.
    fn naive(m: usize, k: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn strided_products_match_the_loop_nest_within_rounding() {
        let (m, k, n) = (7, 33, 5);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| ((i * 5) % 13) as f64 * 0.5).collect();
        let want = naive(m, k, n, &a, &b);
        // Small integers times halves: every partial sum is exact, so any order agrees.
        let mut c = vec![f64::NAN; m * n];
        // SAFETY: sizes and strides describe the vectors above.
        unsafe {
            gl_gemm_f64(
                m,
                n,
                k,
                c.as_mut_ptr(),
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
            )
        };
        assert_eq!(c, want);
        // The same product with A stored transposed (k×m) and B stored transposed (n×k).
        let at: Vec<f64> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut c2 = vec![f64::NAN; m * n];
        // SAFETY: as above, with transposed strides.
        unsafe {
            gl_gemm_f64(
                m,
                n,
                k,
                c2.as_mut_ptr(),
                at.as_ptr(),
                1,
                m as isize,
                bt.as_ptr(),
                1,
                k as isize,
            )
        };
        assert_eq!(c2, want);
    }

    #[test]
    fn f32_wrapper_and_symbols() {
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let mut c = [0f32; 4];
        // SAFETY: 2×2 matrices, row-major.
        unsafe { gl_gemm_f32(2, 2, 2, c.as_mut_ptr(), a.as_ptr(), 2, 1, a.as_ptr(), 2, 1) };
        assert_eq!(c, [7.0, 10.0, 15.0, 22.0]);
        let s = symbols();
        assert_ne!(s[0].1, s[1].1);
        assert!(s.iter().all(|x| !x.2.is_null()));
        assert!(!use_gemm(4, 4, 4) && use_gemm(8, 8, 8));
    }

    /// gradlift's own builds (these tests, in debug or release) are its primary package, so
    /// they test the GEMM and batched paths users get with optimization, never the fallback
    /// for unoptimized dependents (measured in a separate crate, see `benches/README.md`).
    #[test]
    fn own_builds_take_the_optimized_paths() {
        const { assert!(!super::super::DEPENDENCY_UNOPTIMIZED) };
        assert!(super::super::JitConfig::default().batch_math);
    }
}
