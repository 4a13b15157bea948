//! GEMM epilogues (`jit::plan::epilogue`): a product added to a value that the GEMM updates in
//! place (an input donated to the sum, or a computed value read only by the sum); and an
//! all-reduce reducing its dying operand (a bucket) in place. The oracle
//! is a hand computation in f64 with the GEMM's error bound; where the documented numerics
//! promise more (one `k` block: the unfused value bit for bit; any thread count: the same
//! bits), the unfused kernel of the same graph (the product also an output, so nothing can
//! be fused) and the one-thread kernel are compared bitwise.

use crate::call::call_donated;
use crate::fuzz_check::same_bits;
use gradlift::comm::{Communicator, ThreadComm};
use gradlift::jit::{self, Buf, BufMut, JitConfig, Kernel};
use gradlift::testutil::Rng;
use gradlift::{DType, Graph, GraphBuilder, Tensor, interp};
use std::num::NonZeroUsize;

/// Deterministic values in [-1, 1) with full mantissas.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
}

fn data(t: &Tensor) -> Vec<f32> {
    t.to_f64_vec().iter().map(|&v| v as f32).collect()
}

/// How the product `P` (m×n) meets the value `I` it is added to.
#[derive(Clone, Copy, Debug)]
enum Form {
    /// `u_next = u·0.9 + aᵀ·g` (SGD's momentum update; `a` is k×m, read transposed).
    Momentum,
    /// `w_next = w − a·g`.
    Minus,
    /// `w_next = a·g − w`.
    Reversed,
}

impl Form {
    /// (alpha, beta, whether `a` is stored transposed).
    fn factors(self) -> (f64, f64, bool) {
        match self {
            Form::Momentum => (f64::from(0.9f32), 1.0, true),
            Form::Minus => (1.0, -1.0, false),
            Form::Reversed => (-1.0, 1.0, false),
        }
    }
}

/// The graph of `form` on an (m, k, n) product, with inputs `u` (m×n), `a`, `g` (k×n) and
/// output `u_next`, plus the product itself as a second output when `product_out`.
fn graph(form: Form, (m, k, n): (usize, usize, usize), product_out: bool) -> Graph {
    let b = GraphBuilder::new("epilogue");
    let u = b.input("u", DType::F32, &[m, n]);
    let (_, _, at) = form.factors();
    let a_shape = if at { [k, m] } else { [m, k] };
    let a = b.input("a", DType::F32, &a_shape);
    let g = b.input("g", DType::F32, &[k, n]);
    let p = if at { a.mt().matmul(g) } else { a.matmul(g) };
    let next = match form {
        Form::Momentum => u * 0.9 + p,
        Form::Minus => u - p,
        Form::Reversed => p - u,
    };
    let mut outs = vec![("u_next", next)];
    if product_out {
        outs.push(("p", p));
    }
    b.finish(&outs).unwrap()
}

fn inputs(form: Form, (m, k, n): (usize, usize, usize)) -> Vec<Tensor> {
    let (_, _, at) = form.factors();
    vec![
        Tensor::from_f32(vec![m, n], values(m * n, 1)),
        Tensor::from_f32(if at { vec![k, m] } else { vec![m, k] }, values(m * k, 2)),
        Tensor::from_f32(vec![k, n], values(k * n, 3)),
    ]
}

