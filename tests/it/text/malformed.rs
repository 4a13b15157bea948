//! Malformed files: each is rejected with its line, column and a reason.

use super::*;

/// Checks one malformed case; returns a description of the mismatch, if any.
pub(super) fn check_err(
    name: &str,
    src: &str,
    line: u32,
    col: u32,
    fragment: &str,
) -> Option<String> {
    let e: ParseError = match text::parse(src) {
        Ok(_) => {
            return Some(format!(
                "case {name}: expected an error, parsed fine\n{src}"
            ));
        }
        Err(e) => e,
    };
    assert!(
        e.to_string()
            .starts_with(&format!("{}:{}: ", e.line, e.col)),
        "Display starts with line:col"
    );
    (e.line != line || e.col != col || !e.message.contains(fragment)).then(|| {
        format!("case {name}: expected {line}:{col} containing {fragment:?}, got {e}\n{src}")
    })
}

#[test]
fn malformed_files_are_rejected_with_position_and_reason() {
    let x = "%x = input f64[2,3]\n";
    let cases: Vec<(&str, String, u32, u32, &str)> = vec![
        // -- lexical
        (
            "bad char",
            body("%y = add %x, $x\noutput %y"),
            2,
            16,
            "unexpected character `$`",
        ),
        (
            "non-ascii",
            body("%x = input f64[] # ok é\n%y = neg %x é\noutput %y"),
            3,
            15,
            "non-ASCII",
        ),
        (
            "non-ascii name",
            body("%é = input f64[]\noutput %é"),
            2,
            3,
            "expected a value name",
        ),
        (
            "lone CR",
            "graph @g {\r\n  %x = input f64[]\r  \n  output %x\n}\n".into(),
            2,
            19,
            "carriage return",
        ),
        (
            "bad value name",
            body("%1a = input f64[]\noutput %1a"),
            2,
            3,
            "invalid value name",
        ),
        (
            "bad graph name",
            "graph @1a {\n}\n".into(),
            1,
            7,
            "invalid graph name `@1a`",
        ),
        (
            "leading zero",
            body("%c = const 01 : f64[]\noutput %c"),
            2,
            14,
            "leading zeros",
        ),
        (
            "dangling dot",
            body("%c = const 1. : f64[]\noutput %c"),
            2,
            14,
            "digit after `.`",
        ),
        (
            "empty exponent",
            body("%c = const 1e : f64[]\noutput %c"),
            2,
            14,
            "exponent",
        ),
        (
            "leading dot",
            body("%c = const .5 : f64[]\noutput %c"),
            2,
            14,
            "unexpected character `.`",
        ),
        (
            "plus sign",
            body("%c = const +1 : f64[]\noutput %c"),
            2,
            14,
            "unexpected character `+`",
        ),
        (
            "neg nan",
            body("%c = const -nan : f64[]\noutput %c"),
            2,
            14,
            "after `-`",
        ),
        (
            "hex",
            body("%c = const 0x10 : f64[]\noutput %c"),
            2,
            14,
            "malformed number `0x10`",
        ),
        // -- numbers and constants
        (
            "f64 overflow",
            body("%c = const 1e309 : f64[]\noutput %c"),
            2,
            14,
            "too large for f64",
        ),
        (
            "f32 overflow",
            body("%c = const [1, 3.5e38] : f32[2]\noutput %c"),
            2,
            18,
            "too large for f32",
        ),
        (
            "bool from number",
            body("%c = const 1 : bool[]\noutput %c"),
            2,
            14,
            "`true` or `false`",
        ),
        (
            "float from bool",
            body("%c = const true : f64[]\noutput %c"),
            2,
            14,
            "a number for an f64",
        ),
        (
            "const needs type",
            body("%c = const 1.0\noutput %c"),
            2,
            17,
            "the constant's type",
        ),
        (
            "too few elements",
            body("%c = const [[1,2],[3]] : f64[2,2]\noutput %c"),
            2,
            23,
            "too few elements",
        ),
        (
            "too many elements",
            body("%c = const [1,2,3] : f64[2]\noutput %c"),
            2,
            19,
            "too many elements",
        ),
        (
            "list too shallow",
            body("%c = const [1,2] : f64[1,2]\noutput %c"),
            2,
            15,
            "nesting",
        ),
        (
            "list too deep",
            body("%c = const [[1,2]] : f64[2]\noutput %c"),
            2,
            15,
            "nesting",
        ),
        (
            "list for scalar",
            body("%c = const [1] : f64[]\noutput %c"),
            2,
            14,
            "single literal",
        ),
        (
            "empty list",
            body("%c = const [] : f64[1]\noutput %c"),
            2,
            15,
            "lists are never empty",
        ),
        (
            "unclosed list",
            body("%c = const [1,2 : f64[2]\noutput %c"),
            2,
            19,
            "`,` or `]`",
        ),
        (
            "const too large",
            body("%c = const 0 : f32[4097,4096]\noutput %c"),
            2,
            18,
            "constant too large",
        ),
        // -- types
        (
            "bad dtype",
            body("%x = input f16[2]\noutput %x"),
            2,
            14,
            "dtype `f32`, `f64`, `bool` or `i32`",
        ),
        (
            "zero dim",
            body("%x = input f64[2,0]\noutput %x"),
            2,
            20,
            "positive dimension, found 0",
        ),
        (
            "negative dim",
            body("%x = input f64[-2]\noutput %x"),
            2,
            18,
            "a dimension",
        ),
        (
            "fractional dim",
            body("%x = input f64[2.5]\noutput %x"),
            2,
            18,
            "a dimension",
        ),
        (
            "huge shape",
            body("%x = input f32[1000000000,1000000000]\noutput %x"),
            2,
            14,
            "more than 2^31 - 1 elements",
        ),
        (
            "just too many",
            body("%x = input f32[65536,32768]\noutput %x"),
            2,
            14,
            "more than 2^31 - 1 elements",
        ),
        (
            "dim overflows usize",
            body("%x = input f32[99999999999999999999999]\noutput %x"),
            2,
            18,
            "too large",
        ),
        (
            "missing bracket",
            body("%x = input f64\noutput %x"),
            2,
            17,
            "`[` after `f64`",
        ),
        // -- ops and attributes
        (
            "unknown op",
            body(&format!("{x}%y = frobnicate %x\noutput %y")),
            3,
            8,
            "unknown op `frobnicate`",
        ),
        (
            "wrong arity",
            body(&format!("{x}%y = add %x\noutput %y")),
            3,
            8,
            "`add` takes 2 operands, found 1",
        ),
        (
            "no operands",
            body("%y = concat axis=0\noutput %y"),
            2,
            8,
            "one or more operands",
        ),
        (
            "missing attr",
            body(&format!("{x}%y = powi %x\noutput %y")),
            3,
            8,
            "requires the attribute `n`",
        ),
        (
            "unknown attr",
            body(&format!("{x}%y = powi %x n=2 m=3\noutput %y")),
            3,
            20,
            "unknown attribute `m`",
        ),
        (
            "attr on plain op",
            body(&format!("{x}%y = exp %x n=2\noutput %y")),
            3,
            15,
            "`exp` takes no attributes",
        ),
        (
            "wrong kind int",
            body(&format!("{x}%y = powi %x n=[2]\noutput %y")),
            3,
            18,
            "an integer for `n`",
        ),
        (
            "wrong kind bool",
            body(&format!("{x}%y = reduce_sum %x keepdims=1\noutput %y")),
            3,
            31,
            "`true` or `false`",
        ),
        (
            "wrong kind list",
            body(&format!("{x}%y = reshape %x shape=6\noutput %y")),
            3,
            25,
            "a list of integers",
        ),
        (
            "wrong kind dtype",
            body(&format!("{x}%y = cast %x to=bool\noutput %y")),
            3,
            19,
            "`f32`, `f64` or `i32`",
        ),
        (
            "powi out of range",
            body(&format!("{x}%y = powi %x n=3000000000\noutput %y")),
            3,
            18,
            "out of range",
        ),
        (
            "duplicate attr",
            body(&format!("{x}%y = powi %x n=2 n=3\noutput %y")),
            3,
            20,
            "given twice",
        ),
        (
            "dup axes",
            body(&format!("{x}%y = reduce_sum %x axes=[1,0,1]\noutput %y")),
            3,
            27,
            "distinct, found axis 1 twice",
        ),
        (
            "axis out of range",
            body(&format!("{x}%y = reduce_max %x axes=[2]\noutput %y")),
            3,
            27,
            "out of range for an operand of rank 2",
        ),
        (
            "negative axis",
            body(&format!("{x}%y = reduce_max %x axes=[-1]\noutput %y")),
            3,
            28,
            "non-negative integer",
        ),
        (
            "bad perm",
            body(&format!("{x}%y = transpose %x perm=[0,0]\noutput %y")),
            3,
            8,
            "not a permutation",
        ),
        (
            "bad slice",
            body(&format!(
                "{x}%y = slice %x start=[0,2] stop=[2,2]\noutput %y"
            )),
            3,
            8,
            "start < stop",
        ),
        (
            "slice rank",
            body(&format!("{x}%y = slice %x start=[0] stop=[1]\noutput %y")),
            3,
            8,
            "one entry per axis",
        ),
        (
            "missing stop",
            body(&format!("{x}%y = slice %x start=[0,0]\noutput %y")),
            3,
            8,
            "requires the attribute `stop`",
        ),
        (
            "bad reshape",
            body(&format!("{x}%y = reshape %x shape=[4]\noutput %y")),
            3,
            8,
            "cannot reshape",
        ),
        (
            "broadcast too big",
            body(&format!(
                "{x}%y = broadcast %x shape=[1000000000,1000000000,3]\noutput %y"
            )),
            3,
            8,
            "invalid target shape",
        ),
        (
            "shape mismatch",
            body(&format!("{x}%z = input f64[4]\n%y = add %x, %z\noutput %y")),
            4,
            8,
            "do not broadcast",
        ),
        (
            "matmul inner",
            body(&format!("{x}%y = matmul %x, %x\noutput %y")),
            3,
            8,
            "inner dimensions",
        ),
        (
            "dtype mixing",
            body(&format!(
                "{x}%z = input f32[2,3]\n%y = mul %x, %z\noutput %y"
            )),
            4,
            8,
            "same dtype",
        ),
        (
            "bool arithmetic",
            body(&format!("{x}%b = lt %x, %x\n%y = add %b, %b\noutput %y")),
            4,
            8,
            "float",
        ),
        (
            "concat axis",
            body(&format!("{x}%y = concat %x, %x axis=2\noutput %y")),
            3,
            8,
            "out of range",
        ),
        (
            "annotation mismatch",
            body(&format!("{x}%y = exp %x : f64[3,2]\noutput %y")),
            3,
            17,
            "does not match the inferred type `f64[2,3]`",
        ),
        (
            "annotation dtype",
            body(&format!("{x}%y = lt %x, %x : f64[2,3]\noutput %y")),
            3,
            20,
            "inferred type `bool[2,3]`",
        ),
        (
            "trailing comma",
            body(&format!("{x}%y = add %x, %x,\noutput %y")),
            3,
            19,
            "after `,`",
        ),
        (
            "missing comma",
            body(&format!("{x}%y = add %x %x\noutput %y")),
            3,
            15,
            "`,` between operands",
        ),
        (
            "junk after type",
            body(&format!("{x}%y = exp %x : f64[2,3] %x\noutput %y")),
            3,
            26,
            "end of line after the type",
        ),
        // -- names and statements
        (
            "undefined",
            body("%y = exp %nope\noutput %y"),
            2,
            12,
            "undefined value `%nope`",
        ),
        (
            "use before def",
            body("%y = exp %x\n%x = input f64[]\noutput %y"),
            2,
            12,
            "undefined value `%x`",
        ),
        (
            "redefinition",
            body(&format!("{x}%x = input f64[]\noutput %x")),
            3,
            3,
            "already defined on line 2",
        ),
        (
            "digit redefinition",
            body("%1 = input f64[]\n%1 = neg %1\noutput %1"),
            3,
            3,
            "already defined",
        ),
        (
            "input needs type",
            body("%x = input\noutput %x"),
            2,
            13,
            "a type such as",
        ),
        (
            "input junk",
            body("%x = input f64[] : f64[]\noutput %x"),
            2,
            20,
            "end of line after the input's type",
        ),
        (
            "missing =",
            body("%x input f64[]\noutput %x"),
            2,
            6,
            "`=` after the value name",
        ),
        (
            "not a statement",
            body("add %x, %y\noutput %x"),
            2,
            3,
            "a statement",
        ),
        (
            "two per line",
            body("%x = input f64[] %y = input f64[]\noutput %x"),
            2,
            20,
            "end of line after the input's type",
        ),
        // -- output
        (
            "missing output",
            body("%x = input f64[]"),
            3,
            1,
            "an `output` statement",
        ),
        (
            "output not last",
            body("%x = input f64[]\noutput %x\n%y = neg %x"),
            4,
            3,
            "must be the last statement",
        ),
        (
            "two outputs",
            body("%x = input f64[]\noutput %x\noutput %x"),
            4,
            3,
            "must be the last statement",
        ),
        (
            "empty output",
            body("%x = input f64[]\noutput"),
            3,
            9,
            "a value `%name`",
        ),
        (
            "dup output",
            body("%x = input f64[]\noutput %x, %x"),
            3,
            14,
            "output twice",
        ),
        (
            "output undefined",
            body("%x = input f64[]\noutput %x, %z"),
            3,
            14,
            "undefined value `%z`",
        ),
        (
            "output separator",
            body("%x = input f64[]\noutput %x %x"),
            3,
            13,
            "`,` or end of line",
        ),
        // -- file structure
        (
            "empty file",
            String::new(),
            1,
            1,
            "expected `graph @NAME {`, found end of file",
        ),
        (
            "comments only",
            "# nothing\n\n".into(),
            3,
            1,
            "found end of file",
        ),
        (
            "text before graph",
            "hello\ngraph @g {\n}\n".into(),
            1,
            1,
            "expected `graph @NAME {`",
        ),
        ("no graph name", "graph {\n}\n".into(), 1, 7, "a graph name"),
        (
            "brace on next line",
            "graph @g\n{\n".into(),
            1,
            9,
            "`{` after the graph name",
        ),
        (
            "statement on header line",
            "graph @g { %x = input f64[]\n".into(),
            1,
            12,
            "own line",
        ),
        (
            "unclosed graph",
            "graph @g {\n  %x = input f64[]\n  output %x\n".into(),
            4,
            1,
            "expected `}`",
        ),
        (
            "unclosed, no output",
            "graph @g {\n  %x = input f64[]".into(),
            2,
            19,
            "an `output` statement and `}`",
        ),
        (
            "two graphs",
            format!("{}graph @h {{\n}}\n", body("%x = input f64[]\noutput %x")),
            5,
            1,
            "exactly one graph",
        ),
        (
            "text after graph",
            format!("{}%x\n", body("%x = input f64[]\noutput %x")),
            5,
            1,
            "end of file after the graph's closing `}`",
        ),
        (
            "junk after brace",
            body("%x = input f64[]\noutput %x").replace("}\n", "} x\n"),
            4,
            3,
            "end of line after `}`",
        ),
    ];
    assert!(cases.len() >= 40);
    let mut names = HashSet::new();
    let mut failures = Vec::new();
    for (name, src, line, col, frag) in &cases {
        assert!(names.insert(*name), "duplicate case name {name}");
        failures.extend(check_err(name, src, *line, *col, frag));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_messages_say_what_was_expected_and_found() {
    let e = text::parse(&body("%x = input f64[]\n%y = add %x; %x\noutput %y")).unwrap_err();
    assert_eq!((e.line, e.col), (3, 14));
    assert!(e.message.contains("unexpected character `;`"), "{e}");
    let e = text::parse(&body("%x = input f64[]\n%y = add %x, 3\noutput %y")).unwrap_err();
    assert_eq!((e.line, e.col), (3, 16));
    assert!(
        e.message
            .contains("expected a value `%name` after `,`, found number `3`"),
        "{e}"
    );
}
