//! Every op's VJP against central finite differences in f64, at random points, including
//! broadcasting cases. The loop is over `Op::ALL`, so a new op without a case fails here.

use crate::ir::{Attrs, DType, Graph, GraphBuilder, NodeId, Op, TensorType};
use crate::{Tensor, interp};

/// A deterministic generator (splitmix64).
pub(crate) struct Rng(pub u64);
impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

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
}

fn case(shapes: &[&[usize]], attrs: Attrs, domain: Domain) -> Case {
    Case {
        shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        attrs,
        domain,
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
        Op::Input | Op::Const | Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => vec![],
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
        Op::Matmul => vec![
            case(&[&[3, 4], &[4, 2]], A::None, ANY),
            case(&[&[2, 3, 4], &[4, 5]], A::None, ANY),
            case(&[&[2, 1, 3, 4], &[3, 4, 2]], A::None, ANY),
        ],
        // Remaining unary elementwise ops.
        _ => vec![case(&[&[3, 2]], A::None, ANY), case(&[&[]], A::None, ANY)],
    }
}

/// Builds `loss = sum(op(x...) * w)` with a fixed random weight `w`, appends its gradient and
/// returns the graph (outputs: loss, then one gradient per input) plus random operand values.
fn build(op: Op, c: &Case, rng: &mut Rng) -> (Graph, Vec<Tensor>) {
    let b = GraphBuilder::new("case");
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
    if op == Op::Select {
        // The condition comes from the first float operand, so it is a bool.
        args[0] = xs[0].gt(xs[0].scalar_like(0.0));
    }
    let y = b.push(op, &args, c.attrs.clone());
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
        assert_eq!(
            r.props.differentiable,
            r.vjp.is_some(),
            "{op}: props vs vjp"
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
