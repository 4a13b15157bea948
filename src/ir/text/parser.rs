//! The `.gir` parser: lines of tokens to a [`Graph`].
//!
//! Phases, all in one forward pass over the lines (no recursion anywhere, so any file size or
//! nesting depth is safe; loop bodies are a stack of suspended graphs, see [`region`]):
//! 1. Each line is tokenized by [`super::lexer`]; blank and comment-only lines are skipped.
//! 2. Outside the graph only `graph @NAME {` (once) is accepted; inside, each line is one
//!    statement (`input`, `const`, an op, a `scan` header opening a loop body, `output`) or a
//!    closing `}` (of a loop body or of the graph); after the graph's, nothing.
//! 3. Each statement is appended to the graph at once: operands are resolved by name (so use
//!    before definition is an error and the graph stays topologically ordered), attributes are
//!    checked against the op's attribute kind from [`crate::ops::rules`], and [`Graph::push`]
//!    infers the type, which is then compared with the optional `: TYPE`.
//!
//! Invariants it relies on: [`TensorType::checked`] rejects zero dimensions and more than
//! 2^31 − 1 elements with overflow-safe arithmetic, and op shape rules never allocate in
//! proportion to a shape. The parser allocates per element only for constants, after their type
//! has been checked (at most [`MAX_CONST_ELEMENTS`] elements), or in proportion to the text.
//!
//! Not done here: verification beyond what the format requires (the graph is correct by
//! construction), and any printing.

mod literals;
mod region;

use super::ParseError;
use super::hasher::{NameMap, NameSet};
use super::lexer::{Tok, Token, lex_line};
use crate::ir::{Attrs, DType, EMPTY_TENSOR_REASON, Graph, Node, NodeId, Op, Origin, TensorType};
use crate::ops::{self, Arity, AttrKind};
use literals::parse_const;
use region::Suspended;
use std::sync::Arc;

pub use region::MAX_LOOP_NESTING;

/// The most elements one `const` may hold (2^24): a resource limit of the reader, so a one-line
/// file cannot make it allocate gigabytes.
pub const MAX_CONST_ELEMENTS: usize = 1 << 24;

/// Parses a whole `.gir` file.
pub(super) fn parse(src: &str) -> Result<Graph, ParseError> {
    let mut p = Parser {
        g: Graph::default(),
        names: NameMap::default(),
        state: State::Before,
        outer: Vec::new(),
    };
    let mut toks: Vec<Token<'_>> = Vec::new();
    let mut lineno: u32 = 0;
    let mut last_line = "";
    for raw in src.split('\n') {
        lineno = lineno.saturating_add(1);
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        last_line = line;
        lex_line(line, lineno, &mut toks)?;
        if toks.len() == 1 {
            continue; // blank or comment-only
        }
        let mut cur = Cursor {
            toks: &toks,
            pos: 0,
            line: lineno,
        };
        p.line(&mut cur)?;
    }
    // End of file: just after the last character of the last line.
    let eof_col =
        u32::try_from(last_line.chars().count()).map_or(u32::MAX, |c| c.saturating_add(1));
    let at_eof = |message: String| ParseError {
        line: lineno,
        col: eof_col,
        message,
    };
    if let Some(s) = p.outer.last() {
        let what = match p.state {
            State::Inside { output_seen: None } => "an `output` statement and `}`",
            _ => "`}`",
        };
        return Err(at_eof(format!(
            "expected {what} closing the body of the `scan` on line {}, found end of file",
            s.header.line
        )));
    }
    match p.state {
        State::Before => Err(at_eof(
            "expected `graph @NAME {`, found end of file".to_string(),
        )),
        State::Inside { output_seen: None } => Err(at_eof(format!(
            "expected an `output` statement and `}}` closing graph @{}, found end of file",
            p.g.name
        ))),
        State::Inside {
            output_seen: Some(_),
        } => Err(at_eof(format!(
            "expected `}}` closing graph @{}, found end of file",
            p.g.name
        ))),
        State::After => Ok(p.g),
    }
}

