//! The JIT against the interpreter: every op (f32 and f64, with broadcasting), gradient graphs,
//! special values, bad buffers, threads, memory reuse, and large graphs.

use crate::fuzz_check::same_bits;
use gradlift::ir::GroupParam;
use gradlift::jit::{self, Buf, BufMut, CallError, JitConfig, Kernel};
use gradlift::testutil::Rng;
use gradlift::{Attrs, DType, Data, Graph, GraphBuilder, NodeId, Op, Tensor, TensorType, interp};
use std::sync::Arc;

// ---- helpers -------------------------------------------------------------------------------

/// Which values an op's inputs should take.
#[derive(Clone, Copy)]
enum Domain {
    /// Anywhere in [-2, 2].
    Any,
    /// In [0.1, 3] (log, sqrt, pow bases...).
    Positive,
    /// Small integers in {-1, 0, 1} (so comparisons and max/min see ties).
    Ties,
}

fn tensor(ty: &TensorType, dom: Domain, rng: &mut Rng) -> Tensor {
    Tensor::from_fn(ty, |_| match (ty.dtype, dom) {
        (DType::Bool, _) => f64::from(rng.unit() < 0.5),
        // Indices, some out of range (clamped) on both sides.
        (DType::I32, _) => rng.uniform(-3.0, 9.0).floor(),
        (_, Domain::Any) => rng.uniform(-2.0, 2.0),
        (_, Domain::Positive) => rng.uniform(0.1, 3.0),
        (_, Domain::Ties) => (rng.uniform(-1.5, 1.5)).round(),
    })
}

