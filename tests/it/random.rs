//! A seeded random-graph generator for property tests: many ops, ranks 0-3, f32/f64,
//! broadcasting, DAG reuse, and (optionally) an appended gradient.

use gradlift::ir::{Attrs, DType, Graph, NodeId, Op, TensorType};
use gradlift::{Tensor, autodiff};

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SHAPES: [&[usize]; 7] = [&[], &[3], &[2, 3], &[1, 3], &[2, 1], &[3, 2], &[2, 2, 3]];

/// A random graph with `steps` attempted ops. Outputs: up to three late nodes, and, when
/// `with_grad`, the gradient of a scalar sum of a float node with respect to every input.
pub fn random_graph(seed: u64, steps: usize, with_grad: bool) -> Graph {
    let shapes: Vec<Vec<usize>> = SHAPES.iter().map(|s| s.to_vec()).collect();
    generate(seed, steps, with_grad, &shapes, usize::MAX)
}

/// [`random_graph`] with input and constant shapes drawn from `shapes` (for example long ones
/// that exercise vector tails, unrolling and threads). Ops whose result would have more than
/// four times the elements of the largest shape are skipped (`matmul(a, aᵀ)` of a long `a`).
pub fn random_graph_shaped(
    seed: u64,
    steps: usize,
    with_grad: bool,
    shapes: &[Vec<usize>],
) -> Graph {
    let max_numel = 4 * shapes
        .iter()
        .map(|s| s.iter().product::<usize>())
        .max()
        .unwrap_or(1);
    generate(seed, steps, with_grad, shapes, max_numel)
}