/// Where the parser is in the file.
enum State {
    /// Only comments so far.
    Before,
    /// Inside `graph @NAME { ... }`; `output_seen` is the line of the `output` statement.
    Inside { output_seen: Option<u32> },
    /// After the closing `}`.
    After,
}

/// The parser; `g`, `names` and `state` belong to the innermost open graph (a loop body while
/// one is open), the enclosing ones wait in `outer`.
struct Parser<'a> {
    g: Graph,
    /// Every defined value name (including digit-only names that the graph does not keep):
    /// its node and the line that defined it.
    names: NameMap<&'a str, (NodeId, u32)>,
    state: State,
    /// The enclosing graphs of the open loop bodies, innermost last.
    outer: Vec<Suspended<'a>>,
}

/// A cursor over the tokens of one line (the last token is always [`Tok::Eol`]).
struct Cursor<'t, 'a> {
    toks: &'t [Token<'a>],
    pos: usize,
    line: u32,
}

impl<'a> Cursor<'_, 'a> {
    fn peek(&self) -> Token<'a> {
        self.toks[self.pos]
    }

    fn next(&mut self) -> Token<'a> {
        let t = self.toks[self.pos];
        if t.tok != Tok::Eol {
            self.pos += 1;
        }
        t
    }

    fn err(&self, col: u32, message: String) -> ParseError {
        ParseError {
            line: self.line,
            col,
            message,
        }
    }

    /// "expected WHAT, found TOKEN" at the token.
    fn expected(&self, t: Token<'_>, what: &str) -> ParseError {
        self.err(
            t.col,
            format!("expected {what}, found {}", t.tok.describe()),
        )
    }

    fn punct(&mut self, c: char, what: &str) -> Result<Token<'a>, ParseError> {
        let t = self.next();
        if t.tok == Tok::Punct(c) {
            Ok(t)
        } else {
            Err(self.expected(t, what))
        }
    }

    fn eol(&mut self, what: &str) -> Result<(), ParseError> {
        let t = self.next();
        if t.tok == Tok::Eol {
            Ok(())
        } else {
            Err(self.expected(t, what))
        }
    }
}

/// True for a digit-only value name (`%17`).
fn is_numeric(name: &str) -> bool {
    name.as_bytes().first().is_some_and(u8::is_ascii_digit)
}

impl<'a> Parser<'a> {
    /// Handles one non-blank line.
    fn line(&mut self, cur: &mut Cursor<'_, 'a>) -> Result<(), ParseError> {
        match self.state {
            State::Before => self.header(cur),
            State::After => Err(cur.expected(
                cur.peek(),
                "end of file after the graph's closing `}` (a file holds exactly one graph)",
            )),
            State::Inside { output_seen } => {
                let first = cur.peek();
                if first.tok != Tok::Word("forward") && self.wants_forward() {
                    return Err(cur.expected(
                        first,
                        "`forward ... {` (a `scan` with `recompute=` begins its body with the \
                         forward loop whose carries it recomputes)",
                    ));
                }
                match (first.tok, output_seen) {
                    (Tok::Punct('}'), Some(_)) => {
                        cur.next();
                        cur.eol("end of line after `}`")?;
                        if self.outer.is_empty() {
                            self.state = State::After;
                            Ok(())
                        } else {
                            self.close_region()
                        }
                    }
                    (Tok::Punct('}'), None) => Err(cur.expected(
                        first,
                        if self.outer.is_empty() {
                            "an `output` statement (every graph ends with `output %a, ...`)"
                        } else {
                            "an `output` statement (every loop body ends with `output %a, ...`)"
                        },
                    )),
                    (_, Some(out_line)) => Err(cur.expected(
                        first,
                        &format!(
                            "`}}` (the `output` statement on line {out_line} must be the last \
                             statement)"
                        ),
                    )),
                    (Tok::Word("output"), None) => {
                        self.output(cur)?;
                        self.state = State::Inside {
                            output_seen: Some(cur.line),
                        };
                        Ok(())
                    }
                    (Tok::Value(_) | Tok::Word("_"), None) => self.statement(cur),
                    (Tok::Word("forward"), None) => self.forward_statement(cur),
                    _ => Err(cur.expected(
                        first,
                        "a statement (`%name = ...` or `output %a, ...`) or `}`",
                    )),
                }
            }
        }
    }

