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
            (it, call_on(&k, &inputs, c))
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
        let one_rank = g.nodes().iter().any(
            |n| matches!(&n.attrs, gradlift::Attrs::Group { groups, .. } if !groups.is_world()),
        );
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

// ---- groups, all_gather, reduce_scatter, collective_broadcast, axis_index ----------------

use gradlift::comm::Groups;
use gradlift::interp::EvalError;

fn groups(lists: &[&[usize]]) -> Groups {
    Groups::new(lists.iter().map(|l| l.to_vec()).collect()).unwrap()
}

/// The outputs of one call of `k` on `inputs` over the communicator `c`.
fn call_on(k: &jit::Kernel, inputs: &[Tensor], c: &dyn Communicator) -> Vec<Tensor> {
    let mut outs: Vec<Tensor> = k
        .output_types()
        .iter()
        .map(|t| Tensor::splat(t, 0.0))
        .collect();
    let bufs: Vec<Buf> = inputs.iter().map(Buf::from).collect();
    let mut obufs: Vec<BufMut> = outs.iter_mut().map(BufMut::from).collect();
    k.call_with_comm(&bufs, &mut obufs, &mut k.workspace(), c)
        .unwrap();
    outs
}

/// Runs `g` on `p` ranks (rank `r`'s inputs `inputs[r]`) with the interpreter and with the
/// JIT (`exact_math`); asserts they agree bitwise on every rank and returns the interpreter's.
fn run_both(g: &Graph, inputs: &[Vec<Tensor>]) -> Vec<Vec<Tensor>> {
    let cfg = jit::JitConfig {
        exact_math: true,
        ..jit::JitConfig::default()
    };
    let k = jit::compile_with(g, &cfg).unwrap();
    let outs = on_ranks(inputs.len(), |c| {
        let ins = &inputs[c.rank()];
        let want = interp::run_with_comm(g, ins, c).unwrap();
        (want, call_on(&k, ins, c))
    });
    for (r, (want, got)) in outs.iter().enumerate() {
        for (o, (a, b)) in want.iter().zip(got).enumerate() {
            let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
            let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "rank {r} output {o}: jit {b:?} vs interpreter {a:?}");
        }
    }
    outs.into_iter().map(|(w, _)| w).collect()
}

/// The group (as a list of ranks) and position of `rank` in `lists`.
fn place_of<'a>(lists: &'a [&'a [usize]], rank: usize) -> (&'a [usize], usize) {
    for l in lists {
        if let Some(i) = l.iter().position(|&m| m == rank) {
            return (l, i);
        }
    }
    panic!("rank {rank} in no group")
}

const ROWS: usize = 4;
const COLS: usize = 4;

/// Rank `r`'s operand: distinct values per rank and element, exact in `f32` too.
fn operand(r: usize) -> Vec<f64> {
    let mut rng = Rng(100 + r as u64);
    (0..ROWS * COLS)
        .map(|_| rng.uniform(-1.0, 1.0) as f32 as f64)
        .collect()
}

/// `v` rounded to `dt` (an `f32` sum or quotient of `f32` values computed in `f64` and rounded
/// once is the `f32` operation's result).
fn round(dt: DType, v: f64) -> f64 {
    if dt == DType::F32 { v as f32 as f64 } else { v }
}

/// Row-major `[ROWS, COLS]` blocks of the members joined along `axis`.
fn joined(members: &[usize], axis: usize) -> Vec<f64> {
    let k = members.len();
    let mut out = Vec::new();
    if axis == 0 {
        for &m in members {
            out.extend(operand(m));
        }
    } else {
        for i in 0..ROWS {
            for &m in members {
                out.extend_from_slice(&operand(m)[i * COLS..(i + 1) * COLS]);
            }
        }
    }
    assert_eq!(out.len(), k * ROWS * COLS);
    out
}

/// The elementwise sum over `members` in list order (the communicator's documented order),
/// each addition in `dt`.
fn summed(members: &[usize], dt: DType) -> Vec<f64> {
    let mut acc = operand(members[0]);
    for &m in &members[1..] {
        for (a, x) in acc.iter_mut().zip(operand(m)) {
            *a = round(dt, *a + x);
        }
    }
    acc
}

/// Block `i` of `k` along `axis` of a row-major `[ROWS, COLS]` value.
fn block(v: &[f64], axis: usize, k: usize, i: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for r in 0..ROWS {
        for c in 0..COLS {
            let (at, n) = if axis == 0 { (r, ROWS) } else { (c, COLS) };
            if at / (n / k) == i {
                out.push(v[r * COLS + c]);
            }
        }
    }
    out
}

