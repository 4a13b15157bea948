//! `scan` statements: a header line that opens a loop body, the body (a graph with its own
//! name scope) and the `}` that closes it.
//!
//! ```text
//! %c, _, %ys = scan %c0, %xs, %w length=100 carry=1 xs=1 reverse=true {
//!   ...the body: inputs (carries, x slices, consts), statements, `output`
//! }
//! ```
//!
//! A backward loop that recomputes the carries of a forward loop (`recompute=SNAPSHOTS`, see
//! [`crate::ir::loops::Recompute`]) holds that forward loop as the first statement of its
//! body, a region without operands or results:
//!
//! ```text
//! %cb, %xb = scan %ct, %c0, %xs, %ysb length=5 carry=1 xs=3 recompute=2 {
//!   forward length=5 carry=1 xs=1 {
//!     ...the forward loop's body
//!   }
//!   ...the backward body
//! }
//! ```
//!
//! Nesting without recursion: opening a body suspends the enclosing graph (its nodes, names
//! and the header being parsed) on [`Parser::outer`] and starts an empty graph; the body's
//! closing `}` pops it back and appends the header's result nodes to it. Everything that reads
//! a parsed graph later (verification, printing, evaluation) walks loop bodies as deep as
//! they nest, so the reader caps the nesting at [`MAX_LOOP_NESTING`].

use super::{Cursor, NameMap, ParseError, Parser, State, Tok, Token, is_numeric, parse_index};
use crate::ir::loops::{Exit, Loop, Recompute};
use crate::ir::{Attrs, Graph, NodeId, Op, Origin, TensorType};
use std::sync::Arc;

/// How deeply loop bodies may nest in a `.gir` file (a body inside a body inside ... ).
pub const MAX_LOOP_NESTING: usize = 64;

/// The longest loop the reader accepts (the element limit of a type, 2^31 − 1).
const MAX_LENGTH: usize = i32::MAX as usize;

/// The most operand references one `scan` statement may make, named results times operands
/// (each result node holds the operand list): a resource limit, so that one long line cannot
/// make the reader allocate in proportion to its length squared.
pub(super) const MAX_SCAN_REFS: usize = 1 << 24;

/// The attributes of a loop header.
#[derive(Clone, Copy)]
struct LoopAttrs {
    length: usize,
    reverse: bool,
    n_carry: usize,
    n_xs: usize,
    checkpoint: Option<usize>,
    /// `recompute=SNAPSHOTS`: the body starts with a `forward` region.
    recompute: Option<usize>,
    /// `while=OUTPUT` or `while_xs=XS`.
    exit: Option<Exit>,
}

/// The attribute keys of a loop header, in canonical order.
const KEYS: [&str; 8] = [
    "length",
    "carry",
    "xs",
    "reverse",
    "checkpoint",
    "recompute",
    "while",
    "while_xs",
];

