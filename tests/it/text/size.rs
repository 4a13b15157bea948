//! Size: long chains parse and print in linear time; names are sanitized.

use super::*;

/// A chain `x -> neg -> neg -> ...` of `n` nodes, as text.
pub(super) fn chain_text(n: usize) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(n * 32);
    s.push_str("graph @chain {\n  %x = input f64[]\n  %v1 = neg %x : f64[]\n");
    for i in 2..n {
        let _ = writeln!(s, "  %v{i} = neg %v{} : f64[]", i - 1);
    }
    let _ = write!(s, "  output %v{}\n}}\n", n - 1);
    s
}

/// Parses and prints an `n`-node chain, checking the print reproduces the (canonical) text.
pub(super) fn check_chain(n: usize) {
    let src = chain_text(n);
    let t0 = Instant::now();
    let g = parse_ok(&src);
    let t_parse = t0.elapsed();
    assert_eq!(g.len(), n);
    let t1 = Instant::now();
    let printed = text::print(&g);
    let t_print = t1.elapsed();
    assert_eq!(printed, src);
    drop(g);
    eprintln!(
        "{n}-node chain: parse {:.2}s, print {:.2}s",
        t_parse.as_secs_f64(),
        t_print.as_secs_f64()
    );
}

/// Deep enough that any recursion on graph depth would overflow a test thread's stack.
#[test]
fn long_chain_parses_and_prints() {
    check_chain(200_000);
}

/// The full million-node chain: 5-8 s in a debug build on a shared 2-core machine (parse
/// 3.6-5.7 s, print 1.6-2.5 s), well under a second in release.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug builds (5-8 s); runs in release (CI)"
)]
pub(super) fn million_node_chain_parses_and_prints() {
    check_chain(1_000_000);
}

#[test]
fn unnamed_nodes_print_as_ids_and_round_trip() {
    // A graph built in code, with no names except inputs and outputs.
    let mut g = Graph::new("built");
    let x = g
        .add_input("5", TensorType::new(DType::F32, vec![2]))
        .unwrap();
    let mut v = x;
    for _ in 0..6 {
        v = g.push(Op::Exp, vec![v], Attrs::None).unwrap();
    }
    g.set_name(v, Some("out"));
    g.set_outputs(vec![v]);
    let printed = text::print(&g);
    // Node 5 cannot be `%5` (the input's name); the next free number >= 7 is 7.
    assert_eq!(
        printed,
        "graph @built {\n  %5 = input f32[2]\n  %1 = exp %5 : f32[2]\n  %2 = exp %1 : f32[2]\n  \
         %3 = exp %2 : f32[2]\n  %4 = exp %3 : f32[2]\n  %7 = exp %4 : f32[2]\n  \
         %out = exp %7 : f32[2]\n  output %out\n}\n"
    );
    assert!(parse_ok(&printed).same(&g));
}

#[test]
fn digit_graph_names_parse_and_round_trip() {
    // The format allows `@` followed by either form a value name may take.
    for name in ["0", "17", "007"] {
        let src = format!("graph @{name} {{\n  %x = input f64[]\n  output %x\n}}\n");
        let g = parse_ok(&src);
        assert_eq!(g.name, name);
        assert_eq!(text::print(&g), src);
    }
}

#[test]
fn odd_graph_names_are_sanitized() {
    let mut g = Graph::new("my graph-1");
    let x = g.add_input("x", TensorType::scalar(DType::F64)).unwrap();
    g.set_outputs(vec![x]);
    assert!(text::print(&g).starts_with("graph @my_graph_1 {\n"));
    g.name = "9lives".into();
    let p = text::print(&g);
    assert!(p.starts_with("graph @_9lives {\n"), "{p}");
    g.name = "0".into();
    assert!(text::print(&g).starts_with("graph @0 {\n"));
    g.name = String::new();
    assert_eq!(parse_ok(&text::print(&g)).name, "_");
}

#[test]
fn digit_names_with_leading_zeros_are_distinct_names() {
    // `%007` is the name "007", not the number 7, so node 7 still prints as `%7`.
    let mut stmts = String::from("%007 = input f64[]\n%v1 = neg %007\n");
    for i in 2..9 {
        stmts.push_str(&format!(
            "%{i} = neg %{}\n",
            if i == 2 {
                "v1".into()
            } else {
                (i - 1).to_string()
            }
        ));
    }
    stmts.push_str("%out = exp %8\noutput %out, %007");
    let (g, printed) = round_trip(&body(&stmts));
    assert_eq!(g.node(NodeId(0)).name.as_deref(), Some("007"));
    assert_eq!(g.node(NodeId(7)).name, None);
    assert!(printed.contains("\n  %7 = neg %6 : f64[]\n"), "{printed}");
}
