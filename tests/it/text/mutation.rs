//! Fuzzing by mutation: mutated files never panic, and the ones that parse round-trip.

use super::random_graphs::Rng;
use super::*;

pub(super) const FRAGMENTS: [&str; 40] = [
    "%",
    "%x",
    "%0",
    "%99",
    "@g",
    "=",
    ",",
    ":",
    "[",
    "]",
    "{",
    "}",
    "#",
    "\n",
    "\r",
    "\t",
    " ",
    "-",
    "-inf",
    "inf",
    "nan",
    "1e400",
    "0",
    "1",
    "2.5",
    "-3",
    "f32",
    "f64[2,3]",
    "bool[]",
    "axes=[0]",
    "keepdims=true",
    "n=2",
    "shape=[6]",
    "perm=[1,0]",
    "start=[0,0] stop=[1,1]",
    "axis=1",
    "output %x",
    "graph @h {",
    "é",
    "99999999999999999999",
];

pub(super) fn mutate(r: &mut Rng, src: &str) -> String {
    let mut s: Vec<u8> = src.as_bytes().to_vec();
    for _ in 0..1 + r.below(4) {
        let at = if s.is_empty() {
            0
        } else {
            r.below(s.len() + 1)
        };
        match r.below(6) {
            0 if !s.is_empty() => {
                let end = (at + 1 + r.below(8)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let frag = FRAGMENTS[r.below(FRAGMENTS.len())];
                s.splice(at..at, frag.bytes());
            }
            2 if at < s.len() => s[at] = r.next_u64() as u8,
            3 => {
                // Duplicate or move a whole line.
                let text = String::from_utf8_lossy(&s).into_owned();
                let mut lines: Vec<&str> = text.split('\n').collect();
                let i = r.below(lines.len());
                let j = r.below(lines.len());
                if r.chance(1, 2) {
                    let l = lines[i];
                    lines.insert(j, l);
                } else {
                    lines.swap(i, j);
                }
                s = lines.join("\n").into_bytes();
            }
            _ => {
                // Replace a number-like run with another number.
                let frag = ["0", "1", "-1", "2147483648", "1e39", "3", "1000000000"][r.below(7)];
                if at < s.len() && s[at].is_ascii_digit() {
                    s.splice(at..=at, frag.bytes());
                }
            }
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

/// Mutates the example programs and golden inputs; every result must either fail to parse with
/// a position inside the file, or parse to a graph that verifies and round-trips.
#[test]
fn mutated_files_never_panic_and_parsed_ones_round_trip() {
    let iters: usize = std::env::var("GIR_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    let mut corpus = Vec::new();
    for dir in ["ir", "tests/golden/print"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "gir") {
                let src = std::fs::read_to_string(&p).unwrap();
                // Golden files: only the input part.
                let src = match src.find("\n# expect:\n") {
                    Some(at) => src[..=at].to_string(),
                    None => src,
                };
                corpus.push(src);
            }
        }
    }
    let mut r = Rng(0x1234_5678_9ABC_DEF1);
    let mut parsed = 0;
    for i in 0..iters {
        let base = &corpus[i % corpus.len()];
        let src = mutate(&mut r, base);
        match text::parse(&src) {
            Ok(g) => {
                parsed += 1;
                verify(&g).unwrap_or_else(|e| panic!("{e}\n{src}"));
                let printed = text::print(&g);
                let g2 = text::parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
                assert!(g2.same(&g), "{printed}");
                assert_eq!(text::print(&g2), printed);
            }
            Err(e) => {
                let lines = src.split('\n').count() as u32;
                assert!(
                    e.line >= 1 && e.line <= lines,
                    "{e} (file has {lines} lines)"
                );
                assert!(e.col >= 1);
            }
        }
    }
    // The mutations must not all be fatal, or the round-trip half tests nothing.
    assert!(
        parsed > iters / 50,
        "only {parsed} of {iters} mutants parsed"
    );
}
