//! Collectives (`all_reduce_sum`, `all_reduce_mean`, `pvary`) over ranks that are threads
//! (`comm::ThreadComm`): data-parallel gradients against the single-process gradient of the
//! global batch, finite differences of the distributed loss, ⟨Jv, u⟩ = ⟨v, Jᵀu⟩ across ranks,
//! the JIT against the interpreter, and bucketing (one all-reduce call per training step).

use gradlift::comm::{CommError, Communicator, Counting, ThreadComm};
use gradlift::jit::{self, Buf, BufMut, CallError};
use gradlift::opt::{self, OptConfig};
use gradlift::testutil::Rng;
use gradlift::{DType, Graph, GraphBuilder, Tensor, interp};

/// Runs `f(comm)` on one thread per rank; results in rank order.
fn on_ranks<R: Send>(p: usize, f: impl Fn(&ThreadComm) -> R + Sync) -> Vec<R> {
    let comms = ThreadComm::group(p);
    std::thread::scope(|s| {
        let hs: Vec<_> = comms.iter().map(|c| s.spawn(|| f(c))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

const DIM: usize = 3;
const HID: usize = 4;
const GLOBAL: usize = 8;

/// Loss `mean((tanh(x·w1)·w2 - y)²)` over a batch of `n` rows and its gradients `w1, w2`.
/// Data-parallel: the parameters enter through `pvary` and the loss is `all_reduce_mean`ed.
fn model(n: usize, data_parallel: bool) -> Graph {
    let b = GraphBuilder::new("dp");
    let w1 = b.input("w1", DType::F64, &[DIM, HID]);
    let w2 = b.input("w2", DType::F64, &[HID, 1]);
    let x = b.input("x", DType::F64, &[n, DIM]);
    let y = b.input("y", DType::F64, &[n, 1]);
    let (p1, p2) = if data_parallel {
        (w1.pvary(), w2.pvary())
    } else {
        (w1, w2)
    };
    let mut loss = x.matmul(p1).tanh().matmul(p2).mse(y);
    if data_parallel {
        loss = loss.all_reduce_mean();
    }
    let g = b.grad(loss, &[w1, w2]).unwrap();
    b.finish(&[("loss", loss), ("g1", g[0]), ("g2", g[1])])
        .unwrap()
}

struct Data {
    w1: Tensor,
    w2: Tensor,
    x: Vec<f64>,
    y: Vec<f64>,
}

fn data(seed: u64) -> Data {
    let mut r = Rng(seed);
    let mut v = |n: usize| (0..n).map(|_| r.uniform(-1.0, 1.0)).collect::<Vec<f64>>();
    Data {
        w1: Tensor::from_f64(vec![DIM, HID], v(DIM * HID)),
        w2: Tensor::from_f64(vec![HID, 1], v(HID)),
        x: v(GLOBAL * DIM),
        y: v(GLOBAL),
    }
}

/// Rank `r` of `p`'s inputs: the parameters and its contiguous share of the rows.
fn shard(d: &Data, r: usize, p: usize) -> Vec<Tensor> {
    let n = GLOBAL / p;
    vec![
        d.w1.clone(),
        d.w2.clone(),
        Tensor::from_f64(vec![n, DIM], d.x[r * n * DIM..(r + 1) * n * DIM].to_vec()),
        Tensor::from_f64(vec![n, 1], d.y[r * n..(r + 1) * n].to_vec()),
    ]
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

#[test]
fn data_parallel_gradients_equal_the_global_batch_gradient() {
    let d = data(7);
    let want = interp::run(&model(GLOBAL, false), &shard(&d, 0, 1)).unwrap();
    for p in [1, 2, 4] {
        let g = model(GLOBAL / p, true);
        let mut o = g.clone();
        opt::optimize(&mut o, &OptConfig::default());
        let k = jit::compile(&o).unwrap();
        let got = on_ranks(p, |c| {
            let inputs = shard(&d, c.rank(), p);
            let it = interp::run_with_comm(&g, &inputs, c).unwrap();
            let mut outs: Vec<Tensor> = k
                .output_types()
                .iter()
                .map(|t| Tensor::splat(t, 0.0))
                .collect();
            let bufs: Vec<Buf> = inputs.iter().map(Buf::from).collect();
            let mut obufs: Vec<BufMut> = outs.iter_mut().map(BufMut::from).collect();
            k.call_with_comm(&bufs, &mut obufs, &mut k.workspace(), c)
                .unwrap();
            (it, outs)
        });
        for (r, (it, jt)) in got.iter().enumerate() {
            for o in 0..3 {
                let what = format!("p={p} rank {r} output {o}");
                // Mean of per-rank means vs one mean, and the sums in another order.
                close(&it[o].to_f64_vec(), &want[o].to_f64_vec(), 1e-13, &what);
                close(&jt[o].to_f64_vec(), &want[o].to_f64_vec(), 1e-13, &what);
            }
            // Every rank holds the same bits (the all-reduce sums in rank order everywhere).
            for o in 0..3 {
                assert_eq!(it[o].to_f64_vec(), got[0].0[o].to_f64_vec());
                assert_eq!(jt[o].to_f64_vec(), got[0].1[o].to_f64_vec());
            }
        }
    }
}

#[test]
fn data_parallel_gradient_matches_central_differences_of_the_distributed_loss() {
    let d = data(11);
    let p = 2;
    let g = model(GLOBAL / p, true);
    let loss = |w1: &Tensor| -> f64 {
        let d2 = Data {
            w1: w1.clone(),
            w2: d.w2.clone(),
            x: d.x.clone(),
            y: d.y.clone(),
        };
        let out = on_ranks(p, |c| {
            interp::run_with_comm(&g, &shard(&d2, c.rank(), p), c).unwrap()[0]
                .scalar_value()
                .unwrap()
        });
        out[0]
    };
    let grads = on_ranks(p, |c| {
        interp::run_with_comm(&g, &shard(&d, c.rank(), p), c).unwrap()
    });
    let g1 = grads[0][1].to_f64_vec();
    let h = 1e-6;
    for i in 0..DIM * HID {
        let mut w = d.w1.to_f64_vec();
        w[i] += h;
        let up = loss(&Tensor::from_f64(vec![DIM, HID], w.clone()));
        w[i] -= 2.0 * h;
        let down = loss(&Tensor::from_f64(vec![DIM, HID], w));
        let fd = (up - down) / (2.0 * h);
        assert!(
            (fd - g1[i]).abs() < 1e-7,
            "w1[{i}]: fd {fd} vs grad {}",
            g1[i]
        );
    }
}

/// `y = pvary(all_reduce_mean(sin(pvary(w)·x)) + 0.5·all_reduce_sum(x²)) + pvary(w)·x`:
/// invariant `w`, varying `x` and `y`. (An invariant value meets a varying one through `pvary`,
/// as `shard_map`'s type system would insert it.)
fn mixed<'b>(w: gradlift::Var<'b>, x: gradlift::Var<'b>) -> gradlift::Var<'b> {
    let inv = (w.pvary() * x).sin().all_reduce_mean() + (x * x).all_reduce_sum() * 0.5;
    inv.pvary() + w.pvary() * x
}

#[test]
fn vjp_and_jvp_are_transposes_across_ranks() {
    // Global view: ⟨Jv, u⟩ sums the varying output's per-rank products; ⟨v, Jᵀu⟩ counts the
    // invariant w once and sums the varying x's per-rank products.
    let p = 3;
    let b = GraphBuilder::new("t");
    let w = b.input("w", DType::F64, &[4]);
    let x = b.input("x", DType::F64, &[4]);
    let vw = b.input("vw", DType::F64, &[4]);
    let vx = b.input("vx", DType::F64, &[4]);
    let u = b.input("u", DType::F64, &[4]);
    let y = mixed(w, x);
    let jv = b.jvp(&[y], &[w, x], &[vw, vx]).unwrap()[0];
    let jt = b.vjp(&[y], &[w, x], &[u]).unwrap();
    let g = b
        .finish(&[("jv", jv), ("jtw", jt[0]), ("jtx", jt[1])])
        .unwrap();
    let mut r = Rng(3);
    let mut v =
        |n: usize| Tensor::from_f64(vec![n], (0..n).map(|_| r.uniform(-1.0, 1.0)).collect());
    let (w0, vw0) = (v(4), v(4));
    let per_rank: Vec<[Tensor; 3]> = (0..p).map(|_| [v(4), v(4), v(4)]).collect();
    let outs = on_ranks(p, |c| {
        let [x0, vx0, u0] = per_rank[c.rank()].clone();
        interp::run_with_comm(&g, &[w0.clone(), x0, vw0.clone(), vx0, u0], c).unwrap()
    });
    let dot = |a: &Tensor, b: &Tensor| -> f64 {
        a.to_f64_vec()
            .iter()
            .zip(b.to_f64_vec())
            .map(|(x, y)| x * y)
            .sum()
    };
    let lhs: f64 = (0..p).map(|k| dot(&outs[k][0], &per_rank[k][2])).sum();
    // Jᵀu for the invariant w is the same on every rank (all-reduced by pvary's transpose).
    assert_eq!(outs[0][1].to_f64_vec(), outs[p - 1][1].to_f64_vec());
    let rhs = dot(&vw0, &outs[0][1])
        + (0..p)
            .map(|k| dot(&per_rank[k][1], &outs[k][2]))
            .sum::<f64>();
    assert!(
        (lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()),
        "{lhs} vs {rhs}"
    );
}

#[test]
fn jit_equals_the_interpreter_on_collectives_across_ranks() {
    for dt in [DType::F32, DType::F64] {
        let b = GraphBuilder::new("c");
        let x = b.input("x", dt, &[3, 5]);
        let w = b.input("w", dt, &[5, 3]);
        // A transposed operand (a view), a scalar, a mean and a pvary feeding a fused loop.
        let s = x.transpose(&[1, 0]).all_reduce_sum();
        let m = (x.exp() * 0.5).all_reduce_mean();
        let t = x.sum().all_reduce_sum();
        let v = (w.pvary() * s).tanh() + t;
        let g = b.finish(&[("s", s), ("m", m), ("v", v)]).unwrap();
        let cfg = jit::JitConfig {
            exact_math: true,
            ..jit::JitConfig::default()
        };
        let k = jit::compile_with(&g, &cfg).unwrap();
        let outs = on_ranks(3, |c| {
            let mut r = Rng(c.rank() as u64 + 1);
            let inputs: Vec<Tensor> = g
                .inputs()
                .iter()
                .map(|&i| Tensor::from_fn(g.ty(i), |_| r.uniform(-1.0, 1.0)))
                .collect();
            let want = interp::run_with_comm(&g, &inputs, c).unwrap();
            let got = {
                let mut outs: Vec<Tensor> = g
                    .outputs()
                    .iter()
                    .map(|&o| Tensor::splat(g.ty(o), 0.0))
                    .collect();
                let bufs: Vec<Buf> = inputs.iter().map(Buf::from).collect();
                let mut ob: Vec<BufMut> = outs.iter_mut().map(BufMut::from).collect();
                k.call_with_comm(&bufs, &mut ob, &mut k.workspace(), c)
                    .unwrap();
                outs
            };
            (want, got)
        });
        // exact_math: the interpreter's operations in its order, so the same bits.
        for (want, got) in &outs {
            for (a, b) in want.iter().zip(got) {
                assert_eq!(a.to_f64_vec(), b.to_f64_vec(), "{dt}");
            }
        }
    }
}

/// A two-layer MLP training step (SGD): parameters in, updated parameters and the global loss
/// out, gradients all-reduced inside the step.
fn mlp_step(n: usize) -> Graph {
    let b = GraphBuilder::new("mlp_dp");
    let shapes: [&[usize]; 4] = [&[6, 8], &[8], &[8, 3], &[3]];
    let names = ["w1", "b1", "w2", "b2"];
    let params: Vec<_> = names
        .iter()
        .zip(shapes)
        .map(|(nm, s)| b.input(nm, DType::F32, s))
        .collect();
    let x = b.input("x", DType::F32, &[n, 6]);
    let y = b.input("y", DType::F32, &[n, 3]);
    let p: Vec<_> = params.iter().map(|v| v.pvary()).collect();
    let h = (x.matmul(p[0]) + p[1]).relu();
    let loss = (h.matmul(p[2]) + p[3]).mse(y).all_reduce_mean();
    let grads = b.grad(loss, &params).unwrap();
    let mut outs = vec![("loss".to_string(), loss)];
    for ((nm, &w), &g) in names.iter().zip(&params).zip(&grads) {
        outs.push((format!("{nm}_next"), w - g * 0.1));
    }
    let outs: Vec<(&str, gradlift::Var)> = outs.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    b.finish(&outs).unwrap()
}

#[test]
fn a_data_parallel_step_makes_one_all_reduce_call() {
    let params: usize = 6 * 8 + 8 + 8 * 3 + 3;
    for (bucket, calls) in [(true, 1), (false, 5)] {
        let mut g = mlp_step(4);
        opt::optimize(
            &mut g,
            &OptConfig {
                bucket,
                ..OptConfig::default()
            },
        );
        let k = jit::compile(&g).unwrap();
        let counts = on_ranks(2, |c| {
            let c = Counting::new(c);
            let mut r = Rng(5 + c.rank() as u64);
            let inputs: Vec<Tensor> = g
                .inputs()
                .iter()
                .map(|&i| Tensor::from_fn(g.ty(i), |_| r.uniform(-1.0, 1.0)))
                .collect();
            let mut outs: Vec<Tensor> = g
                .outputs()
                .iter()
                .map(|&o| Tensor::splat(g.ty(o), 0.0))
                .collect();
            let bufs: Vec<Buf> = inputs.iter().map(Buf::from).collect();
            let mut ob: Vec<BufMut> = outs.iter_mut().map(BufMut::from).collect();
            k.call_with_comm(&bufs, &mut ob, &mut k.workspace(), &c)
                .unwrap();
            (c.calls(), c.bytes())
        });
        for (got, bytes) in counts {
            assert_eq!(got, calls, "bucket={bucket}");
            // The gradients and the loss, f32.
            assert_eq!(bytes, (params as u64 + 1) * 4, "bucket={bucket}");
        }
    }
}

#[test]
fn ranks_running_different_graphs_get_an_error_not_a_hang() {
    let kernels: Vec<_> = [2usize, 3]
        .iter()
        .map(|&n| {
            let b = GraphBuilder::new("bad");
            let x = b.input("x", DType::F32, &[n]);
            jit::compile(&b.finish(&[("y", x.all_reduce_sum())]).unwrap()).unwrap()
        })
        .collect();
    let errs = on_ranks(2, |c| {
        let k = &kernels[c.rank()];
        let x = vec![1.0f32; 2 + c.rank()];
        let mut y = vec![0.0f32; 2 + c.rank()];
        k.call_with_comm(
            &[(&x).into()],
            &mut [(&mut y).into()],
            &mut k.workspace(),
            c,
        )
    });
    for e in errs {
        assert!(
            matches!(e, Err(CallError::Comm(CommError::LengthMismatch { .. }))),
            "{e:?}"
        );
    }
}

#[test]
fn collectives_in_gir_text_run_over_ranks_and_bad_ones_are_located_errors() {
    let src = "graph @dp {
  %w = input f32[2]
  %x = input f32[2]
  %p = pvary %w : f32[2]
  %l = mul %p, %x : f32[2]
  %s = all_reduce_sum %l : f32[2]
  %m = all_reduce_mean %l : f32[2]
  %n = num_ranks to=f32 : f32[]
  output %s, %m, %n
}
";
    let g = gradlift::ir::text::parse(src).unwrap();
    assert_eq!(gradlift::ir::text::print(&g), src);
    let outs = on_ranks(2, |c| {
        let x = Tensor::from_f32(vec![2], vec![1.0 + c.rank() as f32, 10.0]);
        let w = Tensor::from_f32(vec![2], vec![2.0, 0.5]);
        interp::run_with_comm(&g, &[w, x], c).unwrap()
    });
    for o in &outs {
        // Σ_r w·x_r: [2·1 + 2·2, 0.5·10 + 0.5·10]; the mean halves it; two ranks.
        assert_eq!(o[0].to_f64_vec(), vec![6.0, 10.0]);
        assert_eq!(o[1].to_f64_vec(), vec![3.0, 5.0]);
        assert_eq!(o[2].to_f64_vec(), vec![2.0]);
    }
    for (bad, line, what) in [
        (
            "graph @g {\n  %i = input i32[2]\n  %s = all_reduce_sum %i : i32[2]\n  output %s\n}\n",
            3,
            "float",
        ),
        (
            "graph @g {\n  %n = num_ranks to=i32 : i32[]\n  output %n\n}\n",
            2,
            "f32 or f64",
        ),
    ] {
        let e = gradlift::ir::text::parse(bad).unwrap_err();
        assert_eq!(e.line, line, "{e}");
        assert!(e.message.contains(what), "{e}");
    }
}

#[test]
fn random_graphs_with_collectives_agree_across_ranks_jit_interpreter_and_optimizer() {
    use crate::random::{agree, random_graph, random_inputs};
    let cfg = jit::JitConfig {
        exact_math: true,
        ..jit::JitConfig::default()
    };
    let mut checked = 0;
    for seed in 0..200u64 {
        let g = random_graph(seed, 20, seed % 2 == 0);
        let reduces = |g: &Graph| {
            g.nodes().iter().any(|n| {
                matches!(
                    n.op,
                    gradlift::Op::AllReduceSum | gradlift::Op::AllReduceMean
                )
            })
        };
        // Explicit groups in random graphs list one rank (`[[0]]`).
        let one_rank = g.nodes().iter().any(|n| {
            matches!(&n.attrs, gradlift::Attrs::Group { groups, .. } if !groups.is_world())
        });
        if !reduces(&g) || one_rank {
            continue;
        }
        checked += 1;
        let mut o = g.clone();
        opt::optimize(&mut o, &OptConfig::default());
        let k = jit::compile_with(&g, &cfg).unwrap();
        let ko = jit::compile_with(&o, &cfg).unwrap();
        let results = on_ranks(2, |c| {
            let ins = random_inputs(&g, seed ^ (c.rank() as u64 + 1));
            let want = interp::run_with_comm(&g, &ins, c).unwrap();
            let run = |k: &jit::Kernel| {
                let mut outs: Vec<Tensor> = k
                    .output_types()
                    .iter()
                    .map(|t| Tensor::splat(t, 0.0))
                    .collect();
                let bufs: Vec<Buf> = ins.iter().map(Buf::from).collect();
                let mut ob: Vec<BufMut> = outs.iter_mut().map(BufMut::from).collect();
                k.call_with_comm(&bufs, &mut ob, &mut k.workspace(), c)
                    .unwrap();
                outs
            };
            (want, run(&k), run(&ko))
        });
        for (want, jit_out, opt_out) in &results {
            for (i, w) in want.iter().enumerate() {
                let text = gradlift::ir::text::print(&g);
                assert!(
                    agree(&jit_out[i], w, 0.0),
                    "seed {seed} output {i}: jit\n{text}"
                );
                // Optimized and bucketed, still exact (folding, CSE and bucketing keep every
                // operation; `x + 0 → x` may only flip a zero's sign, which `agree` ignores).
                assert!(
                    agree(&opt_out[i], w, 0.0),
                    "seed {seed} output {i}: optimized\n{text}"
                );
            }
        }
    }
    assert!(checked >= 10, "only {checked} graphs had all-reduces");
}
