//! Golden print tests: `tests/golden/*.gir` printed canonically.

use super::*;

/// Splits a golden file into its input and its expectation (the `# `-prefixed lines after the
/// `# expect:` line).
pub(super) fn split_golden(content: &str) -> (&str, String) {
    let marker = "\n# expect:\n";
    let at = content
        .find(marker)
        .expect("golden file has an `# expect:` line");
    let expected = content[at + marker.len()..]
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .or_else(|| l.strip_prefix('#'))
                .expect("expectation lines start with `#`")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    (&content[..=at], expected)
}

pub(super) fn check_golden(path: &Path) {
    let content = std::fs::read_to_string(path).unwrap();
    assert!(
        content.starts_with("# test: print\n"),
        "{}: missing `# test: print` header",
        path.display()
    );
    let (input, expected) = split_golden(&content);
    let (_, actual) = round_trip(input);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        if actual != expected {
            let block: String = actual
                .lines()
                .map(|l| format!("# {l}\n"))
                .collect::<String>();
            std::fs::write(path, format!("{input}# expect:\n{block}")).unwrap();
        }
        return;
    }
    assert_eq!(
        actual,
        expected,
        "{}: printed form differs from the expectation (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

#[test]
fn golden_print() {
    let dir = root().join("tests/golden/print");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gir"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "golden files missing in {}",
        dir.display()
    );
    for f in files {
        check_golden(&f);
    }
}