#[test]
fn group_collectives_match_a_hand_computation_from_every_ranks_inputs() {
    let cases: [(usize, &[&[usize]]); 5] = [
        (2, &[&[0, 1]]),
        (2, &[&[1, 0]]),
        (4, &[&[0, 1], &[2, 3]]),
        (4, &[&[0, 2], &[3, 1]]),
        (4, &[&[0], &[1, 2, 3]]),
    ];
    for (dt, (p, lists)) in [DType::F64, DType::F32]
        .into_iter()
        .flat_map(|dt| cases.iter().map(move |c| (dt, *c)))
    {
        let gs = groups(lists);
        let uniform = lists.iter().all(|l| l.len() == lists[0].len());
        let root = lists.iter().map(|l| l.len()).min().unwrap() - 1;
        let b = GraphBuilder::new("groups");
        let x = b.input("x", dt, &[ROWS, COLS]);
        // A transposed operand: a view, which the JIT copies before communicating.
        let xt = x.transpose(&[1, 0]).transpose(&[1, 0]);
        let mut outs = vec![
            ("sum", x.all_reduce_sum_in(&gs)),
            ("mean", x.all_reduce_mean_in(&gs)),
            ("p", b.num_ranks_in(dt, &gs)),
            ("i", b.axis_index(dt, &gs)),
            ("i32", b.axis_index(DType::I32, &gs).cast(dt)),
            ("bcast", xt.collective_broadcast(root, &gs)),
        ];
        if uniform {
            outs.push(("gather0", xt.all_gather(0, &gs)));
            outs.push(("scatter0", xt.reduce_scatter(0, &gs)));
            outs.push(("gather1", xt.all_gather(1, &gs)));
            outs.push(("scatter1", xt.reduce_scatter(1, &gs)));
        }
        let g = b.finish(&outs).unwrap();
        let ty = gradlift::TensorType::new(dt, vec![ROWS, COLS]);
        let inputs: Vec<Vec<Tensor>> = (0..p)
            .map(|r| vec![Tensor::from_fn(&ty, |i| operand(r)[i])])
            .collect();
        let got = run_both(&g, &inputs);
        for (r, got) in got.iter().enumerate() {
            let (members, pos) = place_of(lists, r);
            let k = members.len();
            let sum = summed(members, dt);
            let mut want = vec![
                sum.clone(),
                sum.iter().map(|s| round(dt, s / k as f64)).collect(),
                vec![k as f64],
                vec![pos as f64],
                vec![pos as f64],
                operand(members[root]),
            ];
            if uniform {
                for axis in 0..2 {
                    want.push(joined(members, axis));
                    want.push(block(&sum, axis, k, pos));
                }
            }
            for (o, w) in want.iter().enumerate() {
                assert_eq!(
                    &got[o].to_f64_vec(),
                    w,
                    "{dt} p={p} groups {gs} rank {r} output {}",
                    outs[o].0
                );
            }
        }
    }
}