/// A parsed loop header whose body is open: a `scan` statement, or (no results, no operands)
/// the `forward` region of a recomputing loop.
pub(super) struct Header<'a> {
    /// One entry per body output: the result's name and column, or `None` for `_`.
    results: Vec<Option<(&'a str, u32)>>,
    operands: Vec<NodeId>,
    attrs: LoopAttrs,
    /// A `forward` region rather than a `scan` statement.
    is_forward: bool,
    /// The forward loop, once its region closed (`recompute` only).
    forward: Option<Arc<Loop>>,
    /// The header's line and the column of its keyword.
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
        let attrs = loop_attrs(cur, kw, !operands.is_empty())?;
        if operands.is_empty() {
            return Err(cur.err(kw.col, "`scan` takes one or more operands, found 0".into()));
        }
        let named = results.iter().flatten().count();
        if named.saturating_mul(operands.len()) > MAX_SCAN_REFS {
            return Err(cur.err(
                kw.col,
                format!(
                    "this `scan` has {named} named results and {} operands: each result holds \
                     every operand, {} references in all, over the reader's limit of \
                     {MAX_SCAN_REFS} (name fewer results: `_` skips one)",
                    operands.len(),
                    named.saturating_mul(operands.len())
                ),
            ));
        }
        let need = attrs.n_carry.saturating_add(attrs.n_xs);
        if need > operands.len() {
            return Err(cur.err(
                kw.col,
                format!(
                    "`carry={}` and `xs={}` need {need} operands, found {}",
                    attrs.n_carry,
                    attrs.n_xs,
                    operands.len()
                ),
            ));
        }
        self.open_region(cur, results, operands, attrs, kw)
    }

    /// `forward ATTRS {`: the forward loop of a recomputing loop, first in its body.
    pub(super) fn forward_statement(&mut self, cur: &mut Cursor<'_, 'a>) -> Result<(), ParseError> {
        let kw = cur.next();
        let wanted = self.wants_forward();
        if !wanted {
            return Err(cur.err(
                kw.col,
                "`forward` only opens the forward loop of a `scan` with `recompute=`, as the \
                 first statement of its body"
                    .into(),
            ));
        }
        let attrs = loop_attrs(cur, kw, false)?;
        self.open_region(cur, Vec::new(), Vec::new(), attrs, kw)
    }

    /// True when the innermost open body belongs to a `recompute=` loop and has no statement
    /// yet: its first statement must be `forward`.
    pub(super) fn wants_forward(&self) -> bool {
        self.outer.last().is_some_and(|s| {
            s.header.attrs.recompute.is_some() && s.header.forward.is_none() && self.g.is_empty()
        })
    }

    fn open_region(
        &mut self,
        cur: &Cursor<'_, 'a>,
        results: Vec<Option<(&'a str, u32)>>,
        operands: Vec<NodeId>,
        attrs: LoopAttrs,
        kw: Token<'a>,
    ) -> Result<(), ParseError> {
        if self.outer.len() >= MAX_LOOP_NESTING {
            let brace = cur.toks[cur.toks.len() - 2];
            return Err(cur.err(
                brace.col,
                format!("loop bodies nest more than {MAX_LOOP_NESTING} deep (the reader's limit)"),
            ));
        }
        let header = Header {
            is_forward: results.is_empty(),
            results,
            operands,
            attrs,
            forward: None,
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
        let mut seen: NameMap<&str, ()> = NameMap::default();
        for &(name, col) in &named {
            if let Some(&(_, line)) = self.names.get(name) {
                return Err(cur.err(
                    col,
                    format!(
                        "value `%{name}` is already defined on line {line} (each value is \
                         defined exactly once)"
                    ),
                ));
            }
            if seen.insert(name, ()).is_some() {
                return Err(cur.err(
                    col,
                    format!("value `%{name}` is named twice in this statement"),
                ));
            }
        }
        Ok(())
    }

    /// Closes the innermost loop body (its `output` was seen): restores the enclosing graph
    /// and appends the header's result nodes (one group) to it, or, for a `forward` region,
    /// hands the loop to the enclosing header.
    pub(super) fn close_region(&mut self) -> Result<(), ParseError> {
        let s = self.outer.pop().expect("a loop body is open");
        let body = std::mem::replace(&mut self.g, s.g);
        self.names = s.names;
        self.state = State::Inside { output_seen: None };
        let h = s.header;
        let a = h.attrs;
        let lp = Loop {
            length: a.length,
            reverse: a.reverse,
            n_carry: a.n_carry,
            n_xs: a.n_xs,
            body,
            checkpoint: a.checkpoint,
            recompute: match (a.recompute, h.forward.clone()) {
                (Some(snapshots), Some(forward)) => Some(Recompute { forward, snapshots }),
                _ => None,
            },
            exit: a.exit,
        };
        if h.is_forward {
            let parent = &mut self.outer.last_mut().expect("inside a body").header;
            parent.forward = Some(Arc::new(lp));
            return Ok(());
        }
        let first_col = h.results.iter().flatten().next().map_or(h.col, |r| r.1);
        let n_out = lp.body.outputs().len();
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
        if let Some(rc) = &lp.recompute {
            let tys: Vec<&TensorType> = h.operands.iter().map(|&x| self.g.ty(x)).collect();
            check_forward(&lp, rc, &tys).map_err(|m| h.err(h.col, m))?;
        }
        let lp = Arc::new(lp);
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

/// Parses a loop header's attributes and its `{` to the end of the line. `has_operands` only
/// chooses the wording of an error.
fn loop_attrs(
    cur: &mut Cursor<'_, '_>,
    kw: Token<'_>,
    has_operands: bool,
) -> Result<LoopAttrs, ParseError> {
    let what = match kw.tok {
        Tok::Word(w) => w,
        _ => "scan",
    };
    let mut slots: [Option<(usize, u32)>; 8] = [None; 8];
    while let Tok::Word(key) = cur.peek().tok {
        let kt = cur.next();
        let Some(k) = KEYS.iter().position(|&s| s == key) else {
            return Err(cur.err(
                kt.col,
                format!(
                    "unknown attribute `{key}`: `{what}` takes `length`, `carry`, `xs`, \
                     `reverse`, `checkpoint`, `recompute`, `while` and `while_xs`"
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
        let what = if matches!(t.tok, Tok::Value(_)) && has_operands {
            "`,` between operands, an attribute or `{` opening the loop body"
        } else {
            "an attribute `key=value` or `{` opening the loop body"
        };
        return Err(cur.expected(t, what));
    }
    cur.eol("end of line after `{` (each statement of the body goes on its own line)")?;
    let Some((length, length_col)) = slots[0] else {
        return Err(cur.err(kw.col, format!("`{what}` requires the attribute `length`")));
    };
    if length > MAX_LENGTH {
        return Err(cur.err(
            length_col,
            format!("`length={length}` is too large (at most 2^31 - 1 = {MAX_LENGTH} steps)"),
        ));
    }
    let exit = match (slots[6], slots[7]) {
        (Some((_, col)), Some(_)) => {
            return Err(cur.err(
                col,
                "a loop takes `while` (a condition output) or `while_xs` (flags), not both".into(),
            ));
        }
        (Some((k, _)), None) => Some(Exit::While(k)),
        (None, Some((k, _))) => Some(Exit::Flags(k)),
        (None, None) => None,
    };
    Ok(LoopAttrs {
        exit,
        length,
        reverse: slots[3].is_some_and(|s| s.0 == 1),
        n_carry: slots[1].map_or(0, |s| s.0),
        n_xs: slots[2].map_or(0, |s| s.0),
        checkpoint: slots[4].map(|s| s.0),
        recompute: slots[5].map(|s| s.0),
    })
}

/// Checks the forward loop of a recomputing loop `lp` against `lp`'s operand types `tys`: it
/// runs as many steps, and its operands are `lp`'s first xs (its initial carries, unstacked,
/// then its xs) and `lp`'s consts, with the types its body needs.
fn check_forward(lp: &Loop, rc: &Recompute, tys: &[&TensorType]) -> Result<(), String> {
    let f = &rc.forward;
    if f.length != lp.length {
        return Err(format!(
            "the forward loop runs {} steps, the recomputing loop {}",
            f.length, lp.length
        ));
    }
    let (nc, nx) = (lp.n_carry, lp.n_xs);
    if f.n_carry + f.n_xs > nx || nc + nx > tys.len() {
        return Err(format!(
            "the forward loop's {} carries and {} xs do not fit in the loop's {nx} xs",
            f.n_carry, f.n_xs
        ));
    }
    let mut ops: Vec<&TensorType> = tys[nc..nc + f.n_carry + f.n_xs].to_vec();
    ops.extend(&tys[nc + nx..]);
    let attrs = Attrs::Scan {
        body: rc.forward.clone(),
        result: 0,
    };
    crate::ops::infer(Op::Scan, &ops, &attrs)
        .map(|_| ())
        .map_err(|e| format!("invalid forward loop: {}", e.message))
}
