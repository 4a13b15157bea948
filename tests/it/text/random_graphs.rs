//! Random graphs: printing and parsing round-trip, covering the op set.
//!
//! The graphs come from [`crate::random`]'s generator in its syntax mode
//! ([`GenConfig::syntax`]): what the printer and parser must handle and evaluation never needs,
//! such as special and extreme constants of every dtype (NaN, infinities, subnormals) and value
//! names of both forms (words and digits) or none.

use super::*;

use crate::random::{GenConfig, ORDER_NONE, generate};

/// A random graph of [`crate::random`]'s generator in syntax mode, `size` ops attempted.
fn random_graph(seed: u64, size: usize) -> Graph {
    let cfg = GenConfig {
        steps: size,
        safe: false,
        smooth: false,
        order: ORDER_NONE,
        syntax: true,
        loops: true,
    };
    generate(seed, &cfg).forward
}

#[test]
fn random_graphs_cover_the_op_set() {
    let mut seen = HashSet::new();
    let mut forms: HashSet<&'static str> = HashSet::new();
    for seed in 0..300 {
        let g = random_graph(seed, 40);
        for (i, n) in g.nodes().iter().enumerate() {
            seen.insert(n.op);
            let output = g.outputs().contains(&NodeId(i as u32));
            forms.insert(match &n.name {
                None => "unnamed",
                Some(s) if s.bytes().all(|b| b.is_ascii_digit()) && output => "digit output",
                Some(s) if s.bytes().all(|b| b.is_ascii_digit()) => "digit name",
                Some(_) => "word name",
            });
            if let Attrs::Const(t) = &n.attrs {
                forms.insert(match t.dtype() {
                    DType::F32 => "f32 const",
                    DType::F64 => "f64 const",
                    DType::Bool => "bool const",
                    DType::I32 => "i32 const",
                });
                let first = match t.data() {
                    Data::F64(v) => v.first().copied(),
                    Data::F32(v) => v.first().map(|&x| f64::from(x)),
                    _ => None,
                };
                if let Some(x) = first {
                    if x.is_nan() {
                        forms.insert("nan");
                    } else if x.is_infinite() {
                        forms.insert("infinity");
                    } else if x != 0.0 && x.abs() < f64::MIN_POSITIVE {
                        forms.insert("f64 subnormal");
                    }
                }
            }
            if let Attrs::Cast { to } = n.attrs {
                forms.insert(
                    ["cast to f32", "cast to f64", "cast to other"][match to {
                        DType::F32 => 0,
                        DType::F64 => 1,
                        _ => 2,
                    }],
                );
            }
        }
    }
    let missing: Vec<Op> = Op::ALL
        .iter()
        .copied()
        .filter(|o| !seen.contains(o))
        .collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
    for form in [
        "unnamed",
        "digit output",
        "digit name",
        "word name",
        "f32 const",
        "f64 const",
        "bool const",
        "i32 const",
        "nan",
        "infinity",
        "f64 subnormal",
        "cast to f32",
        "cast to f64",
        "cast to other",
    ] {
        assert!(forms.contains(form), "never generated: {form}");
    }
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

    /// Derivatives through random loops (loops whose bodies hold the bodies' derivatives and
    /// the forward loops they recompute) round-trip too, and compute the same values.
    #[test]
    fn derivative_graphs_with_loops_round_trip(seed in any::<u64>(), size in 1usize..25, order in 0u8..5) {
        let cfg = GenConfig { steps: size, safe: true, smooth: false, order, syntax: false, loops: true };
        let (g, _) = generate(seed, &cfg).build().unwrap();
        let printed = text::print(&g);
        let g2 = match text::parse(&printed) {
            Ok(g2) => g2,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{printed}"))),
        };
        prop_assert!(g2.same(&g), "round trip changed the graph:\n{}", printed);
        prop_assert_eq!(&text::print(&g2), &printed);
        let ins = crate::random::input_values(&g, seed);
        let (a, b) = (gradlift::interp::run(&g, &ins).unwrap(), gradlift::interp::run(&g2, &ins).unwrap());
        for (x, y) in a.iter().zip(&b) {
            prop_assert!(x.bits_eq(y), "{}", printed);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let src = String::from_utf8_lossy(&bytes);
        let _ = text::parse(&src);
        let framed = format!("graph @g {{\n{src}\n}}\n");
        let _ = text::parse(&framed);
    }
}