/// Relative closeness for graphs where bitwise agreement is not required.
fn close(a: &Tensor, b: &Tensor) -> bool {
    if a.ty() != b.ty() {
        return false;
    }
    let tol = if a.dtype() == DType::F32 { 1e-5 } else { 1e-12 };
    a.to_f64_vec().iter().zip(b.to_f64_vec()).all(|(&x, y)| {
        (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= tol * x.abs().max(y.abs()).max(1.0)
    })
}

/// True if the default (non-exact) JIT may differ from the interpreter on `g`: it has a
/// vectorized transcendental or a reduction (reassociated), or a matmul, here or in a loop body.
fn approximate(g: &Graph) -> bool {
    g.nodes().iter().any(|n| {
        matches!(
            n.op,
            Op::Exp
                | Op::Log
                | Op::Sin
                | Op::Cos
                | Op::Tanh
                | Op::Sigmoid
                | Op::Log1p
                | Op::Expm1
                | Op::ReduceSum
                | Op::ReduceMean
                | Op::ReduceMax
                | Op::ReduceMin
                | Op::Matmul
        ) || gradlift::ir::loops::scan_attrs(&n.attrs).is_some_and(|(lp, _)| approximate(&lp.body))
    })
}

fn exact() -> JitConfig {
    JitConfig {
        exact_math: true,
        ..JitConfig::default()
    }
}

/// Compiles `g` twice and compares both kernels with the interpreter on `inputs`, through
/// both entry points: with `exact_math` bitwise (when `bitwise`), and with the default
/// configuration bitwise too unless the graph is [`approximate`] (then within `close`).
/// Returns the default kernel.
fn check(g: &Graph, inputs: &[Tensor], bitwise: bool) -> Kernel {
    let agree = |bitwise: bool| {
        move |_: usize, w: &Tensor, o: &Tensor| {
            if bitwise {
                same_bits(w, o)
            } else {
                close(w, o)
            }
        }
    };
    check_with(g, inputs, &exact(), &agree(bitwise));
    check_with(
        g,
        inputs,
        &JitConfig::default(),
        &agree(bitwise && !approximate(g)),
    )
}

/// Like [`check`] for graphs whose outputs are matrix products of (possibly transposed or
/// broadcast) inputs. With `exact_math` the JIT keeps the interpreter's summation order
/// (bitwise). By default a large product goes to the tuned GEMM, which sums in another
/// order, so each element must agree within `k·ε·Σ_p |a_ip||b_pj|` — the sum of the two
/// orders' worst-case rounding errors (`γ_k·Σ|a||b|` each, any summation order, with or
/// without fma). The `Σ|a||b|` are the interpreter's own outputs on the absolute values of
/// the inputs (abs commutes with transposes and broadcasts). `k` is the largest inner
/// dimension in `g`. Returns the default kernel.
fn check_matmul(g: &Graph, inputs: &[Tensor]) -> Kernel {
    let k = g
        .nodes()
        .iter()
        .filter(|n| n.op == Op::Matmul)
        .map(|n| *g.ty(n.inputs[0]).shape.last().unwrap())
        .max()
        .expect("a graph with a matmul");
    let abs: Vec<Tensor> = inputs
        .iter()
        .map(|x| {
            let v = x.to_f64_vec();
            Tensor::from_fn(&x.ty(), |i| v[i].abs())
        })
        .collect();
    let mag = interp::run(g, &abs).expect("interpreter runs");
    check_with(g, inputs, &exact(), &|_, w, o| same_bits(w, o));
    check_with(g, inputs, &JitConfig::default(), &|i, w, o| {
        let eps = if w.dtype() == DType::F32 {
            f64::from(f32::EPSILON)
        } else {
            f64::EPSILON
        };
        w.ty() == o.ty()
            && w.to_f64_vec()
                .iter()
                .zip(o.to_f64_vec())
                .zip(mag[i].to_f64_vec())
                .all(|((&x, y), s)| (x - y).abs() <= k as f64 * eps * s)
    })
}

/// Compiles `g` with `cfg`, runs it on `inputs` through both entry points, and checks each
/// output against the interpreter's with `agree(output index, want, got)`. Returns the
/// kernel.
fn check_with(
    g: &Graph,
    inputs: &[Tensor],
    cfg: &JitConfig,
    agree: &dyn Fn(usize, &Tensor, &Tensor) -> bool,
) -> Kernel {
    let want = interp::run(g, inputs).expect("interpreter runs");
    let k =
        jit::compile_with(g, cfg).unwrap_or_else(|e| panic!("{}: compile failed: {e:?}", g.name));
    let got = k.run(inputs).expect("kernel runs");
    let mode = if cfg.exact_math { "exact" } else { "default" };
    for (i, (w, o)) in want.iter().zip(&got).enumerate() {
        assert!(
            agree(i, w, o),
            "{} ({mode}): output {i}\n want {w:?}\n got  {o:?}",
            g.name
        );
    }
    // The allocation-free path, twice with one workspace (a stale workspace must not matter).
    let mut ws = k.workspace();
    let mut outs: Vec<Tensor> = k
        .output_types()
        .iter()
        .map(|t| Tensor::splat(t, 7.0))
        .collect();
    for _ in 0..2 {
        let ins: Vec<Buf<'_>> = inputs.iter().map(Buf::from).collect();
        let mut bufs: Vec<BufMut<'_>> = outs.iter_mut().map(BufMut::from).collect();
        k.call(&ins, &mut bufs, &mut ws).expect("call runs");
    }
    for (i, (w, o)) in want.iter().zip(&outs).enumerate() {
        assert!(
            agree(i, w, o),
            "{} ({mode}): call path\n want {w:?}\n got  {o:?}",
            g.name
        );
    }
    k
}

/// One graph `op(inputs...)` with `attrs`.
fn op_graph(op: Op, tys: &[TensorType], attrs: Attrs) -> Graph {
    let mut g = Graph::new(format!("{op}{tys:?}{attrs:?}"));
    let ins: Vec<NodeId> = tys
        .iter()
        .enumerate()
        .map(|(i, t)| g.add_input(&format!("x{i}"), t.clone()).unwrap())
        .collect();
    let y = g
        .push(op, ins, attrs)
        .unwrap_or_else(|e| panic!("bad test case: {e}"));
    g.set_outputs(vec![y]);
    g
}

fn t(dtype: DType, shape: &[usize]) -> TensorType {
    TensorType::new(dtype, shape.to_vec())
}

/// Representative operand types and attributes for `op` in dtype `d`.
fn cases(op: Op, d: DType) -> Vec<(Vec<TensorType>, Attrs)> {
    if op == Op::Scan {
        return scan_cases(d); // more in `tests/it/loops_jit.rs`
    }
    let none = Attrs::None;
    let red = |axes: &[usize], keepdims| Attrs::Reduce {
        axes: axes.to_vec(),
        keepdims,
    };
    let unary = || {
        vec![
            (vec![t(d, &[])], Attrs::None),
            (vec![t(d, &[2, 3])], Attrs::None),
        ]
    };
    let binary = || {
        vec![
            (vec![t(d, &[]), t(d, &[])], Attrs::None),
            (vec![t(d, &[2, 3]), t(d, &[2, 3])], Attrs::None),
            (vec![t(d, &[2, 3]), t(d, &[3])], Attrs::None),
            (vec![t(d, &[2, 1]), t(d, &[1, 3])], Attrs::None),
            (vec![t(d, &[]), t(d, &[2, 3])], Attrs::None),
            (vec![t(d, &[4, 1, 3]), t(d, &[2, 1])], Attrs::None),
        ]
    };
    match op {
        Op::Input | Op::Const => vec![],
        Op::Powi => [3, -2, 0, 1, 7]
            .into_iter()
            .flat_map(|n| {
                [
                    (vec![t(d, &[])], Attrs::Powi { n }),
                    (vec![t(d, &[5])], Attrs::Powi { n }),
                ]
            })
            .collect(),
        Op::Select => vec![
            (vec![t(DType::Bool, &[]), t(d, &[]), t(d, &[])], none),
            (
                vec![t(DType::Bool, &[2, 3]), t(d, &[2, 3]), t(d, &[2, 3])],
                Attrs::None,
            ),
            (
                vec![t(DType::Bool, &[2, 1]), t(d, &[3]), t(d, &[])],
                Attrs::None,
            ),
        ],
        Op::Cast => [DType::F32, DType::F64, DType::I32]
            .into_iter()
            .flat_map(|to| {
                [
                    (vec![t(d, &[2, 3])], Attrs::Cast { to }),
                    (vec![t(DType::Bool, &[4])], Attrs::Cast { to }),
                    (vec![t(DType::I32, &[5])], Attrs::Cast { to }),
                    (vec![t(d, &[])], Attrs::Cast { to }),
                ]
            })
            .collect(),
        // One process: the world, or the one group `[[0]]`.
        Op::NumRanks => vec![(vec![], Attrs::world(GroupParam::To(d)))],
        Op::AxisIndex => vec![
            (vec![], Attrs::world(GroupParam::To(d))),
            (vec![], Attrs::world(GroupParam::To(DType::I32))),
        ],
        Op::AllReduceSum | Op::AllReduceMean | Op::Pvary => unary()
            .into_iter()
            .map(|(t, _)| (t, Attrs::world(GroupParam::None)))
            .collect(),
        Op::CollectiveBroadcast => vec![(vec![t(d, &[2, 3])], Attrs::world(GroupParam::Root(0)))],
        Op::AllGather | Op::ReduceScatter => (0..2)
            .map(|axis| {
                let groups = gradlift::ir::Groups::new(vec![vec![0]]).unwrap();
                let param = GroupParam::Axis(axis);
                (vec![t(d, &[2, 3])], Attrs::Group { groups, param })
            })
            .collect(),
        Op::Iota => vec![
            (
                vec![],
                Attrs::Iota {
                    ty: t(d, &[3, 4]),
                    axis: 1,
                },
            ),
            (
                vec![],
                Attrs::Iota {
                    ty: t(DType::I32, &[5, 2]),
                    axis: 0,
                },
            ),
        ],
        Op::Gather => vec![
            (
                vec![t(d, &[4, 3]), t(DType::I32, &[5])],
                Attrs::Axis { axis: 0 },
            ),
            (
                vec![t(d, &[3, 4]), t(DType::I32, &[2, 3])],
                Attrs::Axis { axis: 1 },
            ),
            (
                vec![t(d, &[4]), t(DType::I32, &[])],
                Attrs::Axis { axis: 0 },
            ),
        ],
        Op::ScatterAdd => vec![
            (
                vec![t(d, &[5, 3]), t(DType::I32, &[5])],
                Attrs::Scatter { axis: 0, size: 4 },
            ),
            (
                vec![t(d, &[3, 2, 3]), t(DType::I32, &[2, 3])],
                Attrs::Scatter { axis: 1, size: 4 },
            ),
            (
                vec![t(d, &[]), t(DType::I32, &[])],
                Attrs::Scatter { axis: 0, size: 4 },
            ),
        ],
        Op::Argmax | Op::Argmin => vec![
            (vec![t(d, &[4, 3])], Attrs::Axis { axis: 0 }),
            (vec![t(d, &[4, 3])], Attrs::Axis { axis: 1 }),
            (vec![t(d, &[1])], Attrs::Axis { axis: 0 }),
            (vec![t(DType::I32, &[6])], Attrs::Axis { axis: 0 }),
        ],
        // Whole Philox blocks and a partial last one, in both dtypes.
        Op::RandomUniform => [vec![3, 4], vec![7]]
            .into_iter()
            .map(|shape| {
                let seeds = vec![t(DType::I32, &[]), t(DType::I32, &[])];
                (seeds, Attrs::Random { ty: t(d, &shape) })
            })
            .collect(),
        Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin => vec![
            (vec![t(d, &[2, 3, 4])], red(&[1], false)),
            (vec![t(d, &[2, 3, 4])], red(&[0, 2], true)),
            (vec![t(d, &[2, 3, 4])], red(&[0, 1, 2], false)),
            (vec![t(d, &[2, 3, 4])], red(&[1, 2], false)),
            (vec![t(d, &[5])], red(&[0], true)),
            (vec![t(d, &[])], red(&[], false)),
            (vec![t(d, &[3, 1])], red(&[], false)),
        ],
        Op::Reshape => vec![
            (vec![t(d, &[2, 3, 4])], Attrs::Shape { shape: vec![4, 6] }),
            (vec![t(d, &[])], Attrs::Shape { shape: vec![1, 1] }),
        ],
        Op::Transpose => vec![
            (
                vec![t(d, &[2, 3, 4])],
                Attrs::Perm {
                    perm: vec![2, 0, 1],
                },
            ),
            (vec![t(d, &[3, 5])], Attrs::Perm { perm: vec![1, 0] }),
        ],
        Op::Broadcast => vec![
            (
                vec![t(d, &[3, 1])],
                Attrs::Shape {
                    shape: vec![2, 3, 4],
                },
            ),
            (vec![t(d, &[])], Attrs::Shape { shape: vec![2, 2] }),
        ],
        Op::Slice => vec![
            (
                vec![t(d, &[4, 5])],
                Attrs::Slice {
                    start: vec![1, 2],
                    stop: vec![3, 5],
                },
            ),
            (
                vec![t(d, &[2, 3, 4])],
                Attrs::Slice {
                    start: vec![0, 1, 0],
                    stop: vec![2, 2, 4],
                },
            ),
        ],
        Op::Concat => vec![
            (
                vec![t(d, &[2, 1]), t(d, &[2, 3]), t(d, &[2, 2])],
                Attrs::Axis { axis: 1 },
            ),
            (vec![t(d, &[1, 3]), t(d, &[2, 3])], Attrs::Axis { axis: 0 }),
            (vec![t(d, &[4])], Attrs::Axis { axis: 0 }),
        ],
        Op::Cumsum => [false, true]
            .into_iter()
            .flat_map(|reverse| {
                let c = |axis| Attrs::Cumsum { axis, reverse };
                [
                    (vec![t(d, &[7])], c(0)),
                    (vec![t(d, &[1])], c(0)),
                    (vec![t(d, &[2, 3, 4])], c(0)),
                    (vec![t(d, &[2, 3, 4])], c(1)),
                    (vec![t(d, &[2, 3, 4])], c(2)),
                    (vec![t(d, &[3, 1, 5])], c(1)),
                ]
            })
            .collect(),
        Op::Matmul => vec![
            (vec![t(d, &[2, 3]), t(d, &[3, 4])], none),
            (vec![t(d, &[1, 1]), t(d, &[1, 1])], Attrs::None),
            (vec![t(d, &[2, 2, 3]), t(d, &[3, 2])], Attrs::None),
            (vec![t(d, &[2, 1, 2, 3]), t(d, &[3, 3, 2])], Attrs::None),
            // Above the loop-nest size: GEMM calls, one per batch matrix, with broadcasting.
            (vec![t(d, &[9, 70]), t(d, &[70, 20])], Attrs::None),
            (vec![t(d, &[3, 1, 17, 9]), t(d, &[2, 9, 13])], Attrs::None),
            (vec![t(d, &[5, 60]), t(d, &[2, 60, 1])], Attrs::None),
            // Size-1 batch dimensions, on both paths.
            (vec![t(d, &[1, 2, 3]), t(d, &[1, 3, 2])], Attrs::None),
            (vec![t(d, &[1, 9, 20]), t(d, &[2, 1, 20, 13])], Attrs::None),
        ],
        _ if gradlift::ops::rules(op).arity == gradlift::ops::Arity::Exact(1) => unary(),
        _ => binary(),
    }
}

/// A loop over 4 steps: carry `c' = tanh(c·k + x)` (`[2, 3]`, `x` broadcast along rows),
/// y `sum(c')` along rows; each result, forward and reverse.
fn scan_cases(d: DType) -> Vec<(Vec<TensorType>, Attrs)> {
    let b = GraphBuilder::new("body");
    let c = b.input("c", d, &[2, 3]);
    let x = b.input("x", d, &[3]);
    let k = b.input("k", d, &[2, 3]);
    let c2 = (c * k + x).tanh();
    let body = b.finish(&[("c2", c2), ("y", c2.sum_axes(&[0]))]).unwrap();
    let tys = vec![t(d, &[2, 3]), t(d, &[4, 3]), t(d, &[2, 3])];
    let mut out = Vec::new();
    for reverse in [false, true] {
        let lp = std::sync::Arc::new(gradlift::ir::loops::Loop {
            length: 4,
            reverse,
            n_carry: 1,
            n_xs: 1,
            body: body.clone(),
            checkpoint: None,
            recompute: None,
            exit: None,
        });
        for result in 0..2 {
            let attrs = Attrs::Scan {
                body: lp.clone(),
                result,
            };
            out.push((tys.clone(), attrs));
        }
    }
    out
}

fn domain(op: Op) -> Domain {
    match op {
        Op::Log | Op::Sqrt | Op::Rsqrt | Op::Log1p | Op::Pow => Domain::Positive,
        Op::Max | Op::Min | Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => Domain::Ties,
        Op::ReduceMax | Op::ReduceMin | Op::Argmax | Op::Argmin => Domain::Ties,
        _ => Domain::Any,
    }
}

// ---- every op --------------------------------------------------------------------------------

#[test]
fn every_op_matches_the_interpreter_bitwise_in_f32_and_f64() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut checked = 0;
    for op in Op::ALL {
        for d in [DType::F32, DType::F64] {
            for (tys, attrs) in cases(op, d) {
                let g = op_graph(op, &tys, attrs);
                let inputs: Vec<Tensor> = tys
                    .iter()
                    .map(|ty| tensor(ty, domain(op), &mut rng))
                    .collect();
                if op == Op::Matmul {
                    // Large products go to the tuned GEMM (another summation order).
                    check_matmul(&g, &inputs);
                } else {
                    // Same operation order, dtype and math functions as the interpreter:
                    // bitwise.
                    check(&g, &inputs, true);
                }
                checked += 1;
            }
        }
        if !matches!(op, Op::Input | Op::Const) {
            assert!(checked > 0, "{op} has no test case");
        }
    }
    assert!(checked > 150, "{checked} cases");
}