fn generate(
    seed: u64,
    steps: usize,
    with_grad: bool,
    shapes: &[Vec<usize>],
    max_numel: usize,
) -> Graph {
    let mut r = Rng(seed);
    let dtype = if r.below(2) == 0 {
        DType::F64
    } else {
        DType::F32
    };
    let mut g = Graph::new("random");
    let n_inputs = 1 + r.below(3);
    for i in 0..n_inputs {
        let shape = shapes[r.below(shapes.len())].to_vec();
        g.add_input(&format!("x{i}"), TensorType::new(dtype, shape))
            .unwrap();
    }
    if r.below(2) == 0 {
        let shape = shapes[r.below(shapes.len())].to_vec();
        let ty = TensorType::new(dtype, shape);
        let mut rr = Rng(r.next_u64());
        g.add_const(Tensor::from_fn(&ty, |_| rr.uniform(-2.0, 2.0)));
    }
    for _ in 0..steps {
        let pick = |r: &mut Rng, g: &Graph| {
            // Prefer recent nodes, sometimes reach far back (DAG reuse).
            let n = g.len();
            if r.below(3) == 0 {
                NodeId(r.below(n) as u32)
            } else {
                NodeId((n - 1 - r.below(n.min(4))) as u32)
            }
        };
        let a = pick(&mut r, &g);
        let b = pick(&mut r, &g);
        let ta = g.ty(a).clone();
        let op = Op::ALL[2 + r.below(Op::ALL.len() - 2)];
        let rank = ta.rank();
        let (inputs, attrs) = match op {
            Op::Powi => (
                vec![a],
                Attrs::Powi {
                    n: r.below(7) as i32 - 3,
                },
            ),
            Op::Cast => (
                vec![a],
                Attrs::Cast {
                    to: if r.below(2) == 0 {
                        DType::F32
                    } else {
                        DType::F64
                    },
                },
            ),
            Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin => {
                let axes = (0..rank).filter(|_| r.below(2) == 0).collect();
                (
                    vec![a],
                    Attrs::Reduce {
                        axes,
                        keepdims: r.below(2) == 0,
                    },
                )
            }
            Op::Reshape => {
                let shape = if r.below(2) == 0 {
                    vec![ta.numel()]
                } else {
                    ta.shape.iter().rev().copied().collect()
                };
                (vec![a], Attrs::Shape { shape })
            }
            Op::Transpose => (
                vec![a],
                Attrs::Perm {
                    perm: (0..rank).rev().collect(),
                },
            ),
            Op::Broadcast => {
                let mut shape = vec![2];
                shape.extend(ta.shape.iter().map(|&d| if d == 1 { 3 } else { d }));
                (vec![a], Attrs::Shape { shape })
            }
            Op::Slice => {
                let stop = ta
                    .shape
                    .iter()
                    .map(|&d| if d > 1 { d - 1 } else { d })
                    .collect();
                (
                    vec![a],
                    Attrs::Slice {
                        start: vec![0; rank],
                        stop,
                    },
                )
            }
            Op::Concat => (vec![a, b], Attrs::Axis { axis: 0 }),
            Op::Select => {
                let bools: Vec<usize> = (0..g.len())
                    .filter(|&i| g.nodes()[i].ty.dtype == DType::Bool)
                    .collect();
                if bools.is_empty() {
                    continue;
                }
                let c = NodeId(bools[r.below(bools.len())] as u32);
                (vec![c, a, b], Attrs::None)
            }
            Op::Matmul => {
                if rank >= 2 {
                    (
                        vec![
                            a,
                            g.push(
                                Op::Transpose,
                                vec![a],
                                Attrs::Perm {
                                    perm: (0..rank).rev().collect(),
                                },
                            )
                            .unwrap(),
                        ],
                        Attrs::None,
                    )
                } else {
                    continue;
                }
            }
            _ => match gradlift::ops::rules(op).arity {
                gradlift::ops::Arity::Exact(1) => (vec![a], Attrs::None),
                _ => (vec![a, b], Attrs::None),
            },
        };
        // Invalid combinations, and results larger than every input shape allows, are skipped.
        let tys: Vec<&TensorType> = inputs.iter().map(|&i| g.ty(i)).collect();
        if gradlift::ops::infer(op, &tys, &attrs).is_ok_and(|t| t.numel() <= max_numel) {
            let _ = g.push(op, inputs, attrs);
        }
    }
    let n = g.len();
    let mut outs: Vec<NodeId> = Vec::new();
    for k in 0..3.min(n) {
        let id = NodeId((n - 1 - k) as u32);
        if g.nodes()[id.index()].op != Op::Input {
            outs.push(id);
        }
    }
    if with_grad
        && let Some(f) = (0..n)
            .rev()
            .find(|&i| g.nodes()[i].ty.dtype.is_float() && g.nodes()[i].op != Op::Input)
    {
        let f = NodeId(f as u32);
        let s = g
            .push(
                Op::ReduceSum,
                vec![f],
                Attrs::Reduce {
                    axes: (0..g.ty(f).rank()).collect(),
                    keepdims: false,
                },
            )
            .unwrap();
        let wrt: Vec<NodeId> = g
            .inputs()
            .into_iter()
            .filter(|&i| g.ty(i).dtype.is_float())
            .collect();
        let grads = autodiff::grad(&mut g, s, &wrt).unwrap();
        outs.push(s);
        outs.extend(grads);
    }
    if outs.is_empty() {
        outs.push(g.inputs()[0]);
    }
    let names: Vec<String> = (0..outs.len()).map(|k| format!("out{k}")).collect();
    let named: Vec<(&str, NodeId)> = names.iter().map(|s| s.as_str()).zip(outs).collect();
    g.set_named_outputs(&named).unwrap();
    g
}

/// Random input values for `g` in [-2, 2), bools at random.
pub fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut r = Rng(seed);
    g.inputs()
        .iter()
        .map(|&i| Tensor::from_fn(g.ty(i), |_| r.uniform(-2.0, 2.0)))
        .collect()
}

/// Values agree: same shape and dtype, NaN where the other is NaN, else within `rel` relative
/// tolerance (0 means bitwise up to the sign of zero).
pub fn agree(a: &Tensor, b: &Tensor, rel: f64) -> bool {
    a.ty() == b.ty()
        && a.to_f64_vec().iter().zip(b.to_f64_vec()).all(|(&x, y)| {
            (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= rel * x.abs().max(y.abs())
        })
}
