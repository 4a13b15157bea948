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
//! `k·ε·Σ|a||b|` of the exact product).
//!
//! Threads: a wrapper runs the product on [`set_threads`]'s count of threads, or on the
//! calling thread alone for a count of 1; products of fewer than [`SPLIT_MIN_WORK`]
//! multiply-adds stay on one thread. A threaded product is cut into one block of output rows
//! per thread (or of columns, where the rows cannot be cut; or not at all where neither can),
//! each a single-threaded call of the crate ([`gemm::Parallelism::None`]), run on the
//! kernel's team (`team`). The crate's own threading ([`gemm::Parallelism::Rayon`]) is never
//! used: it forks on rayon's pool twice per `k` block (packing, then the product), and each
//! fork may wait 10–35 µs for a parked worker to wake (on `gmm`'s 32×1000×32 products it
//! made the GradBench objective up to 1.4× slower on two threads than on one). Results are
//! bitwise independent of the count: every output
//! element is one accumulator summing its `k` terms in the same order (the `k` blocks, in
//! order, each a sequential run of fused multiply-adds), whichever rows or tiles a thread
//! gets. The `k` blocks come from the shape and the cache sizes read once per process, never
//! from the thread count, and a row or column block keeps the whole product's `k` blocks (the
//! crate sizes them from the shape only for products of at most 64×64, which a cut avoids
//! unless `k` fits one block anyway); what threads do change (tile boundaries, whether an operand is
//! packed first) moves no element's sum. The tests check this bitwise on shapes that cross
//! the crate's block sizes, cut or not; it is a property of `gemm` 0.19's algorithm, so those
//! tests guard it across updates of the crate.
//!
//! Epilogues: a wrapper can also update a destination, `dst = alpha·init + beta·(A·B)` (the
//! crate's `read_dst`), for the plan's GEMM epilogues (see `plan::epilogue`, which documents
//! the rounding).
//!
//! Memory: a narrow product computed column-major first allocates its m·n scratch per call;
//! the crate allocates packing memory per call (and, with threads, a small flag
//! vector per extra thread), keeps a packing slab the size of the L2 cache (2 MB here) per
//! thread that packs for the thread's lifetime, and reads the cache sizes from `/sys` once
//! per process.
//!
//! Deliberately absent: a preallocated packing buffer in the workspace (so a kernel with GEMM
//! calls is not allocation-free).
#![allow(unsafe_code)]

use crate::ir::DType;
use std::cell::Cell;

thread_local! {
    /// The thread count of the kernel call running on this thread (see [`set_threads`]).
    static THREADS: Cell<usize> = const { Cell::new(1) };
}

/// Sets the number of threads the GEMM calls made on this thread use, until the next call.
/// [`super::Kernel`] sets it before running its code: the compiled code calls the wrappers
/// with the ABI's ten arguments, so the count travels beside them. 0 is treated as 1.
pub(super) fn set_threads(n: usize) {
    THREADS.with(|t| t.set(n));
}

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

/// Products of at least this many multiply-adds are cut into row or column blocks for the
/// kernel's threads (where the shape allows: `Product::splits`, `Product::splits_columns`). A fork of the team costs about a
/// microsecond, so the MLP's 64×256×10 products (2–6 µs on one thread) gain from it, and the
/// blocks keep each thread on the batch rows it computed before.
const SPLIT_MIN_WORK: usize = 1 << 17;

/// True if a product of this size may run on more than one thread ([`SPLIT_MIN_WORK`]).
pub(super) fn may_use_threads(m: usize, k: usize, n: usize) -> bool {
    m.saturating_mul(k).saturating_mul(n) >= SPLIT_MIN_WORK
}

/// The product's operands and destination: `dst` (`m×n`) and `lhs`, `rhs`, all through
/// element strides (the wrappers' `dst` is row-major: `dst_rs` = `n`, `dst_cs` = 1).
/// Addresses are integers so that a split product can hand its
/// blocks to other threads.
#[derive(Clone, Copy)]
struct Product {
    m: usize,
    n: usize,
    k: usize,
    dst: usize,
    dst_rs: isize,
    dst_cs: isize,
    lhs: usize,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: usize,
    rhs_rs: isize,
    rhs_cs: isize,
}

/// The address `by` strides of `stride` elements of `T` past `addr`.
fn advance<T>(addr: usize, by: usize, stride: isize) -> usize {
    addr.wrapping_add_signed(by as isize * stride * std::mem::size_of::<T>() as isize)
}

