//! The canonical `.gir` printer.
//!
//! Writes the header line, one two-space-indented statement per node in id order (`: TYPE` on
//! every `const` and op, attributes in the order of `docs/gir.md`'s op tables with `axes` sorted and
//! `keepdims=true` and `reverse=true` only when true), the `output` statement, then `}`. Output is deterministic and
//! a fixed point of `print ∘ parse`.
//!
//! Value labels: a node prints under its name when that name is a valid value name, is unique,
//! and is either an identifier or belongs to an input or output (the parser keeps digit-only
//! names only there, so printing any other digit-only name would not be a fixed point). Every
//! other node prints as `%ID`, its id; if a kept name already reads `ID`, it gets the first
//! number `>= len` that no name uses. Graph names that are neither identifiers nor digits are sanitized.
//!
//! Not done here: verification. A graph that breaks its invariants (operands out of range,
//! attributes of the wrong kind) prints without panicking but may not parse back.

use super::hasher::NameSet;
use super::lexer::is_identifier;
use crate::ir::{Attrs, Graph, Node, NodeId, Op, TensorType};
use crate::tensor::{Data, Tensor};
use std::fmt::Write;

/// Prints `g` in canonical form.
pub(super) fn print(g: &Graph) -> String {
    let labels = Labels::new(g);
    let mut p = Printer {
        out: String::with_capacity(g.len().saturating_mul(32).saturating_add(64)),
        last_ty: None,
        last_ty_text: String::new(),
    };
    p.out.push_str("graph @");
    push_graph_name(&mut p.out, &g.name);
    p.out.push_str(" {\n");
    for (i, node) in g.nodes().iter().enumerate() {
        p.out.push_str("  ");
        labels.0[i].push_to(&mut p.out);
        p.out.push_str(" = ");
        p.statement(node, &labels);
        p.out.push('\n');
    }
    p.out.push_str("  output");
    for (k, &o) in g.outputs().iter().enumerate() {
        p.out.push_str(if k == 0 { " " } else { ", " });
        labels.get(o).push_to(&mut p.out);
    }
    p.out.push_str("\n}\n");
    p.out
}

/// Appends the decimal digits of `x` (without the formatting machinery, which is slow in
/// unoptimized builds and this runs once per operand).
fn push_uint(out: &mut String, mut x: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// How a node is referred to: its kept name, or a number.
#[derive(Clone, Copy)]
enum Label<'g> {
    Name(&'g str),
    Num(u64),
}

impl Label<'_> {
    fn push_to(self, out: &mut String) {
        out.push('%');
        match self {
            Label::Name(n) => out.push_str(n),
            Label::Num(k) => push_uint(out, k),
        }
    }
}

struct Labels<'g>(Vec<Label<'g>>);

impl<'g> Labels<'g> {
    fn new(g: &'g Graph) -> Labels<'g> {
        let n = g.len();
        let mut is_output = vec![false; n];
        for o in g.outputs() {
            if let Some(slot) = is_output.get_mut(o.index()) {
                *slot = true;
            }
        }
        let named = g.nodes().iter().filter(|n| n.name.is_some()).count();
        let mut used: NameSet<&str> = NameSet::with_capacity_and_hasher(named, Default::default());
        // Numbers that kept digit-only names spell (`007` spells no number: it is not `%7`).
        let mut numbers: NameSet<u64> = NameSet::default();
        let kept: Vec<Option<&str>> = g
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let name = node.name.as_deref()?;
                let numeric = name.as_bytes().first().is_some_and(u8::is_ascii_digit);
                let valid = if numeric {
                    name.bytes().all(|b| b.is_ascii_digit())
                        && (node.op == Op::Input || is_output[i])
                } else {
                    is_identifier(name)
                };
                if !valid || !used.insert(name) {
                    return None;
                }
                if numeric
                    && (name == "0" || !name.starts_with('0'))
                    && let Ok(k) = name.parse::<u64>()
                {
                    numbers.insert(k);
                }
                Some(name)
            })
            .collect();
        let mut fresh = n as u64;
        let labels = kept
            .into_iter()
            .enumerate()
            .map(|(i, name)| match name {
                Some(name) => Label::Name(name),
                None if !numbers.contains(&(i as u64)) => Label::Num(i as u64),
                None => {
                    while numbers.contains(&fresh) {
                        fresh += 1;
                    }
                    fresh += 1;
                    Label::Num(fresh - 1)
                }
            })
            .collect();
        Labels(labels)
    }

    fn get(&self, id: NodeId) -> Label<'g> {
        self.0
            .get(id.index())
            .copied()
            .unwrap_or(Label::Num(u64::from(id.0)))
    }
}

