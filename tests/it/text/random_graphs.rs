//! Random graphs: printing and parsing round-trip, covering the op set.

use super::*;

pub(super) use gradlift::testutil::Rng;

pub(super) fn random_shape(r: &mut Rng) -> Vec<usize> {
    (0..r.below(4)).map(|_| 1 + r.below(3)).collect()
}

pub(super) fn random_f64(r: &mut Rng) -> f64 {
    const SPECIAL: [f64; 10] = [
        0.0,
        -0.0,
        1.0,
        0.1,
        1e-7,
        1e300,
        5e-324,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    if r.chance(1, 2) {
        SPECIAL[r.below(SPECIAL.len())]
    } else {
        let x = f64::from_bits(r.next_u64());
        if x.is_nan() { f64::NAN } else { x }
    }
}

pub(super) fn random_const(r: &mut Rng, ty: &TensorType) -> Tensor {
    let n = ty.numel();
    let splat = r.chance(1, 3);
    let first = random_f64(r);
    let mut vals: Vec<f64> = (0..n)
        .map(|_| if splat { first } else { random_f64(r) })
        .collect();
    let data = match ty.dtype {
        DType::F64 => Data::F64(vals),
        DType::F32 => {
            // NaN payloads do not survive text, so every NaN is the canonical one.
            let canon = |y: f32| if y.is_nan() { f32::NAN } else { y };
            let first = canon(first as f32);
            Data::F32(
                vals.iter_mut()
                    .map(|x| match (splat, r.chance(1, 2)) {
                        (true, _) => first,
                        (false, true) => canon(f32::from_bits(r.next_u64() as u32)),
                        (false, false) => canon(*x as f32),
                    })
                    .collect(),
            )
        }
        DType::Bool => {
            let b = r.chance(1, 2);
            Data::Bool(
                (0..n)
                    .map(|_| if splat { b } else { r.chance(1, 2) })
                    .collect(),
            )
        }
        DType::I32 => Data::I32(
            vals.iter()
                .map(|_| match r.below(4) {
                    0 => i32::MIN,
                    1 => i32::MAX,
                    _ => r.below(9) as i32 - 4,
                })
                .collect(),
        ),
    };
    Tensor::new(ty.shape.clone(), data)
}

pub(super) fn random_name(r: &mut Rng, used: &mut HashSet<String>, digits: bool) -> Option<String> {
    const WORDS: [&str; 8] = ["x", "y", "loss", "_t", "h1", "Grad_2", "input", "output"];
    for _ in 0..4 {
        let name = if digits {
            r.below(40).to_string()
        } else {
            format!("{}{}", WORDS[r.below(WORDS.len())], r.below(5))
        };
        if used.insert(name.clone()) {
            return Some(name);
        }
    }
    None
}

/// Random attributes for `op` given its first operand's shape.
pub(super) fn random_attrs(r: &mut Rng, op: Op, shape: &[usize]) -> Attrs {
    let rank = shape.len();
    match gradlift::ops::rules(op).attrs {
        gradlift::ops::AttrKind::Powi => Attrs::Powi {
            n: r.below(7) as i32 - 3,
        },
        gradlift::ops::AttrKind::Cast => Attrs::Cast {
            to: if r.chance(1, 2) {
                DType::F32
            } else {
                DType::F64
            },
        },
        gradlift::ops::AttrKind::Reduce => Attrs::Reduce {
            axes: (0..rank).filter(|_| r.chance(1, 2)).collect(),
            keepdims: r.chance(1, 2),
        },
        gradlift::ops::AttrKind::Shape if op == Op::Reshape => Attrs::Shape {
            shape: if r.chance(1, 2) {
                vec![shape.iter().product()]
            } else {
                shape.iter().rev().copied().collect()
            },
        },
        gradlift::ops::AttrKind::Shape => {
            let mut s: Vec<usize> = vec![1 + r.below(2)];
            s.extend(
                shape
                    .iter()
                    .map(|&d| if d == 1 { 1 + r.below(3) } else { d }),
            );
            Attrs::Shape { shape: s }
        }
        gradlift::ops::AttrKind::Perm => {
            let mut perm: Vec<usize> = (0..rank).collect();
            for i in (1..rank).rev() {
                perm.swap(i, r.below(i + 1));
            }
            Attrs::Perm { perm }
        }
        gradlift::ops::AttrKind::Slice => {
            let start: Vec<usize> = shape.iter().map(|&d| r.below(d)).collect();
            let stop = start
                .iter()
                .zip(shape)
                .map(|(&s, &d)| s + 1 + r.below(d - s))
                .collect();
            Attrs::Slice { start, stop }
        }
        gradlift::ops::AttrKind::Axis => Attrs::Axis {
            axis: r.below(rank.max(1)),
        },
        gradlift::ops::AttrKind::Cumsum => Attrs::Cumsum {
            axis: r.below(rank.max(1)),
            reverse: r.chance(1, 2),
        },
        gradlift::ops::AttrKind::Iota => Attrs::Iota {
            ty: TensorType::new([DType::I32, DType::F32][r.below(2)], shape.to_vec()),
            axis: r.below(rank.max(1)),
        },
        gradlift::ops::AttrKind::Scatter => Attrs::Scatter {
            axis: r.below(rank.max(1)),
            size: 1 + r.below(4),
        },
        gradlift::ops::AttrKind::Random => Attrs::Random {
            ty: TensorType::new([DType::F32, DType::F64][r.below(2)], shape.to_vec()),
        },
        gradlift::ops::AttrKind::None | gradlift::ops::AttrKind::Const => Attrs::None,
    }
}

/// A random valid graph built with `Graph::push`: inputs and constants of random types, then
/// random ops whose operands are chosen to usually type-check (ill-typed picks are skipped).
pub(super) fn random_graph(seed: u64, size: usize) -> Graph {
    let mut r = Rng(seed | 1);
    let mut used = HashSet::new();
    let mut g = Graph::new(format!("g{}", r.below(100)));
    let dtypes = [DType::F32, DType::F64, DType::Bool, DType::I32];
    for _ in 0..1 + r.below(3) {
        let ty = TensorType::new(dtypes[r.below(4)], random_shape(&mut r));
        let digits = r.chance(1, 3);
        if let Some(name) = random_name(&mut r, &mut used, digits) {
            g.add_input(&name, ty).unwrap();
        }
    }
    let ops: Vec<Op> = Op::ALL
        .iter()
        .copied()
        .filter(|&o| !matches!(o, Op::Input | Op::Const))
        .collect();
    let mut attempts = 0;
    while g.len() < size && attempts < size * 20 {
        attempts += 1;
        let id = if g.is_empty() || r.chance(1, 6) {
            let ty = if !g.is_empty() && r.chance(1, 2) {
                g.ty(NodeId(r.below(g.len()) as u32)).clone()
            } else {
                TensorType::new(dtypes[r.below(4)], random_shape(&mut r))
            };
            let t = random_const(&mut r, &ty);
            g.add_const(t)
        } else {
            let op = ops[r.below(ops.len())];
            let x = NodeId(r.below(g.len()) as u32);
            let xty = g.ty(x).clone();
            // Operands of the same dtype and, mostly, the same shape as `x`.
            let pick = |r: &mut Rng, g: &Graph, dtype: Option<DType>| -> NodeId {
                let cands: Vec<NodeId> = (0..g.len() as u32)
                    .map(NodeId)
                    .filter(|&n| {
                        dtype.is_none_or(|d| g.ty(n).dtype == d)
                            && (g.ty(n).shape == xty.shape || g.ty(n).is_scalar())
                    })
                    .collect();
                if cands.is_empty() {
                    x
                } else {
                    cands[r.below(cands.len())]
                }
            };
            let inputs = match op {
                Op::Select => {
                    let c = pick(&mut r, &g, Some(DType::Bool));
                    let b = pick(&mut r, &g, Some(xty.dtype));
                    vec![c, x, b]
                }
                Op::Concat => (0..1 + r.below(3)).map(|_| x).collect(),
                Op::Iota => vec![],
                Op::Gather | Op::ScatterAdd => vec![x, pick(&mut r, &g, Some(DType::I32))],
                Op::RandomUniform => {
                    let k = g.add_const(Tensor::from_i32(vec![], vec![r.below(9) as i32]));
                    vec![k, k]
                }
                Op::Matmul => {
                    let mut s = xty.shape.clone();
                    if s.len() >= 2 {
                        let n = s.len();
                        s.swap(n - 1, n - 2);
                    }
                    let y = (0..g.len() as u32)
                        .map(NodeId)
                        .find(|&n| g.ty(n).shape == s && g.ty(n).dtype == xty.dtype)
                        .unwrap_or(x);
                    vec![x, y]
                }
                _ => match gradlift::ops::rules(op).arity {
                    gradlift::ops::Arity::Exact(2) => {
                        vec![x, pick(&mut r, &g, Some(xty.dtype))]
                    }
                    _ => vec![x],
                },
            };
            let attrs = random_attrs(&mut r, op, &xty.shape);
            match g.push(op, inputs, attrs) {
                Ok(id) => id,
                Err(_) => continue,
            }
        };
        if r.chance(1, 3)
            && let Some(name) = random_name(&mut r, &mut used, false)
        {
            g.set_name(id, Some(&name));
        }
    }
    // Outputs: distinct, each named (inputs and outputs always are), sometimes by digits.
    let mut outs = Vec::new();
    for _ in 0..1 + r.below(3) {
        let o = NodeId(r.below(g.len()) as u32);
        if outs.contains(&o) {
            continue;
        }
        if g.node(o).name.is_none() {
            let name = if r.chance(1, 2) && used.insert(o.0.to_string()) {
                Some(o.0.to_string())
            } else {
                let digits = r.chance(1, 2);
                random_name(&mut r, &mut used, digits)
            };
            match name {
                Some(n) => g.set_name(o, Some(&n)),
                None => continue,
            }
        }
        outs.push(o);
    }
    if outs.is_empty() {
        let o = g.add_input("fallback_output", TensorType::scalar(DType::F64));
        outs.push(o.unwrap());
    }
    g.set_outputs(outs);
    g
}

#[test]
fn random_graphs_cover_the_op_set() {
    let mut seen = HashSet::new();
    for seed in 0..300 {
        for n in random_graph(seed, 40).nodes() {
            seen.insert(n.op);
        }
    }
    let missing: Vec<Op> = Op::ALL
        .iter()
        .copied()
        .filter(|o| !seen.contains(o))
        .collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn print_then_parse_gives_the_same_graph(seed in any::<u64>(), size in 1usize..50) {
        let g = random_graph(seed, size);
        verify(&g).unwrap();
        let printed = text::print(&g);
        let g2 = match text::parse(&printed) {
            Ok(g2) => g2,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{printed}"))),
        };
        prop_assert!(g2.same(&g), "round trip changed the graph:\n{}", printed);
        prop_assert_eq!(text::print(&g2), printed);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let src = String::from_utf8_lossy(&bytes);
        let _ = text::parse(&src);
        let framed = format!("graph @g {{\n{src}\n}}\n");
        let _ = text::parse(&framed);
    }
}
