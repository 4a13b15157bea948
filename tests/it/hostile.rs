//! The hostile-input corpus (`tests/hostile/`, made by `tests/hostile/generate.py`) through the
//! `gradlift` binary, and every input a fuzzer ever crashed on (`tests/hostile/fuzz/`) through
//! the fuzz properties in-process and through the binary.
//!
//! Expectations are fixed by the file name, never by what the binary does:
//! - `gir/err-*.gir`: `run` (both backends, and `--check-finite`), `print --grad --opt` and
//!   `dot` exit 1 with exactly one `error:` line on stderr that is not an internal-error (panic)
//!   report, and print nothing on stdout.
//! - `gir/err-at-*.gir` (the parser's error table) also start with a line
//!   `# expect: LINE:COL FRAGMENT`: the library parser fails at exactly LINE:COL with a message
//!   containing FRAGMENT, and the binary's `error:` line names the file, LINE:COL and FRAGMENT.
//! - `gir/mem-*.gir`: valid, but too large to evaluate: `run` fails like that, `print` works.
//! - `gir/ok-*.gir`: every command exits 0; `run` prints JSON and `print` prints a `.gir` that
//!   parses; `run --grad` exits 0 exactly when the first output is a float scalar;
//!   `run --check-finite` exits 0 or 1 (some make NaN on purpose) but never crashes.
//! - `gir/grad-*.gir`: `run` exits 0, `run --grad` exits 1 with an `error:` line.
//! - `gir/jac-*.gir`: `run` exits 0, `run --jacobian` and `run --hessian` exit 1 (too large).
//! - `inputs/err-*.json` / `inputs/ok-*.json`: `run inputs/graph.gir --inputs FILE` exits 1 /
//!   0.
//! - `fuzz/parse/*`, `fuzz/pipeline/*`: the fuzz target's property holds (no panic), and the
//!   binary never crashes on the `.gir` part (exit 0 or 1, never an internal error).

use crate::fuzz_check;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test (`GRADLIFT_BIN` overrides, as in `cli.rs`).
fn bin() -> Command {
    match std::env::var_os("GRADLIFT_BIN") {
        Some(p) => Command::new(p),
        None => Command::new(env!("CARGO_BIN_EXE_gradlift")),
    }
}

fn exec(args: &[&str]) -> Output {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn gradlift")
}

fn show(args: &[&str], o: &Output) -> String {
    let mut err = String::from_utf8_lossy(&o.stderr).into_owned();
    err.truncate(2000);
    let mut out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.truncate(500);
    format!(
        "gradlift {}\nstatus: {:?}\nstdout: {out}\nstderr: {err}",
        args.join(" "),
        o.status
    )
}

/// Checks one command's outcome; returns a description of the problem, if any.
fn expect(args: &[&str], want: Expect) -> Option<String> {
    let o = exec(args);
    let err = String::from_utf8_lossy(&o.stderr);
    let problem = match (want, o.status.code()) {
        (Expect::Ok, Some(0)) => return None,
        (Expect::UserError, Some(1)) => {
            if !err.starts_with("error: ") {
                "stderr does not start with `error: `"
            } else if err.trim_end().lines().count() != 1 {
                "more than one line on stderr"
            } else if err.contains("internal error") {
                "an internal error (a panic or a bug) was reported"
            } else if !o.stdout.is_empty() {
                "something was printed on stdout"
            } else {
                return None;
            }
        }
        (Expect::NoCrash, Some(0)) => return None,
        (Expect::NoCrash, Some(1)) if !err.contains("internal error") => return None,
        _ => "wrong exit status",
    };
    Some(format!("{problem}: {}", show(args, &o)))
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exit 0.
    Ok,
    /// Exit 1, one `error:` line, no internal error.
    UserError,
    /// Exit 0 or 1 without an internal error.
    NoCrash,
}

fn corpus(sub: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hostile")
        .join(sub);
    let mut v: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    v.retain(|p| p.is_file());
    v.sort();
    v
}

fn name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// Runs `jobs` (each a list of (args, expectation)) on two threads; returns all problems.
fn run_jobs(jobs: Vec<(Vec<String>, Expect)>) -> Vec<String> {
    let threads = 2;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let jobs = &jobs;
                s.spawn(move || {
                    let mut problems = Vec::new();
                    for (args, want) in jobs.iter().skip(t).step_by(threads) {
                        let a: Vec<&str> = args.iter().map(String::as_str).collect();
                        problems.extend(expect(&a, *want));
                    }
                    problems
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("no panic"))
            .collect()
    })
}

fn job(args: &[&str], want: Expect) -> (Vec<String>, Expect) {
    (args.iter().map(ToString::to_string).collect(), want)
}

/// True if the first output of a valid file is a float scalar (so `--grad` applies).
fn first_output_is_float_scalar(path: &Path) -> bool {
    let src = std::fs::read_to_string(path).expect("ok files are UTF-8");
    let g = gradlift::ir::text::parse(&src).expect("ok files parse");
    let ty = g.ty(g.outputs()[0]);
    ty.is_scalar() && ty.dtype.is_float()
}