    /// `graph @NAME {`
    fn header(&mut self, cur: &mut Cursor<'_, 'a>) -> Result<(), ParseError> {
        let t = cur.next();
        if t.tok != Tok::Word("graph") {
            return Err(cur.expected(t, "`graph @NAME {`"));
        }
        let t = cur.next();
        let Tok::Global(name) = t.tok else {
            return Err(cur.expected(t, "a graph name `@NAME` after `graph`"));
        };
        cur.punct('{', "`{` after the graph name")?;
        cur.eol("end of line after `{` (each statement goes on its own line)")?;
        self.g.name = name.to_string();
        self.state = State::Inside { output_seen: None };
        Ok(())
    }

    /// Resolves a value reference.
    fn operand(&self, cur: &Cursor<'_, 'a>, t: Token<'a>) -> Result<NodeId, ParseError> {
        let Tok::Value(name) = t.tok else {
            return Err(cur.expected(t, "a value `%name`"));
        };
        match self.names.get(name) {
            Some(&(id, _)) => Ok(id),
            None => Err(self.undefined(cur, t.col, name)),
        }
    }

    /// `output %a, %b, ...`
    fn output(&mut self, cur: &mut Cursor<'_, 'a>) -> Result<(), ParseError> {
        cur.next(); // `output`
        let mut outs: Vec<NodeId> = Vec::new();
        let mut seen: NameSet<NodeId> = NameSet::default();
        loop {
            let t = cur.next();
            let id = self.operand(cur, t)?;
            let Tok::Value(name) = t.tok else {
                unreachable!("operand() accepts only value tokens")
            };
            if !seen.insert(id) {
                return Err(cur.err(
                    t.col,
                    format!("value `%{name}` is output twice (outputs must be distinct)"),
                ));
            }
            // Outputs are named by their value names, digit-only ones included (a loop body's
            // outputs are known by position, so they keep the names their statements gave).
            if self.outer.is_empty() && self.g.node(id).name.is_none() {
                self.g.set_name(id, Some(name));
            }
            outs.push(id);
            let t = cur.next();
            match t.tok {
                Tok::Punct(',') => {}
                Tok::Eol => break,
                _ => return Err(cur.expected(t, "`,` or end of line")),
            }
        }
        self.g.set_outputs(outs);
        Ok(())
    }

    /// `%name = input TYPE`, `%name = const VALUE : TYPE` or `%name = OP ...`.
    fn statement(&mut self, cur: &mut Cursor<'_, 'a>) -> Result<(), ParseError> {
        if cur.peek().tok == Tok::Word("_") || cur.toks[cur.pos + 1].tok == Tok::Punct(',') {
            return self.scan_statement(cur);
        }
        let first = cur.next();
        let Tok::Value(name) = first.tok else {
            unreachable!("statement() is called on a value token")
        };
        if let Some(&(_, line)) = self.names.get(name) {
            return Err(cur.err(
                first.col,
                format!(
                    "value `%{name}` is already defined on line {line} (each value is defined \
                     exactly once)"
                ),
            ));
        }
        cur.punct('=', "`=` after the value name")?;
        let origin = Origin::Line(cur.line, first.col);
        let kw = cur.next();
        let id = match kw.tok {
            Tok::Word("input") => {
                let (ty, _) = parse_type(cur)?;
                cur.eol("end of line after the input's type")?;
                self.g.append(Node {
                    op: Op::Input,
                    inputs: Vec::new(),
                    attrs: Attrs::None,
                    ty,
                    name: Some(name.into()),
                    origin,
                })
            }
            Tok::Word("const") => {
                let value = parse_const(cur)?;
                let ty = value.ty();
                self.g.append(Node {
                    op: Op::Const,
                    inputs: Vec::new(),
                    attrs: Attrs::Const(Arc::new(value)),
                    ty,
                    name: (!is_numeric(name)).then(|| name.into()),
                    origin,
                })
            }
            Tok::Word(w) => match Op::from_name(w) {
                Some(Op::Scan) => {
                    let results = vec![Some((name, first.col))];
                    return self.scan_header(cur, results, kw);
                }
                Some(op) => {
                    let id = self.op_statement(cur, op, kw)?;
                    if !is_numeric(name) {
                        self.g.set_name(id, Some(name));
                    }
                    self.g.set_origin(id, origin);
                    id
                }
                None => {
                    return Err(cur.err(
                        kw.col,
                        format!("expected `input`, `const` or an op name, found unknown op `{w}`"),
                    ));
                }
            },
            _ => return Err(cur.expected(kw, "`input`, `const` or an op name")),
        };
        self.names.insert(name, (id, cur.line));
        Ok(())
    }