#[test]
fn data_movement_of_bool_values() {
    let b = GraphBuilder::new("bools");
    let x = b.input("x", DType::F32, &[2, 3]);
    let y = b.input("y", DType::F32, &[3]);
    let c = x.lt(y); // bool [2,3]
    let cat = b.concat(&[c.transpose(&[1, 0]), c.reshape(&[3, 2])], 1); // bool [3,4]
    let bc = c.slice(&[1, 0], &[2, 3]).broadcast_to(&[4, 2, 3]);
    let as_f = cat.cast(DType::F64);
    let outs = [cat.id(), bc.id(), as_f.id(), c.id()];
    let g = b.into_graph(&outs).unwrap();
    let mut rng = Rng(7);
    let ins = [
        tensor(&t(DType::F32, &[2, 3]), Domain::Ties, &mut rng),
        tensor(&t(DType::F32, &[3]), Domain::Ties, &mut rng),
    ];
    check(&g, &ins, true);
}

#[test]
fn special_values_follow_the_interpreter() {
    // ±0 ties, NaN and infinities, in both operand orders (every pair of the list).
    let vals = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        2.5,
    ];
    let n = vals.len();
    let a: Vec<f64> = (0..n * n).map(|i| vals[i / n]).collect();
    let b: Vec<f64> = (0..n * n).map(|i| vals[i % n]).collect();
    for d in [DType::F32, DType::F64] {
        let cast = |v: &[f64]| Tensor::from_fn(&t(d, &[n * n]), |i| v[i]);
        let ins = [cast(&a), cast(&b)];
        for op in [
            Op::Max,
            Op::Min,
            Op::Lt,
            Op::Le,
            Op::Gt,
            Op::Ge,
            Op::Eq,
            Op::Ne,
            Op::Add,
            Op::Atan2,
        ] {
            let g = op_graph(op, &[t(d, &[n * n]), t(d, &[n * n])], Attrs::None);
            check(&g, &ins, true);
        }
        for op in [
            Op::Relu,
            Op::Abs,
            Op::Neg,
            Op::Sqrt,
            Op::Exp,
            Op::Sigmoid,
            Op::Tanh,
            Op::Tan,
            Op::Erf,
            Op::Floor,
            Op::Ceil,
            Op::Round,
            Op::Sign,
        ] {
            let g = op_graph(op, &[t(d, &[n * n])], Attrs::None);
            check(&g, &ins[..1], true);
        }
        // Reductions over rows that contain NaN, ±0 and infinities.
        for op in [Op::ReduceMax, Op::ReduceMin, Op::ReduceSum, Op::ReduceMean] {
            let attrs = Attrs::Reduce {
                axes: vec![1],
                keepdims: false,
            };
            let g = op_graph(op, &[t(d, &[n, n])], attrs);
            let x = Tensor::from_fn(&t(d, &[n, n]), |i| b[i]);
            check(&g, &[x], true);
        }
    }
    // relu(-0) is +0 and max(-0, +0) is +0, whatever the order.
    let g = op_graph(Op::Relu, &[t(DType::F64, &[])], Attrs::None);
    let out = jit::compile(&g).unwrap().run(&[(-0.0).into()]).unwrap();
    assert_eq!(out[0].to_f64_vec()[0].to_bits(), 0.0f64.to_bits());
}