#[test]
fn hostile_graph_files_are_rejected_cleanly() {
    let files = corpus("gir");
    let mut jobs = Vec::new();
    let (mut err, mut ok, mut mem, mut grad, mut jac) = (0, 0, 0, 0, 0);
    for f in &files {
        let p = f.to_str().expect("UTF-8 path");
        let n = name(f);
        if n.starts_with("err-") {
            err += 1;
            for args in [
                vec!["run", p],
                vec!["run", p, "--backend", "interp", "--no-opt"],
                vec!["run", p, "--check-finite", "--grad"],
                vec!["run", p, "--jacobian", "--hessian"],
                vec!["print", p, "--grad", "--opt"],
                vec!["dot", p],
            ] {
                jobs.push(job(&args, Expect::UserError));
            }
        } else if n.starts_with("mem-") {
            mem += 1;
            jobs.push(job(&["run", p], Expect::UserError));
            jobs.push(job(
                &["run", p, "--backend", "interp", "--grad"],
                Expect::UserError,
            ));
            jobs.push(job(&["print", p, "--grad", "--opt"], Expect::Ok));
        } else if n.starts_with("ok-") {
            ok += 1;
            for args in [
                vec!["run", p],
                vec!["run", p, "--backend", "interp", "--no-opt"],
                vec!["print", p, "--opt"],
                vec!["dot", p],
            ] {
                jobs.push(job(&args, Expect::Ok));
            }
            let want = if first_output_is_float_scalar(f) {
                Expect::Ok
            } else {
                Expect::UserError
            };
            jobs.push(job(&["run", p, "--grad"], want));
            jobs.push(job(&["print", p, "--grad", "--opt"], want));
            // Some of these make NaN or infinities on purpose: stopping is fine, crashing not.
            jobs.push(job(&["run", p, "--check-finite"], Expect::NoCrash));
            jobs.push(job(
                &["run", p, "--check-finite", "--backend", "interp"],
                Expect::NoCrash,
            ));
            // Full Jacobians and Hessians need float outputs and inputs: refusing is fine.
            jobs.push(job(&["run", p, "--jacobian"], Expect::NoCrash));
            jobs.push(job(
                &["run", p, "--hessian", "--backend", "interp"],
                Expect::NoCrash,
            ));
        } else if n.starts_with("jac-") {
            jac += 1;
            jobs.push(job(&["run", p, "--backend", "interp"], Expect::Ok));
            jobs.push(job(&["run", p, "--jacobian"], Expect::UserError));
            jobs.push(job(&["run", p, "--hessian"], Expect::UserError));
        } else if n.starts_with("grad-") {
            grad += 1;
            jobs.push(job(&["run", p], Expect::Ok));
            jobs.push(job(&["run", p, "--grad"], Expect::UserError));
        } else {
            panic!("unexpected file in tests/hostile/gir: {n} (see generate.py)");
        }
    }
    // The corpus is the point of this test: keep it from silently shrinking.
    assert!(
        err >= 200 && ok >= 20 && mem >= 3 && grad >= 3 && jac >= 3,
        "{err} {ok} {mem} {grad} {jac}"
    );
    let problems = run_jobs(jobs);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn ok_files_print_json_and_valid_gir() {
    for f in corpus("gir") {
        if !name(&f).starts_with("ok-") {
            continue;
        }
        let p = f.to_str().expect("UTF-8 path");
        let o = exec(&["print", p, "--opt"]);
        let text = String::from_utf8(o.stdout).expect("UTF-8");
        gradlift::ir::text::parse(&text).unwrap_or_else(|e| panic!("{p}: {e}\n{text}"));
        let o = exec(&["run", p, "--backend", "interp"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{p}: {e}: {}", show(&["run", p], &o)));
        assert!(v["outputs"].is_object(), "{p}");
    }
}

#[test]
fn hostile_inputs_files_are_rejected_cleanly() {
    let graph = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/inputs/graph.gir");
    let g = graph.to_str().expect("UTF-8 path");
    let mut jobs = Vec::new();
    let (mut err, mut ok) = (0, 0);
    for f in corpus("inputs") {
        let p = f.to_str().expect("UTF-8 path");
        let n = name(&f);
        let want = if n.starts_with("err-") {
            err += 1;
            Expect::UserError
        } else if n.starts_with("ok-") {
            ok += 1;
            Expect::Ok
        } else {
            continue; // graph.gir
        };
        jobs.push(job(&["run", g, "--inputs", p], want));
        jobs.push(job(
            &[
                "run",
                g,
                "--inputs",
                p,
                "--backend",
                "interp",
                "--grad",
                "--wrt",
                "x",
            ],
            want,
        ));
    }
    assert!(err >= 60 && ok >= 5, "{err} {ok}");
    let problems = run_jobs(jobs);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Every input a fuzzer crashed on: the fuzz property holds now, and the binary survives it.
#[test]
fn fuzz_crashes_stay_fixed() {
    let mut jobs = Vec::new();
    let d = std::env::temp_dir().join(format!("gradlift-fuzz-regress-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    for (sub, check) in [
        ("fuzz/parse", fuzz_check::parse_roundtrip as fn(&[u8])),
        ("fuzz/pipeline", fuzz_check::pipeline as fn(&[u8])),
    ] {
        for f in corpus(sub) {
            let bytes = std::fs::read(&f).expect("readable");
            check(&bytes);
            let text = match bytes.iter().position(|&b| b == 0) {
                Some(p) if sub.ends_with("pipeline") => &bytes[..p],
                _ => &bytes[..],
            };
            let copy = d.join(format!("{}.gir", name(&f)));
            std::fs::write(&copy, text).expect("writable");
            let p = copy.to_str().expect("UTF-8").to_string();
            for args in [
                vec!["run", &p, "--grad"],
                vec!["run", &p, "--backend", "interp", "--grad"],
                vec!["print", &p, "--grad", "--opt"],
            ] {
                jobs.push(job(&args, Expect::NoCrash));
            }
        }
    }
    let problems = run_jobs(jobs);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// What an `err-at-*` file's first line, `# expect: LINE:COL FRAGMENT`, promises.
#[derive(Clone, Debug, PartialEq)]
struct At {
    line: u32,
    col: u32,
    fragment: String,
}

/// Reads the `# expect:` header, if the file has one.
fn header(src: &str) -> Option<At> {
    let rest = src.lines().next()?.strip_prefix("# expect: ")?;
    let (pos, fragment) = rest.split_once(' ')?;
    let (line, col) = pos.split_once(':')?;
    Some(At {
        line: line.parse().ok()?,
        col: col.parse().ok()?,
        fragment: fragment.to_string(),
    })
}

/// Checks that the parser and the binary reject `path` (whose text is `src`) exactly as `want`
/// says; returns the problems.
fn check_at(path: &str, src: &str, want: &At) -> Vec<String> {
    let mut problems = Vec::new();
    match gradlift::ir::text::parse(src) {
        Ok(_) => problems.push(format!("{path}: parsed fine, expected {want:?}")),
        Err(e) => {
            if (e.line, e.col) != (want.line, want.col) || !e.message.contains(&want.fragment) {
                problems.push(format!("{path}: parser said {e}, expected {want:?}"));
            }
            if !e
                .to_string()
                .starts_with(&format!("{}:{}: ", e.line, e.col))
            {
                problems.push(format!(
                    "{path}: Display of {e:?} does not start with line:col"
                ));
            }
        }
    }
    let args = ["print", path];
    let o = exec(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    let prefix = format!("error: {path}:{}:{}: ", want.line, want.col);
    if o.status.code() != Some(1)
        || !err.starts_with(&prefix)
        || !err.trim_end().contains(&want.fragment)
    {
        problems.push(format!("expected {want:?}: {}", show(&args, &o)));
    }
    problems
}

/// The `err-at-*` files with their headers (the header is required there, and only there).
fn headered_files() -> Vec<(String, String, At)> {
    let mut v = Vec::new();
    for f in corpus("gir") {
        let Ok(src) = std::fs::read_to_string(&f) else {
            continue; // invalid UTF-8 on purpose: no header
        };
        let p = f.to_str().expect("UTF-8 path").to_string();
        match (name(&f).starts_with("err-at-"), header(&src)) {
            (true, Some(at)) => v.push((p, src, at)),
            (false, None) => {}
            (true, None) => panic!("{p}: an err-at- file without a `# expect:` first line"),
            (false, Some(_)) => panic!("{p}: a `# expect:` header outside an err-at- file"),
        }
    }
    v
}

#[test]
fn headered_files_fail_at_their_expected_position() {
    let files = headered_files();
    // The table these files replaced had 90 such cases: keep it from silently shrinking.
    assert!(files.len() >= 90, "only {} err-at- files", files.len());
    let problems: Vec<String> = files
        .iter()
        .flat_map(|(p, src, at)| check_at(p, src, at))
        .collect();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

/// The check above is not vacuous: a header off by a line, a column or a word is caught.
#[test]
fn a_wrong_position_header_is_caught() {
    let files = headered_files();
    let (p, src, at) = files
        .iter()
        .find(|(p, ..)| p.ends_with("err-at-bad-char.gir"))
        .expect("err-at-bad-char.gir is in the corpus");
    assert_eq!(
        *at,
        At {
            line: 3,
            col: 16,
            fragment: "unexpected character `$`".into()
        }
    );
    assert!(check_at(p, src, at).is_empty());
    for wrong in [
        At {
            line: at.line + 1,
            ..at.clone()
        },
        At {
            col: at.col - 1,
            ..at.clone()
        },
        At {
            fragment: "unexpected character `#`".into(),
            ..at.clone()
        },
    ] {
        let problems = check_at(p, src, &wrong);
        // Both the parser's and the binary's report disagree with the wrong header.
        assert_eq!(problems.len(), 2, "{wrong:?}: {problems:?}");
    }
}