    /// The operand list `%a, %b, ...` (possibly empty) after an op name.
    fn operands(&self, cur: &mut Cursor<'_, 'a>) -> Result<Vec<NodeId>, ParseError> {
        let mut inputs = Vec::new();
        if matches!(cur.peek().tok, Tok::Value(_)) {
            loop {
                let t = cur.next();
                inputs.push(self.operand(cur, t)?);
                if cur.peek().tok != Tok::Punct(',') {
                    break;
                }
                cur.next();
                if !matches!(cur.peek().tok, Tok::Value(_)) {
                    return Err(cur.expected(cur.peek(), "a value `%name` after `,`"));
                }
            }
        }
        Ok(inputs)
    }

    /// The rest of `%name = OP %a, %b [key=value ...] [: TYPE]` after the op name.
    fn op_statement(
        &mut self,
        cur: &mut Cursor<'_, 'a>,
        op: Op,
        op_tok: Token<'a>,
    ) -> Result<NodeId, ParseError> {
        let rules = ops::rules(op);
        let inputs = self.operands(cur)?;
        // Attributes.
        let table = attr_table(rules.attrs);
        let mut slots: [Option<(AttrVal, u32)>; 2] = [None, None];
        while let Tok::Word(key) = cur.peek().tok {
            let kt = cur.next();
            let Some(k) = table.iter().position(|s| s.key == key) else {
                let expected = if table.is_empty() {
                    format!("`{op}` takes no attributes")
                } else {
                    let keys: Vec<String> = table.iter().map(|s| format!("`{}`", s.key)).collect();
                    format!("`{op}` takes {}", keys.join(" and "))
                };
                return Err(cur.err(kt.col, format!("unknown attribute `{key}`: {expected}")));
            };
            if slots[k].is_some() {
                return Err(cur.err(kt.col, format!("attribute `{key}` is given twice")));
            }
            cur.punct('=', &format!("`=` after the attribute name `{key}`"))?;
            let vt = cur.peek();
            let val = parse_attr_value(cur, table[k])?;
            slots[k] = Some((val, vt.col));
        }
        // Optional type annotation, then the end of the line.
        let annotation = if cur.peek().tok == Tok::Punct(':') {
            cur.next();
            Some(parse_type(cur)?)
        } else {
            None
        };
        let t = cur.peek();
        if t.tok != Tok::Eol {
            let what = match (annotation.is_some(), matches!(t.tok, Tok::Value(_))) {
                (true, _) => "end of line after the type",
                (false, true) if inputs.is_empty() => "an operand",
                (false, true) => "`,` between operands, an attribute, `:` or end of line",
                (false, false) => "an attribute `key=value`, `: TYPE` or end of line",
            };
            return Err(cur.expected(t, what));
        }
        let arity_ok = match rules.arity {
            Arity::Exact(n) => inputs.len() == n,
            Arity::Variadic => !inputs.is_empty(),
        };
        if !arity_ok {
            let want = match rules.arity {
                Arity::Exact(1) => "1 operand".to_string(),
                Arity::Exact(n) => format!("{n} operands"),
                Arity::Variadic => "one or more operands".to_string(),
            };
            return Err(cur.err(
                op_tok.col,
                format!("`{op}` takes {want}, found {}", inputs.len()),
            ));
        }
        for (spec, slot) in table.iter().zip(&slots) {
            if spec.required && slot.is_none() {
                return Err(cur.err(
                    op_tok.col,
                    format!("`{op}` requires the attribute `{}`", spec.key),
                ));
            }
        }
        let rank = inputs.first().map_or(0, |&x| self.g.ty(x).rank());
        let attrs = build_attrs(cur, rules.attrs, slots, rank)?;
        let id = self
            .g
            .push(op, inputs, attrs)
            .map_err(|e| cur.err(op_tok.col, format!("invalid operation: {e}")))?;
        if let Some((ty, col)) = annotation {
            let inferred = self.g.ty(id);
            if *inferred != ty {
                return Err(cur.err(
                    col,
                    format!("type annotation `{ty}` does not match the inferred type `{inferred}`"),
                ));
            }
        }
        Ok(id)
    }
}

