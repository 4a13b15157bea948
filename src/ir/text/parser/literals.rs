//! Literal tokens of a constant rounded to its dtype: floats (correctly rounded, `inf`, `-inf`,
//! `nan`; a finite literal too large for the dtype is an error), `bool` and `i32` literals.

use super::Cursor;
use crate::ir::text::ParseError;
use crate::ir::text::lexer::{Tok, Token};

/// A float type a literal can be rounded to.
pub(super) trait FloatLit: Copy + std::str::FromStr {
    const NAME: &'static str;
    const INF: Self;
    const NEG_INF: Self;
    const NAN: Self;
    fn is_infinite(self) -> bool;
}

impl FloatLit for f32 {
    const NAME: &'static str = "f32";
    const INF: f32 = f32::INFINITY;
    const NEG_INF: f32 = f32::NEG_INFINITY;
    const NAN: f32 = f32::NAN;
    fn is_infinite(self) -> bool {
        f32::is_infinite(self)
    }
}

impl FloatLit for f64 {
    const NAME: &'static str = "f64";
    const INF: f64 = f64::INFINITY;
    const NEG_INF: f64 = f64::NEG_INFINITY;
    const NAN: f64 = f64::NAN;
    fn is_infinite(self) -> bool {
        f64::is_infinite(self)
    }
}

/// Rounds a literal directly to `T` (Rust's float parsing is correctly rounded).
pub(super) fn float_literal<T: FloatLit>(
    cur: &Cursor<'_, '_>,
    t: Token<'_>,
) -> Result<T, ParseError> {
    match t.tok {
        Tok::Word("inf") => Ok(T::INF),
        Tok::NegInf => Ok(T::NEG_INF),
        Tok::Word("nan") => Ok(T::NAN),
        Tok::Number(s) => match s.parse::<T>() {
            Ok(x) if !x.is_infinite() => Ok(x),
            _ => Err(cur.err(
                t.col,
                format!(
                    "literal `{s}` is too large for {} (the largest finite values overflow to \
                     infinity; write `inf` if that is meant)",
                    T::NAME
                ),
            )),
        },
        _ => Err(cur.expected(t, &format!("a number for an {} constant", T::NAME))),
    }
}

/// An `i32` literal: an integer (optionally negative) in the `i32` range.
pub(super) fn int_literal(cur: &Cursor<'_, '_>, t: Token<'_>) -> Result<i32, ParseError> {
    let Tok::Number(s) = t.tok else {
        return Err(cur.expected(t, "an integer for an i32 constant"));
    };
    if !s
        .strip_prefix('-')
        .unwrap_or(s)
        .bytes()
        .all(|b| b.is_ascii_digit())
    {
        return Err(cur.expected(t, "an integer for an i32 constant"));
    }
    s.parse::<i32>().map_err(|_| {
        cur.err(
            t.col,
            format!("literal `{s}` is out of range for i32 (-2147483648..=2147483647)"),
        )
    })
}

pub(super) fn bool_literal(cur: &Cursor<'_, '_>, t: Token<'_>) -> Result<bool, ParseError> {
    match t.tok {
        Tok::Word("true") => Ok(true),
        Tok::Word("false") => Ok(false),
        _ => Err(cur.expected(t, "`true` or `false` for a bool constant")),
    }
}