/// Checks `got` (m×n) against `alpha·u + beta·A·G` computed in f64, within the GEMM's bound
/// `(k + 2)·ε·(|alpha·u| + Σ|a||g|)` (`jit::gemm`; two more roundings for the update).
fn check_bound(form: Form, (m, k, n): (usize, usize, usize), ins: &[Tensor], got: &[f32]) {
    let (alpha, beta, at) = form.factors();
    let (u, a, g) = (data(&ins[0]), data(&ins[1]), data(&ins[2]));
    let a_at = |i: usize, p: usize| f64::from(if at { a[p * m + i] } else { a[i * k + p] });
    let eps = f64::from(f32::EPSILON);
    for i in 0..m {
        for j in 0..n {
            let (mut exact, mut mag) = (alpha * f64::from(u[i * n + j]), 0.0);
            mag += exact.abs();
            for p in 0..k {
                let t = a_at(i, p) * f64::from(g[p * n + j]);
                exact += beta * t;
                mag += t.abs();
            }
            let err = (f64::from(got[i * n + j]) - exact).abs();
            assert!(
                err <= (k + 2) as f64 * eps * mag,
                "{form:?} {m}×{k}×{n} at ({i}, {j}): {} vs {exact}",
                got[i * n + j]
            );
        }
    }
}

fn compile(g: &Graph, threads: usize, donate: bool, exact: bool) -> Kernel {
    let cfg = JitConfig {
        kernel_threads: NonZeroUsize::new(threads),
        exact_math: exact,
        ..JitConfig::default()
    };
    let cfg = if donate {
        cfg.donating(&[("u", "u_next")])
    } else {
        cfg
    };
    jit::compile_with(g, &cfg).unwrap()
}

/// Shapes crossing the GEMM's blocks: partial micro-tiles at every edge; `k` one block (64:
/// the MLP's weight gradient) or three (1100 > 512); the MLP's 784×64×256.
const SHAPES: [(usize, usize, usize); 3] = [(130, 64, 77), (70, 1100, 90), (784, 64, 256)];

#[test]
fn donated_updates_are_one_gemm_within_the_bound_on_any_thread_count() {
    for form in [Form::Momentum, Form::Minus, Form::Reversed] {
        for shape in SHAPES {
            let g = graph(form, shape, false);
            let ins = inputs(form, shape);
            let one = compile(&g, 1, true, false);
            let st = one.stats();
            assert_eq!(
                (st.gemm_epilogues, st.donated_in_place),
                (1, 1),
                "{form:?} {shape:?}: {st}"
            );
            let got = call_donated(&one, &ins);
            check_bound(form, shape, &ins, &data(&got[0]));
            // `run` (the input in its own buffer: copied into the output first) agrees.
            assert!(same_bits(&one.run(&ins).unwrap()[0], &got[0]));
            for threads in [2, 3] {
                let k = compile(&g, threads, true, false);
                let more = call_donated(&k, &ins);
                assert!(
                    same_bits(&more[0], &got[0]),
                    "{form:?} {shape:?} on {threads} threads"
                );
            }
            // Undonated, the input cannot be updated in place: no epilogue, the graph's
            // separate passes, and the same value within the bound.
            let plain = compile(&g, 1, false, false);
            assert_eq!(plain.stats().gemm_epilogues, 0, "{}", plain.stats());
            let sep = plain.run(&ins).unwrap();
            check_bound(form, shape, &ins, &data(&sep[0]));
            // One `k` block: the fused update is the separate one bit for bit.
            if shape.1 <= 512 {
                assert!(same_bits(&sep[0], &got[0]), "{form:?} {shape:?}");
            }
        }
    }
}

#[test]
fn a_product_that_is_also_an_output_or_read_twice_is_not_fused() {
    let shape = (130, 64, 77);
    let form = Form::Momentum;
    let ins = inputs(form, shape);
    // The product is an output too: it needs its own buffer.
    let g = graph(form, shape, true);
    let k = compile(&g, 1, true, false);
    assert_eq!(k.stats().gemm_epilogues, 0, "{}", k.stats());
    let got = call_donated(&k, &ins);
    check_bound(form, shape, &ins, &data(&got[0]));
    // The product read twice (Adam reads its gradient for both moments).
    let b = GraphBuilder::new("twice");
    let (m, kk, n) = shape;
    let u = b.input("u", DType::F32, &[m, n]);
    let a = b.input("a", DType::F32, &[kk, m]);
    let gr = b.input("g", DType::F32, &[kk, n]);
    let v = b.input("v", DType::F32, &[m, n]);
    let p = a.mt().matmul(gr);
    let g2 = b
        .finish(&[("u_next", u * 0.9 + p), ("v_next", v * 0.5 + p * p)])
        .unwrap();
    let cfg = JitConfig::default().donating(&[("u", "u_next"), ("v", "v_next")]);
    let k = jit::compile_with(&g2, &cfg).unwrap();
    assert_eq!(k.stats().gemm_epilogues, 0, "{}", k.stats());
    let mut ins2 = ins.clone();
    ins2.push(Tensor::from_f32(vec![m, n], values(m * n, 4)));
    let got = call_donated(&k, &ins2);
    check_bound(form, shape, &ins2, &data(&got[0]));
}

