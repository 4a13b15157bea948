//! `scan` statements in `.gir`: hand-written files compute hand-computed values; graphs from
//! the builder's loops and from derivatives through them print, parse back as the same graph
//! and print identically; nesting is capped; malformed loops are in the hostile corpus
//! (`tests/hostile/gir/err-at-scan-*.gir`).

use super::*;
use gradlift::{GraphBuilder, ScanArgs, Var, interp};

/// A running product with a reverse running sum as second loop (hand-computed below).
const PRODUCTS: &str = "\
# test file: two loops
graph @products {
  %xs = input f64[4]
  %one = const 1.0 : f64[]
  %p, %partial = scan %one, %xs length=4 carry=1 xs=1 {
    %c = input f64[]
    %x = input f64[]
    %c2 = mul %c, %x : f64[]
    %y = reshape %c2 shape=[] : f64[]
    output %c2, %y
  }
  %zero = const 0.0 : f64[]
  _, %suffix = scan %zero, %xs length=4 carry=1 xs=1 reverse=true {
    %acc = input f64[]
    %x = input f64[]
    %ten = const 10.0 : f64[]
    %a = mul %acc, %ten
    %s = add %a, %x
    %y = reshape %s shape=[]
    output %s, %y
  }
  output %p, %partial, %suffix
}
";

#[test]
fn a_hand_written_scan_file_computes_hand_computed_values() {
    let (g, printed) = round_trip(PRODUCTS);
    let xs = Tensor::from_f64(vec![4], vec![1.0, 2.0, 3.0, 4.0]);
    let r = interp::run(&g, &[xs]).unwrap();
    assert_eq!(r[0].scalar_value(), Some(24.0));
    assert_eq!(r[1].to_f64_vec(), vec![1.0, 2.0, 6.0, 24.0]);
    // Step t of a reverse loop still reads xs[t] and writes ys[t].
    assert_eq!(r[2].to_f64_vec(), vec![4321.0, 432.0, 43.0, 4.0]);
    // One node per named result; the `_` result has none.
    let scans: Vec<usize> = (g.nodes().iter())
        .filter_map(|n| match &n.attrs {
            Attrs::Scan { result, .. } => Some(*result),
            _ => None,
        })
        .collect();
    assert_eq!(scans, vec![0, 1, 1]);
    assert!(printed.contains("  _, %suffix = scan %zero, %xs length=4 carry=1 xs=1 reverse=true {\n    %acc = input f64[]\n"), "{printed}");
}