#[test]
fn constants_and_pass_through_outputs() {
    for d in [DType::F32, DType::F64] {
        let mut g = Graph::new("consts");
        let x = g.add_input("x", t(d, &[2, 3])).unwrap();
        let splat = g.add_const(Tensor::splat(&t(d, &[3]), -0.5));
        let table = g.add_const(Tensor::from_fn(&t(d, &[2, 3]), |i| i as f64 * 0.25 - 1.0));
        let flags = g.add_const(Tensor::new(vec![3], Data::Bool(vec![true, false, true])));
        let a = g.push(Op::Mul, vec![x, splat], Attrs::None).unwrap();
        let c = g.push(Op::Add, vec![a, table], Attrs::None).unwrap();
        let s = g.push(Op::Select, vec![flags, c, x], Attrs::None).unwrap();
        let tt = g
            .push(Op::Transpose, vec![table], Attrs::Perm { perm: vec![1, 0] })
            .unwrap();
        let m = g.push(Op::Matmul, vec![table, tt], Attrs::None).unwrap();
        // Outputs: computed values, an input, a splat constant, a table constant, a bool
        // constant.
        g.set_outputs(vec![s, x, splat, table, m, flags]);
        let mut rng = Rng(11);
        let k = check(&g, &[tensor(&t(d, &[2, 3]), Domain::Any, &mut rng)], true);
        assert_eq!(k.output_types().len(), 6);
    }
}

#[test]
fn gradient_graphs_match_the_interpreter() {
    for d in [DType::F32, DType::F64] {
        // A two-layer network with softmax cross-entropy.
        let b = GraphBuilder::new("mlp");
        let x = b.input("x", d, &[4, 3]);
        let w1 = b.input("w1", d, &[3, 5]);
        let b1 = b.input("b1", d, &[5]);
        let w2 = b.input("w2", d, &[5, 2]);
        let labels = b.input("labels", d, &[4, 2]);
        let h = (x.matmul(w1) + b1).tanh();
        let logits = h.matmul(w2);
        let loss = logits.cross_entropy(labels);
        let gr = b.grad(loss, &[w1, b1, w2, x]).unwrap();
        let mut outs = vec![loss.id()];
        outs.extend(gr.iter().map(|v| v.id()));
        let g = b.into_graph(&outs).unwrap();
        let mut rng = Rng(3);
        let ins: Vec<Tensor> = g
            .inputs()
            .iter()
            .map(|&i| tensor(g.ty(i), Domain::Any, &mut rng))
            .collect();
        check(&g, &ins, true);

        // A scalar function using most unary ops, and its gradient.
        let b = GraphBuilder::new("scalar");
        let p = b.input("p", d, &[]);
        let q = b.input("q", d, &[]);
        let y = (p * q).sin() + (p / q).exp().log1p() + p.powi(3) * q.sigmoid()
            - (q.abs() + 1.0).sqrt().rsqrt()
            + p.max(q).relu().expm1()
            + q.pow(p).cos()
            + p.min(q).tanh() * p.recip();
        let gr = b.grad(y, &[p, q]).unwrap();
        let gg = b.grad(gr[0], &[p, q]).unwrap(); // second order
        let outs = [y.id(), gr[0].id(), gr[1].id(), gg[0].id(), gg[1].id()];
        let g = b.into_graph(&outs).unwrap();
        let ins = [
            Tensor::splat(&t(d, &[]), 0.7),
            Tensor::splat(&t(d, &[]), 1.3),
        ];
        check(&g, &ins, true);

        // Reductions, broadcasting, slicing and concatenation in the adjoint.
        let b = GraphBuilder::new("shapes");
        let x = b.input("x", d, &[3, 4]);
        let v = b.input("v", d, &[4]);
        let z = (x * v).max_axes(&[1], true) + x.slice(&[1, 0], &[3, 4]).mean();
        let z = b
            .concat(&[z, x.min_axes(&[1], true)], 0)
            .softmax(0)
            .powi(2)
            .sum();
        let gr = b.grad(z, &[x, v]).unwrap();
        let outs = [z.id(), gr[0].id(), gr[1].id()];
        let g = b.into_graph(&outs).unwrap();
        let mut rng = Rng(5);
        let ins: Vec<Tensor> = g
            .inputs()
            .iter()
            .map(|&i| tensor(g.ty(i), Domain::Any, &mut rng))
            .collect();
        check(&g, &ins, true);
    }
}

