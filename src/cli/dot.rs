//! `gradlift dot`: a graph as Graphviz DOT.
//!
//! One box per node labelled with its value name, op (with attributes, and the value of small
//! constants) and type; inputs are blue house shapes, outputs have a double red border, and
//! adjoint nodes (origin `Adjoint`, appended by `--grad`) are dashed and pink. Edges go from
//! operand to user and carry the operand index when an op has several operands. Every label is
//! a quoted, escaped DOT string. Not here: layout (Graphviz's job).

use gradlift::{Attrs, Graph, Op, Origin};
use std::fmt::Write;

/// The whole DOT text of `g`.
pub fn to_dot(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", quote(&g.name));
    s.push_str("  rankdir=TB;\n");
    s.push_str(
        "  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=\"Helvetica\"];\n",
    );
    s.push_str("  edge [fontname=\"Helvetica\", fontsize=10];\n");
    let outputs = g.outputs();
    for (i, node) in g.nodes().iter().enumerate() {
        let id = gradlift::NodeId(i as u32);
        let label = format!(
            "%{}\n{}\n{}",
            g.value_name(id),
            op_text(&node.op, &node.attrs),
            node.ty
        );
        let mut attrs = vec![format!("label={}", quote(&label))];
        if node.op == Op::Input {
            attrs.push("shape=house".into());
            attrs.push("fillcolor=\"#cfe2ff\"".into());
        } else if let Origin::Adjoint(of) = node.origin {
            attrs.push("style=\"rounded,filled,dashed\"".into());
            attrs.push("fillcolor=\"#ffe3e3\"".into());
            attrs.push(format!("tooltip={}", quote(&format!("adjoint of {of}"))));
        } else if node.op == Op::Const {
            attrs.push("fillcolor=\"#eeeeee\"".into());
        }
        if let Some(pos) = outputs.iter().position(|&o| o == id) {
            attrs.push("peripheries=2".into());
            attrs.push("color=\"#c00000\"".into());
            attrs.push(format!("xlabel={}", quote(&format!("output {pos}"))));
        }
        let _ = writeln!(s, "  n{i} [{}];", attrs.join(", "));
        let many = node.inputs.len() > 1;
        for (k, x) in node.inputs.iter().enumerate() {
            if many {
                let _ = writeln!(s, "  n{} -> n{i} [label=\"{k}\"];", x.0);
            } else {
                let _ = writeln!(s, "  n{} -> n{i};", x.0);
            }
        }
    }
    s.push_str("}\n");
    s
}

/// The op and its attributes, as in `.gir` (`reduce_sum axes=[0] keepdims=true`).
fn op_text(op: &Op, attrs: &Attrs) -> String {
    let list = |v: &[usize]| {
        let items: Vec<String> = v.iter().map(ToString::to_string).collect();
        format!("[{}]", items.join(","))
    };
    let name = op.name();
    match attrs {
        Attrs::None => name.to_string(),
        Attrs::Powi { n } => format!("{name} n={n}"),
        Attrs::Cast { to } => format!("{name} to={to}"),
        Attrs::Reduce { axes, keepdims } => {
            format!("{name} axes={} keepdims={keepdims}", list(axes))
        }
        Attrs::Shape { shape } => format!("{name} shape={}", list(shape)),
        Attrs::Perm { perm } => format!("{name} perm={}", list(perm)),
        Attrs::Slice { start, stop } => {
            format!("{name} start={} stop={}", list(start), list(stop))
        }
        Attrs::Axis { axis } => format!("{name} axis={axis}"),
        Attrs::Iota { ty, axis } => format!("{name} type={ty} axis={axis}"),
        Attrs::Scatter { axis, size } => format!("{name} axis={axis} size={size}"),
        Attrs::Random { ty } => format!("{name} type={ty}"),
        Attrs::Cumsum { axis, reverse } => format!("{name} axis={axis} reverse={reverse}"),
        Attrs::Scan { body, result } => format!(
            "{name} length={} result={result} ({} body nodes)",
            body.length,
            body.body.len()
        ),
        Attrs::Const(t) if t.numel() <= 4 => {
            let mut v = String::new();
            super::json_out::tensor(&mut v, t);
            format!("{name} {v}")
        }
        Attrs::Const(_) => name.to_string(),
        Attrs::Group { groups, param } => format!("{name} {param:?} groups={groups}"),
    }
}

/// A DOT quoted string; newlines become DOT's centred line breaks (`\n`).
fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => {}
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradlift::{DType, TensorType};

    #[test]
    fn labels_are_quoted_and_adjoints_styled() {
        let mut g = Graph::new("seed");
        let x = g.add_input("x", TensorType::scalar(DType::F64)).unwrap();
        let y = g.push(Op::Mul, vec![x, x], Attrs::None).unwrap();
        let d = gradlift::autodiff::grad(&mut g, y, &[x]).unwrap();
        g.set_outputs(vec![y, d[0]]);
        let dot = to_dot(&g);
        assert!(dot.starts_with("digraph \"seed\" {\n"), "{dot}");
        assert!(dot.trim_end().ends_with('}'));
        assert!(dot.contains("label=\"%x\\ninput\\nf64[]\""), "{dot}");
        assert!(dot.contains("dashed"), "{dot}");
        assert!(dot.contains("peripheries=2"), "{dot}");
        // Balanced quotes on every line (no unescaped quote inside a label).
        for line in dot.lines() {
            let unescaped = line.replace("\\\\", "").replace("\\\"", "");
            assert_eq!(unescaped.matches('"').count() % 2, 0, "{line}");
        }
        assert_eq!(quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    }
}