// ---- attributes --------------------------------------------------------------------------

/// The kind of value an attribute takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ValKind {
    /// A (possibly negative) 32-bit integer.
    I32,
    /// A non-negative integer.
    Index,
    /// `true` or `false`.
    Bool,
    /// `f32` or `f64`.
    FloatDType,
    /// A list of non-negative integers.
    List,
    /// A tensor type `DTYPE[d0,...]`.
    Type,
    /// Rank groups `[[0,1],[2,3]]`.
    Groups,
}

/// One attribute an op takes.
#[derive(Clone, Copy)]
struct AttrSpec {
    key: &'static str,
    kind: ValKind,
    required: bool,
}

const fn spec(key: &'static str, kind: ValKind, required: bool) -> AttrSpec {
    AttrSpec {
        key,
        kind,
        required,
    }
}

/// The attributes of each attribute kind, in the order of `docs/gir.md`'s op tables (which is also the
/// canonical print order).
fn attr_table(kind: AttrKind) -> &'static [AttrSpec] {
    use ValKind::*;
    const N: AttrSpec = spec("n", I32, true);
    const TO: AttrSpec = spec("to", FloatDType, true);
    const AXES: AttrSpec = spec("axes", List, false);
    const KEEPDIMS: AttrSpec = spec("keepdims", Bool, false);
    const SHAPE: AttrSpec = spec("shape", List, true);
    const PERM: AttrSpec = spec("perm", List, true);
    const START: AttrSpec = spec("start", List, true);
    const STOP: AttrSpec = spec("stop", List, true);
    const AXIS: AttrSpec = spec("axis", Index, true);
    const TYPE: AttrSpec = spec("type", Type, true);
    const SIZE: AttrSpec = spec("size", Index, true);
    const REVERSE: AttrSpec = spec("reverse", Bool, false);
    const GROUPS: AttrSpec = spec("groups", Groups, false);
    const ROOT: AttrSpec = spec("root", Index, true);
    match kind {
        AttrKind::None | AttrKind::Const => &[],
        AttrKind::Powi => &[N],
        AttrKind::Cast => &[TO],
        AttrKind::Reduce => &[AXES, KEEPDIMS],
        AttrKind::Shape => &[SHAPE],
        AttrKind::Perm => &[PERM],
        AttrKind::Slice => &[START, STOP],
        AttrKind::Axis => &[AXIS],
        AttrKind::Iota => &[TYPE, AXIS],
        AttrKind::Scatter => &[AXIS, SIZE],
        AttrKind::Random => &[TYPE],
        AttrKind::Cumsum => &[AXIS, REVERSE],
        AttrKind::Scan => &[],
        AttrKind::Group => &[GROUPS],
        AttrKind::GroupTo => &[TO, GROUPS],
        AttrKind::GroupAxis => &[AXIS, GROUPS],
        AttrKind::GroupRoot => &[ROOT, GROUPS],
    }
}

/// A parsed attribute value.
#[derive(Clone, Debug, PartialEq)]
enum AttrVal {
    I32(i32),
    Index(usize),
    Bool(bool),
    DType(DType),
    List(Vec<usize>),
    Type(TensorType),
    Groups(crate::ir::Groups),
}

/// Parses a non-negative integer token (`what` names it in errors).
fn parse_index(cur: &Cursor<'_, '_>, t: Token<'_>, what: &str) -> Result<usize, ParseError> {
    match t.tok {
        Tok::Number(s) if s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse::<usize>()
            .map_err(|_| cur.err(t.col, format!("{what} `{s}` is too large"))),
        _ => Err(cur.expected(t, &format!("{what} (a non-negative integer)"))),
    }
}