#[test]
fn small_functions_and_threads_give_the_same_answers() {
    let b = GraphBuilder::new("split");
    let x = b.input("x", DType::F64, &[3]);
    let w = b.input("w", DType::F64, &[3, 3]);
    let mut h = x;
    for _ in 0..6 {
        h = (w.matmul(h.reshape(&[3, 1])).reshape(&[3]) + x).tanh();
    }
    let y = h.sum();
    let gr = b.grad(y, &[x, w]).unwrap();
    let outs = [y.id(), gr[0].id(), gr[1].id()];
    let g = b.into_graph(&outs).unwrap();
    let mut rng = Rng(9);
    let ins: Vec<Tensor> = g
        .inputs()
        .iter()
        .map(|&i| tensor(g.ty(i), Domain::Any, &mut rng))
        .collect();
    let want = interp::run(&g, &ins).unwrap();
    for exact_math in [true, false] {
        for (per, threads) in [(1, 1), (3, 2), (7, 3), (2000, 1)] {
            let cfg = JitConfig {
                max_ops_per_function: per,
                threads,
                exact_math,
                ..JitConfig::default()
            };
            let k = jit::compile_with(&g, &cfg).unwrap();
            if per < 10 {
                assert!(k.function_count() > 5, "{per}: {}", k.function_count());
            }
            let got = k.run(&ins).unwrap();
            for (w, o) in want.iter().zip(&got) {
                let ok = if exact_math {
                    same_bits(w, o)
                } else {
                    close(w, o)
                };
                assert!(
                    ok,
                    "per={per} threads={threads} exact={exact_math}: {w:?} vs {o:?}"
                );
            }
        }
    }
}

#[test]
fn graphs_without_code_still_copy_their_outputs() {
    let g = Graph::new("empty");
    let k = jit::compile(&g).unwrap();
    assert_eq!(k.function_count(), 0);
    assert!(k.run(&[]).unwrap().is_empty());

    // Outputs that are an input and a constant need no code, only copies.
    let mut g = Graph::new("pass");
    let x = g.add_input("x", t(DType::Bool, &[2])).unwrap();
    let c = g.add_const(Tensor::from_f32(vec![2], vec![1.5, -2.0]));
    g.set_outputs(vec![c, x]);
    let k = jit::compile(&g).unwrap();
    assert_eq!(k.function_count(), 0);
    assert_eq!(k.output_names(), ["1".to_string(), "x".to_string()]);
    let out = k
        .run(&[Tensor::new(vec![2], Data::Bool(vec![false, true]))])
        .unwrap();
    assert_eq!(out[0], Tensor::from_f32(vec![2], vec![1.5, -2.0]));
    assert_eq!(out[1].data(), &Data::Bool(vec![false, true]));
}

#[test]
fn dead_nodes_get_no_code_and_chains_fuse_into_one_loop() {
    let b = GraphBuilder::new("dead");
    let x = b.input("x", DType::F64, &[16]);
    let _unused = x.exp().sin(); // 2 dead nodes
    let y = ((x * 2.0).tanh() * 3.0).sum();
    let outs = [y.id()];
    let g = b.into_graph(&outs).unwrap();
    let k = jit::compile(&g).unwrap();
    let st = k.stats();
    assert_eq!(st.nodes_dead, 2, "{st}");
    // mul, tanh, mul and sum get code, in one loop; no value but the sum reaches memory.
    assert_eq!(st.nodes_compiled, 4, "{st}");
    assert_eq!(st.groups, 1, "{st}");
    assert_eq!(st.nodes_fused, 3, "{st}");
    assert_eq!(k.workspace_bytes(), 0, "{st}");
    let xs: Vec<f64> = (0..16).map(|i| i as f64 / 8.0 - 1.0).collect();
    let mut y = [0.0];
    let mut ws = k.workspace();
    k.call(
        &[xs.as_slice().into()],
        &mut [y.as_mut_slice().into()],
        &mut ws,
    )
    .unwrap();
    let want: f64 = xs.iter().map(|x| (x * 2.0).tanh() * 3.0).sum();
    assert!(
        (y[0] - want).abs() <= 1e-14 * want.abs(),
        "{} vs {want}",
        y[0]
    );
}

#[test]
fn dead_values_lend_their_memory_and_elementwise_ops_work_in_place() {
    // Each matmul reads a different operand, so every value is stored; a value's range is
    // reused once it is dead, and `relu(m1)·0.5 + 1` may overwrite m1 (read only at its own
    // index, dead afterwards). (Groups with transcendentals never work in place: they may
    // run twice.)
    let b = GraphBuilder::new("reuse");
    let w = b.input("w", DType::F64, &[8, 8]);
    let x = b.input("x", DType::F64, &[8, 8]);
    let m1 = x.matmul(w);
    let h1 = m1.relu() * 0.5 + 1.0;
    let m2 = h1.matmul(w);
    let h2 = m2.relu() * 0.5 + 1.0;
    let m3 = h2.matmul(w);
    let outs = [m3.id()];
    let g = b.into_graph(&outs).unwrap();
    let k = jit::compile(&g).unwrap();
    let st = k.stats();
    assert!(st.buffers_in_place >= 2, "{st}");
    // m1/h1 share a range, m2/h2 another one (m2 needs a range distinct from h1's).
    assert_eq!(k.workspace_bytes(), 2 * 8 * 8 * 8, "{st}");
    let mut rng = Rng(13);
    let ins: Vec<Tensor> = g
        .inputs()
        .iter()
        .map(|&i| tensor(g.ty(i), Domain::Any, &mut rng))
        .collect();
    check(&g, &ins, true);
}

