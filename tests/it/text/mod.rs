//! The `.gir` text format: golden print tests, malformed files (most of them are in the hostile
//! corpus), the example programs in `ir/`, round-trip properties on random graphs, fuzzing, and
//! million-node chains.

mod examples;
mod golden;
mod loops;
mod malformed;
mod mutation;
mod random_graphs;
mod size;
mod syntax;

use gradlift::ir::text::{self, MAX_CONST_ELEMENTS, ParseError};
use gradlift::ir::{MAX_ELEMENTS, verify};
use gradlift::{Attrs, DType, Data, Graph, NodeId, Op, Origin, Tensor, TensorType};
use proptest::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse_ok(src: &str) -> Graph {
    match text::parse(src) {
        Ok(g) => g,
        Err(e) => panic!("parse failed: {e}\n--- source ---\n{src}"),
    }
}

/// Parses, checks the graph verifies, that printing is idempotent and that the printed text
/// parses back to the same graph. Returns the graph and its canonical text.
fn round_trip(src: &str) -> (Graph, String) {
    let g = parse_ok(src);
    verify(&g).unwrap_or_else(|e| panic!("parsed graph fails verification: {e}"));
    let printed = text::print(&g);
    let g2 = parse_ok(&printed);
    assert!(
        g2.same(&g),
        "parse(print(g)) differs from g\n--- printed ---\n{printed}"
    );
    assert_eq!(text::print(&g2), printed, "print is not idempotent");
    (g, printed)
}

/// Wraps statement lines into a graph (statements start on line 2, column 3).
fn body(stmts: &str) -> String {
    let mut s = String::from("graph @g {\n");
    for l in stmts.lines() {
        s.push_str("  ");
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("}\n");
    s
}