struct Printer<'g> {
    out: String,
    /// The most recently printed type and its text (consecutive nodes often share a type).
    last_ty: Option<&'g TensorType>,
    last_ty_text: String,
}

impl<'g> Printer<'g> {
    fn push_type(&mut self, ty: &'g TensorType) {
        if self.last_ty != Some(ty) {
            self.last_ty_text.clear();
            let _ = write!(self.last_ty_text, "{ty}");
            self.last_ty = Some(ty);
        }
        self.out.push_str(&self.last_ty_text);
    }

    fn statement(&mut self, node: &'g Node, labels: &Labels<'_>) {
        match (node.op, &node.attrs) {
            (Op::Input, _) => {
                self.out.push_str("input ");
                return self.push_type(&node.ty);
            }
            (Op::Const, Attrs::Const(t)) => {
                self.out.push_str("const ");
                push_tensor(&mut self.out, t);
                self.out.push_str(" : ");
                return self.push_type(&node.ty);
            }
            _ => {}
        }
        let out = &mut self.out;
        out.push_str(node.op.name());
        for (k, &x) in node.inputs.iter().enumerate() {
            out.push_str(if k == 0 { " " } else { ", " });
            labels.get(x).push_to(out);
        }
        match &node.attrs {
            Attrs::None | Attrs::Const(_) => {}
            Attrs::Powi { n } => {
                let _ = write!(out, " n={n}");
            }
            Attrs::Cast { to } => {
                out.push_str(" to=");
                out.push_str(to.name());
            }
            Attrs::Reduce { axes, keepdims } => {
                let mut sorted = axes.clone();
                sorted.sort_unstable();
                out.push_str(" axes=");
                push_list(out, &sorted);
                if *keepdims {
                    out.push_str(" keepdims=true");
                }
            }
            Attrs::Shape { shape } => {
                out.push_str(" shape=");
                push_list(out, shape);
            }
            Attrs::Perm { perm } => {
                out.push_str(" perm=");
                push_list(out, perm);
            }
            Attrs::Slice { start, stop } => {
                out.push_str(" start=");
                push_list(out, start);
                out.push_str(" stop=");
                push_list(out, stop);
            }
            Attrs::Axis { axis } => {
                out.push_str(" axis=");
                push_uint(out, *axis as u64);
            }
            Attrs::Iota { ty, axis } => {
                let _ = write!(out, " type={ty} axis={axis}");
            }
            Attrs::Scatter { axis, size } => {
                let _ = write!(out, " axis={axis} size={size}");
            }
            Attrs::Random { ty } => {
                let _ = write!(out, " type={ty}");
            }
            Attrs::Scan { body, result } => {
                let _ = write!(out, " length={} result={result}", body.length);
            }
            Attrs::Cumsum { axis, reverse } => {
                out.push_str(" axis=");
                push_uint(out, *axis as u64);
                if *reverse {
                    out.push_str(" reverse=true");
                }
            }
        }
        self.out.push_str(" : ");
        self.push_type(&node.ty);
    }
}

/// `@name`, with anything that is not an identifier or a run of digits replaced so the output
/// still parses.
fn push_graph_name(out: &mut String, name: &str) {
    if crate::ir::builder::is_value_name(name) {
        return out.push_str(name);
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
}

fn push_list(out: &mut String, v: &[usize]) {
    out.push('[');
    for (k, &x) in v.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        push_uint(out, x as u64);
    }
    out.push(']');
}

/// An `f64` literal: shortest round-trip decimal (Rust's `{:?}`, which fits JSON's number
/// grammar for finite values), `inf`, `-inf` or `nan`.
fn push_f64(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("nan");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    } else {
        let _ = write!(out, "{x:?}");
    }
}