// ---- matmul via the tuned GEMM ---------------------------------------------------------------

fn random_inputs_for(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng(seed);
    g.inputs()
        .iter()
        .map(|&i| tensor(g.ty(i), Domain::Any, &mut rng))
        .collect()
}

#[test]
fn transposes_feeding_matmuls_are_strides_not_copies() {
    for d in [DType::F32, DType::F64] {
        // (name, build) → expected (views, matmuls on the GEMM).
        type Build = fn(&GraphBuilder, DType) -> Vec<NodeId>;
        let cases: [(&str, Build, u64, u64); 6] = [
            (
                "a_t",
                |b, d| {
                    let a = b.input("a", d, &[30, 12]); // stored k×m
                    let w = b.input("w", d, &[30, 7]);
                    vec![a.mt().matmul(w).id()]
                },
                1,
                1,
            ),
            (
                "b_t",
                |b, d| {
                    let a = b.input("a", d, &[12, 30]);
                    let w = b.input("w", d, &[7, 30]); // stored n×k
                    vec![a.matmul(w.mt()).id()]
                },
                1,
                1,
            ),
            (
                "both_t_batched",
                |b, d| {
                    let a = b.input("a", d, &[3, 30, 12]);
                    let w = b.input("w", d, &[7, 30]);
                    let wt = w.mt();
                    vec![a.mt().matmul(wt.mt().mt()).id()]
                },
                4,
                1,
            ),
            (
                "batch_perm",
                |b, d| {
                    // A transpose that moves a batch axis: still strides.
                    let a = b.input("a", d, &[12, 2, 30]);
                    let w = b.input("w", d, &[30, 9]);
                    vec![a.transpose(&[1, 0, 2]).matmul(w).id()]
                },
                1,
                1,
            ),
            (
                "shared_by_two_matmuls",
                |b, d| {
                    let a = b.input("a", d, &[30, 12]);
                    let w = b.input("w", d, &[30, 7]);
                    let v = b.input("v", d, &[30, 5]);
                    let at = a.mt();
                    vec![at.matmul(w).id(), at.matmul(v).id()]
                },
                1,
                2,
            ),
            (
                "also_an_output",
                |b, d| {
                    // The transpose is an output itself: materialized once, not fused.
                    let a = b.input("a", d, &[30, 12]);
                    let w = b.input("w", d, &[30, 7]);
                    let at = a.mt();
                    vec![at.matmul(w).id(), at.id()]
                },
                0,
                1,
            ),
        ];
        for (name, build, fused, gemms) in cases {
            let b = GraphBuilder::new(name);
            let outs = build(&b, d);
            let g = b.into_graph(&outs).unwrap();
            let k = check_matmul(&g, &random_inputs_for(&g, 17));
            // Every transpose is a view (chains compose), read by the matmul through strides;
            // only a transpose that is an output is copied.
            let st = k.stats();
            assert_eq!(
                (st.views, st.matmuls_gemm),
                (fused, gemms),
                "{name} {d}: {st}"
            );
        }
    }
}

#[test]
fn small_products_and_splat_constants_keep_the_exact_loop_nest() {
    for d in [DType::F32, DType::F64] {
        let b = GraphBuilder::new("small");
        let a = b.input("a", d, &[4, 4]);
        let x = b.input("x", d, &[20, 30]);
        let half = b.constant(Tensor::splat(&t(d, &[30, 20]), 0.5));
        let small = a.matmul(a.mt()); // 64 multiply-adds: loop nest
        let by_splat = x.matmul(half); // splat operand: no memory to hand to the GEMM
        let by_splat_t = half.mt().matmul(x.mt()); // fused transpose of a splat
        let outs = [small.id(), by_splat.id(), by_splat_t.id()];
        let g = b.into_graph(&outs).unwrap();
        // The loop nest sums in the interpreter's order: bitwise.
        let k = check(&g, &random_inputs_for(&g, 5), true);
        assert_eq!(k.stats().matmuls_gemm, 0, "{}", k.stats());
        assert_eq!(k.stats().views, 3, "{}", k.stats());
    }
}

#[test]
fn dense_layer_gradients_fuse_their_transposes_and_meet_the_bound() {
    for d in [DType::F32, DType::F64] {
        // y = Σ c ⊙ (x·w): the adjoint seeds ∂y/∂(x·w) = c exactly, so dW = xᵀ·c and
        // dX = c·wᵀ are pure products of inputs (the bound of `check_matmul` applies).
        let b = GraphBuilder::new("dense");
        let x = b.input("x", d, &[16, 40]);
        let w = b.input("w", d, &[40, 24]);
        let c = b.input("c", d, &[16, 24]);
        let y = (x.matmul(w) * c).sum();
        let gr = b.grad(y, &[x, w]).unwrap();
        let outs = [gr[0].id(), gr[1].id()];
        let g = b.into_graph(&outs).unwrap();
        let k = check_matmul(&g, &random_inputs_for(&g, 23));
        let st = k.stats();
        assert!(st.views >= 2, "{st}"); // xᵀ and wᵀ, plus the adjoint's broadcasts
        assert_eq!(st.matmuls_gemm, 2, "{st}"); // the forward product is dead
        // No transposed copy anywhere: the workspace cannot hold the adjoint seed c·1
        // ([16,24]) and a copy of xᵀ ([40,16]) at once.
        let size = d.size_bytes();
        assert!(
            k.workspace_bytes() < (16 * 24 + 40 * 16) * size,
            "{}",
            k.workspace_bytes()
        );
    }
}

/// An MLP-sized gradient graph (GEMM calls on every product).
fn mlp_grad_graph() -> Graph {
    let b = GraphBuilder::new("mlp_big");
    let x = b.input("x", DType::F32, &[32, 100]);
    let w1 = b.input("w1", DType::F32, &[100, 64]);
    let w2 = b.input("w2", DType::F32, &[64, 10]);
    let labels = b.input("labels", DType::F32, &[32, 10]);
    let logits = x.matmul(w1).relu().matmul(w2);
    let loss = logits.cross_entropy(labels);
    let gr = b.grad(loss, &[w1, w2]).unwrap();
    let outs = [loss.id(), gr[0].id(), gr[1].id()];
    b.into_graph(&outs).unwrap()
}

