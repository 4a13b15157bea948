//! GEMM candidates on the shapes the MLP demo and its adjoint use: the `gemm` crate and the
//! `matrixmultiply` crate (single- and two-threaded), a plain Rust loop nest in the
//! interpreter's summation order, and whatever gradlift's JIT does for one `matmul` node.
//!
//! Shapes (`m×k · k×n`):
//! - f32 `64×784 · 784×256` (layer 1), `64×256 · 256×10` (layer 2);
//! - f32 adjoints with transposed strides, no copies: `Xᵀ·G` (`784×64 · 64×256`, X stored
//!   `64×784`), `G·W1ᵀ` (`64×256 · 256×784`, W1 stored `784×256`), `Hᵀ·G2` (`256×64 · 64×10`),
//!   `G2·W2ᵀ` (`64×10 · 10×256`);
//! - f64 squares of side 4, 5, 6, 7 (around the JIT's loop-nest/GEMM switch at
//!   `m·k·n = 256`), 8, 32 and 256, and the narrow `3×40×2`, `40×3×2`.
//!
//! `matrixmultiply` reads its thread count once per process from `MATMUL_NUM_THREADS`, so its
//! two-thread figures come from a second run:
//! `MATMUL_NUM_THREADS=2 cargo bench --bench gemm -- mm_t`. The benchmark ids say which
//! thread count was in force (`mm_t1`, `mm_t2`).
//!
//! Deliberately absent: correctness checks beyond a smoke test (the JIT tests cover the
//! lowering), and shapes the demo does not use.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gradlift::jit::{self, Buf, BufMut};
use gradlift::{DType, GraphBuilder};
use std::hint::black_box;

/// One product `C[m,n] = A[m,k] · B[k,n]` where A and B may be read through transposed
/// strides (row stride, column stride in elements).
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    /// A is stored transposed (`k×m` row-major).
    a_t: bool,
    /// B is stored transposed (`n×k` row-major).
    b_t: bool,
}

impl Shape {
    /// (row stride, column stride) of A and of B.
    fn strides(&self) -> ((isize, isize), (isize, isize)) {
        let (m, k, n) = (self.m as isize, self.k as isize, self.n as isize);
        let a = if self.a_t { (1, m) } else { (k, 1) };
        let b = if self.b_t { (1, k) } else { (n, 1) };
        (a, b)
    }

    fn flops(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }
}

const F32_SHAPES: [Shape; 6] = [
    Shape {
        name: "64x784x256",
        m: 64,
        k: 784,
        n: 256,
        a_t: false,
        b_t: false,
    },
    Shape {
        name: "64x256x10",
        m: 64,
        k: 256,
        n: 10,
        a_t: false,
        b_t: false,
    },
    Shape {
        name: "xT_g_784x64x256",
        m: 784,
        k: 64,
        n: 256,
        a_t: true,
        b_t: false,
    },
    Shape {
        name: "g_w1T_64x256x784",
        m: 64,
        k: 256,
        n: 784,
        a_t: false,
        b_t: true,
    },
    Shape {
        name: "hT_g2_256x64x10",
        m: 256,
        k: 64,
        n: 10,
        a_t: true,
        b_t: false,
    },
    Shape {
        name: "g2_w2T_64x10x256",
        m: 64,
        k: 10,
        n: 256,
        a_t: false,
        b_t: true,
    },
];

const F64_SHAPES: [Shape; 9] = [
    sq("4x4x4", 4),
    sq("5x5x5", 5),
    sq("6x6x6", 6),
    sq("7x7x7", 7),
    sq("8x8x8", 8),
    sq("32x32x32", 32),
    sq("256x256x256", 256),
    Shape {
        name: "3x40x2",
        m: 3,
        k: 40,
        n: 2,
        a_t: false,
        b_t: false,
    },
    Shape {
        name: "40x3x2",
        m: 40,
        k: 3,
        n: 2,
        a_t: false,
        b_t: false,
    },
];

