//! Constants: a `const` statement's value checked against its type, and literal tokens
//! rounded to its dtype: floats (correctly rounded, `inf`, `-inf`, `nan`; a finite literal too
//! large for the dtype is an error), `bool` and `i32` literals.

use super::{Cursor, MAX_CONST_ELEMENTS, parse_type};
use crate::ir::text::ParseError;
use crate::ir::text::lexer::{Tok, Token};
use crate::ir::{DType, TensorType};
use crate::tensor::{Data, Tensor};

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

// ---- constants ---------------------------------------------------------------------------

/// One token of a constant's value, after the syntax pass.
#[derive(Clone, Copy)]
enum VTok<'a> {
    Open(u32),
    Close(u32),
    Lit(Token<'a>),
}

fn is_literal(t: Tok<'_>) -> bool {
    matches!(
        t,
        Tok::Number(_) | Tok::NegInf | Tok::Word("inf" | "nan" | "true" | "false")
    )
}

/// Parses `VALUE : TYPE` and the end of the line.
///
/// Two passes: the value's syntax first (balanced, non-empty lists of literals), then, once the
/// type is known and within [`MAX_CONST_ELEMENTS`], its nesting against the shape while the
/// literals are converted. Neither pass recurses.
pub(super) fn parse_const(cur: &mut Cursor<'_, '_>) -> Result<Tensor, ParseError> {
    // Pass 1: syntax.
    let mut vtoks: Vec<VTok<'_>> = Vec::new();
    let t = cur.next();
    if is_literal(t.tok) {
        vtoks.push(VTok::Lit(t));
    } else if t.tok == Tok::Punct('[') {
        vtoks.push(VTok::Open(t.col));
        let mut depth = 1usize;
        let mut want_value = true;
        while depth > 0 {
            let t = cur.next();
            if want_value {
                match t.tok {
                    Tok::Punct('[') => {
                        vtoks.push(VTok::Open(t.col));
                        depth += 1;
                    }
                    tok if is_literal(tok) => {
                        vtoks.push(VTok::Lit(t));
                        want_value = false;
                    }
                    _ => {
                        return Err(cur.expected(t, "a literal or `[` (lists are never empty)"));
                    }
                }
            } else {
                match t.tok {
                    Tok::Punct(',') => want_value = true,
                    Tok::Punct(']') => {
                        vtoks.push(VTok::Close(t.col));
                        depth -= 1;
                    }
                    _ => return Err(cur.expected(t, "`,` or `]` in the constant")),
                }
            }
        }
    } else {
        return Err(cur.expected(t, "a constant value (a literal or a nested list)"));
    }
    cur.punct(
        ':',
        "`:` and the constant's type (a const always states its type)",
    )?;
    let (ty, ty_col) = parse_type(cur)?;
    cur.eol("end of line after the constant's type")?;
    let numel = ty.numel();
    if numel > MAX_CONST_ELEMENTS {
        return Err(cur.err(
            ty_col,
            format!(
                "constant too large: `{ty}` has {numel} elements, the limit for one constant is \
                 2^24 = {MAX_CONST_ELEMENTS} (pass large tensors as inputs)"
            ),
        ));
    }
    // Pass 2: nesting and conversion.
    let mut data = match ty.dtype {
        DType::F32 => Data::F32(Vec::new()),
        DType::F64 => Data::F64(Vec::new()),
        DType::Bool => Data::Bool(Vec::new()),
        DType::I32 => Data::I32(Vec::new()),
    };
    let rank = ty.rank();
    if let [VTok::Lit(lit)] = vtoks[..] {
        // One literal, splatted to the whole shape.
        match &mut data {
            Data::F32(v) => *v = vec![float_literal::<f32>(cur, lit)?; numel],
            Data::F64(v) => *v = vec![float_literal::<f64>(cur, lit)?; numel],
            Data::Bool(v) => *v = vec![bool_literal(cur, lit)?; numel],
            Data::I32(v) => *v = vec![int_literal(cur, lit)?; numel],
        }
        return Ok(Tensor::new(ty.shape, data));
    }
    if rank == 0 {
        let col = match vtoks[0] {
            VTok::Open(c) | VTok::Close(c) => c,
            VTok::Lit(t) => t.col,
        };
        return Err(cur.err(
            col,
            format!("expected a single literal for the scalar type `{ty}`, found `[`"),
        ));
    }
    let mut counts = vec![0usize; rank];
    let mut depth = 0usize;
    let nesting = |ty: &TensorType| format!("the nesting of the list must match the type `{ty}`");
    for vt in &vtoks {
        match *vt {
            VTok::Open(col) | VTok::Lit(Token { col, .. }) => {
                if depth > 0 {
                    let ax = depth - 1;
                    counts[ax] += 1;
                    if counts[ax] > ty.shape[ax] {
                        return Err(cur.err(
                            col,
                            format!(
                                "too many elements: axis {ax} of `{ty}` has {}, found more",
                                ty.shape[ax]
                            ),
                        ));
                    }
                }
                if let VTok::Lit(lit) = *vt {
                    if depth < rank {
                        return Err(cur.expected(lit, &format!("`[` ({})", nesting(&ty))));
                    }
                    match &mut data {
                        Data::F32(v) => v.push(float_literal::<f32>(cur, lit)?),
                        Data::F64(v) => v.push(float_literal::<f64>(cur, lit)?),
                        Data::Bool(v) => v.push(bool_literal(cur, lit)?),
                        Data::I32(v) => v.push(int_literal(cur, lit)?),
                    }
                } else {
                    if depth == rank {
                        return Err(cur.err(
                            col,
                            format!("expected a literal ({}), found `[`", nesting(&ty)),
                        ));
                    }
                    depth += 1;
                    counts[depth - 1] = 0;
                }
            }
            VTok::Close(col) => {
                let ax = depth - 1;
                if counts[ax] != ty.shape[ax] {
                    return Err(cur.err(
                        col,
                        format!(
                            "too few elements: axis {ax} of `{ty}` has {}, found {}",
                            ty.shape[ax], counts[ax]
                        ),
                    ));
                }
                depth -= 1;
            }
        }
    }
    Ok(Tensor::new(ty.shape, data))
}