/// An `f32` literal, shortest round-trip in `f32`.
fn push_f32(out: &mut String, x: f32) {
    if x.is_nan() {
        out.push_str("nan");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    } else {
        let _ = write!(out, "{x:?}");
    }
}

/// A constant's value: one literal if all elements are bitwise identical, else a nested list in
/// row-major order (written with index arithmetic, not recursion).
fn push_tensor(out: &mut String, t: &Tensor) {
    fn elem(out: &mut String, d: &Data, i: usize) {
        match d {
            Data::F32(v) => push_f32(out, v[i]),
            Data::F64(v) => push_f64(out, v[i]),
            Data::Bool(v) => out.push_str(if v[i] { "true" } else { "false" }),
            Data::I32(v) => {
                let _ = write!(out, "{}", v[i]);
            }
        }
    }
    let d = t.data();
    if d.is_empty() {
        return out.push_str("[]"); // not a valid type; only a broken graph gets here
    }
    let uniform = match d {
        Data::F32(v) => v.windows(2).all(|w| w[0].to_bits() == w[1].to_bits()),
        Data::F64(v) => v.windows(2).all(|w| w[0].to_bits() == w[1].to_bits()),
        Data::Bool(v) => v.windows(2).all(|w| w[0] == w[1]),
        Data::I32(v) => v.windows(2).all(|w| w[0] == w[1]),
    };
    if uniform || t.shape().is_empty() {
        return elem(out, d, 0);
    }
    // block[k] = number of elements in one sub-list at depth k (product of shape[k..]).
    let shape = t.shape();
    let mut block = vec![1usize; shape.len()];
    let mut acc = 1usize;
    for k in (0..shape.len()).rev() {
        acc = acc.saturating_mul(shape[k]);
        block[k] = acc;
    }
    for i in 0..d.len() {
        if i > 0 {
            out.push(',');
        }
        for &b in &block {
            if i % b == 0 {
                out.push('[');
            }
        }
        elem(out, d, i);
        for &b in &block {
            if (i + 1) % b == 0 {
                out.push(']');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit64(x: f64) -> String {
        let mut s = String::new();
        push_f64(&mut s, x);
        s
    }

    fn lit32(x: f32) -> String {
        let mut s = String::new();
        push_f32(&mut s, x);
        s
    }

    #[test]
    fn integers_print_in_decimal() {
        for x in [0u64, 7, 10, 99, 1234567890, u64::MAX] {
            let mut s = String::new();
            push_uint(&mut s, x);
            assert_eq!(s, x.to_string());
        }
    }

    #[test]
    fn floats_print_shortest_and_json_shaped() {
        assert_eq!(lit64(1.0), "1.0");
        assert_eq!(lit64(1e-7), "1e-7");
        assert_eq!(lit64(0.1), "0.1");
        assert_eq!(lit64(-0.0), "-0.0");
        assert_eq!(lit64(1e16), "1e16");
        assert_eq!(lit64(f64::NEG_INFINITY), "-inf");
        assert_eq!(lit64(f64::NAN), "nan");
        assert_eq!(lit32(0.1), "0.1");
        assert_eq!(lit32(std::f32::consts::PI), "3.1415927");
        assert_eq!(lit32(16777216.0), "16777216.0");
    }

    #[test]
    fn printed_floats_lex_as_json_numbers_and_round_trip() {
        let mut rng = crate::testutil::Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let state = rng.next_u64();
            let x = f64::from_bits(state);
            let y = f32::from_bits(state as u32);
            for s in [lit64(x), lit32(y)] {
                if s == "nan" || s.ends_with("inf") {
                    continue;
                }
                assert!(
                    super::super::lexer::is_json_number(&s),
                    "{s} is not a JSON number"
                );
            }
            if x.is_finite() {
                assert_eq!(lit64(x).parse::<f64>().unwrap().to_bits(), x.to_bits());
            }
            if y.is_finite() {
                assert_eq!(lit32(y).parse::<f32>().unwrap().to_bits(), y.to_bits());
            }
        }
    }
}
