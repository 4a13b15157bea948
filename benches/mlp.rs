//! One MLP training step (batch 64, 784 → 256 → 10, ReLU, softmax cross-entropy, f32): the
//! loss and all parameter gradients, computed by
//! - `jit_t1`, `jit_t2`: the compiled gradient graph (`demo/src/mlp.rs`'s
//!   `grad_graph`, optimized) on 1 and 2 threads per call (`JitConfig::kernel_threads`),
//! - `interp`: the reference interpreter on the same graph,
//! - `direct_t1`, `direct_t2`: hand-written Rust calling the same GEMM crate directly (the 2
//!   forward and 3 backward products — the gradient with respect to `x` is not needed; on 1
//!   thread, or on 2 with `gemm::Parallelism::Rayon(2)`) with the cheap elementwise work in
//!   plain loops, into preallocated buffers: the floor the JIT is measured against,
//! - `gemms_t1`: the five products alone on one thread; half of it is the time two perfectly
//!   used cores would need for them (the two-core GEMM floor); `gemms_t2`: the same products
//!   as a kernel on two threads (the two-core GEMM time as the kernel team reaches it).
//!
//! Also the forward pass alone (`*_forward`: the loss only, one thread), for the
//! gradient/forward cost ratio, the demo's whole Adam step (`jit_adam_step`: forward,
//! backward and update in one kernel, one thread), and its SGD-with-momentum step as the demo
//! compiles it, parameters and state donated (`jit_sgd_step_t1`, `_t2`): there the weight
//! gradients' GEMMs update the momentum buffers in place (GEMM epilogues, `jit::plan`).
//!
//! Goals (issue 3): `jit_t1` ≤ 1.3 × `direct_t1`; `jit_t1` ≤ 3 × `jit_forward` (issue 12:
//! `jit_t2` within 1.3 × the two-core GEMM floor, `gemms_t1` / 2). See `benches/README.md` for
//! the figures.

#[path = "../demo/src/mlp.rs"]
mod common;

use common::{Arch, CLASSES, DIM, Optim, Rng};
use criterion::{Criterion, criterion_group, criterion_main};
use gradlift::jit::{self, Buf, BufMut, Kernel};
use gradlift::{DType, Graph, GraphBuilder, Tensor, interp, opt};
use std::hint::black_box;
use std::num::NonZeroUsize;

const BATCH: usize = 64;
const ARCH: Arch = Arch {
    dim: DIM,
    hidden: 256,
    classes: CLASSES,
    relu: true,
};

/// A batch of synthetic digits as (x, one-hot y).
fn batch() -> (Vec<f32>, Vec<f32>) {
    let d = common::synthetic_digits(BATCH, 7);
    let mut y = vec![0f32; BATCH * CLASSES];
    for (r, &l) in d.labels.iter().enumerate() {
        y[r * CLASSES + usize::from(l)] = 1.0;
    }
    (d.images, y)
}

/// `g` optimized and compiled for `threads` threads per call.
fn compiled(mut g: Graph, threads: usize) -> Kernel {
    opt::optimize(&mut g, &opt::OptConfig::default());
    let cfg = jit::JitConfig {
        kernel_threads: NonZeroUsize::new(threads),
        ..jit::JitConfig::default()
    };
    jit::compile_with(&g, &cfg).expect("compiles")
}

/// The step's five products alone, as a kernel on `threads` threads: `x·w1`, `h·w2`,
/// `hᵀ·dl`, `dl·w2ᵀ` and `xᵀ·dz1` (inputs `x`, `w1`, `h`, `w2`, `dl`, `dz1`).
fn products_kernel(threads: usize) -> Kernel {
    let b = GraphBuilder::new("products");
    let (n, d, hd, c) = (BATCH, DIM, ARCH.hidden, CLASSES);
    let x = b.input("x", DType::F32, &[n, d]);
    let w1 = b.input("w1", DType::F32, &[d, hd]);
    let h = b.input("h", DType::F32, &[n, hd]);
    let w2 = b.input("w2", DType::F32, &[hd, c]);
    let dl = b.input("dl", DType::F32, &[n, c]);
    let dz1 = b.input("dz1", DType::F32, &[n, hd]);
    let g = b
        .finish(&[
            ("z1", x.matmul(w1)),
            ("logits", h.matmul(w2)),
            ("dw2", h.mt().matmul(dl)),
            ("dh", dl.matmul(w2.mt())),
            ("dw1", x.mt().matmul(dz1)),
        ])
        .expect("a valid graph");
    compiled(g, threads)
}