fn parse_attr_value(cur: &mut Cursor<'_, '_>, spec: AttrSpec) -> Result<AttrVal, ParseError> {
    if spec.kind == ValKind::Type {
        return parse_type(cur).map(|(ty, _)| AttrVal::Type(ty));
    }
    if spec.kind == ValKind::Groups {
        return parse_groups(cur).map(AttrVal::Groups);
    }
    let t = cur.next();
    let key = spec.key;
    match spec.kind {
        ValKind::I32 => {
            let Tok::Number(s) = t.tok else {
                return Err(cur.expected(t, &format!("an integer for `{key}`")));
            };
            let digits = s.strip_prefix('-').unwrap_or(s);
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(cur.expected(t, &format!("an integer for `{key}`")));
            }
            s.parse::<i32>().map(AttrVal::I32).map_err(|_| {
                cur.err(
                    t.col,
                    format!("`{key}={s}` is out of range (expected a 32-bit integer)"),
                )
            })
        }
        ValKind::Index => {
            let what = if key == "root" {
                "a position"
            } else {
                "an axis"
            };
            parse_index(cur, t, &format!("{what} for `{key}`")).map(AttrVal::Index)
        }
        ValKind::Bool => match t.tok {
            Tok::Word("true") => Ok(AttrVal::Bool(true)),
            Tok::Word("false") => Ok(AttrVal::Bool(false)),
            _ => Err(cur.expected(t, &format!("`true` or `false` for `{key}`"))),
        },
        ValKind::FloatDType => match t.tok {
            Tok::Word("f32") => Ok(AttrVal::DType(DType::F32)),
            Tok::Word("f64") => Ok(AttrVal::DType(DType::F64)),
            Tok::Word("i32") => Ok(AttrVal::DType(DType::I32)),
            _ => Err(cur.expected(t, &format!("`f32`, `f64` or `i32` for `{key}`"))),
        },
        ValKind::Type | ValKind::Groups => unreachable!("parsed above"),
        ValKind::List => {
            if t.tok != Tok::Punct('[') {
                return Err(cur.expected(
                    t,
                    &format!("a list of integers such as `[0,1]` for `{key}`"),
                ));
            }
            let mut v = Vec::new();
            if cur.peek().tok == Tok::Punct(']') {
                cur.next();
                return Ok(AttrVal::List(v));
            }
            loop {
                let e = cur.next();
                v.push(parse_index(cur, e, &format!("an element of `{key}`"))?);
                let sep = cur.next();
                match sep.tok {
                    Tok::Punct(',') => {}
                    Tok::Punct(']') => return Ok(AttrVal::List(v)),
                    _ => return Err(cur.expected(sep, &format!("`,` or `]` in `{key}`"))),
                }
            }
        }
    }
}

/// Parses rank groups `[[0,1],[2,3]]` (validated: every rank `0..N` in exactly one group).
fn parse_groups(cur: &mut Cursor<'_, '_>) -> Result<crate::ir::Groups, ParseError> {
    let open = cur.next();
    let what = "rank groups such as `[[0,1],[2,3]]` for `groups`";
    if open.tok != Tok::Punct('[') {
        return Err(cur.expected(open, what));
    }
    let mut lists = Vec::new();
    loop {
        let t = cur.next();
        if t.tok != Tok::Punct('[') {
            return Err(cur.expected(t, "`[` opening a group such as `[0,1]`"));
        }
        let mut l = Vec::new();
        if cur.peek().tok != Tok::Punct(']') {
            loop {
                let e = cur.next();
                l.push(parse_index(cur, e, "a rank")?);
                let sep = cur.next();
                match sep.tok {
                    Tok::Punct(',') => {}
                    Tok::Punct(']') => break,
                    _ => return Err(cur.expected(sep, "`,` or `]` in a group")),
                }
            }
        } else {
            cur.next();
        }
        lists.push(l);
        let sep = cur.next();
        match sep.tok {
            Tok::Punct(',') => {}
            Tok::Punct(']') => break,
            _ => return Err(cur.expected(sep, "`,` or `]` between groups")),
        }
    }
    crate::ir::Groups::new(lists).map_err(|e| cur.err(open.col, format!("bad `groups`: {e}")))
}