/// A model with a loop-carried state, per-step inputs and a const (as in `tests/it/loops.rs`).
fn model<'b>(
    b: &'b GraphBuilder,
    t: usize,
    reverse: bool,
    checkpoint: Option<usize>,
) -> ([Var<'b>; 3], Var<'b>, Var<'b>) {
    let c0 = b.input("c0", DType::F64, &[3]);
    let xs = b.input("xs", DType::F64, &[t, 3]);
    let w = b.input("w", DType::F64, &[3, 3]);
    let args = ScanArgs {
        length: t,
        reverse,
        init: &[c0],
        xs: &[xs],
        consts: &[w],
        checkpoint,
    };
    let out = b.scan_with(args, |_, s| {
        let h = (s.consts[0]
            .matmul(s.carry[0].reshape(&[3, 1]))
            .reshape(&[3])
            + s.x[0])
            .tanh();
        let c2 = s.carry[0] + h * 0.7;
        (vec![c2], vec![(c2 * c2).sum()])
    });
    let loss = out.carry[0].sum() + out.ys[0].sum();
    ([c0, xs, w], out.carry[0], loss)
}

fn inputs(g: &Graph) -> Vec<Tensor> {
    let mut r = gradlift::testutil::Rng(7);
    (g.inputs().iter())
        .map(|&i| Tensor::from_fn(g.ty(i), |_| r.uniform(-1.0, 1.0)))
        .collect()
}

/// The first difference between two graphs, looking into loop bodies.
fn first_difference(a: &Graph, b: &Graph) -> String {
    if a.outputs() != b.outputs() || a.len() != b.len() {
        return format!(
            "outputs {:?} vs {:?}, {} vs {} nodes",
            a.outputs(),
            b.outputs(),
            a.len(),
            b.len()
        );
    }
    for (i, (x, y)) in a.nodes().iter().zip(b.nodes()).enumerate() {
        if let (Attrs::Scan { body: p, .. }, Attrs::Scan { body: q, .. }) = (&x.attrs, &y.attrs)
            && !p.same(q)
        {
            return format!(
                "in the body of node {i}: {}",
                first_difference(&p.body, &q.body)
            );
        }
        if !x.same(y) {
            return format!("node {i}: {x:?} vs {y:?}");
        }
    }
    "none".into()
}

/// Round trip, and the parsed graph computes the same values bitwise as the original.
fn check(g: &Graph) -> String {
    verify(g).unwrap();
    let printed = text::print(g);
    let (back, again) = round_trip(&printed);
    assert_eq!(again, printed);
    assert!(
        back.same(g),
        "parse(print(g)) differs from g: {}\n{printed}",
        first_difference(g, &back)
    );
    let ins = inputs(g);
    let (a, b) = (
        interp::run(g, &ins).unwrap(),
        interp::run(&back, &ins).unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!(x.bits_eq(y), "{printed}");
    }
    printed
}

#[test]
fn builder_loops_and_their_derivatives_round_trip() {
    for (t, reverse, checkpoint) in [(1, false, None), (5, true, Some(2))] {
        let b = GraphBuilder::new("m");
        let (ins, c, loss) = model(&b, t, reverse, checkpoint);
        let g1 = b.grad(loss, &ins).unwrap();
        let dirs: Vec<Var<'_>> = (ins.iter().enumerate())
            .map(|(k, v)| b.input(&format!("v{k}"), DType::F64, &v.shape()))
            .collect();
        let hv = b.hvp(loss, &ins, &dirs).unwrap();
        let jv = b.jvp(&[c, loss], &ins, &dirs).unwrap();
        let s2 = (g1[0] * g1[0]).sum() + (g1[2] * g1[2]).sum();
        let gg = b.grad(s2, &ins).unwrap();
        let outs = [
            ("c", c),
            ("loss", loss),
            ("dw", g1[2]),
            ("h0", hv[0]),
            ("jc", jv[0]),
            ("gg1", gg[1]),
        ];
        let g = b.finish(&outs).unwrap();
        let printed = check(&g);
        // A loop's VJP recomputes the forward carries: its body holds the forward loop.
        assert!(printed.contains(" recompute="), "{printed}");
        assert!(printed.contains("\n    forward length="), "{printed}");
        if checkpoint.is_some() {
            assert!(printed.contains(" checkpoint=2 {"), "{printed}");
        }
        // The optimizer drops unused results of a group: those print as `_`.
        let mut o = g.clone();
        gradlift::opt::optimize(&mut o, &gradlift::opt::OptConfig::default());
        check(&o);
    }
}

#[test]
fn fori_while_and_nested_scans_round_trip() {
    let b = GraphBuilder::new("n");
    let x = b.input("x", DType::F64, &[2]);
    let f = b.fori_loop(0, 4, &[x], &[], |_, i, s| {
        vec![s.carry[0] * 0.5 + i.cast(DType::F64)]
    });
    let w = b.while_loop(
        5,
        &[f[0]],
        &[x],
        |_, s| s.carry[0].sum().lt(s.consts[0].sum() * 10.0),
        |_, s| vec![s.carry[0] * 2.0],
    );
    // A scan whose body runs a scan over a const of the body.
    let outer = b.scan(3, &[w[0]], &[], &[x], |s, st| {
        let inner = s.scan(2, &[st.carry[0]], &[], &[st.consts[0]], |_, it| {
            (vec![(it.carry[0] * it.consts[0]).sin()], vec![])
        });
        (vec![inner.carry[0]], vec![inner.carry[0].sum()])
    });
    let loss = outer.ys[0].sum();
    let d = b.grad(loss, &[x]).unwrap();
    let g = b.finish(&[("loss", loss), ("dx", d[0])]).unwrap();
    let printed = check(&g);
    // The gradient's loops hold the inner loop's derivatives: nested regions.
    assert!(printed.contains("\n      %"), "no nested body:\n{printed}");
}

#[test]
fn loop_nesting_is_capped_with_a_clear_error() {
    let nested = |depth: usize| {
        let mut s = String::from("graph @deep {\n  %x = input f64[]\n");
        for _ in 0..depth {
            s.push_str("%y = scan %x length=1 carry=1 xs=0 {\n%x = input f64[]\n");
        }
        s.push_str("%y = neg %x\n");
        for _ in 0..depth {
            s.push_str("output %y\n}\n");
        }
        s.push_str("output %y\n}\n");
        s
    };
    let g = parse_ok(&nested(text::MAX_LOOP_NESTING));
    let r = interp::run(&g, &[1.5.into()]).unwrap();
    assert_eq!(r[0].scalar_value(), Some(-1.5)); // the innermost body negates, once
    let e = text::parse(&nested(text::MAX_LOOP_NESTING + 1)).unwrap_err();
    let line = 3 + 2 * text::MAX_LOOP_NESTING as u32;
    assert_eq!((e.line, e.col), (line, 36), "{e}");
    assert!(e.message.contains("nest more than 64 deep"), "{e}");
    // Far deeper files fail the same way, without recursion.
    assert!(text::parse(&nested(100_000)).is_err());
}

#[test]
fn the_documented_loop_example_computes_what_a_rust_loop_computes() {
    let doc = std::fs::read_to_string(root().join("docs/gir.md")).unwrap();
    let start = doc
        .find("# c_{t+1}")
        .expect("the loop example in docs/gir.md");
    let src = &doc[start..start + doc[start..].find("```").unwrap()];
    let (g, _) = round_trip(src);
    let ins = inputs(&g);
    let r = interp::run(&g, &ins).unwrap();
    let (c0, xs, w) = (
        ins[0].to_f64_vec(),
        ins[1].to_f64_vec(),
        ins[2].to_f64_vec(),
    );
    let mut c = c0;
    let mut loss = 0.0;
    for t in 0..100 {
        let mut next = [0.0; 3];
        for i in 0..3 {
            let v: f64 = (0..3).map(|j| w[3 * i + j] * c[j]).sum::<f64>() + xs[3 * t + i];
            next[i] = c[i] + v.tanh() * 0.7;
        }
        c = next.to_vec();
        loss += c.iter().map(|x| x * x).sum::<f64>();
    }
    for (a, b) in r[0].to_f64_vec().iter().zip(&c) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }
    let got = r[1].scalar_value().unwrap();
    assert!((got - loss).abs() <= 1e-10 * loss.abs(), "{got} vs {loss}");
}