/// A distributed function of each rank's `x` (`[ROWS, COLS]`) through every group collective,
/// with a varying (per-rank) result of `[ROWS, COLS]`.
fn through_collectives<'b>(x: gradlift::Var<'b>, gs: &Groups, uniform: bool) -> gradlift::Var<'b> {
    let b = x.builder();
    let p = b.num_ranks_in(DType::F64, gs);
    let inv = (x * x).all_reduce_mean_in(gs).pvary_in(gs)
        + x.sin().all_reduce_sum_in(gs).pvary_in(gs) / p;
    let bc = x.tanh().collective_broadcast(0, gs);
    let mut y = inv * x + bc * bc * x.cos();
    if uniform {
        // `[ROWS·k, COLS]` → a row scatter back to `[ROWS, COLS]`; the same along columns.
        let a = (x * 0.5).sin().all_gather(0, gs);
        y = y + (a * a).reduce_scatter(0, gs);
        let c = y.all_gather(1, gs).tanh();
        y = y * (c * 1.5).reduce_scatter(1, gs);
    }
    y
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn group_vjps_match_central_differences_and_jvps_are_their_transposes_across_ranks() {
    let cases: [(usize, &[&[usize]], bool); 3] = [
        (2, &[&[1, 0]], true),
        (4, &[&[0, 1], &[2, 3]], true),
        (4, &[&[0], &[1, 2, 3]], false),
    ];
    for (p, lists, uniform) in cases {
        let gs = groups(lists);
        // L = Σ_ranks Σ_elements y_r · u_r: its gradient with respect to x_r is Jᵀu at rank r.
        let b = GraphBuilder::new("t");
        let x = b.input("x", DType::F64, &[ROWS, COLS]);
        let v = b.input("v", DType::F64, &[ROWS, COLS]);
        let u = b.input("u", DType::F64, &[ROWS, COLS]);
        let y = through_collectives(x, &gs, uniform);
        let jv = b.jvp(&[y], &[x], &[v]).unwrap()[0];
        let jt = b.vjp(&[y], &[x], &[u]).unwrap()[0];
        let g = b.finish(&[("y", y), ("jv", jv), ("jt", jt)]).unwrap();
        let vec_of = |seed: u64| {
            let mut r = Rng(seed);
            (0..ROWS * COLS)
                .map(|_| r.uniform(-1.0, 1.0))
                .collect::<Vec<f64>>()
        };
        let t = |v: Vec<f64>| Tensor::from_f64(vec![ROWS, COLS], v);
        let xs: Vec<Vec<f64>> = (0..p).map(operand).collect();
        let vs: Vec<Vec<f64>> = (0..p).map(|r| vec_of(200 + r as u64)).collect();
        let us: Vec<Vec<f64>> = (0..p).map(|r| vec_of(300 + r as u64)).collect();
        let inputs = |xs: &[Vec<f64>]| -> Vec<Vec<Tensor>> {
            (0..p)
                .map(|r| vec![t(xs[r].clone()), t(vs[r].clone()), t(us[r].clone())])
                .collect()
        };
        let outs = run_both(&g, &inputs(&xs));
        let lhs: f64 = (0..p).map(|r| dot(&outs[r][1].to_f64_vec(), &us[r])).sum();
        let rhs: f64 = (0..p).map(|r| dot(&vs[r], &outs[r][2].to_f64_vec())).sum();
        assert!(
            (lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()),
            "{gs}: ⟨Jv,u⟩ {lhs} vs ⟨v,Jᵀu⟩ {rhs}"
        );
        // Central differences of L = Σ_r ⟨y_r, u_r⟩ in every element of every rank's x.
        let loss = |xs: &[Vec<f64>]| -> f64 {
            let outs = on_ranks(p, |c| {
                let ins = &inputs(xs)[c.rank()];
                interp::run_with_comm(&g, ins, c).unwrap()[0].to_f64_vec()
            });
            (0..p).map(|r| dot(&outs[r], &us[r])).sum()
        };
        let h = 1e-6;
        for r in 0..p {
            let grad = outs[r][2].to_f64_vec();
            for i in (0..ROWS * COLS).step_by(3) {
                let mut up = xs.clone();
                up[r][i] += h;
                let mut down = xs.clone();
                down[r][i] -= h;
                let fd = (loss(&up) - loss(&down)) / (2.0 * h);
                assert!(
                    (fd - grad[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                    "{gs} rank {r} x[{i}]: fd {fd} vs vjp {}",
                    grad[i]
                );
            }
        }
    }
}

#[test]
fn groups_that_do_not_fit_the_communicator_are_a_typed_error_on_every_rank() {
    let b = GraphBuilder::new("g");
    let x = b.input("x", DType::F32, &[2]);
    let y = x.all_reduce_sum_in(&groups(&[&[0, 1], &[2, 3]]));
    let g = b.finish(&[("y", y)]).unwrap();
    let b = GraphBuilder::new("root");
    let x = b.input("x", DType::F32, &[2]);
    // The world's size is known only at call time: root 2 of two ranks is not there.
    let root = b
        .finish(&[("y", x.collective_broadcast(2, &Groups::world()))])
        .unwrap();
    for g in [&g, &root] {
        let k = jit::compile(g).unwrap();
        let errs = on_ranks(2, |c| {
            let it = interp::run_with_comm(g, &[Tensor::from_f32(vec![2], vec![1.0, 2.0])], c);
            let mut y = vec![0.0f32; 2];
            let jt = k.call_with_comm(
                &[(&vec![1.0f32, 2.0]).into()],
                &mut [(&mut y).into()],
                &mut k.workspace(),
                c,
            );
            (it.map(|_| ()), jt)
        });
        for (it, jt) in errs {
            assert!(
                matches!(it, Err(EvalError::Comm(CommError::Groups(_)))),
                "{it:?}"
            );
            let Err(CallError::Comm(CommError::Groups(m))) = jt else {
                panic!("{jt:?}")
            };
            assert!(m.contains("list 4 ranks") || m.contains("root 2"), "{m}");
        }
    }
}

#[test]
fn group_collectives_in_gir_text_round_trip_and_bad_groups_are_located_errors() {
    let src = "graph @g {
  %x = input f32[4,2]
  %s = all_reduce_sum %x groups=[[0,1],[3,2]] : f32[4,2]
  %m = all_reduce_mean %x : f32[4,2]
  %v = pvary %s groups=[[0,1],[3,2]] : f32[4,2]
  %a = all_gather %x axis=1 groups=[[0,2],[1,3]] : f32[4,4]
  %r = reduce_scatter %a axis=0 groups=[[0,1,2,3]] : f32[1,4]
  %b = collective_broadcast %v root=0 groups=[[0],[1,2,3]] : f32[4,2]
  %n = num_ranks to=f64 groups=[[0],[1,2,3]] : f64[]
  %i = axis_index to=i32 groups=[[0,2],[1,3]] : i32[]
  output %m, %r, %b, %n, %i
}
";
    let g = gradlift::ir::text::parse(src).unwrap();
    assert_eq!(gradlift::ir::text::print(&g), src);
    let head = "graph @g {\n  %x = input f32[4,2]\n";
    // (statement, where the error points (the text there; "" for the end of the line), what)
    for (line, at, what) in [
        (
            "all_reduce_sum %x groups=[[0,1],[1,2]]",
            "[[",
            "rank 1 is in more than one group",
        ),
        (
            "all_reduce_sum %x groups=[[0,5]]",
            "[[",
            "rank 5 is out of range",
        ),
        (
            "all_reduce_sum %x groups=[[0],[]]",
            "[[",
            "group 1 is empty",
        ),
        (
            "all_reduce_sum %x groups=[0,1]",
            "0,",
            "`[` opening a group",
        ),
        (
            "all_reduce_sum %x groups=[[0,1]",
            "",
            "`,` or `]` between groups",
        ),
        ("all_gather %x axis=0", "all", "needs explicit `groups=`"),
        (
            "all_gather %x axis=2 groups=[[0,1]]",
            "all",
            "axis 2 is out of range",
        ),
        (
            "all_gather %x axis=0 groups=[[0,1],[2]]",
            "all",
            "groups of one size",
        ),
        (
            "reduce_scatter %x axis=1 groups=[[0,1,2]]",
            "red",
            "not a multiple of the group size 3",
        ),
        (
            "collective_broadcast %x root=1 groups=[[0,1],[2]]",
            "col",
            "root 1 is not a position",
        ),
        (
            "collective_broadcast %x groups=[[0,1]]",
            "col",
            "requires the attribute `root`",
        ),
        ("num_ranks to=i32", "num", "f32 or f64"),
        ("axis_index to=bool", "bool", "`f32`, `f64` or `i32`"),
        ("pvary %x axis=0", "axis", "`pvary` takes `groups`"),
    ] {
        let col = 8 + if at.is_empty() {
            line.len()
        } else {
            line.find(at).unwrap()
        } as u32;
        let text = format!("{head}  %y = {line}\n  output %y\n}}\n");
        let e = gradlift::ir::text::parse(&text).unwrap_err();
        assert_eq!((e.line, e.col), (3, col), "{line}: {e}");
        assert!(e.message.contains(what), "{line}: {e}");
    }
}

#[test]
fn bucketing_merges_all_reduces_of_the_same_groups_only() {
    // Parameters replicated over two different partitions of four ranks and over the world:
    // the backward pass makes two all-reduces per partition and the loss one over the world.
    let pairs = groups(&[&[0, 1], &[2, 3]]);
    let halves = groups(&[&[0, 2], &[1, 3]]);
    let b = GraphBuilder::new("buckets");
    let ws: Vec<_> = (0..4)
        .map(|i| b.input(&format!("w{i}"), DType::F32, &[3]))
        .collect();
    let x = b.input("x", DType::F32, &[3]);
    let used = [
        ws[0].pvary_in(&pairs),
        ws[1].pvary_in(&pairs),
        ws[2].pvary_in(&halves),
        ws[3].pvary_in(&halves),
    ];
    let h = (used[0] * x).tanh() * used[1] + (used[2] * x).sin() * used[3];
    let loss = (h * h).sum().all_reduce_mean();
    let grads = b.grad(loss, &ws).unwrap();
    let g = b
        .finish(&[
            ("loss", loss),
            ("g0", grads[0]),
            ("g1", grads[1]),
            ("g2", grads[2]),
            ("g3", grads[3]),
        ])
        .unwrap();
    let mut results = Vec::new();
    for (bucket, calls) in [(false, 5), (true, 3)] {
        let mut o = g.clone();
        opt::optimize(
            &mut o,
            &OptConfig {
                bucket,
                ..OptConfig::default()
            },
        );
        let k = jit::compile(&o).unwrap();
        let outs = on_ranks(4, |c| {
            let c = Counting::new(c);
            let mut r = Rng(40 + c.rank() as u64);
            let inputs: Vec<Tensor> = (o.inputs().iter())
                .map(|&i| Tensor::from_fn(o.ty(i), |_| r.uniform(-1.0, 1.0)))
                .collect();
            let mut outs: Vec<Tensor> = (k.output_types().iter())
                .map(|t| Tensor::splat(t, 0.0))
                .collect();
            let bufs: Vec<Buf> = inputs.iter().map(Buf::from).collect();
            let mut ob: Vec<BufMut> = outs.iter_mut().map(BufMut::from).collect();
            k.call_with_comm(&bufs, &mut ob, &mut k.workspace(), &c)
                .unwrap();
            let want = interp::run_with_comm(&g, &inputs, &c).unwrap();
            (c.calls(), outs, want)
        });
        for (r, (n, outs, want)) in outs.iter().enumerate() {
            // The interpreter's run of the unbucketed graph adds 5 calls.
            assert_eq!(*n, calls + 5, "bucket={bucket} rank {r}");
            for (a, b) in outs.iter().zip(want) {
                close(
                    &a.to_f64_vec(),
                    &b.to_f64_vec(),
                    1e-6,
                    "bucketed vs interpreter",
                );
            }
        }
        results.push(outs);
    }
    // Bucketing moves values, never changes them: the same bits with and without.
    for (plain, bucketed) in results[0].iter().zip(&results[1]) {
        for (a, b) in plain.1.iter().zip(&bucketed.1) {
            assert_eq!(a.to_f64_vec(), b.to_f64_vec());
        }
    }
    // And the gradients of pair-replicated parameters agree within each pair.
    assert_eq!(
        results[1][0].1[1].to_f64_vec(),
        results[1][1].1[1].to_f64_vec()
    );
    assert_eq!(
        results[1][0].1[3].to_f64_vec(),
        results[1][2].1[3].to_f64_vec()
    );
}

#[test]
fn group_collectives_are_refused_in_loop_bodies_and_never_constant_folded() {
    let pairs = groups(&[&[0, 1], &[2, 3]]);
    for (name, f) in [
        ("all_gather", 0),
        ("reduce_scatter", 1),
        ("collective_broadcast", 2),
        ("axis_index", 3),
    ] {
        let b = GraphBuilder::new("loop");
        let x = b.input("x", DType::F64, &[2]);
        let out = b.scan(3, &[x], &[], &[], |s, st| {
            let c = st.carry[0];
            let y = match f {
                0 => c.all_gather(0, &pairs).sum() * c,
                1 => c.reduce_scatter(0, &pairs).sum() * c,
                2 => c.collective_broadcast(0, &pairs),
                _ => s.axis_index(DType::F64, &pairs) * c,
            };
            (vec![y], vec![])
        });
        let e = b.finish(&[("y", out.carry[0])]).unwrap_err().to_string();
        assert!(e.contains(&format!("cannot hold `{name}`")), "{e}");
    }
    // Constant operands: folding would compute one rank's value for every rank.
    let b = GraphBuilder::new("consts");
    let c = b.constant(Tensor::from_f64(vec![2], vec![1.0, 2.0]));
    let outs = [
        ("sum", c.all_reduce_sum_in(&pairs)),
        ("gather", c.all_gather(0, &pairs)),
        ("scatter", c.reduce_scatter(0, &pairs)),
        (
            "bcast",
            (c * b.axis_index(DType::F64, &pairs)).collective_broadcast(1, &pairs),
        ),
        ("i", b.axis_index(DType::F64, &pairs)),
    ];
    let mut g = b.finish(&outs).unwrap();
    opt::optimize(&mut g, &OptConfig::default());
    let collectives = |g: &Graph| {
        (g.nodes().iter())
            .filter(|n| gradlift::ops::collective::is_collective(n.op))
            .count()
    };
    // Five: CSE merges the two `axis_index` nodes (same groups, same value).
    assert_eq!(collectives(&g), 5, "{}", gradlift::ir::text::print(&g));
    let got = run_both(&g, &vec![vec![]; 4]);
    for (r, o) in got.iter().enumerate() {
        let pos = (r % 2) as f64;
        assert_eq!(o[0].to_f64_vec(), vec![2.0, 4.0]);
        assert_eq!(o[1].to_f64_vec(), vec![1.0, 2.0, 1.0, 2.0]);
        assert_eq!(o[2].to_f64_vec(), vec![2.0 * (1.0 + pos)]);
        assert_eq!(o[3].to_f64_vec(), vec![1.0, 2.0]);
        assert_eq!(o[4].to_f64_vec(), vec![pos]);
    }
}

#[test]
fn second_derivatives_through_group_collectives_match_central_differences() {
    // L = mean over each pair of ranks of a local loss of the pair-replicated w and rank-local
    // x, through an all-gather: its gradient and Hessian-vector product with respect to w
    // (the same on both ranks of a pair) against central differences of L and of the gradient.
    let pairs = groups(&[&[0, 1], &[2, 3]]);
    let b = GraphBuilder::new("hvp");
    let w = b.input("w", DType::F64, &[3]);
    let x = b.input("x", DType::F64, &[3]);
    let v = b.input("v", DType::F64, &[3]);
    let pw = w.pvary_in(&pairs);
    let a = (pw * x).tanh().all_gather(0, &pairs);
    let local = ((pw * x).sin() * x).sum() + (a * a).sum() * 0.1;
    let loss = local.all_reduce_mean_in(&pairs);
    let g1 = b.grad(loss, &[w]).unwrap()[0];
    let hv = b.hvp(loss, &[w], &[v]).unwrap()[0];
    let g = b.finish(&[("loss", loss), ("g", g1), ("hv", hv)]).unwrap();
    let p = 4;
    let xs: Vec<Vec<f64>> = (0..p).map(|r| operand(r)[..3].to_vec()).collect();
    let w0 = vec![0.3, -0.7, 1.1];
    let v0 = vec![0.5, 0.25, -1.0];
    let t = |v: &[f64]| Tensor::from_f64(vec![3], v.to_vec());
    let run = |w: &[f64]| {
        run_both(
            &g,
            &(0..p)
                .map(|r| vec![t(w), t(&xs[r]), t(&v0)])
                .collect::<Vec<_>>(),
        )
    };
    let at = run(&w0);
    let h = 1e-5;
    let shifted =
        |s: f64, d: &[f64]| -> Vec<f64> { w0.iter().zip(d).map(|(w, d)| w + s * d).collect() };
    for r in 0..p {
        // The gradient: central differences of L along each axis.
        for i in 0..3 {
            let e: Vec<f64> = (0..3).map(|j| f64::from(u8::from(i == j))).collect();
            let fd = (run(&shifted(h, &e))[r][0].scalar_value().unwrap()
                - run(&shifted(-h, &e))[r][0].scalar_value().unwrap())
                / (2.0 * h);
            let gi = at[r][1].to_f64_vec()[i];
            assert!((fd - gi).abs() < 1e-8, "rank {r} g[{i}]: fd {fd} vs {gi}");
        }
        // The Hessian-vector product: central differences of the gradient along v.
        let (up, down) = (run(&shifted(h, &v0)), run(&shifted(-h, &v0)));
        let fd: Vec<f64> = (up[r][1].to_f64_vec().iter())
            .zip(down[r][1].to_f64_vec())
            .map(|(a, b)| (a - b) / (2.0 * h))
            .collect();
        close(&at[r][2].to_f64_vec(), &fd, 1e-7, &format!("rank {r} hvp"));
    }
    // Replicated within a pair: both ranks hold the same gradient (all-reduced by pvary's
    // transpose), and the pairs differ.
    assert_eq!(at[0][1].to_f64_vec(), at[1][1].to_f64_vec());
    assert_eq!(at[2][2].to_f64_vec(), at[3][2].to_f64_vec());
    assert_ne!(at[0][1].to_f64_vec(), at[2][1].to_f64_vec());
}
