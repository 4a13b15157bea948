//! The `.gir` text format (version 1): a parser and a canonical printer.
//!
//! The format is defined in `docs/gir.md` (in the repository); in short:
//!
//! ```text
//! # y = x1^2 + x2   (the worked example of reverse mode)
//! graph @seed {
//!   %x1 = input f64[]
//!   %x2 = input f64[]
//!   %v1 = mul %x1, %x1 : f64[]
//!   %y = add %v1, %x2 : f64[]
//!   output %y
//! }
//! ```
//!
//! ```
//! use gradlift::ir::text;
//! let src = "graph @g {\n  %x = input f32[2]\n  %y=mul %x,%x\n  output %y\n}\n";
//! let g = text::parse(src).unwrap();
//! let canonical = text::print(&g);
//! assert_eq!(
//!     canonical,
//!     "graph @g {\n  %x = input f32[2]\n  %y = mul %x, %x : f32[2]\n  output %y\n}\n"
//! );
//! assert!(text::parse(&canonical).unwrap().same(&g));
//! ```
//!
//! **API Boundary.** [`parse`] and [`print()`] are the whole interface. `print(parse(text))` is
//! canonical (printing is idempotent), and `parse(print(g))` is [`Graph::same`] as `g` whenever
//! `g` satisfies the graph invariants ([`crate::ir::verify()`]) and: its inputs and outputs are
//! named (the parser names every output after the value it lists, so an unnamed output `%26`
//! comes back named `26`); its other nodes have identifier names or none (digit-only names are
//! dropped there, as the parser does); and its NaN constants are the canonical quiet NaN (the
//! text has one `nan`, so NaN payloads and signs are not kept). Graph names that are not
//! identifiers are printed sanitized (`my graph` → `@my_graph`). Loops (`scan`, a statement with
//! a nested body) round-trip as well; inside a body the same rules hold, except that a body's
//! outputs are not named by its `output` statement (a body's outputs are known by position),
//! and the name of a body graph is not part of the text ([`crate::ir::loops::Loop::same`]
//! ignores it).
//!
//! **Architecture Invariant.** The reader never panics and never recurses, whatever the input,
//! and allocates in proportion to a declared shape only after checking it: types are limited to
//! 2^31 − 1 elements and constants to [`MAX_CONST_ELEMENTS`]. Loop bodies nest at most
//! [`MAX_LOOP_NESTING`] deep (what reads a graph later walks bodies as deep as they nest); the
//! printer writes bodies from an explicit stack.
//!
//! Names: every parsed node gets [`Origin::Line`](crate::ir::Origin::Line) of its statement and
//! keeps its identifier name; digit-only names (`%17`) are kept only on inputs and outputs (they
//! are how the CLI names inputs and outputs) and dropped elsewhere.
//!
//! Not here: file IO (the caller reads the file), and verification of graphs passed to
//! [`print()`] (use [`crate::ir::verify()`]).

mod hasher;
mod lexer;
mod parser;
mod printer;

pub use parser::{MAX_CONST_ELEMENTS, MAX_LOOP_NESTING};

use crate::ir::Graph;

/// A `.gir` syntax or type error at a line and column (a user error: fix the file there).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub col: u32,
    /// What was expected and what was found.
    pub message: String,
}

/// Parses a `.gir` file.
///
/// # Errors
/// A [`ParseError`] with the line and column of the first problem: a lexical or syntax error, a
/// type or shape error (the op's shape rule rejected its operands or attributes, or a `: TYPE`
/// annotation disagrees with the inferred type), a name error (undefined or redefined value), or
/// the resource limit on constants ([`MAX_CONST_ELEMENTS`]).
pub fn parse(src: &str) -> Result<Graph, ParseError> {
    parser::parse(src)
}

/// Prints a graph in canonical `.gir` form (deterministic; ends with a newline).
pub fn print(g: &Graph) -> String {
    printer::print(g)
}