#[test]
fn a_bias_broadcast_along_rows_is_not_fused() {
    // x·W + b: filling the destination with b's rows would cost the pass it saves.
    let (m, k, n) = (64, 300, 100);
    let b = GraphBuilder::new("bias");
    let x = b.input("x", DType::F32, &[m, k]);
    let w = b.input("w", DType::F32, &[k, n]);
    let bias = b.input("b", DType::F32, &[n]);
    let g = b.finish(&[("y", x.matmul(w) + bias)]).unwrap();
    let k_ = jit::compile(&g).unwrap();
    assert_eq!(
        (k_.stats().gemm_epilogues, k_.stats().matmuls_gemm),
        (0, 1),
        "{}",
        k_.stats()
    );
}

#[test]
fn exact_and_checked_modes_have_no_epilogue() {
    let shape = (130, 64, 77);
    for form in [Form::Momentum, Form::Minus] {
        let g = graph(form, shape, false);
        let ins = inputs(form, shape);
        let want = interp::run(&g, &ins).unwrap();
        // Exact mode: no GEMM, the interpreter's bits, donated or not.
        let k = compile(&g, 1, true, true);
        assert_eq!(k.stats().gemm_epilogues, 0, "{}", k.stats());
        assert!(same_bits(&call_donated(&k, &ins)[0], &want[0]));
        // Checked mode: every node alone.
        let cfg = JitConfig {
            check_finite: true,
            ..JitConfig::default()
        }
        .donating(&[("u", "u_next")]);
        let k = jit::compile_with(&g, &cfg).unwrap();
        assert_eq!(k.stats().gemm_epilogues, 0, "{}", k.stats());
        check_bound(form, shape, &ins, &data(&call_donated(&k, &ins)[0]));
    }
}

#[test]
fn a_computed_value_read_only_by_the_sum_is_updated_in_its_workspace() {
    // s = tanh(c) + x·y, read by a later pass: the GEMM updates tanh(c)'s workspace range.
    let (m, k, n) = (96, 200, 70);
    let b = GraphBuilder::new("ws");
    let c = b.input("c", DType::F32, &[m, n]);
    let x = b.input("x", DType::F32, &[m, k]);
    let y = b.input("y", DType::F32, &[k, n]);
    let s = c.tanh() + x.matmul(y);
    let g = b.finish(&[("r", s * 0.5)]).unwrap();
    let ins = vec![
        Tensor::from_f32(vec![m, n], values(m * n, 5)),
        Tensor::from_f32(vec![m, k], values(m * k, 6)),
        Tensor::from_f32(vec![k, n], values(k * n, 7)),
    ];
    let kern = jit::compile(&g).unwrap();
    assert_eq!(kern.stats().gemm_epilogues, 1, "{}", kern.stats());
    let got = data(&kern.run(&ins).unwrap()[0]);
    // Oracle: f64 by hand; tanh adds a few ulps to the GEMM's bound.
    let (cv, xv, yv) = (data(&ins[0]), data(&ins[1]), data(&ins[2]));
    let eps = f64::from(f32::EPSILON);
    for i in 0..m {
        for j in 0..n {
            let t = f64::from(cv[i * n + j]).tanh();
            let (mut exact, mut mag) = (t, t.abs());
            for p in 0..k {
                let v = f64::from(xv[i * k + p]) * f64::from(yv[p * n + j]);
                exact += v;
                mag += v.abs();
            }
            exact *= 0.5;
            let err = (f64::from(got[i * n + j]) - exact).abs();
            assert!(err <= (k + 8) as f64 * eps * mag, "({i}, {j})");
        }
    }
    // One k block: the unfused kernel's bits (the product also an output).
    let b = GraphBuilder::new("ws_sep");
    let c = b.input("c", DType::F32, &[m, n]);
    let x = b.input("x", DType::F32, &[m, k]);
    let y = b.input("y", DType::F32, &[k, n]);
    let p = x.matmul(y);
    let sep = b.finish(&[("r", (c.tanh() + p) * 0.5), ("p", p)]).unwrap();
    let ks = jit::compile(&sep).unwrap();
    assert_eq!(ks.stats().gemm_epilogues, 0);
    assert_eq!(data(&ks.run(&ins).unwrap()[0]), got);
}