/// Turns the parsed attribute slots (in [`attr_table`] order) into [`Attrs`]. `rank` is the rank
/// of the first operand (for the default and the range of `axes`).
fn build_attrs(
    cur: &Cursor<'_, '_>,
    kind: AttrKind,
    slots: [Option<(AttrVal, u32)>; 2],
    rank: usize,
) -> Result<Attrs, ParseError> {
    let [a, b] = slots;
    let list = |s: Option<(AttrVal, u32)>| match s {
        Some((AttrVal::List(v), col)) => (v, col),
        _ => unreachable!("required list attribute checked"),
    };
    Ok(match kind {
        AttrKind::None | AttrKind::Const => Attrs::None,
        AttrKind::Powi => match a {
            Some((AttrVal::I32(n), _)) => Attrs::Powi { n },
            _ => unreachable!("required attribute checked"),
        },
        AttrKind::Cast => match a {
            Some((AttrVal::DType(to), _)) => Attrs::Cast { to },
            _ => unreachable!("required attribute checked"),
        },
        AttrKind::Axis => match a {
            Some((AttrVal::Index(axis), _)) => Attrs::Axis { axis },
            _ => unreachable!("required attribute checked"),
        },
        AttrKind::Iota => match (a, b) {
            (Some((AttrVal::Type(ty), _)), Some((AttrVal::Index(axis), _))) => {
                Attrs::Iota { ty, axis }
            }
            _ => unreachable!("required attributes checked"),
        },
        AttrKind::Scatter => match (a, b) {
            (Some((AttrVal::Index(axis), _)), Some((AttrVal::Index(size), _))) => {
                Attrs::Scatter { axis, size }
            }
            _ => unreachable!("required attributes checked"),
        },
        AttrKind::Random => match a {
            Some((AttrVal::Type(ty), _)) => Attrs::Random { ty },
            _ => unreachable!("required attribute checked"),
        },
        AttrKind::Cumsum => match a {
            Some((AttrVal::Index(axis), _)) => Attrs::Cumsum {
                axis,
                reverse: matches!(b, Some((AttrVal::Bool(true), _))),
            },
            _ => unreachable!("required attribute checked"),
        },
        AttrKind::Reduce => {
            let axes = match a {
                Some((AttrVal::List(mut axes), col)) => {
                    if let Some(&bad) = axes.iter().find(|&&x| x >= rank) {
                        return Err(cur.err(
                            col,
                            format!(
                                "axis {bad} in `axes` is out of range for an operand of rank {rank}"
                            ),
                        ));
                    }
                    axes.sort_unstable();
                    if let Some(w) = axes.windows(2).find(|w| w[0] == w[1]) {
                        return Err(cur.err(
                            col,
                            format!("`axes` must be distinct, found axis {} twice", w[0]),
                        ));
                    }
                    axes
                }
                None => (0..rank).collect(),
                Some(_) => unreachable!("axes is a list"),
            };
            let keepdims = matches!(b, Some((AttrVal::Bool(true), _)));
            Attrs::Reduce { axes, keepdims }
        }
        AttrKind::Scan => unreachable!("`scan` statements are parsed by `region`"),
        AttrKind::Group | AttrKind::GroupTo | AttrKind::GroupAxis | AttrKind::GroupRoot => {
            group_attrs(kind, a, b)
        }
        AttrKind::Shape => Attrs::Shape { shape: list(a).0 },
        AttrKind::Perm => Attrs::Perm { perm: list(a).0 },
        AttrKind::Slice => Attrs::Slice {
            start: list(a).0,
            stop: list(b).0,
        },
    })
}