/// The fuzz targets' seeds with loops satisfy both targets' properties (parse: round trip;
/// pipeline: grad, JVP, optimizer and backends agree).
#[test]
fn loop_fuzz_seeds_pass_both_fuzz_properties() {
    for name in ["loops", "loops_nested"] {
        let src = std::fs::read(root().join(format!("fuzz/seeds/parse/{name}.gir"))).unwrap();
        crate::fuzz_check::parse_roundtrip(&src);
        round_trip(std::str::from_utf8(&src).unwrap());
        for suffix in ["", "-nograd"] {
            let p = root().join(format!("fuzz/seeds/pipeline/{name}{suffix}.bin"));
            crate::fuzz_check::pipeline(&std::fs::read(p).unwrap());
        }
    }
}

#[test]
fn a_scan_with_too_many_results_times_operands_is_refused_before_allocating() {
    // 5000 named results and 5000 operands: 25 million operand references.
    let n = 5000;
    let mut src = String::from("graph @wide {\n  %x = input f64[]\n  ");
    let names: Vec<String> = (0..n).map(|k| format!("%r{k}")).collect();
    src.push_str(&names.join(", "));
    src.push_str(" = scan ");
    src.push_str(&vec!["%x"; n].join(", "));
    src.push_str(&format!(" length=1 carry={n} {{\n"));
    let e = text::parse(&src).unwrap_err();
    assert_eq!(e.line, 3, "{e}");
    assert!(e.message.contains("over the reader's limit"), "{e}");
}