/// `C = A·B` (row-major C; A, B through (row, column) element strides) on `par`'s threads.
#[allow(clippy::too_many_arguments)]
fn gemm(
    par: gemm::Parallelism,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    ast: (isize, isize),
    b: &[f32],
    bst: (isize, isize),
    c: &mut [f32],
) {
    assert!(c.len() >= m * n);
    assert!(a.len() > (m - 1) * ast.0 as usize + (k - 1) * ast.1 as usize);
    assert!(b.len() > (k - 1) * bst.0 as usize + (n - 1) * bst.1 as usize);
    // SAFETY: the asserts above bound every element the strides reach; `c` is exclusive.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            ast.1,
            ast.0,
            b.as_ptr(),
            bst.1,
            bst.0,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// The hand-written step's buffers and its GEMM threads.
struct Direct {
    par: gemm::Parallelism,
    z1: Vec<f32>,
    h: Vec<f32>,
    logits: Vec<f32>,
    dlogits: Vec<f32>,
    dh: Vec<f32>,
    dw1: Vec<f32>,
    db1: Vec<f32>,
    dw2: Vec<f32>,
    db2: Vec<f32>,
}

impl Direct {
    fn new(par: gemm::Parallelism) -> Direct {
        let (b, d, hd, c) = (BATCH, DIM, ARCH.hidden, CLASSES);
        Direct {
            par,
            z1: vec![0.0; b * hd],
            h: vec![0.0; b * hd],
            logits: vec![0.0; b * c],
            dlogits: vec![0.0; b * c],
            dh: vec![0.0; b * hd],
            dw1: vec![0.0; d * hd],
            db1: vec![0.0; hd],
            dw2: vec![0.0; hd * c],
            db2: vec![0.0; c],
        }
    }

    /// Forward pass; returns the mean cross-entropy and leaves `softmax - y` over the batch
    /// in `dlogits` when `grad`.
    fn forward(&mut self, p: &[Vec<f32>], x: &[f32], y: &[f32], grad: bool) -> f32 {
        let b = BATCH as f32;
        self.layer1(p, x);
        for (row_z, row_h) in self
            .z1
            .chunks_exact_mut(ARCH.hidden)
            .zip(self.h.chunks_exact_mut(ARCH.hidden))
        {
            for ((z, h), bias) in row_z.iter_mut().zip(row_h).zip(&p[1]) {
                *z += bias;
                *h = z.max(0.0);
            }
        }
        self.layer2(p);
        let mut loss = 0.0;
        for r in 0..BATCH {
            let l = &mut self.logits[r * CLASSES..(r + 1) * CLASSES];
            for (v, bias) in l.iter_mut().zip(&p[3]) {
                *v += bias;
            }
            let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = l.iter().map(|v| (v - m).exp()).sum();
            let lse = m + s.ln();
            let yr = &y[r * CLASSES..(r + 1) * CLASSES];
            loss += lse - l.iter().zip(yr).map(|(v, t)| v * t).sum::<f32>();
            if grad {
                let dl = &mut self.dlogits[r * CLASSES..(r + 1) * CLASSES];
                for ((g, v), t) in dl.iter_mut().zip(l.iter()).zip(yr) {
                    *g = ((v - lse).exp() - t) / b;
                }
            }
        }
        loss / b
    }

    /// `z1 = x·w1`.
    fn layer1(&mut self, p: &[Vec<f32>], x: &[f32]) {
        let (d, hd) = (DIM as isize, ARCH.hidden as isize);
        let z1 = &mut self.z1;
        gemm(
            self.par,
            BATCH,
            DIM,
            ARCH.hidden,
            x,
            (d, 1),
            &p[0],
            (hd, 1),
            z1,
        );
    }

    /// `logits = h·w2`.
    fn layer2(&mut self, p: &[Vec<f32>]) {
        let (hd, c) = (ARCH.hidden as isize, CLASSES as isize);
        let (h, logits) = (&self.h, &mut self.logits);
        gemm(
            self.par,
            BATCH,
            ARCH.hidden,
            CLASSES,
            h,
            (hd, 1),
            &p[2],
            (c, 1),
            logits,
        );
    }

    /// `dW2 = hᵀ·dlogits`.
    fn d_w2(&mut self) {
        let (hd, c) = (ARCH.hidden as isize, CLASSES as isize);
        let (h, dl, dw2) = (&self.h, &self.dlogits, &mut self.dw2);
        gemm(
            self.par,
            ARCH.hidden,
            BATCH,
            CLASSES,
            h,
            (1, hd),
            dl,
            (c, 1),
            dw2,
        );
    }

    /// `dh = dlogits·w2ᵀ`.
    fn d_h(&mut self, p: &[Vec<f32>]) {
        let c = CLASSES as isize;
        let (dl, dh) = (&self.dlogits, &mut self.dh);
        gemm(
            self.par,
            BATCH,
            CLASSES,
            ARCH.hidden,
            dl,
            (c, 1),
            &p[2],
            (1, c),
            dh,
        );
    }

    /// `dW1 = xᵀ·dz1` (`dz1` is `dh` after the ReLU's mask).
    fn d_w1(&mut self, x: &[f32]) {
        let (d, hd) = (DIM as isize, ARCH.hidden as isize);
        let (dh, dw1) = (&self.dh, &mut self.dw1);
        gemm(
            self.par,
            DIM,
            BATCH,
            ARCH.hidden,
            x,
            (1, d),
            dh,
            (hd, 1),
            dw1,
        );
    }

    /// The step's five products alone, with the buffers' current values as operands.
    fn products(&mut self, p: &[Vec<f32>], x: &[f32]) {
        self.layer1(p, x);
        self.layer2(p);
        self.d_w2();
        self.d_h(p);
        self.d_w1(x);
    }

    /// Loss and the four parameter gradients.
    fn step(&mut self, p: &[Vec<f32>], x: &[f32], y: &[f32]) -> f32 {
        let loss = self.forward(p, x, y, true);
        // dW2 = hᵀ·dlogits; db2 = Σ_rows dlogits.
        self.d_w2();
        self.db2.fill(0.0);
        for row in self.dlogits.chunks_exact(CLASSES) {
            for (s, g) in self.db2.iter_mut().zip(row) {
                *s += g;
            }
        }
        // dh = dlogits·w2ᵀ, then through the ReLU.
        self.d_h(p);
        for (g, z) in self.dh.iter_mut().zip(&self.z1) {
            if *z <= 0.0 {
                *g = 0.0;
            }
        }
        // dW1 = xᵀ·dz1; db1 = Σ_rows dz1.
        self.d_w1(x);
        self.db1.fill(0.0);
        for row in self.dh.chunks_exact(ARCH.hidden) {
            for (s, g) in self.db1.iter_mut().zip(row) {
                *s += g;
            }
        }
        loss
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(3);
    let params = common::init_params(ARCH, &mut rng);
    let (x, y) = batch();
    let grad_g = common::grad_graph(DType::F32, BATCH, ARCH).unwrap();
    let grad_k = compiled(grad_g.clone(), 1);
    let grad_k2 = compiled(grad_g.clone(), 2);
    let loss_k = compiled(common::loss_graph(DType::F32, BATCH, ARCH).unwrap(), 1);
    let step_k = compiled(
        common::train_step_graph(DType::F32, BATCH, ARCH, Optim::ADAM).unwrap(),
        1,
    );

    // Agreement check before timing: the JIT and the direct code compute the same step.
    let mut direct = Direct::new(gemm::Parallelism::None);
    let mut direct2 = Direct::new(gemm::Parallelism::Rayon(2));
    let want_loss = direct.step(&params, &x, &y);
    let mut outs: Vec<Vec<f32>> = grad_k
        .output_types()
        .iter()
        .map(|t| vec![0.0; t.numel()])
        .collect();
    let mut ws = grad_k.workspace();
    let ins: Vec<Buf<'_>> = params
        .iter()
        .map(|p| Buf::F32(p))
        .chain([Buf::F32(&x), Buf::F32(&y)])
        .collect();
    {
        let mut ob: Vec<BufMut<'_>> = outs.iter_mut().map(|o| BufMut::F32(o)).collect();
        grad_k.call(&ins, &mut ob, &mut ws).unwrap();
    }
    assert!(
        (outs[0][0] - want_loss).abs() < 1e-4 * want_loss.abs(),
        "{} vs {want_loss}",
        outs[0][0]
    );
    for (got, want) in outs[1..]
        .iter()
        .zip([&direct.dw1, &direct.db1, &direct.dw2, &direct.db2])
    {
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        let err = got
            .iter()
            .zip(want)
            .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
        assert!(
            err <= 1e-4 * scale,
            "gradient differs: {err} (scale {scale})"
        );
    }

    // Two threads compute the same bits (the GEMM splits output tiles; see `jit::gemm`).
    let mut outs2 = outs.clone();
    let mut ws2 = grad_k2.workspace();
    {
        let mut ob: Vec<BufMut<'_>> = outs2.iter_mut().map(|o| BufMut::F32(o)).collect();
        grad_k2.call(&ins, &mut ob, &mut ws2).unwrap();
    }
    let bits = |o: &[Vec<f32>]| -> Vec<u32> { o.iter().flatten().map(|v| v.to_bits()).collect() };
    assert!(
        bits(&outs2) == bits(&outs),
        "two threads changed the results"
    );
    assert_eq!(direct2.step(&params, &x, &y).to_bits(), want_loss.to_bits());

    let mut group = c.benchmark_group("mlp_step");
    group.bench_function("jit_t1", |b| {
        let mut ob: Vec<BufMut<'_>> = outs.iter_mut().map(|o| BufMut::F32(o)).collect();
        b.iter(|| grad_k.call(black_box(&ins), &mut ob, &mut ws).unwrap())
    });
    group.bench_function("jit_t2", |b| {
        let mut ob: Vec<BufMut<'_>> = outs2.iter_mut().map(|o| BufMut::F32(o)).collect();
        b.iter(|| grad_k2.call(black_box(&ins), &mut ob, &mut ws2).unwrap())
    });
    group.bench_function("direct_t1", |b| {
        b.iter(|| direct.step(black_box(&params), &x, &y))
    });
    // The products alone on one thread: half of this is what two perfectly used cores need.
    group.bench_function("gemms_t1", |b| {
        b.iter(|| direct.products(black_box(&params), &x))
    });
    group.bench_function("direct_t2", |b| {
        b.iter(|| direct2.step(black_box(&params), &x, &y))
    });
    // The same products through the kernel team on two threads: what the two cores do with
    // them as gradlift splits them (the realistic two-core GEMM time).
    let pk = products_kernel(2);
    let pins: Vec<Vec<f32>> = pk
        .input_types()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = (0..t.numel()).map(|j| ((i * 7 + j * 13) % 17) as f32 * 0.05 - 0.4);
            v.collect()
        })
        .collect();
    let pbufs: Vec<Buf<'_>> = pins.iter().map(|v| Buf::F32(v)).collect();
    let mut pouts: Vec<Vec<f32>> = pk
        .output_types()
        .iter()
        .map(|t| vec![0.0; t.numel()])
        .collect();
    let mut pws = pk.workspace();
    group.bench_function("gemms_t2", |b| {
        let mut ob: Vec<BufMut<'_>> = pouts.iter_mut().map(|o| BufMut::F32(o)).collect();
        b.iter(|| pk.call(black_box(&pbufs), &mut ob, &mut pws).unwrap())
    });
    let mut loss = [0f32];
    let mut lws = loss_k.workspace();
    group.bench_function("jit_forward", |b| {
        b.iter(|| {
            loss_k
                .call(black_box(&ins), &mut [BufMut::F32(&mut loss)], &mut lws)
                .unwrap()
        })
    });
    group.bench_function("direct_forward", |b| {
        b.iter(|| direct.forward(black_box(&params), &x, &y, false))
    });
    // The demo's whole step: forward, backward and the Adam update in one kernel.
    let mut state: Vec<Vec<f32>> = params.clone();
    state.extend(params.iter().chain(&params).map(|p| vec![0f32; p.len()]));
    let mut next = state.clone();
    let (t, lr) = ([1f32], [1e-3f32]);
    let mut sws = step_k.workspace();
    group.bench_function("jit_adam_step", |b| {
        let sin: Vec<Buf<'_>> = state
            .iter()
            .map(|v| Buf::F32(v))
            .chain([Buf::F32(&t), Buf::F32(&lr), Buf::F32(&x), Buf::F32(&y)])
            .collect();
        let mut sout: Vec<BufMut<'_>> = std::iter::once(BufMut::F32(&mut loss))
            .chain(next.iter_mut().map(|v| BufMut::F32(v)))
            .collect();
        b.iter(|| step_k.call(black_box(&sin), &mut sout, &mut sws).unwrap())
    });
    // The SGD step with donated parameters and momentum, as the demo runs it.
    let sgd_g = {
        let mut g = common::train_step_graph(DType::F32, BATCH, ARCH, Optim::SGD).unwrap();
        opt::optimize(&mut g, &opt::OptConfig::default());
        g
    };
    let sgd_k: Vec<Kernel> = [1, 2]
        .iter()
        .map(|&t| {
            let cfg = jit::JitConfig {
                kernel_threads: NonZeroUsize::new(t),
                ..jit::JitConfig::default()
            };
            common::compile_step_with(&sgd_g, Optim::SGD, cfg).expect("compiles")
        })
        .collect();
    // Both weight gradients are accumulated into their momentum buffers by their GEMMs; with
    // k = 64 (one block) the step's bits are the undonated kernel's, which has no epilogue.
    assert_eq!(sgd_k[0].stats().gemm_epilogues, 2, "{}", sgd_k[0].stats());
    let mut sgd_state: Vec<Vec<f32>> = params.clone();
    sgd_state.extend(params.iter().map(|p| vec![0.01f32; p.len()]));
    let plain = jit::compile(&sgd_g).unwrap();
    assert_eq!(plain.stats().gemm_epilogues, 0);
    let sgd_in = |state: &[Vec<f32>]| -> Vec<Tensor> {
        state
            .iter()
            .zip(ARCH.param_shapes().iter().chain(ARCH.param_shapes().iter()))
            .map(|(v, s)| Tensor::from_f32(s.clone(), v.clone()))
            .chain([
                Tensor::from_f32(vec![], vec![1.0]),
                Tensor::from_f32(vec![], vec![1e-3]),
                Tensor::from_f32(vec![BATCH, DIM], x.clone()),
                Tensor::from_f32(vec![BATCH, CLASSES], y.clone()),
            ])
            .collect()
    };
    let want = plain.run(&sgd_in(&sgd_state)).unwrap();
    let got = sgd_k[0].run(&sgd_in(&sgd_state)).unwrap();
    assert!(
        want.iter().zip(&got).all(|(w, g)| w.data() == g.data()),
        "the fused SGD step changed the results"
    );
    for (name, k) in ["jit_sgd_step_t1", "jit_sgd_step_t2"].iter().zip(&sgd_k) {
        let mut state = sgd_state.clone();
        let mut sws = k.workspace();
        let sin = [Buf::F32(&t), Buf::F32(&lr), Buf::F32(&x), Buf::F32(&y)];
        group.bench_function(*name, |b| {
            let mut sout: Vec<BufMut<'_>> = std::iter::once(BufMut::F32(&mut loss))
                .chain(state.iter_mut().map(|v| BufMut::F32(v)))
                .collect();
            b.iter(|| k.call(black_box(&sin), &mut sout, &mut sws).unwrap())
        });
    }
    group.sample_size(10);
    let tins: Vec<Tensor> = params
        .iter()
        .zip(ARCH.param_shapes())
        .map(|(p, s)| Tensor::from_f32(s, p.clone()))
        .chain([
            Tensor::from_f32(vec![BATCH, DIM], x.clone()),
            Tensor::from_f32(vec![BATCH, CLASSES], y.clone()),
        ])
        .collect();
    group.bench_function("interp", |b| {
        b.iter(|| interp::run(&grad_g, black_box(&tins)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
