//! Every op's derivative rules, at random points, including broadcasting cases: the VJP and the
//! JVP against central finite differences in f64, the JVP against the VJP through the
//! dot-product identity ⟨J·v, w⟩ = ⟨v, Jᵀ·w⟩, and batched tangents/cotangents (a leading batch
//! axis) against the same rules applied one direction at a time. The loops are over `Op::ALL`,
//! so a new op without a case, or with one rule but not the other, fails here.

use crate::ir::{Attrs, DType, Graph, GraphBuilder, NodeId, Op, TensorType, Var};
use crate::{Tensor, interp};

pub(crate) use crate::testutil::Rng;

/// Where an op's operands are drawn from: magnitudes in `[lo, hi)`, with a random sign when
/// `signed` (keeps operands away from kinks at 0 and out of domain errors).
#[derive(Clone, Copy)]
struct Domain {
    lo: f64,
    hi: f64,
    signed: bool,
}
const POS: Domain = Domain {
    lo: 0.3,
    hi: 2.0,
    signed: false,
};
const ANY: Domain = Domain {
    lo: 0.2,
    hi: 1.5,
    signed: true,
};

struct Case {
    shapes: Vec<Vec<usize>>,
    attrs: Attrs,
    domain: Domain,
    /// The shape of an `i32` index operand appended after the float operands (a constant, see
    /// [`index_const`]), for `gather` and `scatter_add`.
    index: Option<Vec<usize>>,
}

fn case(shapes: &[&[usize]], attrs: Attrs, domain: Domain) -> Case {
    Case {
        shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        attrs,
        domain,
        index: None,
    }
}

/// A case with a float operand of `shape` and an index operand of `index` shape.
fn index_case(shape: &[usize], index: &[usize], attrs: Attrs) -> Case {
    Case {
        index: Some(index.to_vec()),
        ..case(&[shape], attrs, ANY)
    }
}

/// Indices with a repeat, one past any small axis (clamped high) and a negative one (clamped
/// to 0): `2, 0, 2, 7, -3, 1, ...`.
fn index_const(shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let pattern = [2, 0, 2, 7, -3, 1];
    Tensor::from_i32(shape.to_vec(), (0..n).map(|i| pattern[i % 6]).collect())
}

/// Ops with no gradient test case here.
fn without_cases(op: Op) -> bool {
    matches!(
        op,
        Op::Input | Op::Const | Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne
        // No derivative by definition; `stop_gradient_blocks_both_modes` checks it.
        | Op::StopGradient
        // Integer-valued or random results: no derivative (`index_ops_have_no_gradient`).
        | Op::Iota | Op::Argmax | Op::Argmin | Op::RandomUniform | Op::NumRanks | Op::AxisIndex
        // Derivatives are rules of a result group, not of one node (`ops::loops`); checked
        // against unrolled graphs and finite differences in `tests/it/loops.rs`.
        | Op::Scan
    )
}