#[test]
fn gemm_results_are_bitwise_reproducible() {
    let g = mlp_grad_graph();
    let ins = random_inputs_for(&g, 99);
    let k = jit::compile(&g).unwrap();
    assert!(k.stats().matmuls_gemm >= 4, "{}", k.stats());
    let first = k.run(&ins).unwrap();
    // Other buffer addresses and alignments (inputs copied to offset 1 of a larger vector),
    // a reused workspace, a second kernel compiled from the same graph, and other threads.
    let shifted: Vec<Vec<f32>> = ins
        .iter()
        .map(|t| {
            let mut v = vec![0f32];
            v.extend(t.to_f64_vec().iter().map(|&x| x as f32));
            v
        })
        .collect();
    let k2 = jit::compile(&g).unwrap();
    let mut ws = k2.workspace();
    for _ in 0..3 {
        let mut outs: Vec<Tensor> = first.iter().map(|t| Tensor::splat(&t.ty(), 0.0)).collect();
        let bufs: Vec<Buf<'_>> = shifted.iter().map(|v| Buf::F32(&v[1..])).collect();
        let mut obufs: Vec<BufMut<'_>> = outs.iter_mut().map(BufMut::from).collect();
        k2.call(&bufs, &mut obufs, &mut ws).unwrap();
        drop(obufs);
        for (a, b) in first.iter().zip(&outs) {
            assert!(same_bits(a, b), "{a:?} vs {b:?}");
        }
    }
    let k = Arc::new(k);
    let ins = Arc::new(ins);
    let first = Arc::new(first);
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let (k, ins, first) = (Arc::clone(&k), Arc::clone(&ins), Arc::clone(&first));
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let out = k.run(&ins).unwrap();
                    for (a, b) in first.iter().zip(&out) {
                        assert!(same_bits(a, b));
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

// ---- bad calls -----------------------------------------------------------------------------

#[test]
fn wrong_buffers_are_errors_not_panics() {
    let b = GraphBuilder::new("f");
    let x = b.input("x", DType::F64, &[3]);
    let m = b.input("m", DType::Bool, &[3]);
    let y = b.select(m, x.exp(), x);
    let s = y.sum();
    let outs = [y.id(), s.id()];
    let g = b.into_graph(&outs).unwrap();
    let k = jit::compile(&g).unwrap();
    let other = jit::compile(&g).unwrap();
    let xs = [1.0, 2.0, 3.0];
    let ms = [true, false, true];
    let mut y = [0.0; 3];
    let mut s = [0.0; 1];
    let mut ws = k.workspace();
    let ok_in = [Buf::F64(&xs), Buf::Bool(&ms)];

    // The right call works, and its answer is independent of the interpreter's.
    {
        let mut outs = [BufMut::F64(&mut y), BufMut::F64(&mut s)];
        k.call(&ok_in, &mut outs, &mut ws).unwrap();
    }
    assert_eq!(y, [1f64.exp(), 2.0, 3f64.exp()]);
    assert_eq!(s, [1f64.exp() + 2.0 + 3f64.exp()]);

    let mut y32 = [0f32; 3];
    let mut short = [0.0; 2];
    let cases: Vec<(Vec<Buf<'_>>, u8)> = vec![
        (vec![Buf::F64(&xs)], 0),                                // too few inputs
        (vec![Buf::F64(&xs), Buf::Bool(&ms), Buf::F64(&xs)], 0), // too many
        (vec![Buf::F64(&xs[..2]), Buf::Bool(&ms)], 0),           // short input
        (vec![Buf::Bool(&ms), Buf::Bool(&ms)], 0),               // wrong dtype
        (vec![Buf::F64(&xs), Buf::F64(&xs)], 0),                 // wrong dtype (bool slot)
        (ok_in.to_vec(), 1),                                     // too few outputs
        (ok_in.to_vec(), 2),                                     // f32 output buffer
        (ok_in.to_vec(), 3),                                     // short output buffer
    ];
    for (ins, outs_kind) in cases {
        let r = match outs_kind {
            0 => k.call(
                &ins,
                &mut [BufMut::F64(&mut y), BufMut::F64(&mut s)],
                &mut ws,
            ),
            1 => k.call(&ins, &mut [BufMut::F64(&mut y)], &mut ws),
            2 => k.call(
                &ins,
                &mut [BufMut::F32(&mut y32), BufMut::F64(&mut s)],
                &mut ws,
            ),
            _ => k.call(
                &ins,
                &mut [BufMut::F64(&mut y), BufMut::F64(&mut short)],
                &mut ws,
            ),
        };
        let e = r.expect_err("bad buffers must be rejected");
        let msg = e.to_string();
        match e {
            CallError::InputCount { .. } | CallError::OutputCount { .. } => {}
            CallError::InputBuffer { ref name, .. } | CallError::OutputBuffer { ref name, .. } => {
                assert!(
                    msg.contains(name.as_str()) && msg.contains("expected"),
                    "{msg}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // A workspace of another kernel (even of an identical graph) is refused.
    let mut foreign = other.workspace();
    let e = k
        .call(
            &ok_in,
            &mut [BufMut::F64(&mut y), BufMut::F64(&mut s)],
            &mut foreign,
        )
        .unwrap_err();
    assert_eq!(e, CallError::ForeignWorkspace);
    // `run` checks shapes too.
    let e = k
        .run(&[
            Tensor::from_f64(vec![1, 3], xs.to_vec()),
            Tensor::new(vec![3], Data::Bool(ms.to_vec())),
        ])
        .unwrap_err();
    assert!(matches!(e, CallError::InputType { index: 0, .. }), "{e}");
    assert!(k.run(&[]).is_err());
}

#[test]
fn invalid_graphs_are_compile_errors() {
    let mut g = Graph::new("bad");
    let x = g.add_input("x", t(DType::F64, &[])).unwrap();
    g.set_outputs(vec![x, NodeId(7)]);
    let e = jit::compile(&g).unwrap_err();
    assert!(matches!(e, jit::JitError::InvalidGraph(_)), "{e:?}");
    assert!(std::error::Error::source(&e).is_some());
}

// ---- threads and memory --------------------------------------------------------------------

#[test]
fn sixteen_threads_share_one_kernel() {
    let b = GraphBuilder::new("shared");
    let x = b.input("x", DType::F64, &[8]);
    let y = (x * x).sin().sum();
    let gr = b.grad(y, &[x]).unwrap();
    let outs = [y.id(), gr[0].id()];
    let g = b.into_graph(&outs).unwrap();
    let k = Arc::new(jit::compile(&g).unwrap());
    let handles: Vec<_> = (0..16)
        .map(|tid| {
            let k = Arc::clone(&k);
            std::thread::spawn(move || {
                let mut ws = k.workspace();
                let mut y = [0.0];
                let mut dx = [0.0; 8];
                for round in 0..200 {
                    let xs: Vec<f64> = (0..8)
                        .map(|i| (tid * 8 + i + round) as f64 * 0.01)
                        .collect();
                    k.call(
                        &[Buf::F64(&xs)],
                        &mut [BufMut::F64(&mut y), BufMut::F64(&mut dx)],
                        &mut ws,
                    )
                    .unwrap();
                    // Hand-derived: y = Σ sin(x²), dy/dx = 2x·cos(x²).
                    let want: f64 = xs.iter().map(|x| (x * x).sin()).sum();
                    assert!((y[0] - want).abs() < 1e-12, "thread {tid}");
                    for (d, x) in dx.iter().zip(&xs) {
                        assert!((d - 2.0 * x * (x * x).cos()).abs() < 1e-12, "thread {tid}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Runs the memory probe below in a process of its own: RSS is per process, and the other tests
/// of this binary run on parallel threads and allocate freely, which made an in-process
/// measurement flaky.
#[test]
fn compiling_and_dropping_kernels_does_not_grow_memory() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "jit::memory_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "memory probe failed:\n{text}");
    assert!(text.contains("1 passed"), "the probe did not run:\n{text}");
}

/// The measurement behind `compiling_and_dropping_kernels_does_not_grow_memory` (ignored when
/// run with the others; that test runs it alone in a child process).
#[test]
#[ignore = "run alone in a child process by compiling_and_dropping_kernels_does_not_grow_memory"]
fn memory_probe() {
    let b = GraphBuilder::new("tiny");
    let x = b.input("x", DType::F64, &[4]);
    let y = (x.exp() * x).sum();
    let gr = b.grad(y, &[x]).unwrap();
    let outs = [y.id(), gr[0].id()];
    let g = b.into_graph(&outs).unwrap();
    let cfg = JitConfig {
        verifier: false,
        ..JitConfig::default()
    };
    let cycle = || {
        let k = jit::compile_with(&g, &cfg).unwrap();
        let out = k.run(&[Tensor::from_f64(vec![4], vec![0.0; 4])]).unwrap();
        assert_eq!(out[0].scalar_value(), Some(0.0));
    };
    for _ in 0..200 {
        cycle(); // warm up allocator caches
    }
    // RSS is process-wide and other tests allocate concurrently, so a round may see their
    // growth too; a leak grows every round. A leaked module costs at least one 4 KiB code
    // page: 2000 leaks would be ~8 MB or more.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let before = rss_bytes();
        for _ in 0..2000 {
            cycle();
        }
        let grown = rss_bytes().saturating_sub(before);
        if grown < 3 << 20 {
            return;
        }
        rounds.push(grown);
    }
    panic!("RSS grew by {rounds:?} bytes in each of 3 rounds of 2000 kernels");
}

// ---- large graphs --------------------------------------------------------------------------

/// A scalar chain of `n` forward nodes mixing cheap ops and libm calls, where every fourth
/// node also reads the node 5000 places earlier (long-range reuse), plus its adjoint.
fn long_chain(n: usize) -> Graph {
    let b = GraphBuilder::new("chain");
    let x = b.input("x", DType::F64, &[]);
    let (c1, c2, c3) = (
        b.scalar(DType::F64, 0.999),
        b.scalar(DType::F64, 1e-4),
        b.scalar(DType::F64, 0.5),
    );
    let mut vals = vec![x];
    while b.graph().len() < n {
        let i = vals.len();
        let prev = vals[i - 1];
        let v = match i % 4 {
            0 => prev * c1,
            1 => prev.sin(),
            2 => prev + vals[i.saturating_sub(5000)] * c2,
            _ => prev * prev * c3,
        };
        vals.push(v);
    }
    let y = *vals.last().unwrap();
    let gr = b.grad(y, &[x]).unwrap();
    let outs = [y.id(), gr[0].id()];
    b.into_graph(&outs).unwrap()
}

#[test]
fn a_long_chain_with_long_range_reuse_compiles_and_agrees() {
    let g = long_chain(20_000);
    assert!(g.len() > 55_000, "{} nodes", g.len());
    let k = check(&g, &[0.3.into()], true);
    assert!(k.function_count() > 10);
    // Dead values' workspace is reused: far less than one slot per node.
    assert!(
        k.workspace_bytes() < g.len() * 8 / 4,
        "{} bytes",
        k.workspace_bytes()
    );
}

/// Compile times of scalar chains plus adjoint. Run with
/// `cargo test --release --test it compile_times -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn compile_times() {
    for n in [1_000, 10_000, 100_000] {
        let g = long_chain(n);
        let cfg = JitConfig::default();
        let t0 = std::time::Instant::now();
        let k = jit::compile_with(&g, &cfg).unwrap();
        let dt = t0.elapsed();
        let one = JitConfig {
            threads: 1,
            ..JitConfig::default()
        };
        let t1 = std::time::Instant::now();
        drop(jit::compile_with(&g, &one).unwrap());
        let dt1 = t1.elapsed();
        println!(
            "{n} forward nodes ({} with adjoint): {dt:?} ({} functions), one thread {dt1:?}",
            g.len(),
            k.function_count()
        );
        let got = k.run(&[0.3.into()]).unwrap();
        let want = interp::run(&g, &[0.3.into()]).unwrap();
        assert!(same_bits(&got[1], &want[1]));
    }
    // Per-call time for y = x1² + x2, value and gradient.
    let b = GraphBuilder::new("seed");
    let x1 = b.input("x1", DType::F64, &[]);
    let x2 = b.input("x2", DType::F64, &[]);
    let y = x1 * x1 + x2;
    let d = b.grad(y, &[x1, x2]).unwrap();
    let outs = [y.id(), d[0].id(), d[1].id()];
    let g = b.into_graph(&outs).unwrap();
    let k = jit::compile(&g).unwrap();
    let mut ws = k.workspace();
    let (mut y, mut d1, mut d2) = ([0.0], [0.0], [0.0]);
    let iters = 10_000_000;
    let t0 = std::time::Instant::now();
    for i in 0..iters {
        let a = [i as f64];
        k.call(
            &[Buf::F64(&a), Buf::F64(&[4.0])],
            &mut [
                BufMut::F64(&mut y),
                BufMut::F64(&mut d1),
                BufMut::F64(&mut d2),
            ],
            &mut ws,
        )
        .unwrap();
        std::hint::black_box((&y, &d1, &d2));
    }
    println!(
        "y = x1^2 + x2 with gradient: {:?} per call",
        t0.elapsed() / iters
    );
}