impl Product {
    /// Rows `lo..hi` of the product: the same `rhs`, fewer rows of `lhs` and `dst`.
    fn rows<T>(self, lo: usize, hi: usize) -> Product {
        Product {
            m: hi - lo,
            dst: advance::<T>(self.dst, lo, self.dst_rs),
            lhs: advance::<T>(self.lhs, lo, self.lhs_rs),
            ..self
        }
    }

    /// Columns `lo..hi` of the product: the same `lhs`, fewer columns of `rhs` and `dst`.
    fn cols<T>(self, lo: usize, hi: usize) -> Product {
        Product {
            n: hi - lo,
            dst: advance::<T>(self.dst, lo, self.dst_cs),
            rhs: advance::<T>(self.rhs, lo, self.rhs_cs),
            ..self
        }
    }

    /// True if the columns may be split between threads without moving any element's sum,
    /// for products whose rows cannot be (`splits`): the same argument with rows and columns
    /// swapped. Each part keeps at least 16 columns and more than 256 outputs (off the
    /// crate's vector paths), and the parts take the crate's small path (at most 64 rows and
    /// 64 columns, `k` blocks sized from the shape) exactly when the whole does, unless `k`
    /// fits one block anyway.
    fn splits_columns(&self, parts: usize) -> bool {
        let narrowest = self.n / parts.max(1);
        let small = |m: usize, n: usize| m <= 64 && n <= 64;
        parts >= 2
            && narrowest >= 16
            && self.m >= 2
            && self.m * narrowest > 256
            && self.k > 2
            && (self.k <= 512 || small(self.m, self.n) == small(self.m, narrowest))
            && self.m.saturating_mul(self.n).saturating_mul(self.k) >= SPLIT_MIN_WORK
    }

    /// True if the rows may be split between threads without moving any element's sum (see
    /// the module docs): the parts run the crate's general path with the whole product's `k`
    /// blocks. The crate sizes the blocks from the shape only on its small path (at most 64
    /// rows and 64 columns), which then matters only if `k` exceeds one block (512); its
    /// vector-product paths (at most 256 output elements, one row or column, or `k` ≤ 2) are
    /// avoided by keeping at least 32 rows and 9 columns per part and `k` > 2. (Each part
    /// packs what it reads; 32 rows per part keep any packing of the shared operand small
    /// beside the part's work.)
    fn splits(&self, parts: usize) -> bool {
        parts >= 2
            && self.m >= 32 * parts
            && self.n >= 9
            && self.k > 2
            && (self.n > 64 || self.k <= 512)
            && self.m.saturating_mul(self.n).saturating_mul(self.k) >= SPLIT_MIN_WORK
    }

