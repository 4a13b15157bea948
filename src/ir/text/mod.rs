//! The `.gir` text format: parser and canonical printer (stub, being written).

use crate::ir::Graph;

/// A `.gir` syntax or type error at a line and column.
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
/// A [`ParseError`] with the line and column of the first problem.
pub fn parse(_src: &str) -> Result<Graph, ParseError> {
    Err(ParseError {
        line: 1,
        col: 1,
        message: "not yet".into(),
    })
}

/// Prints a graph in canonical `.gir` form.
pub fn print(_g: &Graph) -> String {
    String::new()
}
