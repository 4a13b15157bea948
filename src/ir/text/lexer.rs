//! The `.gir` lexer: splits one line into tokens.
//!
//! A statement never spans lines, so the parser feeds the lexer one line at a time (line
//! terminators already removed) and the lexer fills a reused token buffer. It knows the lexical
//! rules of the format (`docs/gir.md`): `#` comments, spaces and tabs as optional separators, `%name`/`%17` value
//! names, `@name` graph names, bare words, JSON numbers (plus `-inf`; `inf` and `nan` are bare
//! words), and the punctuation `= , : [ ] { }`. Everything outside a comment must be ASCII.
//!
//! Deliberately not here: any meaning of words (keywords, op names, dtypes) and any numeric
//! conversion — a number token is its source text, so the parser can round it directly to the
//! dtype it ends up with.
//!
//! Columns are 1-based and count characters; since a non-ASCII character outside a comment is an
//! error, every token lies in the ASCII prefix of its line and byte offsets equal columns.

use super::ParseError;

/// What a token is. Text variants borrow from the source line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tok<'a> {
    /// A bare word `[A-Za-z_][A-Za-z0-9_]*` (keywords, op names, dtypes, `true`, `inf`, ...).
    Word(&'a str),
    /// `%name` or `%17`; the text is without the `%`.
    Value(&'a str),
    /// `@name`; the text is without the `@`.
    Global(&'a str),
    /// A number in JSON's grammar (optionally negative); the text is exactly as written.
    Number(&'a str),
    /// `-inf`.
    NegInf,
    /// One of `= , : [ ] { }`.
    Punct(char),
    /// The end of the line (always the last token).
    Eol,
}

impl Tok<'_> {
    /// How the token is quoted in error messages ("found ...").
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Value(v) => format!("`%{v}`"),
            Tok::Global(g) => format!("`@{g}`"),
            Tok::Number(n) => format!("number `{n}`"),
            Tok::NegInf => "`-inf`".to_string(),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Eol => "end of line".to_string(),
        }
    }
}

/// A token and its 1-based column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Token<'a> {
    /// The token.
    pub tok: Tok<'a>,
    /// 1-based column of its first character.
    pub col: u32,
}

/// Byte classes: bit 0 = may start an identifier, bit 1 = may continue one. A table lookup
/// keeps the per-character cost low even in unoptimized builds.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' {
            t[b] = 3;
        } else if c.is_ascii_digit() {
            t[b] = 2;
        }
        b += 1;
    }
    t
};

fn is_ident_start(b: u8) -> bool {
    CLASS[usize::from(b)] & 1 != 0
}

fn is_ident_char(b: u8) -> bool {
    CLASS[usize::from(b)] & 2 != 0
}

/// True for `[A-Za-z_][A-Za-z0-9_]*` (the name form of `@graph` and non-numeric `%value`s).
pub(super) fn is_identifier(s: &str) -> bool {
    s.as_bytes().first().is_some_and(|&b| is_ident_start(b)) && s.bytes().all(is_ident_char)
}

/// True if `s` is exactly one number token in JSON's grammar (used by tests of the printer).
#[cfg(test)]
pub(super) fn is_json_number(s: &str) -> bool {
    let mut out = Vec::new();
    lex_line(s, 1, &mut out).is_ok()
        && out.len() == 2
        && out[0].tok == Tok::Number(s)
        && out[1].tok == Tok::Eol
}

/// The end of the identifier characters starting at `i`.
fn ident_end(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if CLASS[usize::from(c)] & 2 == 0 {
            break;
        }
        i += 1;
    }
    i
}

/// Converts a byte offset in the (ASCII part of the) line to a 1-based column.
fn col_of(offset: usize) -> u32 {
    u32::try_from(offset).map_or(u32::MAX, |c| c.saturating_add(1))
}