    /// `dst = alpha·dst + beta·(lhs·rhs)` (`read_dst`), or `dst = beta·(lhs·rhs)`, on the
    /// calling thread.
    ///
    /// # Safety
    /// As the wrappers'.
    unsafe fn run<T: 'static>(self, read_dst: bool, alpha: T, beta: T) {
        // SAFETY: the caller's contract is the `gemm` crate's: `dst` (through its strides) is
        // valid for writes and disjoint from the operands, and every strided
        // operand read stays in bounds. Without `read_dst` the old contents of `dst` are not
        // read, so it may be uninitialized workspace.
        unsafe {
            gemm::gemm(
                self.m,
                self.n,
                self.k,
                self.dst as *mut T,
                self.dst_cs,
                self.dst_rs,
                read_dst,
                self.lhs as *const T,
                self.lhs_cs,
                self.lhs_rs,
                self.rhs as *const T,
                self.rhs_cs,
                self.rhs_rs,
                alpha,
                beta,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }

    /// Rows (or, `by_rows` false, columns) split into `parts` blocks, each a run of `run` on
    /// one thread of the kernel's team (`team::run`: the calling thread and helpers that stay
    /// awake between forks, each claiming the next block).
    ///
    /// # Safety
    /// As the wrappers'; the blocks write disjoint parts of `dst`.
    unsafe fn run_split<T: 'static + Copy + Send + Sync>(
        self,
        parts: usize,
        by_rows: bool,
        read_dst: bool,
        alpha: T,
        beta: T,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let work = || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= parts {
                    break;
                }
                let block = if by_rows {
                    self.rows::<T>(self.m * i / parts, self.m * (i + 1) / parts)
                } else {
                    self.cols::<T>(self.n * i / parts, self.n * (i + 1) / parts)
                };
                // SAFETY: forwarded from the caller; each block is claimed once, and blocks
                // write disjoint rows (or columns).
                unsafe { block.run(read_dst, alpha, beta) };
            }
        };
        super::team::run(parts, &work);
    }

    /// True if the product is faster computed column-major and transposed into place: few
    /// output columns, many rows, and a left operand stored column-major (the adjoint's
    /// `Aᵀ·G`, as `hᵀ·∂logits` in the MLP). The crate's micro-kernel runs down the rows of a
    /// column-major destination (a row-major one is handled as its transpose), so a
    /// row-major destination of 10 columns fills 10 of its 16 (f32) lanes and packs the left
    /// operand; column-major, whole tiles of rows read the left operand in place (256×64×10:
    /// 1.4 instead of 4.5 µs). Each element's sum is the same either way (the crate's `k`
    /// blocks do not depend on the orientation).
    /// (The crate's vector-product paths, for one output column or `k` ≤ 2, are left alone:
    /// their order of summation may depend on the orientation.)
    fn column_major_first(&self) -> bool {
        (2..16).contains(&self.n) && self.m >= 64 && self.k > 2 && self.lhs_rs == 1
    }

    /// The product on this thread's count of threads ([`set_threads`]).
    ///
    /// # Safety
    /// As the wrappers'.
    unsafe fn compute<T: 'static + Copy + Send + Sync>(self, read_dst: bool, alpha: T, beta: T) {
        let threads = THREADS.with(Cell::get);
        if read_dst || !self.column_major_first() {
            // SAFETY: forwarded from the caller.
            unsafe { self.threaded(threads, read_dst, alpha, beta) };
            return;
        }
        let (m, n) = (self.m, self.n);
        let mut scratch: Vec<T> = Vec::with_capacity(m * n);
        let column_major = Product {
            dst: scratch.as_mut_ptr() as usize,
            dst_rs: 1,
            dst_cs: m as isize,
            ..self
        };
        // SAFETY: the operands are the caller's; the destination is `scratch`, m·n elements,
        // column-major (row stride 1, column stride m), written before it is read (no
        // `read_dst`), disjoint from everything else.
        unsafe {
            column_major.threaded(threads, false, alpha, beta);
            scratch.set_len(m * n);
        }
        let dst = self.dst as *mut T;
        for (j, col) in scratch.chunks_exact(m).enumerate() {
            for (i, &v) in col.iter().enumerate() {
                // SAFETY: `dst` holds m·n elements (the caller's contract).
                unsafe { *dst.add(i * n + j) = v };
            }
        }
    }

    /// The product cut by rows or columns for `threads` threads where that keeps every
    /// element's sum, else on the calling thread alone.
    ///
    /// # Safety
    /// As the wrappers'.
    unsafe fn threaded<T: 'static + Copy + Send + Sync>(
        self,
        threads: usize,
        read_dst: bool,
        alpha: T,
        beta: T,
    ) {
        if self.splits(threads) {
            // SAFETY: forwarded from the caller.
            unsafe { self.run_split(threads, true, read_dst, alpha, beta) }
        } else if self.splits_columns(threads) {
            // SAFETY: forwarded from the caller.
            unsafe { self.run_split(threads, false, read_dst, alpha, beta) }
        } else {
            // SAFETY: forwarded from the caller.
            unsafe { self.run(read_dst, alpha, beta) }
        }
    }
}

macro_rules! wrapper {
    ($name:ident, $t:ty) => {
        /// `dst[i·n + j] = alpha·init[i·n + j] + beta·Σ_p lhs[i·lhs_rs + p·lhs_cs] ·
        /// rhs[p·rhs_rs + j·rhs_cs]` for `i < m`, `j < n`, `p < k` (strides in elements), or
        /// the product alone (times `beta`) when `init` is null. `init` is copied into `dst`
        /// first unless it is `dst` itself (updated in place). The factors come as `f64` and
        /// are exact in `$t` (the plan takes them from constants of the dtype).
        ///
        /// # Safety
        /// `dst` must be valid for writes of `m·n` elements; `init`, unless null, for reads of
        /// `m·n` elements, and either `dst` itself or disjoint from it; `lhs` and `rhs` must be
        /// valid for reads at every offset the strides produce; `dst` must not overlap either
        /// operand. Compiled code guarantees this: the plan gives every node memory of its own
        /// type's size that never overlaps its operands (an epilogue's initial value is never
        /// an operand's memory either), and operand strides come from the operands' types.
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
            init: *const $t,
            alpha: f64,
            beta: f64,
        ) {
            if m == 0 || n == 0 {
                return;
            }
            if !init.is_null() && !std::ptr::eq(init, dst) {
                // SAFETY: both are valid for `m·n` elements and disjoint (the contract).
                unsafe { std::ptr::copy_nonoverlapping(init, dst, m * n) };
            }
            let p = Product {
                m,
                n,
                k,
                dst: dst as usize,
                dst_rs: n as isize,
                dst_cs: 1,
                lhs: lhs as usize,
                lhs_rs,
                lhs_cs,
                rhs: rhs as usize,
                rhs_rs,
                rhs_cs,
            };
            // SAFETY: the caller's contract above.
            unsafe { p.compute(!init.is_null(), alpha as $t, beta as $t) }
        }
    };
}

