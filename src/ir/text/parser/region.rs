//! `scan` statements: a header line that opens a loop body, the body (a graph with its own
//! name scope) and the `}` that closes it.
//!
//! ```text
//! %c, _, %ys = scan %c0, %xs, %w length=100 carry=1 xs=1 reverse=true {
//!   ...the body: inputs (carries, x slices, consts), statements, `output`
//! }
//! ```
//!
//! Nesting without recursion: opening a body suspends the enclosing graph (its nodes, names
//! and the header being parsed) on [`Parser::outer`] and starts an empty graph; the body's
//! closing `}` pops it back and appends the header's result nodes to it. Everything that reads
//! a parsed graph later (verification, printing, evaluation) walks loop bodies as deep as
//! they nest, so the reader caps the nesting at [`MAX_LOOP_NESTING`].

use super::{Cursor, NameMap, ParseError, Parser, State, Tok, Token, is_numeric, parse_index};
use crate::ir::loops::Loop;
use crate::ir::{Attrs, Graph, NodeId, Op, Origin};
use std::sync::Arc;

/// How deeply loop bodies may nest in a `.gir` file (a body inside a body inside ... ).
pub const MAX_LOOP_NESTING: usize = 64;

/// The longest loop the reader accepts (the element limit of a type, 2^31 − 1).
const MAX_LENGTH: usize = i32::MAX as usize;

/// A parsed `scan` header whose body is open.
pub(super) struct Header<'a> {
    /// One entry per body output: the result's name and column, or `None` for `_`.
    results: Vec<Option<(&'a str, u32)>>,
    operands: Vec<NodeId>,
    length: usize,
    reverse: bool,
    n_carry: usize,
    n_xs: usize,
    /// The header's line and the column of the `scan` keyword.
    pub(super) line: u32,
    col: u32,
}

/// An enclosing graph, waiting for the loop body it contains to close.
pub(super) struct Suspended<'a> {
    g: Graph,
    names: NameMap<&'a str, (NodeId, u32)>,
    pub(super) header: Header<'a>,
}

impl Header<'_> {
    fn err(&self, col: u32, message: String) -> ParseError {
        ParseError {
            line: self.line,
            col,
            message,
        }
    }
}

impl<'a> Parser<'a> {
    /// The error for an undefined `%name` at `col`: if an enclosing graph defines it, says that
    /// a loop body cannot see it.
    pub(super) fn undefined(&self, cur: &Cursor<'_, 'a>, col: u32, name: &str) -> ParseError {
        let outer = self.outer.iter().rev().find_map(|s| s.names.get(name));
        let message = match outer {
            Some(&(_, line)) => format!(
                "value `%{name}` is not defined in this region: it is defined on line {line}, \
                 outside the loop body (a body sees only its own values: pass `%{name}` to the \
                 `scan` as an operand and declare an `input` for it)"
            ),
            None => {
                format!("undefined value `%{name}` (every value must be defined before it is used)")
            }
        };
        cur.err(col, message)
    }

    /// `%a, _, %b = scan ...`: the result list of a statement with several results (or `_`).
    pub(super) fn scan_statement(&mut self, cur: &mut Cursor<'_, 'a>) -> Result<(), ParseError> {
        let mut results = Vec::new();
        loop {
            let t = cur.next();
            match t.tok {
                Tok::Value(name) => results.push(Some((name, t.col))),
                Tok::Word("_") => results.push(None),
                _ => return Err(cur.expected(t, "a result name `%name` or `_`")),
            }
            let sep = cur.next();
            match sep.tok {
                Tok::Punct(',') => {}
                Tok::Punct('=') => break,
                _ => return Err(cur.expected(sep, "`,` or `=` after a result name")),
            }
        }
        let kw = cur.next();
        if kw.tok != Tok::Word("scan") {
            return Err(cur.expected(
                kw,
                "`scan` (only a `scan` statement defines several values or uses `_`)",
            ));
        }
        self.scan_header(cur, results, kw)
    }