/// Tokenizes `line` (without its terminator) into `out` (cleared first), ending with [`Tok::Eol`].
///
/// # Errors
/// A [`ParseError`] at the first character that cannot start or continue a token.
pub(super) fn lex_line<'a>(
    line: &'a str,
    lineno: u32,
    out: &mut Vec<Token<'a>>,
) -> Result<(), ParseError> {
    out.clear();
    let b = line.as_bytes();
    let err = |at: usize, message: String| ParseError {
        line: lineno,
        col: col_of(at),
        message,
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' => {
                i += 1;
                continue;
            }
            b'#' => {
                // A comment: the rest of the line, whatever it holds.
                i = b.len();
                break;
            }
            b'=' | b',' | b':' | b'[' | b']' | b'{' | b'}' => {
                i += 1;
                Tok::Punct(char::from(c))
            }
            b'%' | b'@' => {
                i += 1;
                let name_start = i;
                if i < b.len() && is_ident_start(b[i]) {
                    i = ident_end(b, i);
                } else if i < b.len() && b[i].is_ascii_digit() {
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    if i < b.len() && is_ident_char(b[i]) {
                        return Err(err(
                            start,
                            format!(
                                "invalid {} name `{}`: expected an identifier or only digits \
                                 after `{}`",
                                if c == b'%' { "value" } else { "graph" },
                                ascii_prefix(&line[start..], |b| is_ident_char(b) || b == c),
                                char::from(c)
                            ),
                        ));
                    }
                } else {
                    let what = if c == b'%' {
                        "a value name (an identifier or digits)"
                    } else {
                        "a graph name (an identifier or digits)"
                    };
                    return Err(err(
                        start,
                        format!(
                            "expected {what} after `{}`, found {}",
                            char::from(c),
                            describe_char(line, i)
                        ),
                    ));
                }
                let name = &line[name_start..i];
                if c == b'%' {
                    Tok::Value(name)
                } else {
                    Tok::Global(name)
                }
            }
            b'-' => {
                if line[i + 1..].starts_with("inf")
                    && !b.get(i + 4).is_some_and(|&n| is_ident_char(n))
                {
                    i += 4;
                    Tok::NegInf
                } else if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i = lex_number(line, i, lineno)?;
                    Tok::Number(&line[start..i])
                } else {
                    return Err(err(
                        start,
                        format!(
                            "expected a digit or `inf` after `-`, found {}",
                            describe_char(line, i + 1)
                        ),
                    ));
                }
            }
            b'0'..=b'9' => {
                i = lex_number(line, i, lineno)?;
                Tok::Number(&line[start..i])
            }
            _ if is_ident_start(c) => {
                i = ident_end(b, i);
                Tok::Word(&line[start..i])
            }
            _ => {
                let message = if c == b'\r' {
                    "unexpected carriage return (lines end with LF or CRLF)".to_string()
                } else if c.is_ascii() {
                    format!("unexpected character {}", describe_char(line, i))
                } else {
                    format!(
                        "non-ASCII character {} outside a comment (expected ASCII; non-ASCII text \
                         is allowed only in `#` comments)",
                        describe_char(line, i)
                    )
                };
                return Err(err(start, message));
            }
        };
        out.push(Token {
            tok,
            col: col_of(start),
        });
    }
    out.push(Token {
        tok: Tok::Eol,
        col: col_of(i),
    });
    Ok(())
}

/// The longest prefix of `s` whose bytes satisfy `keep` (for quoting bad names).
fn ascii_prefix(s: &str, keep: impl Fn(u8) -> bool) -> &str {
    let n = s.bytes().take_while(|&b| keep(b)).count();
    &s[..n]
}

/// Describes the character at byte offset `i` of `line` (or the end of the line).
pub(super) fn describe_char(line: &str, i: usize) -> String {
    match line.get(i..).and_then(|s| s.chars().next()) {
        None => "end of line".to_string(),
        Some(ch) if ch.is_ascii_graphic() => format!("`{ch}`"),
        Some(ch) => format!("{ch:?} (U+{:04X})", u32::from(ch)),
    }
}

