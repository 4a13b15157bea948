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
//! Loops: the nodes of one loop (consecutive `scan` nodes sharing the loop and its operands,
//! results in increasing order) print as one statement, `%a, _, %b = scan ... {`, at the first
//! of them, with `_` for the loop results no node holds, followed by the body indented two more
//! spaces (labelled in its own scope: a body's outputs keep digit-only names only if they are
//! inputs) and its `}`. Bodies are printed from an explicit stack, not by recursion.
//!
//! Not done here: verification. A graph that breaks its invariants (operands out of range,
//! attributes of the wrong kind) prints without panicking but may not parse back.

use super::hasher::NameSet;
use super::lexer::is_identifier;
use crate::ir::loops::{Loop, same_loop, scan_attrs};
use crate::ir::{Attrs, Graph, Node, NodeId, Op, TensorType};
use crate::tensor::{Data, Tensor};
use std::fmt::Write;

/// A graph being printed: the top-level graph or an open loop body.
struct Frame<'g> {
    g: &'g Graph,
    labels: Labels<'g>,
    /// The next node to print.
    next: usize,
}

/// Prints `g` in canonical form. Loop bodies are printed from an explicit stack of open
/// graphs, so nesting depth costs no recursion.
pub(super) fn print(g: &'_ Graph) -> String {
    let mut p = Printer {
        out: String::with_capacity(g.len().saturating_mul(32).saturating_add(64)),
        last_ty: None,
        last_ty_text: String::new(),
    };
    p.out.push_str("graph @");
    push_graph_name(&mut p.out, &g.name);
    p.out.push_str(" {\n");
    let mut stack = vec![Frame {
        g,
        labels: Labels::new(g, true),
        next: 0,
    }];
    loop {
        let depth = stack.len();
        let Some(f) = stack.last_mut() else { break };
        let Some(node) = f.g.nodes().get(f.next) else {
            let f = stack.pop().expect("a frame is open");
            push_indent(&mut p.out, depth);
            p.out.push_str("output");
            for (k, &o) in f.g.outputs().iter().enumerate() {
                p.out.push_str(if k == 0 { " " } else { ", " });
                f.labels.get(o).push_to(&mut p.out);
            }
            p.out.push('\n');
            push_indent(&mut p.out, depth - 1);
            p.out.push_str("}\n");
            continue;
        };
        push_indent(&mut p.out, depth);
        if let Some((lp, _)) = scan_attrs(&node.attrs) {
            let members = statement_members(f.g, f.next);
            p.scan_header(f.g, &members, &f.labels);
            f.next += members.len();
            // The body, then (printed first, on top) the forward loops it recomputes.
            let mut lp: &Loop = lp;
            loop {
                stack.push(Frame {
                    g: &lp.body,
                    labels: Labels::new(&lp.body, false),
                    next: 0,
                });
                let Some(rc) = &lp.recompute else { break };
                lp = &rc.forward;
                push_indent(&mut p.out, stack.len());
                p.out.push_str("forward");
                push_loop_attrs(&mut p.out, lp);
            }
            continue;
        }
        f.labels.0[f.next].push_to(&mut p.out);
        p.out.push_str(" = ");
        p.statement(node, &f.labels);
        p.out.push('\n');
        f.next += 1;
    }
    p.out
}

/// ` length=.. carry=.. xs=.. [reverse=true] [checkpoint=..] [recompute=..] [while=..|while_xs=..]
/// {` and the end of the line.
fn push_loop_attrs(out: &mut String, lp: &Loop) {
    let _ = write!(
        out,
        " length={} carry={} xs={}",
        lp.length, lp.n_carry, lp.n_xs
    );
    if lp.reverse {
        out.push_str(" reverse=true");
    }
    if let Some(k) = lp.checkpoint {
        let _ = write!(out, " checkpoint={k}");
    }
    if let Some(rc) = &lp.recompute {
        let _ = write!(out, " recompute={}", rc.snapshots);
    }
    match lp.exit {
        Some(crate::ir::loops::Exit::While(k)) => {
            let _ = write!(out, " while={k}");
        }
        Some(crate::ir::loops::Exit::Flags(k)) => {
            let _ = write!(out, " while_xs={k}");
        }
        None => {}
    }
    out.push_str(" {\n");
}

fn push_indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// The `scan` nodes printed by the statement at `first`: the run of nodes of the same loop
/// (same `Arc`, same operands) with increasing result indices, so that parsing the statement
/// gives back the same nodes in the same order.
fn statement_members(g: &Graph, first: usize) -> Vec<(NodeId, usize)> {
    let mut members = Vec::new();
    let mut i = first;
    while let Some(n) = g.nodes().get(i) {
        let id = NodeId(i as u32);
        let Some((_, result)) = scan_attrs(&n.attrs) else {
            break;
        };
        let joins = match members.last() {
            None => true,
            Some(&(prev, r)) => same_loop(g, prev, id) && result > r,
        };
        if !joins {
            break;
        }
        members.push((id, result));
        i += 1;
    }
    members
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
    /// Labels of `g`'s nodes; `top` is false for a loop body, whose outputs the parser does not
    /// name (so only its inputs keep digit-only names).
    fn new(g: &'g Graph, top: bool) -> Labels<'g> {
        let n = g.len();
        let mut is_output = vec![false; n];
        for o in g.outputs().iter().filter(|_| top) {
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

    /// `%a, _, %b = scan OPERANDS length=.. carry=.. xs=.. [reverse=true] {` for a group's
    /// `members` (one name per body output, `_` where no member holds it).
    fn scan_header(&mut self, g: &Graph, members: &[(NodeId, usize)], labels: &Labels<'_>) {
        let out = &mut self.out;
        let (first, _) = members[0];
        let node = g.node(first);
        let Some((lp, _)) = scan_attrs(&node.attrs) else {
            unreachable!("members are scan nodes")
        };
        let mut held = members.iter().peekable();
        for k in 0..lp.body.outputs().len() {
            if k > 0 {
                out.push_str(", ");
            }
            match held.next_if(|&&(_, r)| r == k) {
                Some(&(id, _)) => labels.get(id).push_to(out),
                None => out.push('_'),
            }
        }
        out.push_str(" = scan");
        for (k, &x) in node.inputs.iter().enumerate() {
            out.push_str(if k == 0 { " " } else { ", " });
            labels.get(x).push_to(out);
        }
        push_loop_attrs(out, lp);
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
            Attrs::Scan { .. } => unreachable!("scan nodes print as `scan` statements"),
            Attrs::Cumsum { axis, reverse } => {
                out.push_str(" axis=");
                push_uint(out, *axis as u64);
                if *reverse {
                    out.push_str(" reverse=true");
                }
            }
            Attrs::Group { groups, param } => {
                use crate::ir::GroupParam;
                match param {
                    GroupParam::None => {}
                    GroupParam::To(to) => {
                        out.push_str(" to=");
                        out.push_str(to.name());
                    }
                    GroupParam::Axis(a) => {
                        let _ = write!(out, " axis={a}");
                    }
                    GroupParam::Root(r) => {
                        let _ = write!(out, " root={r}");
                    }
                }
                if !groups.is_world() {
                    let _ = write!(out, " groups={groups}");
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