#[test]
fn a_bucket_is_all_reduced_where_it_lies_on_thread_ranks() {
    // r = all_reduce_sum(concat(a, c)) read by a later pass: the concat's buffer (a bucket)
    // dies at the all-reduce, which reduces it in place instead of copying it first.
    let n = 5000;
    let b = GraphBuilder::new("bucket");
    let a = b.input("a", DType::F32, &[n]);
    let c = b.input("c", DType::F32, &[n]);
    let flat = b.concat(&[a, c], 0);
    let r = flat.all_reduce_sum();
    let g = b.finish(&[("half", r * 0.5)]).unwrap();
    for threads in [1, 2] {
        let cfg = JitConfig {
            kernel_threads: NonZeroUsize::new(threads),
            ..JitConfig::default()
        };
        let k = jit::compile_with(&g, &cfg).unwrap();
        // One buffer of 2n floats (the bucket, reduced in place); a copy would need two.
        assert!(
            k.workspace_bytes() < 2 * 2 * n * 4,
            "{}",
            k.workspace_bytes()
        );
        for p in [1, 2, 3] {
            let outs = on_ranks(p, |comm| {
                let r = comm.rank() as u64;
                let (a, c) = (values(n, 10 + r), values(n, 20 + r));
                let mut out = vec![0f32; 2 * n];
                let mut ws = k.workspace();
                k.call_with_comm(
                    &[Buf::F32(&a), Buf::F32(&c)],
                    &mut [BufMut::F32(&mut out)],
                    &mut ws,
                    comm,
                )
                .unwrap();
                out
            });
            // Oracle: the sum over ranks of each rank's values, by hand, within p roundings.
            let mut want = vec![0f64; 2 * n];
            for r in 0..p as u64 {
                for (w, v) in want[..n].iter_mut().zip(values(n, 10 + r)) {
                    *w += f64::from(v);
                }
                for (w, v) in want[n..].iter_mut().zip(values(n, 20 + r)) {
                    *w += f64::from(v);
                }
            }
            for got in &outs {
                for (i, (&o, &w)) in got.iter().zip(&want).enumerate() {
                    let tol = p as f64 * f64::from(f32::EPSILON) * p as f64;
                    assert!(
                        (f64::from(o) - 0.5 * w).abs() <= tol,
                        "p={p} at {i}: {o} vs {w}"
                    );
                }
                assert_eq!(got, &outs[0], "ranks agree");
            }
        }
    }
}

/// Runs `f(comm)` on one thread per rank; results in rank order.
fn on_ranks<R: Send>(p: usize, f: impl Fn(&ThreadComm) -> R + Sync) -> Vec<R> {
    let comms = ThreadComm::group(p);
    std::thread::scope(|s| {
        let hs: Vec<_> = comms.iter().map(|c| s.spawn(|| f(c))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}