/// A square product `s×s · s×s`.
const fn sq(name: &'static str, s: usize) -> Shape {
    Shape {
        name,
        m: s,
        k: s,
        n: s,
        a_t: false,
        b_t: false,
    }
}

/// The element types benchmarked, with the two crates' entry points.
trait Elem:
    Copy + Default + 'static + std::ops::Mul<Output = Self> + std::ops::Add<Output = Self>
{
    const DTYPE: DType;
    const NAME: &'static str;
    fn from_f64(x: f64) -> Self;
    fn one() -> Self;
    fn zero() -> Self;
    /// `matrixmultiply`'s `sgemm`/`dgemm`: C = A·B.
    ///
    /// # Safety
    /// The pointers and strides must describe valid matrices of the given sizes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn mm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        ars: isize,
        acs: isize,
        b: *const Self,
        brs: isize,
        bcs: isize,
        c: *mut Self,
        crs: isize,
        ccs: isize,
    );
    fn bufs(a: &[Self]) -> Buf<'_>;
    fn bufs_mut(a: &mut [Self]) -> BufMut<'_>;
}

impl Elem for f32 {
    const DTYPE: DType = DType::F32;
    const NAME: &'static str = "f32";
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn one() -> f32 {
        1.0
    }
    fn zero() -> f32 {
        0.0
    }
    unsafe fn mm(
        m: usize,
        k: usize,
        n: usize,
        a: *const f32,
        ars: isize,
        acs: isize,
        b: *const f32,
        brs: isize,
        bcs: isize,
        c: *mut f32,
        crs: isize,
        ccs: isize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { matrixmultiply::sgemm(m, k, n, 1.0, a, ars, acs, b, brs, bcs, 0.0, c, crs, ccs) }
    }
    fn bufs(a: &[f32]) -> Buf<'_> {
        Buf::F32(a)
    }
    fn bufs_mut(a: &mut [f32]) -> BufMut<'_> {
        BufMut::F32(a)
    }
}

impl Elem for f64 {
    const DTYPE: DType = DType::F64;
    const NAME: &'static str = "f64";
    fn from_f64(x: f64) -> f64 {
        x
    }
    fn one() -> f64 {
        1.0
    }
    fn zero() -> f64 {
        0.0
    }
    unsafe fn mm(
        m: usize,
        k: usize,
        n: usize,
        a: *const f64,
        ars: isize,
        acs: isize,
        b: *const f64,
        brs: isize,
        bcs: isize,
        c: *mut f64,
        crs: isize,
        ccs: isize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { matrixmultiply::dgemm(m, k, n, 1.0, a, ars, acs, b, brs, bcs, 0.0, c, crs, ccs) }
    }
    fn bufs(a: &[f64]) -> Buf<'_> {
        Buf::F64(a)
    }
    fn bufs_mut(a: &mut [f64]) -> BufMut<'_> {
        BufMut::F64(a)
    }
}

fn data<T: Elem>(len: usize, seed: usize) -> Vec<T> {
    (0..len)
        .map(|i| T::from_f64(((i * 37 + seed * 11) % 101) as f64 / 50.0 - 1.0))
        .collect()
}

/// The interpreter's order: for each (i, j), `acc += a[i,p]·b[p,j]` for p ascending.
#[allow(clippy::too_many_arguments)]
fn naive<T: Elem>(
    s: &Shape,
    a: &[T],
    (ars, acs): (isize, isize),
    b: &[T],
    (brs, bcs): (isize, isize),
    c: &mut [T],
) {
    for i in 0..s.m {
        for j in 0..s.n {
            let mut acc = T::zero();
            for p in 0..s.k {
                let x = a[(i as isize * ars + p as isize * acs) as usize];
                let y = b[(p as isize * brs + j as isize * bcs) as usize];
                acc = acc + x * y;
            }
            c[i * s.n + j] = acc;
        }
    }
}