wrapper!(gl_gemm_f32, f32);
wrapper!(gl_gemm_f64, f64);

/// The number of pointer-sized integer arguments of a wrapper, first: `m, n, k, dst, lhs,
/// lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs, init`; then come `alpha` and `beta` as `f64`.
pub(super) const ARITY: usize = 11;

/// A wrapper's type.
type Wrapper<T> = unsafe extern "C" fn(
    usize,
    usize,
    usize,
    *mut T,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    *const T,
    f64,
    f64,
);

/// Every wrapper: (dtype, symbol name, address).
pub(super) fn symbols() -> [(DType, &'static str, *const u8); 2] {
    type F32 = Wrapper<f32>;
    type F64 = Wrapper<f64>;
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
                std::ptr::null(),
                0.0,
                1.0,
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
                std::ptr::null(),
                0.0,
                1.0,
            )
        };
        assert_eq!(c2, want);
    }

    /// Calls the f32 or f64 wrapper on row-major `a` (m×k) and `b` (k×n), read through
    /// transposed copies when `ta`/`tb`, with `threads`.
    fn product<T: Copy + Default>(
        f: Wrapper<T>,
        (m, k, n): (usize, usize, usize),
        (a, ta): (&[T], bool),
        (b, tb): (&[T], bool),
        threads: usize,
    ) -> Vec<T> {
        let at: Vec<T>;
        let (a, ars, acs) = if ta {
            at = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            (&at[..], 1, m as isize)
        } else {
            (a, k as isize, 1)
        };
        let bt: Vec<T>;
        let (b, brs, bcs) = if tb {
            bt = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            (&bt[..], 1, k as isize)
        } else {
            (b, n as isize, 1)
        };
        let mut c = vec![T::default(); m * n];
        set_threads(threads);
        // SAFETY: sizes and strides describe the vectors above; `c` is exclusive.
        unsafe {
            f(
                m,
                n,
                k,
                c.as_mut_ptr(),
                a.as_ptr(),
                ars,
                acs,
                b.as_ptr(),
                brs,
                bcs,
                std::ptr::null(),
                0.0,
                1.0,
            )
        };
        set_threads(1);
        c
    }

    /// Values with full mantissas, so that any change in summation order shows in the bits.
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = crate::testutil::Rng(seed);
        (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
    }

    #[test]
    fn threaded_products_are_bitwise_those_of_one_thread() {
        // The MLP step's products (f32), with the adjoints' transposed operands, and f64
        // shapes crossing the crate's k block (512) and leaving partial tiles at every edge.
        let f32_shapes = [
            ((64, 784, 256), false, false),
            ((784, 64, 256), true, false),
            ((64, 256, 784), false, true),
            ((64, 256, 10), false, false),
            ((64, 10, 256), false, true),
            // Computed column-major first (`hᵀ·∂logits`), its rows cut in the scratch.
            ((256, 64, 10), true, false),
            // The narrowest and shallowest products cut by rows.
            ((64, 500, 9), false, false),
            ((96, 3, 700), true, false),
            ((129, 1037, 77), false, false),
            // Cut by columns (too few rows): k blocks sized from a small shape, or not.
            ((40, 1100, 60), false, false),
            ((24, 700, 600), false, true),
            ((32, 1000, 32), true, false),
            // Not cut: the parts would take the crate's small path and the whole would not.
            ((48, 700, 100), false, false),
        ];
        for ((m, k, n), ta, tb) in f32_shapes {
            let a: Vec<f32> = values(m * k, 1).iter().map(|&v| v as f32).collect();
            let b: Vec<f32> = values(k * n, 2).iter().map(|&v| v as f32).collect();
            let one = product(gl_gemm_f32, (m, k, n), (&a, ta), (&b, tb), 1);
            // The oracle for the values: an f64 sum, within the GEMM's f32 rounding bound.
            for (idx, &c) in one.iter().enumerate() {
                let (i, j) = (idx / n, idx % n);
                let exact: f64 = (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                    .sum();
                let bound: f64 = (0..k)
                    .map(|p| f64::from((a[i * k + p] * b[p * n + j]).abs()))
                    .sum::<f64>()
                    * k as f64
                    * f64::from(f32::EPSILON);
                assert!(
                    (f64::from(c) - exact).abs() <= bound,
                    "{m}×{k}×{n} at {idx}"
                );
            }
            for t in [2, 3, 4] {
                let got = product(gl_gemm_f32, (m, k, n), (&a, ta), (&b, tb), t);
                let same = got
                    .iter()
                    .zip(&one)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{m}×{k}×{n} (ta={ta}, tb={tb}) with {t} threads");
            }
        }
        for ((m, k, n), ta, tb) in [
            ((200, 1100, 300), false, false),
            ((97, 600, 513), true, true),
        ] {
            let (a, b) = (values(m * k, 3), values(k * n, 4));
            let one = product(gl_gemm_f64, (m, k, n), (&a, ta), (&b, tb), 1);
            let want = naive(m, k, n, &a, &b);
            let close = one
                .iter()
                .zip(&want)
                .all(|(x, y)| (x - y).abs() <= 1e-12 * k as f64);
            assert!(close, "{m}×{k}×{n} f64 values");
            for t in [2, 3] {
                let got = product(gl_gemm_f64, (m, k, n), (&a, ta), (&b, tb), t);
                let same = got
                    .iter()
                    .zip(&one)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{m}×{k}×{n} f64 (ta={ta}, tb={tb}) with {t} threads");
            }
        }
    }

    #[test]
    fn accumulating_products_update_in_place_or_copy_the_initial_value() {
        // dst = 0.9·init − A·B on shapes split by rows or not, k one block or three.
        for (m, k, n) in [(130, 64, 77), (70, 1100, 90), (40, 1100, 60)] {
            let a: Vec<f32> = values(m * k, 5).iter().map(|&v| v as f32).collect();
            let b: Vec<f32> = values(k * n, 6).iter().map(|&v| v as f32).collect();
            let init: Vec<f32> = values(m * n, 7).iter().map(|&v| v as f32).collect();
            let (alpha, beta) = (f64::from(0.9f32), -1.0);
            let call = |dst: &mut [f32], init: *const f32, threads: usize| {
                set_threads(threads);
                // SAFETY: row-major a (m×k), b (k×n), dst and init m×n; init is dst or
                // disjoint from it.
                unsafe {
                    gl_gemm_f32(
                        m,
                        n,
                        k,
                        dst.as_mut_ptr(),
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        init,
                        alpha,
                        beta,
                    );
                }
                set_threads(1);
            };
            let mut copied = vec![f32::NAN; m * n];
            call(&mut copied, init.as_ptr(), 1);
            let eps = f64::from(f32::EPSILON);
            for (idx, &c) in copied.iter().enumerate() {
                let (i, j) = (idx / n, idx % n);
                let mut exact = alpha * f64::from(init[idx]);
                let mut mag = exact.abs();
                for p in 0..k {
                    let t = f64::from(a[i * k + p]) * f64::from(b[p * n + j]);
                    exact += beta * t;
                    mag += t.abs();
                }
                let err = (f64::from(c) - exact).abs();
                assert!(err <= (k + 2) as f64 * eps * mag, "{m}×{k}×{n} at {idx}");
            }
            for threads in [1, 2, 3] {
                let mut own = init.clone();
                let p = own.as_ptr();
                call(&mut own, p, threads);
                let same = own
                    .iter()
                    .zip(&copied)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{m}×{k}×{n} in place on {threads} threads");
            }
        }
    }

    #[test]
    fn narrow_products_computed_column_major_have_the_row_major_bits() {
        // Few columns, many rows, A stored transposed: computed column-major and transposed;
        // k one block or two (700 > 512).
        for (m, k, n) in [(256, 64, 10), (300, 700, 9), (64, 33, 2)] {
            let a: Vec<f32> = values(m * k, 8).iter().map(|&v| v as f32).collect();
            let b: Vec<f32> = values(k * n, 9).iter().map(|&v| v as f32).collect();
            let got = product(gl_gemm_f32, (m, k, n), (&a, true), (&b, false), 1);
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let mut want = vec![0f32; m * n];
            // SAFETY: the crate directly, row-major destination (m×n), Aᵀ stored k×m, B k×n.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    want.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    at.as_ptr(),
                    m as isize,
                    1,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            let same = got
                .iter()
                .zip(&want)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{m}×{k}×{n}");
        }
    }

    #[test]
    fn f32_wrapper_and_symbols() {
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let mut c = [0f32; 4];
        // SAFETY: 2×2 matrices, row-major.
        unsafe {
            gl_gemm_f32(
                2,
                2,
                2,
                c.as_mut_ptr(),
                a.as_ptr(),
                2,
                1,
                a.as_ptr(),
                2,
                1,
                std::ptr::null(),
                0.0,
                1.0,
            );
        }
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