/// Lexes a JSON number starting at byte `i` (a `-` or a digit); returns the end offset.
///
/// Grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, and the number must not run
/// straight into a letter, digit, `_` or `.` (so `01`, `1.`, `1e`, `1.5x` and `1.2.3` are errors).
fn lex_number(line: &str, mut i: usize, lineno: u32) -> Result<usize, ParseError> {
    let b = line.as_bytes();
    let start = i;
    let digit_at = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
    let bad = |what: &str| {
        // Quote the whole run of number-like ASCII characters (never splits a UTF-8 sequence).
        let text = ascii_prefix(&line[start..], |c| {
            is_ident_char(c) || matches!(c, b'.' | b'+' | b'-')
        });
        ParseError {
            line: lineno,
            col: col_of(start),
            message: format!("malformed number `{text}`: {what} (numbers follow JSON's grammar)"),
        }
    };
    if b[i] == b'-' {
        i += 1;
    }
    if b[i] == b'0' {
        i += 1;
        if digit_at(i) {
            return Err(bad("leading zeros are not allowed"));
        }
    } else {
        while digit_at(i) {
            i += 1;
        }
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digit_at(i) {
            return Err(bad("expected a digit after `.`"));
        }
        while digit_at(i) {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digit_at(i) {
            return Err(bad("expected a digit in the exponent"));
        }
        while digit_at(i) {
            i += 1;
        }
    }
    if b.get(i).is_some_and(|&c| is_ident_char(c) || c == b'.') {
        return Err(bad("unexpected character after the number"));
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(s: &str) -> Result<Vec<(Tok<'_>, u32)>, ParseError> {
        let mut out = Vec::new();
        lex_line(s, 1, &mut out)?;
        Ok(out.iter().map(|t| (t.tok, t.col)).collect())
    }

    #[test]
    fn tokens_and_columns() {
        let toks = lex("%a=add %b,%17 # c").unwrap();
        assert_eq!(
            toks,
            vec![
                (Tok::Value("a"), 1),
                (Tok::Punct('='), 3),
                (Tok::Word("add"), 4),
                (Tok::Value("b"), 8),
                (Tok::Punct(','), 10),
                (Tok::Value("17"), 11),
                (Tok::Eol, 18),
            ]
        );
    }

    #[test]
    fn numbers_follow_json() {
        for ok in ["0", "-0", "1.5", "1e5", "1E+5", "-2.5e-3", "10", "0.0"] {
            assert_eq!(lex(ok).unwrap()[0].0, Tok::Number(ok), "{ok}");
        }
        assert_eq!(lex("-inf").unwrap()[0].0, Tok::NegInf);
        assert_eq!(lex("inf").unwrap()[0].0, Tok::Word("inf"));
        for bad in [
            "01", "1.", "1e", "1e+", ".5", "+1", "1.5x", "1.2.3", "-", "-x", "0x1",
        ] {
            assert!(lex(bad).is_err(), "{bad} should not lex");
        }
    }

    #[test]
    fn non_ascii_only_in_comments() {
        assert!(lex("# é ü").is_ok());
        let e = lex("%a = é").unwrap_err();
        assert_eq!((e.line, e.col), (1, 6));
        assert!(e.message.contains("non-ASCII"), "{}", e.message);
    }

    #[test]
    fn bad_names() {
        assert_eq!(lex("%12ab").unwrap_err().col, 1);
        assert!(
            lex("@12").is_ok(),
            "a graph name may be digits, as a value name may"
        );
        let e = lex("@12ab").unwrap_err();
        assert!(
            e.message.contains("invalid graph name `@12ab`"),
            "{}",
            e.message
        );
        assert!(lex("@").is_err());
        assert!(lex("% x").is_err());
    }
}