fn mm_threads() -> String {
    std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "1".into())
}

fn bench_shapes<T: Elem>(c: &mut Criterion, shapes: &[Shape]) {
    let mut group = c.benchmark_group(format!("gemm_{}", T::NAME));
    let mmt = format!("mm_t{}", mm_threads());
    for s in shapes {
        group.throughput(criterion::Throughput::Elements(s.flops()));
        let (ast, bst) = s.strides();
        let a = data::<T>(s.m * s.k, 1);
        let b = data::<T>(s.k * s.n, 2);
        let mut out = vec![T::zero(); s.m * s.n];
        let mut want = vec![T::zero(); s.m * s.n];
        naive(s, &a, ast, &b, bst, &mut want);
        for par in [gemm::Parallelism::None, gemm::Parallelism::Rayon(2)] {
            let id = match par {
                gemm::Parallelism::None => "gemm_t1",
                _ => "gemm_t2",
            };
            group.bench_function(BenchmarkId::new(id, s.name), |bch| {
                bch.iter(|| {
                    // SAFETY: a, b and out hold m·k, k·n and m·n elements and the strides
                    // address exactly those matrices.
                    unsafe {
                        gemm::gemm(
                            s.m,
                            s.n,
                            s.k,
                            out.as_mut_ptr(),
                            1,
                            s.n as isize,
                            false,
                            black_box(a.as_ptr()),
                            ast.1,
                            ast.0,
                            black_box(b.as_ptr()),
                            bst.1,
                            bst.0,
                            T::zero(),
                            T::one(),
                            false,
                            false,
                            false,
                            par,
                        )
                    }
                })
            });
        }
        group.bench_function(BenchmarkId::new(&mmt, s.name), |bch| {
            bch.iter(|| {
                // SAFETY: as above.
                unsafe {
                    T::mm(
                        s.m,
                        s.k,
                        s.n,
                        black_box(a.as_ptr()),
                        ast.0,
                        ast.1,
                        black_box(b.as_ptr()),
                        bst.0,
                        bst.1,
                        out.as_mut_ptr(),
                        s.n as isize,
                        1,
                    )
                }
            })
        });
        group.bench_function(BenchmarkId::new("naive", s.name), |bch| {
            bch.iter(|| naive(s, black_box(&a), ast, black_box(&b), bst, &mut out))
        });
        // gradlift's JIT on the same product: a matmul of (possibly) transposed inputs.
        let gb = GraphBuilder::new("mm");
        let av = if s.a_t {
            gb.input("a", T::DTYPE, &[s.k, s.m]).mt()
        } else {
            gb.input("a", T::DTYPE, &[s.m, s.k])
        };
        let bv = if s.b_t {
            gb.input("b", T::DTYPE, &[s.n, s.k]).mt()
        } else {
            gb.input("b", T::DTYPE, &[s.k, s.n])
        };
        let y = av.matmul(bv);
        let g = gb.into_graph(&[y.id()]).unwrap();
        let kern = jit::compile(&g).unwrap();
        let mut ws = kern.workspace();
        kern.call(
            &[T::bufs(&a), T::bufs(&b)],
            &mut [T::bufs_mut(&mut out)],
            &mut ws,
        )
        .unwrap();
        group.bench_function(BenchmarkId::new("jit", s.name), |bch| {
            bch.iter(|| {
                kern.call(
                    &[T::bufs(black_box(&a)), T::bufs(black_box(&b))],
                    &mut [T::bufs_mut(&mut out)],
                    &mut ws,
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

fn f32_shapes(c: &mut Criterion) {
    bench_shapes::<f32>(c, &F32_SHAPES);
}

fn f64_shapes(c: &mut Criterion) {
    bench_shapes::<f64>(c, &F64_SHAPES);
}

criterion_group!(benches, f32_shapes, f64_shapes);
criterion_main!(benches);
