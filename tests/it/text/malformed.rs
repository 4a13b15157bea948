//! Malformed files: each is rejected with its line, column and a reason (most of these cases
//! are files of the hostile corpus, `tests/hostile/gir/err-at-*.gir`).

use super::*;

/// Checks one malformed case; returns a description of the mismatch, if any.
fn check_err(name: &str, src: &str, line: u32, col: u32, fragment: &str) -> Option<String> {
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

/// The malformed files that cannot carry a `# expect:` first line. The rest of this table lives
/// in the hostile corpus as `tests/hostile/gir/err-at-*.gir` (checked by `tests/it/hostile.rs`):
/// an empty file would stop being empty, and a lone carriage return is a byte that editors and
/// line-ending conversions rewrite.
#[test]
fn malformed_files_are_rejected_with_position_and_reason() {
    let cases: Vec<(&str, String, u32, u32, &str)> = vec![
        (
            "empty file",
            String::new(),
            1,
            1,
            "expected `graph @NAME {`, found end of file",
        ),
        (
            "lone CR",
            "graph @g {\r\n  %x = input f64[]\r  \n  output %x\n}\n".into(),
            2,
            19,
            "carriage return",
        ),
    ];
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