/// The collectives on one rank: the world, or the one group `[[0]]`.
fn collective_cases(op: Op) -> Vec<Case> {
    use crate::ir::{Attrs as A, GroupParam, Groups};
    match op {
        Op::AllReduceSum | Op::AllReduceMean | Op::Pvary => {
            let w = || A::world(GroupParam::None);
            vec![case(&[&[]], w(), ANY), case(&[&[2, 3]], w(), ANY)]
        }
        Op::CollectiveBroadcast => vec![case(&[&[2, 3]], A::world(GroupParam::Root(0)), ANY)],
        Op::AllGather | Op::ReduceScatter => (0..2)
            .map(|axis| {
                let a = A::Group {
                    groups: Groups::new(vec![vec![0]]).unwrap(),
                    param: GroupParam::Axis(axis),
                };
                case(&[&[2, 3]], a, ANY)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Test cases per op (an empty list means "not differentiable; checked elsewhere").
fn cases(op: Op) -> Vec<Case> {
    use Attrs as A;
    let red = |axes: &[usize], keepdims| A::Reduce {
        axes: axes.to_vec(),
        keepdims,
    };
    match op {
        _ if without_cases(op) => vec![],
        Op::Gather => {
            let ax = |axis| A::Axis { axis };
            vec![
                index_case(&[4, 3], &[5], ax(0)),
                index_case(&[3, 4], &[2, 3], ax(1)),
                index_case(&[4], &[], ax(0)),
                // The result has a higher rank than `x` (the batched JVP must undo the lift).
                index_case(&[2, 5], &[2, 2], ax(1)),
            ]
        }
        Op::ScatterAdd => {
            let sc = |axis, size| A::Scatter { axis, size };
            vec![
                index_case(&[5, 3], &[5], sc(0, 4)),
                index_case(&[3, 2, 3], &[2, 3], sc(1, 4)),
                index_case(&[], &[], sc(0, 4)),
                index_case(&[2, 3], &[], sc(1, 5)),
            ]
        }
        Op::Log | Op::Sqrt | Op::Rsqrt | Op::Log1p => {
            vec![case(&[&[3, 2]], A::None, POS), case(&[&[]], A::None, POS)]
        }
        Op::Powi => [3, -2, 0, 1, 2]
            .iter()
            .map(|&n| case(&[&[3, 2]], A::Powi { n }, ANY))
            .collect(),
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Max | Op::Min => vec![
            case(&[&[3, 2], &[3, 2]], A::None, ANY),
            case(&[&[3, 1], &[2]], A::None, ANY),
            case(&[&[], &[4]], A::None, ANY),
            case(&[&[2, 1, 3], &[4, 1]], A::None, ANY),
        ],
        Op::Pow => vec![
            case(&[&[3, 2], &[3, 2]], A::None, POS),
            case(&[&[3, 1], &[2]], A::None, POS),
        ],
        Op::Select => vec![
            case(&[&[3, 2], &[3, 2], &[3, 2]], A::None, ANY),
            case(&[&[3, 2], &[1, 2], &[]], A::None, ANY),
        ],
        Op::Cast => vec![case(&[&[3]], A::Cast { to: DType::F64 }, ANY)],
        Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin => vec![
            case(&[&[3, 4]], red(&[0], false), ANY),
            case(&[&[3, 4]], red(&[1], true), ANY),
            case(&[&[3, 4]], red(&[0, 1], false), ANY),
            case(&[&[2, 3, 2]], red(&[0, 2], true), ANY),
        ],
        Op::Reshape => vec![case(&[&[3, 4]], A::Shape { shape: vec![2, 6] }, ANY)],
        Op::Transpose => vec![case(
            &[&[2, 3, 4]],
            A::Perm {
                perm: vec![2, 0, 1],
            },
            ANY,
        )],
        Op::Broadcast => vec![
            case(
                &[&[3, 1]],
                A::Shape {
                    shape: vec![2, 3, 4],
                },
                ANY,
            ),
            case(&[&[]], A::Shape { shape: vec![3] }, ANY),
        ],
        Op::Slice => vec![
            case(
                &[&[4, 5]],
                A::Slice {
                    start: vec![1, 0],
                    stop: vec![3, 4],
                },
                ANY,
            ),
            case(
                &[&[6]],
                A::Slice {
                    start: vec![0],
                    stop: vec![6],
                },
                ANY,
            ),
        ],
        Op::Concat => vec![
            case(&[&[2, 3], &[1, 3]], A::Axis { axis: 0 }, ANY),
            case(&[&[2, 1], &[2, 2], &[2, 1]], A::Axis { axis: 1 }, ANY),
        ],
        // One rank: each collective is the identity or a copy (ranks > 1:
        // `tests/it/collectives.rs`).
        op if crate::ops::collective::is_collective(op) => collective_cases(op),
        Op::Cumsum => vec![
            case(
                &[&[5]],
                A::Cumsum {
                    axis: 0,
                    reverse: false,
                },
                ANY,
            ),
            case(
                &[&[3, 4]],
                A::Cumsum {
                    axis: 1,
                    reverse: true,
                },
                ANY,
            ),
            case(
                &[&[2, 3, 2]],
                A::Cumsum {
                    axis: 1,
                    reverse: false,
                },
                ANY,
            ),
            case(
                &[&[3, 1]],
                A::Cumsum {
                    axis: 0,
                    reverse: true,
                },
                ANY,
            ),
        ],
        Op::Atan2 => vec![
            case(&[&[3, 2], &[3, 2]], A::None, ANY),
            case(&[&[3, 1], &[2]], A::None, ANY),
            case(&[&[], &[4]], A::None, ANY),
        ],
        Op::Matmul => vec![
            case(&[&[3, 4], &[4, 2]], A::None, ANY),
            case(&[&[2, 3, 4], &[4, 5]], A::None, ANY),
            case(&[&[2, 1, 3, 4], &[3, 4, 2]], A::None, ANY),
        ],
        // Remaining unary elementwise ops.
        _ => vec![case(&[&[3, 2]], A::None, ANY), case(&[&[]], A::None, ANY)],
    }
}

/// Appends inputs `x0, x1, ...` for a case and `y = op(x...)`; returns the inputs, `y` and random
/// operand values from the case's domain.
fn apply<'b>(
    b: &'b GraphBuilder,
    op: Op,
    c: &Case,
    rng: &mut Rng,
) -> (Vec<Var<'b>>, Var<'b>, Vec<Tensor>) {
    let mut xs = Vec::new();
    let mut vals = Vec::new();
    for (k, s) in c.shapes.iter().enumerate() {
        xs.push(b.input(&format!("x{k}"), DType::F64, s));
        let ty = TensorType::new(DType::F64, s.clone());
        vals.push(Tensor::from_fn(&ty, |_| {
            let m = rng.uniform(c.domain.lo, c.domain.hi);
            if c.domain.signed && rng.next_u64() & 1 == 1 {
                -m
            } else {
                m
            }
        }));
    }
    let mut args = xs.clone();
    if let Some(index) = &c.index {
        args.push(b.constant(index_const(index)));
    }
    if op == Op::Select {
        // The condition comes from the first float operand, so it is a bool.
        args[0] = xs[0].gt(xs[0].scalar_like(0.0));
    }
    let y = b.push(op, &args, c.attrs.clone());
    (xs, y, vals)
}

/// A random constant of `shape` (f64, uniform in [-1, 1)).
fn random_const<'b>(b: &'b GraphBuilder, shape: &[usize], rng: &mut Rng) -> Var<'b> {
    let ty = TensorType::new(DType::F64, shape.to_vec());
    b.constant(Tensor::from_fn(&ty, |_| rng.uniform(-1.0, 1.0)))
}

/// Builds `loss = sum(op(x...) * w)` with a fixed random weight `w`, appends its gradient and
/// returns the graph (outputs: loss, then one gradient per input) plus random operand values.
fn build(op: Op, c: &Case, rng: &mut Rng) -> (Graph, Vec<Tensor>) {
    let b = GraphBuilder::new("case");
    let (xs, y, vals) = apply(&b, op, c, rng);
    let wty = y.ty();
    let w = b.constant(Tensor::from_fn(&wty, |_| rng.uniform(-1.0, 1.0)));
    let loss = (y * w).sum();
    let grads = b.grad(loss, &xs).expect("grad builds");
    let mut outs = vec![("loss", loss)];
    let names: Vec<String> = (0..xs.len()).map(|k| format!("g{k}")).collect();
    for (k, g) in grads.iter().enumerate() {
        outs.push((names[k].as_str(), *g));
    }
    (b.finish(&outs).expect("graph builds"), vals)
}

/// Central finite difference of output 0 with respect to input `k`, element `i`.
fn central_difference(g: &Graph, vals: &[Tensor], k: usize, i: usize, h: f64) -> f64 {
    let at = |d: f64| {
        let mut v = vals.to_vec();
        let mut flat = v[k].to_f64_vec();
        flat[i] += d;
        v[k] = Tensor::from_f64(v[k].shape().to_vec(), flat);
        interp::run(g, &v).unwrap()[0].scalar_value().unwrap()
    };
    (at(h) - at(-h)) / (2.0 * h)
}

#[test]
fn every_vjp_matches_central_differences() {
    let mut rng = Rng(7);
    let mut checked = 0;
    for op in Op::ALL {
        for c in cases(op) {
            for _trial in 0..3 {
                let (g, vals) = build(op, &c, &mut rng);
                let out = interp::run(&g, &vals).unwrap();
                for k in 0..vals.len() {
                    let analytic = out[1 + k].to_f64_vec();
                    for (i, &a) in analytic.iter().enumerate() {
                        let fd = central_difference(&g, &vals, k, i, 1e-6);
                        let tol = 1e-6 * (1.0 + fd.abs());
                        assert!(
                            (a - fd).abs() <= tol,
                            "{op} operand {k} element {i}: vjp {a} vs finite difference {fd} \
                             (shapes {:?}, attrs {:?})",
                            c.shapes,
                            c.attrs
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 500, "only {checked} derivatives checked");
}

#[test]
fn every_differentiable_op_has_a_case() {
    for op in Op::ALL {
        let r = super::rules(op);
        if op == Op::Scan {
            continue; // group rules: see `cases`
        }
        assert_eq!(
            r.props.differentiable,
            r.vjp.is_some(),
            "{op}: props vs vjp"
        );
        assert_eq!(
            r.jvp.is_some(),
            r.vjp.is_some(),
            "{op}: a JVP rule goes with a VJP rule"
        );
        if r.vjp.is_some() {
            assert!(
                !cases(op).is_empty(),
                "{op} has a VJP but no gradient test case"
            );
        }
    }
}

#[test]
fn derivative_conventions_at_kinks_and_ties() {
    // relu'(0) = 0, abs'(0) = 0, max/min split ties equally, reduce_max splits among ties.
    let b = GraphBuilder::new("k");
    let x = b.input("x", DType::F64, &[]);
    let v = b.input("v", DType::F64, &[4]);
    let loss = x.relu() + x.abs() + x.max(x) + x.min(x.scalar_like(0.0)) + v.max_axes(&[0], false);
    let g = b.grad(loss, &[x, v]).unwrap();
    let graph = b
        .finish(&[("l", loss), ("gx", g[0]), ("gv", g[1])])
        .unwrap();
    let vv = Tensor::from_f64(vec![4], vec![1.0, 3.0, 3.0, 2.0]);
    let out = interp::run(&graph, &[0.0.into(), vv]).unwrap();
    // d/dx: relu 0 + abs 0 + max(x,x) (0.5 + 0.5) + min(x, 0) at the tie 0.5.
    assert_eq!(out[1].scalar_value(), Some(1.5));
    assert_eq!(out[2].to_f64_vec(), vec![0.0, 0.5, 0.5, 0.0]);
}

#[test]
fn composites_match_finite_differences() {
    let b = GraphBuilder::new("c");
    let z = b.input("z", DType::F64, &[3, 5]);
    let labels = b.input("labels", DType::F64, &[3, 5]);
    let loss = z.cross_entropy(labels) + z.logsumexp(1, false).sum() + z.softmax(0).powi(2).sum();
    let g = b.grad(loss, &[z]).unwrap();
    let graph = b.finish(&[("l", loss), ("g", g[0])]).unwrap();
    let mut rng = Rng(3);
    let zt = Tensor::from_fn(&TensorType::new(DType::F64, vec![3, 5]), |_| {
        rng.uniform(-3.0, 3.0)
    });
    let lt = Tensor::from_fn(&TensorType::new(DType::F64, vec![3, 5]), |i| {
        (i % 5 == i / 5) as u8 as f64
    });
    let vals = vec![zt, lt];
    let out = interp::run(&graph, &vals).unwrap();
    for (i, &a) in out[1].to_f64_vec().iter().enumerate() {
        let fd = central_difference(&graph, &vals, 0, i, 1e-6);
        assert!(
            (a - fd).abs() < 1e-6 * (1.0 + fd.abs()),
            "element {i}: {a} vs {fd}"
        );
    }
    // logsumexp is stable for large inputs: no overflow at 1000.
    let b = GraphBuilder::new("s");
    let z = b.input("z", DType::F64, &[2]);
    let graph = b.finish(&[("l", z.logsumexp(0, false))]).unwrap();
    let out = interp::run(&graph, &[Tensor::from_f64(vec![2], vec![1000.0, 1000.0])]).unwrap();
    assert!((out[0].scalar_value().unwrap() - (1000.0 + 2f64.ln())).abs() < 1e-9);
}

#[test]
fn second_derivative_by_nesting() {
    // d²/dx² of x³ = 6x; the gradient graph is differentiated again.
    let b = GraphBuilder::new("h");
    let x = b.input("x", DType::F64, &[]);
    let y = x.powi(3);
    let dx = b.grad(y, &[x]).unwrap()[0];
    let ddx = b.grad(dx, &[x]).unwrap()[0];
    let dddx = b.grad(ddx, &[x]).unwrap()[0];
    let g = b.finish(&[("d1", dx), ("d2", ddx), ("d3", dddx)]).unwrap();
    let out = interp::run(&g, &[2.0.into()]).unwrap();
    assert_eq!(out[0].scalar_value(), Some(12.0));
    assert_eq!(out[1].scalar_value(), Some(12.0));
    assert_eq!(out[2].scalar_value(), Some(6.0));
}

#[test]
fn shape_rules_reject_bad_operands() {
    let f = |s: &[usize]| TensorType::new(DType::F64, s.to_vec());
    let bad: Vec<(Op, Vec<TensorType>, Attrs)> = vec![
        (Op::Add, vec![f(&[2]), f(&[3])], Attrs::None),
        (
            Op::Add,
            vec![f(&[2]), TensorType::new(DType::F32, vec![2])],
            Attrs::None,
        ),
        (
            Op::Exp,
            vec![TensorType::new(DType::Bool, vec![2])],
            Attrs::None,
        ),
        (Op::Matmul, vec![f(&[2, 3]), f(&[2, 3])], Attrs::None),
        (Op::Matmul, vec![f(&[3]), f(&[3, 2])], Attrs::None),
        (
            Op::Reshape,
            vec![f(&[2, 3])],
            Attrs::Shape { shape: vec![5] },
        ),
        (
            Op::Transpose,
            vec![f(&[2, 3])],
            Attrs::Perm { perm: vec![0, 0] },
        ),
        (
            Op::Broadcast,
            vec![f(&[2, 3])],
            Attrs::Shape { shape: vec![3, 3] },
        ),
        (
            Op::Slice,
            vec![f(&[4])],
            Attrs::Slice {
                start: vec![2],
                stop: vec![2],
            },
        ),
        (
            Op::Concat,
            vec![f(&[2, 3]), f(&[2, 4])],
            Attrs::Axis { axis: 0 },
        ),
        (
            Op::ReduceSum,
            vec![f(&[2, 3])],
            Attrs::Reduce {
                axes: vec![2],
                keepdims: false,
            },
        ),
        (
            Op::ReduceSum,
            vec![f(&[2, 3])],
            Attrs::Reduce {
                axes: vec![1, 1],
                keepdims: false,
            },
        ),
        (Op::Cast, vec![f(&[2])], Attrs::Cast { to: DType::Bool }),
        (Op::Powi, vec![f(&[2])], Attrs::None),
        (Op::Select, vec![f(&[2]), f(&[2]), f(&[2])], Attrs::None),
        (Op::Add, vec![f(&[2])], Attrs::None),
    ];
    for (op, tys, attrs) in bad {
        let refs: Vec<&TensorType> = tys.iter().collect();
        let e = super::infer(op, &refs, &attrs).unwrap_err();
        assert_eq!(e.op, op);
        assert!(!e.message.is_empty());
    }
}

#[test]
fn grad_of_unused_input_is_zero_and_errors_are_typed() {
    let mut g = Graph::new("z");
    let x = g
        .add_input("x", TensorType::new(DType::F64, vec![2]))
        .unwrap();
    let u = g
        .add_input("u", TensorType::new(DType::F64, vec![3]))
        .unwrap();
    let y = g
        .push(
            Op::ReduceSum,
            vec![x],
            Attrs::Reduce {
                axes: vec![0],
                keepdims: false,
            },
        )
        .unwrap();
    let gr = crate::autodiff::grad(&mut g, y, &[u]).unwrap();
    g.set_outputs(vec![gr[0]]);
    let v = [
        Tensor::from_f64(vec![2], vec![1.0, 2.0]),
        Tensor::from_f64(vec![3], vec![1.0, 2.0, 3.0]),
    ];
    assert_eq!(interp::run(&g, &v).unwrap()[0].to_f64_vec(), vec![0.0; 3]);
    assert!(crate::autodiff::grad(&mut g, x, &[x]).is_err()); // not a scalar
    assert!(crate::autodiff::grad(&mut g, NodeId(999), &[x]).is_err());
}

/// Builds `y = op(x...)` and `ẏ = J·v` for a random direction `v` (constants); returns the graph
/// (outputs: y, ẏ), the point and the direction.
fn build_jvp(op: Op, c: &Case, rng: &mut Rng) -> (Graph, Vec<Tensor>, Vec<Tensor>) {
    let b = GraphBuilder::new("jvp");
    let (xs, y, vals) = apply(&b, op, c, rng);
    let vs: Vec<Var<'_>> = c.shapes.iter().map(|s| random_const(&b, s, rng)).collect();
    let dirs = vs
        .iter()
        .map(|v| b.graph().node(v.id()).attrs.as_const().unwrap().clone())
        .collect();
    let t = b.jvp(&[y], &xs, &vs).expect("jvp builds")[0];
    (b.finish(&[("y", y), ("t", t)]).unwrap(), vals, dirs)
}

#[test]
fn every_jvp_matches_central_differences() {
    let mut rng = Rng(11);
    let mut checked = 0;
    for op in Op::ALL {
        for c in cases(op) {
            for _trial in 0..3 {
                let (g, vals, dirs) = build_jvp(op, &c, &mut rng);
                let analytic = interp::run(&g, &vals).unwrap()[1].to_f64_vec();
                // y(x + h·v) - y(x - h·v), elementwise over the output.
                let h = 1e-6;
                let at = |s: f64| {
                    let moved: Vec<Tensor> = vals
                        .iter()
                        .zip(&dirs)
                        .map(|(x, v)| {
                            let (xf, vf) = (x.to_f64_vec(), v.to_f64_vec());
                            let data = xf.iter().zip(vf).map(|(a, d)| a + s * h * d).collect();
                            Tensor::from_f64(x.shape().to_vec(), data)
                        })
                        .collect();
                    interp::run(&g, &moved).unwrap()[0].to_f64_vec()
                };
                let (plus, minus) = (at(1.0), at(-1.0));
                for (i, &a) in analytic.iter().enumerate() {
                    let fd = (plus[i] - minus[i]) / (2.0 * h);
                    assert!(
                        (a - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
                        "{op} element {i}: jvp {a} vs finite difference {fd} (shapes {:?}, \
                         attrs {:?})",
                        c.shapes,
                        c.attrs
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 300, "only {checked} tangents checked");
}

#[test]
fn jvp_and_vjp_satisfy_the_dot_product_identity() {
    // ⟨J·v, w⟩ = Σᵢ ⟨vᵢ, (Jᵀ·w)ᵢ⟩ for random points, directions v and cotangents w.
    let mut rng = Rng(13);
    let mut checked = 0;
    for op in Op::ALL {
        for c in cases(op) {
            for _trial in 0..3 {
                let b = GraphBuilder::new("dot");
                let (xs, y, vals) = apply(&b, op, &c, &mut rng);
                let vs: Vec<Var<'_>> = c
                    .shapes
                    .iter()
                    .map(|s| random_const(&b, s, &mut rng))
                    .collect();
                let w = random_const(&b, &y.shape(), &mut rng);
                let jv = b.jvp(&[y], &xs, &vs).unwrap()[0];
                let jtw = b.vjp(&[y], &xs, &[w]).unwrap();
                let lhs = (jv * w).sum();
                let rhs = vs
                    .iter()
                    .zip(&jtw)
                    .map(|(&v, &g)| (v * g).sum())
                    .reduce(|a, b| a + b)
                    .unwrap();
                let g = b.finish(&[("lhs", lhs), ("rhs", rhs)]).unwrap();
                let out = interp::run(&g, &vals).unwrap();
                let (l, r) = (
                    out[0].scalar_value().unwrap(),
                    out[1].scalar_value().unwrap(),
                );
                assert!(
                    (l - r).abs() <= 1e-12 * (1.0 + l.abs()),
                    "{op}: <Jv, w> = {l} but <v, J^T w> = {r} (shapes {:?}, attrs {:?})",
                    c.shapes,
                    c.attrs
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} identities checked");
}

/// Row `r` of a tensor with a leading batch axis, as f64s.
fn row(t: &Tensor, r: usize) -> Vec<f64> {
    let n = t.numel() / t.shape()[0];
    t.to_f64_vec()[r * n..(r + 1) * n].to_vec()
}

#[test]
fn batched_rules_equal_one_direction_at_a_time() {
    // A batch of k tangents (cotangents) stacked on a leading axis gives, row by row, what the
    // unbatched rules give for each direction alone: this checks every rule's handling of the
    // batch axis, including operands of lower rank than the output.
    let mut rng = Rng(17);
    let mut checked = 0;
    for op in Op::ALL {
        for c in cases(op) {
            checked += check_batched(&GraphBuilder::new("batch"), op, &c, &mut rng);
        }
    }
    assert!(checked > 500, "only {checked} batched values checked");
}

/// One case of `batched_rules_equal_one_direction_at_a_time`; returns the values checked.
fn check_batched<'b>(b: &'b GraphBuilder, op: Op, c: &Case, rng: &mut Rng) -> usize {
    const K: usize = 3;
    let (xs, y, vals) = apply(b, op, c, rng);
    let batched = |s: &[usize]| -> Vec<usize> { [K].iter().chain(s).copied().collect() };
    let vs: Vec<Var<'b>> = c
        .shapes
        .iter()
        .map(|s| random_const(b, &batched(s), rng))
        .collect();
    let ws = random_const(b, &batched(&y.shape()), rng);
    let mut outs = b.jvp_batched(&[y], &xs, &vs, K).unwrap();
    outs.extend(b.vjp_batched(&[y], &xs, &[ws], K).unwrap());
    let pick = |v: Var<'b>, r: usize| -> Var<'b> {
        let mut start = vec![0; v.shape().len()];
        let mut stop = v.shape();
        start[0] = r;
        stop[0] = r + 1;
        v.slice(&start, &stop).reshape(&v.shape()[1..])
    };
    for r in 0..K {
        let v1: Vec<Var<'b>> = vs.iter().map(|&v| pick(v, r)).collect();
        outs.extend(b.jvp(&[y], &xs, &v1).unwrap());
        outs.extend(b.vjp(&[y], &xs, &[pick(ws, r)]).unwrap());
    }
    let ids: Vec<NodeId> = outs.iter().map(|v| v.id()).collect();
    let g = b.into_graph(&ids).unwrap();
    let out = interp::run(&g, &vals).unwrap();
    let n = 1 + xs.len();
    let mut checked = 0;
    for r in 0..K {
        let single = &out[n * (r + 1)..n * (r + 2)];
        for (k, (bat, one)) in out[..n].iter().zip(single).enumerate() {
            let what = if k == 0 { "jvp" } else { "vjp" };
            assert_eq!(bat.shape()[0], K);
            assert_eq!(&bat.shape()[1..], one.shape(), "{op} {what} shape");
            for (a, e) in row(bat, r).iter().zip(one.to_f64_vec()) {
                assert!(
                    (a - e).abs() <= 1e-12 * (1.0 + e.abs()),
                    "{op} {what} row {r}: batched {a} vs single {e} (shapes {:?}, attrs {:?})",
                    c.shapes,
                    c.attrs
                );
                checked += 1;
            }
        }
    }
    checked
}

#[test]
fn stop_gradient_blocks_both_modes() {
    // y = x · sg(x): the value is x², the derivative treats sg(x) as a constant: x (not 2x).
    let b = GraphBuilder::new("sg");
    let x = b.input("x", DType::F64, &[3]);
    let y = x * x.stop_gradient();
    let gr = b.grad(y.sum(), &[x]).unwrap()[0];
    let ones = b.constant(Tensor::from_f64(vec![3], vec![1.0; 3]));
    let fwd = b.jvp(&[y], &[x], &[ones]).unwrap()[0];
    let g = b.finish(&[("y", y), ("g", gr), ("t", fwd)]).unwrap();
    let xv = Tensor::from_f64(vec![3], vec![1.0, -2.0, 3.0]);
    let out = interp::run(&g, &[xv]).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![1.0, 4.0, 9.0]);
    assert_eq!(out[1].to_f64_vec(), vec![1.0, -2.0, 3.0]);
    assert_eq!(out[2].to_f64_vec(), vec![1.0, -2.0, 3.0]);
}

#[test]
fn symbolic_zero_tangents_append_nothing() {
    // Only x has a tangent; the branch through the constant-only subgraph adds no nodes.
    let b = GraphBuilder::new("z");
    let x = b.input("x", DType::F64, &[]);
    let u = b.input("u", DType::F64, &[]);
    let y = x.exp() + (u * 2.0).sin();
    let before = b.graph().len();
    let one = b.scalar(DType::F64, 1.0);
    let t = b.jvp(&[y], &[x], &[one]).unwrap()[0];
    // exp's tangent (t·y) and the add's pass-through: one mul, nothing for sin/mul on u.
    assert_eq!(
        b.graph().len() - before,
        2,
        "{:?}",
        b.graph().nodes()[before..].to_vec()
    );
    let g = b.finish(&[("t", t)]).unwrap();
    let out = interp::run(&g, &[1.0.into(), 5.0.into()]).unwrap();
    assert_eq!(out[0].scalar_value(), Some(1f64.exp()));
}