/// The attributes of a collective: its parameter in slot `a` (none for [`AttrKind::Group`],
/// whose groups are in `a`), its groups in the last slot.
fn group_attrs(kind: AttrKind, a: Option<(AttrVal, u32)>, b: Option<(AttrVal, u32)>) -> Attrs {
    use crate::ir::{GroupParam, Groups};
    let (param, groups) = match (kind, a) {
        (AttrKind::Group, g) => (GroupParam::None, g),
        (AttrKind::GroupTo, Some((AttrVal::DType(to), _))) => (GroupParam::To(to), b),
        (AttrKind::GroupAxis, Some((AttrVal::Index(axis), _))) => (GroupParam::Axis(axis), b),
        (AttrKind::GroupRoot, Some((AttrVal::Index(root), _))) => (GroupParam::Root(root), b),
        _ => unreachable!("required attributes checked"),
    };
    let groups = match groups {
        Some((AttrVal::Groups(g), _)) => g,
        None => Groups::world(),
        Some(_) => unreachable!("`groups` holds groups"),
    };
    Attrs::Group { groups, param }
}

// ---- types -------------------------------------------------------------------------------

/// Parses `DTYPE[d0,d1,...]`; returns the type and the column where it starts.
fn parse_type(cur: &mut Cursor<'_, '_>) -> Result<(TensorType, u32), ParseError> {
    let t = cur.next();
    let dtype = match t.tok {
        Tok::Word(w) => DType::from_name(w),
        _ => None,
    };
    let Some(dtype) = dtype else {
        return Err(cur.expected(
            t,
            "a type such as `f64[2,3]` (dtype `f32`, `f64`, `bool` or `i32`)",
        ));
    };
    cur.punct(
        '[',
        &format!("`[` after `{dtype}` (a scalar is `{dtype}[]`)"),
    )?;
    let mut shape = Vec::new();
    if cur.peek().tok == Tok::Punct(']') {
        cur.next();
    } else {
        loop {
            let d = cur.next();
            let n = parse_index(cur, d, "a dimension")?;
            if n == 0 {
                return Err(cur.err(
                    d.col,
                    format!("expected a positive dimension, found 0 ({EMPTY_TENSOR_REASON})"),
                ));
            }
            shape.push(n);
            let sep = cur.next();
            match sep.tok {
                Tok::Punct(',') => {}
                Tok::Punct(']') => break,
                _ => return Err(cur.expected(sep, "`,` or `]` in the type's shape")),
            }
        }
    }
    match TensorType::checked(dtype, shape) {
        Some(ty) => Ok((ty, t.col)),
        None => Err(cur.err(
            t.col,
            "type has more than 2^31 - 1 elements (the largest tensor allowed)".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_is_reachable_by_name_with_its_attribute_table() {
        for op in Op::ALL {
            if matches!(op, Op::Input | Op::Const) {
                assert_eq!(Op::from_name(op.name()), None);
                continue;
            }
            assert_eq!(Op::from_name(op.name()), Some(op));
            let keys: Vec<&str> = attr_table(ops::rules(op).attrs)
                .iter()
                .map(|s| s.key)
                .collect();
            // The spec's table, by hand.
            let want: &[&str] = match op {
                Op::Powi => &["n"],
                Op::Cast => &["to"],
                Op::NumRanks | Op::AxisIndex => &["to", "groups"],
                Op::AllReduceSum | Op::AllReduceMean | Op::Pvary => &["groups"],
                Op::AllGather | Op::ReduceScatter => &["axis", "groups"],
                Op::CollectiveBroadcast => &["root", "groups"],
                Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin => {
                    &["axes", "keepdims"]
                }
                Op::Reshape | Op::Broadcast => &["shape"],
                Op::Transpose => &["perm"],
                Op::Slice => &["start", "stop"],
                Op::Concat | Op::Gather | Op::Argmax | Op::Argmin => &["axis"],
                Op::Iota => &["type", "axis"],
                Op::ScatterAdd => &["axis", "size"],
                Op::RandomUniform => &["type"],
                Op::Cumsum => &["axis", "reverse"],
                _ => &[],
            };
            assert_eq!(keys, want, "{op}");
        }
    }

    #[test]
    fn a_file_of_only_a_graph_header_needs_output_and_brace() {
        let e = parse("graph @g {\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1));
        assert!(e.message.contains("`output` statement and `}`"), "{e}");
    }
}