    /// The rest of a `scan` header after the keyword `kw`: operands, attributes and `{`. Opens
    /// the body.
    pub(super) fn scan_header(
        &mut self,
        cur: &mut Cursor<'_, 'a>,
        results: Vec<Option<(&'a str, u32)>>,
        kw: Token<'a>,
    ) -> Result<(), ParseError> {
        self.check_result_names(cur, &results)?;
        let operands = self.operands(cur)?;
        // Attributes: `length` (required), `carry`, `xs`, `reverse`, in any order.
        let mut slots: [Option<(usize, u32)>; 4] = [None; 4];
        const KEYS: [&str; 4] = ["length", "carry", "xs", "reverse"];
        while let Tok::Word(key) = cur.peek().tok {
            let kt = cur.next();
            let Some(k) = KEYS.iter().position(|&s| s == key) else {
                return Err(cur.err(
                    kt.col,
                    format!(
                        "unknown attribute `{key}`: `scan` takes `length`, `carry`, `xs` and \
                         `reverse`"
                    ),
                ));
            };
            if slots[k].is_some() {
                return Err(cur.err(kt.col, format!("attribute `{key}` is given twice")));
            }
            cur.punct('=', &format!("`=` after the attribute name `{key}`"))?;
            let vt = cur.next();
            let v = if key == "reverse" {
                match vt.tok {
                    Tok::Word("true") => 1,
                    Tok::Word("false") => 0,
                    _ => return Err(cur.expected(vt, "`true` or `false` for `reverse`")),
                }
            } else {
                parse_index(cur, vt, &format!("a count for `{key}`"))?
            };
            slots[k] = Some((v, vt.col));
        }
        let t = cur.next();
        if t.tok != Tok::Punct('{') {
            let what = if matches!(t.tok, Tok::Value(_)) && !operands.is_empty() {
                "`,` between operands, an attribute or `{` opening the loop body"
            } else {
                "an attribute `key=value` or `{` opening the loop body"
            };
            return Err(cur.expected(t, what));
        }
        cur.eol("end of line after `{` (each statement of the body goes on its own line)")?;
        if operands.is_empty() {
            return Err(cur.err(kw.col, "`scan` takes one or more operands, found 0".into()));
        }
        let Some((length, length_col)) = slots[0] else {
            return Err(cur.err(kw.col, "`scan` requires the attribute `length`".into()));
        };
        if length > MAX_LENGTH {
            return Err(cur.err(
                length_col,
                format!("`length={length}` is too large (at most 2^31 - 1 = {MAX_LENGTH} steps)"),
            ));
        }
        let (n_carry, n_xs) = (slots[1].map_or(0, |s| s.0), slots[2].map_or(0, |s| s.0));
        if n_carry.saturating_add(n_xs) > operands.len() {
            let col = slots[1].or(slots[2]).map_or(kw.col, |s| s.1);
            return Err(cur.err(
                col,
                format!(
                    "`carry={n_carry}` and `xs={n_xs}` need {} operands, found {}",
                    n_carry.saturating_add(n_xs),
                    operands.len()
                ),
            ));
        }
        if self.outer.len() >= MAX_LOOP_NESTING {
            return Err(cur.err(
                t.col,
                format!("loop bodies nest more than {MAX_LOOP_NESTING} deep (the reader's limit)"),
            ));
        }
        let header = Header {
            results,
            operands,
            length,
            reverse: slots[3].is_some_and(|s| s.0 == 1),
            n_carry,
            n_xs,
            line: cur.line,
            col: kw.col,
        };
        let body = Graph::new(format!("{}_body", self.g.name));
        self.outer.push(Suspended {
            g: std::mem::replace(&mut self.g, body),
            names: std::mem::take(&mut self.names),
            header,
        });
        self.state = State::Inside { output_seen: None };
        Ok(())
    }

    /// Result names: at least one named, none defined before, none twice.
    fn check_result_names(
        &self,
        cur: &Cursor<'_, 'a>,
        results: &[Option<(&'a str, u32)>],
    ) -> Result<(), ParseError> {
        let named: Vec<(&str, u32)> = results.iter().flatten().copied().collect();
        if named.is_empty() {
            return Err(cur.err(
                cur.toks[0].col,
                "a `scan` statement names at least one result (`_` skips one, not all)".into(),
            ));
        }
        for (k, &(name, col)) in named.iter().enumerate() {
            if let Some(&(_, line)) = self.names.get(name) {
                return Err(cur.err(
                    col,
                    format!(
                        "value `%{name}` is already defined on line {line} (each value is \
                         defined exactly once)"
                    ),
                ));
            }
            if named[..k].iter().any(|&(n, _)| n == name) {
                return Err(cur.err(
                    col,
                    format!("value `%{name}` is named twice in this statement"),
                ));
            }
        }
        Ok(())
    }

    /// Closes the innermost loop body (its `output` was seen): restores the enclosing graph
    /// and appends the header's result nodes (one group) to it.
    pub(super) fn close_region(&mut self) -> Result<(), ParseError> {
        let s = self.outer.pop().expect("a loop body is open");
        let body = std::mem::replace(&mut self.g, s.g);
        self.names = s.names;
        self.state = State::Inside { output_seen: None };
        let h = s.header;
        let first_col = h.results.iter().flatten().next().map_or(h.col, |r| r.1);
        let n_out = body.outputs().len();
        if h.results.len() != n_out {
            return Err(h.err(
                first_col,
                format!(
                    "this `scan` names {} results but its body has {n_out} outputs (one name \
                     or `_` per body output: the carries, then the ys)",
                    h.results.len()
                ),
            ));
        }
        let lp = Arc::new(Loop {
            length: h.length,
            reverse: h.reverse,
            n_carry: h.n_carry,
            n_xs: h.n_xs,
            body,
        });
        for (result, named) in h.results.iter().enumerate() {
            let Some((name, col)) = *named else { continue };
            let attrs = Attrs::Scan {
                body: lp.clone(),
                result,
            };
            let id = self
                .g
                .push(Op::Scan, h.operands.clone(), attrs)
                .map_err(|e| h.err(h.col, format!("invalid operation: {e}")))?;
            if !is_numeric(name) {
                self.g.set_name(id, Some(name));
            }
            self.g.set_origin(id, Origin::Line(h.line, col));
            self.names.insert(name, (id, h.line));
        }
        Ok(())
    }
}
