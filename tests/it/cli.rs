//! The `gradlift` binary against its contract (`docs/cli.md`): the worked example on both
//! backends, the JSON formats, every user-error path (exit 1, one `error:` line naming the
//! culprit), usage errors (exit 2), and a hostile-input corpus that must never crash.
//!
//! Expected numbers come from hand computation (y = x1² + x2, ∂y/∂x1 = 2·x1, ∂y/∂x2 = 1) or from
//! comparing the two backends, never from the code under test.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The worked example, as `docs/gir.md` writes it.
const SEED: &str = "\
# y = x1^2 + x2   (the worked example of reverse mode)
graph @seed {
  %x1 = input f64[]
  %x2 = input f64[]
  %v1 = mul %x1, %x1 : f64[]
  %y = add %v1, %x2 : f64[]
  output %y
}
";

/// f32 values in, f32 values out: echoes the input and its negation.
const ECHO32: &str = "\
graph @echo {
  %x = input f32[]
  %v = input f32[2,3]
  %n = neg %x : f32[]
  %m = mul %v, %v : f32[2,3]
  output %x, %n, %v, %m
}
";

/// Non-scalar first output, a bool input and a float input the output ignores.
const MIXED: &str = "\
graph @mixed {
  %a = input f64[2]
  %flag = input bool[2]
  %unused = input f64[3]
  %s = select %flag, %a, %a : f64[2]
  %t = reduce_sum %s : f64[]
  output %s, %t
}
";

/// A scalar loss over vectors: t = sum(a * b), ∂t/∂a = b, ∂t/∂b = a; `unused` gets zeros.
const DOT: &str = "\
graph @dot {
  %a = input f64[3]
  %b = input f64[3]
  %unused = input f32[2]
  %p = mul %a, %b : f64[3]
  %t = reduce_sum %p : f64[]
  output %t
}
";

/// The binary under test. `GRADLIFT_BIN` overrides the path cargo gives: worktrees that share one
/// target directory overwrite each other's `target/debug/gradlift`.
fn bin() -> Command {
    match std::env::var_os("GRADLIFT_BIN") {
        Some(p) => Command::new(p),
        None => Command::new(env!("CARGO_BIN_EXE_gradlift")),
    }
}

/// A fresh directory for one test's files.
fn tmpdir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// Runs the binary with `args`, feeding `stdin`.
fn exec(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gradlift");
    {
        let mut sin = child.stdin.take().unwrap();
        // The binary may exit before reading everything (e.g. on a usage error).
        let _ = sin.write_all(stdin);
    }
    child.wait_with_output().unwrap()
}

fn show(args: &[&str], o: &Output) -> String {
    format!(
        "gradlift {}\nstatus: {:?}\nstdout: {}\nstderr: {}",
        args.join(" "),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs and expects success; returns stdout.
fn ok(args: &[&str]) -> String {
    ok_stdin(args, b"")
}

fn ok_stdin(args: &[&str], stdin: &[u8]) -> String {
    let o = exec(args, stdin);
    assert_eq!(o.status.code(), Some(0), "{}", show(args, &o));
    String::from_utf8(o.stdout).expect("stdout is UTF-8")
}

/// Runs and expects a user error: exit 1 and exactly one `error:` line on stderr, not a bug
/// report. Returns that line.
fn fails(args: &[&str]) -> String {
    fails_stdin(args, b"")
}

fn fails_stdin(args: &[&str], stdin: &[u8]) -> String {
    let o = exec(args, stdin);
    assert_eq!(o.status.code(), Some(1), "{}", show(args, &o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.starts_with("error: "), "{}", show(args, &o));
    assert_eq!(err.trim_end().lines().count(), 1, "{}", show(args, &o));
    assert!(!err.contains("internal error"), "{}", show(args, &o));
    assert!(o.stdout.is_empty(), "{}", show(args, &o));
    err
}

/// Runs and expects a clap usage error (exit 2).
fn usage(args: &[&str]) {
    let o = exec(args, b"");
    assert_eq!(o.status.code(), Some(2), "{}", show(args, &o));
    assert!(!o.stderr.is_empty());
}

/// Whatever the input: exit 0 or 1 (never a panic, abort or signal), and a failure is one
/// `error:` line that is not an internal-error report.
fn survives(args: &[&str], stdin: &[u8]) {
    let o = exec(args, stdin);
    match o.status.code() {
        Some(0) => {}
        Some(1) => {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.starts_with("error: "), "{}", show(args, &o));
            assert!(!err.contains("internal error"), "{}", show(args, &o));
        }
        _ => panic!("crashed: {}", show(args, &o)),
    }
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("invalid JSON ({e}): {s}"))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn worked_example_on_both_backends_with_and_without_optimizer() {
    let d = tmpdir();
    let written = write(&d, "seed.gir", SEED);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir/seed.gir");
    for seed in [&written, &shipped] {
        worked_example(&d, seed);
    }
}

fn worked_example(d: &Path, seed: &Path) {
    for (x1, x2) in [(3.0, 4.0), (-1.5, 0.25), (0.0, -2.0), (1e10, 1.0)] {
        let inputs = write(d, "in.json", format!("{{\"x1\": {x1:?}, \"x2\": {x2:?}}}"));
        for backend in ["jit", "interp"] {
            for extra in [&[][..], &["--no-opt"][..]] {
                let mut args = vec!["run", p(seed), "--grad", "--inputs", p(&inputs)];
                args.extend(["--backend", backend]);
                args.extend(extra);
                let out = json(&ok(&args));
                assert_eq!(num(&out["outputs"]["y"]), x1 * x1 + x2, "{args:?}");
                assert_eq!(num(&out["gradients"]["x1"]), 2.0 * x1, "{args:?}");
                assert_eq!(num(&out["gradients"]["x2"]), 1.0, "{args:?}");
                assert_eq!(out.as_object().unwrap().len(), 2);
            }
        }
    }
}

#[test]
fn output_format_is_exactly_the_spec_example() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let inputs = write(&d, "in.json", r#"{"x1": 3, "x2": 4}"#);
    for backend in ["jit", "interp"] {
        let args = [
            "run",
            p(&seed),
            "--inputs",
            p(&inputs),
            "--grad",
            "--backend",
            backend,
        ];
        assert_eq!(
            ok(&args),
            "{\"outputs\": {\"y\": 13.0}, \"gradients\": {\"x1\": 6.0, \"x2\": 1.0}}\n"
        );
        // Without --grad there is no "gradients" key.
        let args = [
            "run",
            p(&seed),
            "--inputs",
            p(&inputs),
            "--backend",
            backend,
        ];
        assert_eq!(ok(&args), "{\"outputs\": {\"y\": 13.0}}\n");
    }
}

#[test]
fn inputs_from_stdin_and_wrt_subset() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let args = ["run", p(&seed), "--inputs", "-", "--grad", "--wrt", "x2"];
    let out = json(&ok_stdin(&args, br#"{"x2": 0.5, "x1": -2}"#));
    assert_eq!(num(&out["outputs"]["y"]), 4.5);
    let grads = out["gradients"].as_object().unwrap();
    assert_eq!(grads.len(), 1);
    assert_eq!(num(&grads["x2"]), 1.0);
    // Gradients come in input order whatever the --wrt order.
    let args = ["run", p(&seed), "--inputs", "-", "--grad", "--wrt", "x2,x1"];
    let text = ok_stdin(&args, br#"{"x2": 0.5, "x1": -2}"#);
    assert!(
        text.ends_with("\"gradients\": {\"x1\": -4.0, \"x2\": 1.0}}\n"),
        "{text}"
    );
}

#[test]
fn f32_values_print_shortest_in_f32_and_nest_by_shape() {
    let d = tmpdir();
    let g = write(&d, "echo.gir", ECHO32);
    let inputs = write(
        &d,
        "in.json",
        r#"{"x": 0.1, "v": [[0.1, -2.5, "inf"], ["nan", 1e-7, 3]]}"#,
    );
    for backend in ["jit", "interp"] {
        let args = ["run", p(&g), "--inputs", p(&inputs), "--backend", backend];
        let text = ok(&args);
        // Literal text: the f32 0.1 prints as 0.1, not 0.10000000149011612.
        assert!(text.contains("\"x\": 0.1,"), "{text}");
        assert!(text.contains("\"n\": -0.1,"), "{text}");
        assert!(
            text.contains("\"v\": [[0.1, -2.5, \"inf\"], [\"nan\", 1e-7, 3.0]]"),
            "{text}"
        );
        let out = json(&text);
        let m = &out["outputs"]["m"];
        // 0.1f32 squared, in f32, printed shortest: compute the expectation independently.
        let sq = |x: f32| format!("{:?}", x * x);
        assert_eq!(m[0][0].to_string(), sq(0.1));
        assert_eq!(m[0][2], "inf");
        assert_eq!(m[1][0], "nan");
        assert_eq!(m[1][2].to_string(), "9.0");
        assert_eq!(num(&m[0][1]), 6.25);
    }
}

#[test]
fn gradients_are_shaped_like_inputs_with_zeros_for_unused() {
    let d = tmpdir();
    let g = write(&d, "dot.gir", DOT);
    let inputs = write(
        &d,
        "in.json",
        r#"{"a": [1, 2, 3], "b": [-4, 0.5, 6], "unused": [7, 8]}"#,
    );
    for backend in ["jit", "interp"] {
        let args = [
            "run",
            p(&g),
            "--inputs",
            p(&inputs),
            "--grad",
            "--backend",
            backend,
        ];
        let out = json(&ok(&args));
        assert_eq!(num(&out["outputs"]["t"]), -4.0 + 1.0 + 18.0);
        let ga: Vec<f64> = out["gradients"]["a"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect();
        let gb: Vec<f64> = out["gradients"]["b"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect();
        assert_eq!(ga, [-4.0, 0.5, 6.0]);
        assert_eq!(gb, [1.0, 2.0, 3.0]);
        assert_eq!(out["gradients"]["unused"].to_string(), "[0.0,0.0]");
        let keys: Vec<&String> = out["gradients"].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3);
    }
}

#[test]
fn without_inputs_the_generator_is_fixed_and_in_range() {
    let d = tmpdir();
    let g = write(
        &d,
        "gen.gir",
        "graph @gen {\n  %a = input f64[4]\n  %b = input f32[2,2]\n  %c = input bool[3]\n  \
         output %a, %b, %c\n}\n",
    );
    let first = ok(&["run", p(&g), "--backend", "interp"]);
    assert_eq!(first, ok(&["run", p(&g), "--backend", "interp"]));
    assert_eq!(first, ok(&["run", p(&g)]));
    let out = json(&first);
    let a: Vec<f64> = out["outputs"]["a"]
        .as_array()
        .unwrap()
        .iter()
        .map(num)
        .collect();
    assert!(a.iter().all(|x| (-1.0..1.0).contains(x)), "{first}");
    assert!(a.windows(2).any(|w| w[0] != w[1]), "{first}");
    assert!(
        out["outputs"]["c"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_boolean)
    );
    // Random inputs work with --grad too (a bare run always works).
    let seed = write(&d, "seed.gir", SEED);
    let out = json(&ok(&["run", p(&seed), "--grad"]));
    let x1 = num(&out["gradients"]["x1"]) / 2.0;
    assert!((-1.0..1.0).contains(&x1));
}

#[test]
fn print_output_is_a_valid_gir_with_the_same_numbers() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let inputs = write(&d, "in.json", r#"{"x1": -1.5, "x2": 0.25}"#);
    for flags in [&["--grad"][..], &["--grad", "--opt"], &["--opt"], &[]] {
        let mut args = vec!["print", p(&seed)];
        args.extend(flags);
        let text = ok(&args);
        let g = gradlift::ir::text::parse(&text)
            .unwrap_or_else(|e| panic!("print {flags:?} does not re-parse: {e}\n{text}"));
        // The printer is canonical: printing the re-parsed graph gives the same text.
        assert_eq!(gradlift::ir::text::print(&g), text);
        let printed = write(&d, "printed.gir", &text);
        for backend in ["jit", "interp"] {
            let args = [
                "run",
                p(&printed),
                "--inputs",
                p(&inputs),
                "--backend",
                backend,
            ];
            let out = json(&ok(&args));
            assert_eq!(num(&out["outputs"]["y"]), 2.5);
            if flags.contains(&"--grad") {
                assert_eq!(num(&out["outputs"]["grad_x1"]), -3.0, "{text}");
                assert_eq!(num(&out["outputs"]["grad_x2"]), 1.0, "{text}");
            } else {
                assert_eq!(out["outputs"].as_object().unwrap().len(), 1);
            }
        }
    }
}

#[test]
fn print_grad_names_avoid_taken_names_and_keep_outputs_distinct() {
    let d = tmpdir();
    // `grad_x` is taken, and both gradients of `x + w` are the same seed value.
    let g = write(
        &d,
        "g.gir",
        "graph @g {\n  %x = input f64[]\n  %w = input f64[]\n  %grad_x = add %x, %w : f64[]\n  \
         output %grad_x\n}\n",
    );
    for flags in [&["--grad"][..], &["--grad", "--opt"]] {
        let mut args = vec!["print", p(&g)];
        args.extend(flags);
        let text = ok(&args);
        let printed = write(&d, "printed.gir", &text);
        let inputs = write(&d, "in.json", r#"{"x": 2, "w": 5}"#);
        let out = json(&ok(&[
            "run",
            p(&printed),
            "--inputs",
            p(&inputs),
            "--backend",
            "interp",
        ]));
        let outs = out["outputs"].as_object().unwrap();
        assert_eq!(outs.len(), 3, "{text}");
        assert_eq!(num(&outs["grad_x"]), 7.0, "{text}");
        assert_eq!(num(&outs["grad_x_2"]), 1.0, "{text}");
        assert_eq!(num(&outs["grad_w"]), 1.0, "{text}");
    }
}

/// A layer large enough for the GEMM's threads (64×512·512×256) and for loops cut into chunks
/// (a 300×300 elementwise square summed), with its gradient.
const WIDE: &str = "\
graph @wide {
  %x = input f32[64,512]
  %w = input f32[512,256]
  %v = input f32[300,300]
  %h = matmul %x, %w
  %t = tanh %h
  %s = reduce_sum %t
  %q = mul %v, %v
  %r = reduce_sum %q
  %y = add %s, %r
  output %y
}
";

#[test]
fn threads_flag_changes_no_bit_and_rejects_zero() {
    let d = tmpdir();
    let wide = write(&d, "wide.gir", WIDE);
    let run = |t: &str| ok(&["run", p(&wide), "--grad", "--threads", t]);
    let one = run("1");
    // The same text, so the same bits (the output prints each value's shortest round trip).
    assert_eq!(run("2"), one);
    assert_eq!(run("3"), one);
    assert_eq!(ok(&["run", p(&wide), "--grad"]), one);
    // The interpreter (an independent evaluator) agrees to rounding on the loss.
    let interp = json(&ok(&["run", p(&wide), "--backend", "interp"]));
    let (a, b) = (
        num(&json(&one)["outputs"]["y"]),
        num(&interp["outputs"]["y"]),
    );
    assert!((a - b).abs() <= 1e-3 * b.abs(), "{a} vs {b}");
    for args in [
        ["run", p(&wide), "--threads", "0"],
        ["bench", p(&wide), "--threads", "0"],
    ] {
        let o = exec(&args, b"");
        assert_eq!(o.status.code(), Some(2), "{}", show(&args, &o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("'0'") && err.contains("--threads") && err.contains("at least 1"),
            "{err}"
        );
    }
    usage(&["run", p(&wide), "--threads", "two"]);
    usage(&["run", p(&wide), "--threads", "-1"]);
    let bench = json(&ok(&["bench", p(&wide), "--threads", "2", "--json"]));
    assert!(num(&bench["jit_ns_per_call"]) > 0.0, "{bench}");
}

#[test]
fn bench_json_has_the_keys_with_sane_values() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let out = json(&ok(&["bench", p(&seed), "--grad", "--json"]));
    for key in [
        "nodes",
        "nodes_opt",
        "compile_ms",
        "jit_ns_per_call",
        "interp_ns_per_call",
        "speedup",
    ] {
        let v = num(&out[key]);
        assert!(v.is_finite() && v > 0.0, "{key} = {v}: {out}");
    }
    // The adjoint graph has more nodes than the 5 forward ones.
    assert!(num(&out["nodes"]) > 5.0, "{out}");
    assert_eq!(num(&out["nodes"]).fract(), 0.0);
    // Explicit inputs and --wrt follow the rules of `run`.
    let inputs = write(&d, "in.json", r#"{"x1": 3, "x2": 4}"#);
    let args = [
        "bench",
        p(&seed),
        "--inputs",
        p(&inputs),
        "--grad",
        "--wrt",
        "x1",
        "--json",
    ];
    let with_inputs = json(&ok(&args));
    assert!(num(&with_inputs["jit_ns_per_call"]) > 0.0, "{with_inputs}");
    // The table form mentions the same measurements.
    let table = ok(&["bench", p(&seed)]);
    assert!(
        table.contains("ns/call") && table.contains("compile"),
        "{table}"
    );
}

#[test]
fn dot_is_graphviz_with_adjoint_nodes_marked() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let plain = ok(&["dot", p(&seed)]);
    assert!(plain.starts_with("digraph \"seed\" {"), "{plain}");
    assert!(plain.trim_end().ends_with('}'));
    assert!(plain.contains("%x1\\ninput\\nf64[]"), "{plain}");
    assert!(plain.contains("->"));
    assert!(!plain.contains("dashed"), "{plain}");
    let grad = ok(&["dot", p(&seed), "--grad"]);
    assert!(grad.contains("dashed"), "{grad}");
    assert!(grad.lines().count() > plain.lines().count());
}

#[test]
fn file_errors_name_the_file_and_position() {
    let d = tmpdir();
    let missing = d.join("no-such.gir");
    for cmd in ["run", "print", "bench", "dot"] {
        let e = fails(&[cmd, p(&missing)]);
        assert!(e.contains("no-such.gir"), "{e}");
    }
    let e = fails(&["run", p(&d)]); // a directory
    assert!(e.contains(p(&d)), "{e}");
    let bad = write(
        &d,
        "bad.gir",
        "graph @g {\n  %x = input f64[]\n  %y = frobnicate %x : f64[]\n  output %y\n}\n",
    );
    for cmd in ["run", "print", "bench", "dot"] {
        let e = fails(&[cmd, p(&bad)]);
        assert!(e.starts_with(&format!("error: {}:3:", p(&bad))), "{e}");
    }
    // A type error is reported at its line too.
    let ty = write(
        &d,
        "ty.gir",
        "graph @g {\n  %x = input f64[2]\n  %y = input f32[2]\n  %z = add %x, %y\n  \
         output %z\n}\n",
    );
    let e = fails(&["run", p(&ty)]);
    assert!(e.starts_with(&format!("error: {}:4:", p(&ty))), "{e}");
    let latin1 = write(&d, "latin1.gir", b"# caf\xe9\ngraph @g {\n}\n");
    let e = fails(&["print", p(&latin1)]);
    assert!(e.contains(&format!("{}:1:6", p(&latin1))), "{e}");
}

#[test]
fn inputs_errors_name_the_input() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let echo = write(&d, "echo.gir", ECHO32);
    let mixed = write(&d, "mixed.gir", MIXED);
    let cases: &[(&Path, &str, &[&str])] = &[
        (
            &seed,
            r#"{"x1": 3, "x2": 4"#,
            &["invalid inputs JSON", "line 1"],
        ),
        (&seed, "", &["invalid inputs JSON"]),
        (&seed, r#"{"x1": 3}"#, &["missing input x2"]),
        (
            &seed,
            r#"{"x1": 3, "x2": 4, "x3": 5}"#,
            &["\"x3\"", "not an input"],
        ),
        (
            &seed,
            r#"{"x1": 3, "x2": 4, "x1": 5}"#,
            &["\"x1\"", "twice"],
        ),
        (
            &seed,
            r#"{"x1": [3], "x2": 4}"#,
            &["input x1", "found a list"],
        ),
        (&seed, r#"{"x1": "3", "x2": 4}"#, &["input x1", "string"]),
        (&seed, r#"{"x1": null, "x2": 4}"#, &["input x1", "null"]),
        (&seed, r#"{"x1": true, "x2": 4}"#, &["input x1", "true"]),
        (
            &seed,
            r#"{"x1": 3, "x2": 1e400}"#,
            &["input x2", "too large for f64"],
        ),
        (&seed, "[1, 2]", &["invalid inputs JSON", "object"]),
        (&seed, "3", &["invalid inputs JSON"]),
        (
            &echo,
            r#"{"x": 1e39, "v": [[1,2,3],[4,5,6]]}"#,
            &["input x", "too large for f32"],
        ),
        (
            &echo,
            r#"{"x": 1, "v": [[1,2,3],[4,5]]}"#,
            &["input v", "v[1]", "list of 3"],
        ),
        (
            &echo,
            r#"{"x": 1, "v": [1,2,3,4,5,6]}"#,
            &["input v", "list of 2"],
        ),
        (
            &echo,
            r#"{"x": 1, "v": [[1,2,3],[4,5,6],[7,8,9]]}"#,
            &["input v", "list of 2"],
        ),
        (
            &echo,
            r#"{"x": 1, "v": [[1,2,3],[4,5,[6]]]}"#,
            &["input v", "v[1][2]"],
        ),
        (
            &mixed,
            r#"{"a": [1, 2], "flag": [1, 0], "unused": [1,2,3]}"#,
            &["input flag", "true or false"],
        ),
    ];
    for (graph, inputs, needles) in cases {
        let f = write(&d, "in.json", inputs);
        let e = fails(&["run", p(graph), "--inputs", p(&f), "--backend", "interp"]);
        for n in *needles {
            assert!(e.contains(n), "inputs {inputs}: {e:?} lacks {n:?}");
        }
        // The same rules hold for stdin and for bench.
        let e2 = fails_stdin(&["run", p(graph), "--inputs", "-"], inputs.as_bytes());
        assert_eq!(e2.replace("<stdin>", p(&f)), e);
        fails(&["bench", p(graph), "--inputs", p(&f)]);
    }
    let e = fails(&["run", p(&seed), "--inputs", p(&d.join("none.json"))]);
    assert!(e.contains("none.json"), "{e}");
}

#[test]
fn grad_errors_name_the_culprit() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let mixed = write(&d, "mixed.gir", MIXED);
    for cmd in ["run", "print", "bench", "dot"] {
        let e = fails(&[cmd, p(&mixed), "--grad"]);
        assert!(
            e.contains("%s") && e.contains("f64[2]") && e.contains("scalar"),
            "{e}"
        );
        let e = fails(&[cmd, p(&seed), "--grad", "--wrt", "x1,nope"]);
        assert!(e.contains("nope") && e.contains("not an input"), "{e}");
        let e = fails(&[cmd, p(&seed), "--grad", "--wrt", "y"]);
        assert!(e.contains("\"y\""), "{e}");
        let e = fails(&[cmd, p(&seed), "--grad", "--wrt", "x1,x1"]);
        assert!(e.contains("x1") && e.contains("twice"), "{e}");
    }
    // A bool input cannot be differentiated, even when the output is a fine scalar.
    let g = write(
        &d,
        "b.gir",
        "graph @b {\n  %x = input f64[]\n  %flag = input bool[]\n  %y = select %flag, %x, %x : f64[]\n  \
         output %y\n}\n",
    );
    let e = fails(&["run", p(&g), "--grad", "--wrt", "flag"]);
    assert!(e.contains("flag") && e.contains("bool"), "{e}");
    // Without --wrt, bool inputs are simply skipped.
    let out = json(&ok(&["run", p(&g), "--grad", "--backend", "interp"]));
    assert_eq!(out["gradients"].as_object().unwrap().len(), 1);
    assert_eq!(num(&out["gradients"]["x"]), 1.0);
}

#[test]
fn usage_errors_exit_2() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let s = p(&seed);
    usage(&[]);
    usage(&["frobnicate", s]);
    usage(&["run"]);
    usage(&["run", s, "--bogus"]);
    usage(&["run", s, "--backend", "gpu"]);
    usage(&["run", s, "--inputs"]);
    usage(&["run", s, "--wrt", "x1"]); // --wrt needs --grad
    usage(&["print", s, "--json"]);
    usage(&["bench"]);
    usage(&["dot", s, s]);
    // Help is not an error.
    assert!(ok(&["--help"]).contains("run"));
    assert!(ok(&["run", "--help"]).contains("--inputs"));
}

#[test]
fn huge_shapes_are_errors_not_crashes() {
    let d = tmpdir();
    // 2^31 - 1 f32 elements (8 GiB): valid per the format, but over the CLI's memory limit.
    let g = write(
        &d,
        "big.gir",
        "graph @big {\n  %x = input f32[2147483647]\n  %y = reduce_sum %x : f32[]\n  \
         output %y\n}\n",
    );
    let e = fails(&["run", p(&g)]);
    assert!(e.contains("bytes"), "{e}");
    fails(&["bench", p(&g)]);
    // Printing needs no tensor memory.
    assert!(ok(&["print", p(&g), "--grad"]).contains("f32[2147483647]"));
    let g = write(
        &d,
        "over.gir",
        "graph @big {\n  %x = input f32[2147483648]\n  output %x\n}\n",
    );
    let e = fails(&["run", p(&g)]);
    assert!(e.contains(&format!("{}:2:", p(&g))), "{e}");
}

#[test]
fn extreme_powi_exponents_never_crash() {
    let d = tmpdir();
    for n in [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX] {
        let f = write(
            &d,
            "powi.gir",
            format!(
                "graph @g {{\n  %x = input f64[]\n  %y = powi %x n={n} : f64[]\n  output %y\n}}\n"
            ),
        );
        for backend in ["interp", "jit"] {
            survives(&["run", p(&f), "--grad", "--backend", backend], b"");
        }
        survives(&["print", p(&f), "--grad", "--opt"], b"");
    }
}

/// Deterministic bytes (SplitMix64).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

#[test]
fn hostile_graph_files_never_crash() {
    let d = tmpdir();
    let mut corpus: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\0\0\0".to_vec(),
        b"graph".to_vec(),
        b"graph @g {".to_vec(),
        b"graph @g {\n}\n".to_vec(),
        b"graph @g {\n  output %x\n}\n".to_vec(),
        "graph @g {\n  %x = input f64[]\n  %c = const 1e999 : f64[]\n  output %x\n}\n".into(),
        "graph @g {\n  %c = const 1e-999 : f32[]\n  output %c\n}\n".into(),
        "graph @g {\n  %c = const 99999999999999999999999999999999999999 : f32[]\n  output %c\n}\n"
            .into(),
        "graph @g {\n  %x = input f64[99999999999999999999999]\n  output %x\n}\n".into(),
        "graph @g {\n  %x = input f64[0]\n  output %x\n}\n".into(),
        "graph @g {\n  %x = input f64[]\n  %y = powi %x n=99999999999999 : f64[]\n  output %y\n}\n"
            .into(),

        "graph @g {\n  %x = input f64[2]\n  %y = reshape %x shape=[1,1,1,2,1] : f64[1,1,1,2,1]\n  \
         output %y\n}\n"
            .into(),
        "graph @g {\n  %x = input f64[2,3]\n  %y = transpose %x perm=[0,0]\n  output %y\n}\n".into(),
        "graph @g {\n  %x = input f64[2,3]\n  %y = slice %x start=[1,0] stop=[1,3]\n  output %y\n}\n"
            .into(),
        "graph @g {\n  %x = input f64[2,3]\n  %y = concat %x, %x axis=9\n  output %y\n}\n".into(),
        "graph @g {\n  %x = input f64[]\n  output %x, %x\n}\n".into(),
        "graph @g {\n  %x = input f64[]\n  %x = input f64[]\n  output %x\n}\n".into(),
        format!("graph @g {{\n  %x = input f64[{}]\n  output %x\n}}\n", "1,".repeat(5000) + "1")
            .into_bytes(),
        format!("graph @g {{\n  %c = const {}1{} : f64[1]\n  output %c\n}}\n", "[".repeat(100_000),
            "]".repeat(100_000))
            .into_bytes(),
        format!("graph @g {{\n  %x = input f64[]\n{}  output %x\n}}\n", "# c\n".repeat(10_000))
            .into_bytes(),
        "graph @g {\r\n  %x = input f64[]\r\n  output %x\r\n}\r\n".into(),
        "graph @g {\n  %é = input f64[]\n  output %é\n}\n".into(),
    ];
    // Every truncation of the worked example, and byte flips of it.
    for cut in 0..SEED.len() {
        corpus.push(SEED.as_bytes()[..cut].to_vec());
    }
    let noise_bytes = noise(1, 64 * 40);
    for (i, chunk) in noise_bytes.chunks(64).enumerate() {
        corpus.push(chunk.to_vec());
        let mut flipped = SEED.as_bytes().to_vec();
        let at = i * 7 % flipped.len();
        flipped[at] = chunk[0];
        corpus.push(flipped);
    }
    // A long valid chain: nothing may recurse on graph depth (printer,
    // optimizer and interpreter here; the JIT has its own stress tests).
    let mut chain = String::from("graph @chain {\n  %v0 = input f64[]\n");
    for i in 1..20_000 {
        chain.push_str(&format!("  %v{i} = sin %v{} : f64[]\n", i - 1));
    }
    chain.push_str("  output %v19999\n}\n");
    corpus.push(chain.into_bytes());
    for (i, bytes) in corpus.iter().enumerate() {
        let f = write(&d, &format!("h{i}.gir"), bytes);
        survives(&["print", p(&f), "--grad", "--opt"], b"");
        survives(&["run", p(&f), "--backend", "interp", "--grad"], b"");
        if i < 30 {
            // The slower paths only on the hand-written cases.
            survives(&["run", p(&f)], b"");
            survives(&["dot", p(&f), "--grad"], b"");
        }
    }
}

#[test]
fn hostile_inputs_json_never_crashes() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let echo = write(&d, "echo.gir", ECHO32);
    let mut corpus: Vec<Vec<u8>> = vec![
        "[".repeat(100_000).into_bytes(),
        format!("{{\"x1\": {}", "[".repeat(100_000)).into_bytes(),
        format!(
            "{{\"x\": 1, \"v\": {}1{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
        .into_bytes(),
        format!(
            "{{\"x\": 1, \"v\": {}1{}}}",
            "[".repeat(100),
            "]".repeat(100)
        )
        .into_bytes(),
        format!("{{\"x\": {}, \"v\": 0}}", "9".repeat(100_000)).into_bytes(),
        format!("{{\"x\": 0.{}1, \"v\": 0}}", "0".repeat(100_000)).into_bytes(),
        format!("{{\"x\": 1e{}, \"v\": 0}}", "9".repeat(1000)).into_bytes(),
        format!("{{\"x\": -1e-{}, \"v\": 0}}", "9".repeat(1000)).into_bytes(),
        br#"{"x1": 1e308, "x2": 1e308}"#.to_vec(),
        br#"{"x1": -0, "x2": 0.0}"#.to_vec(),
        br#"{"x1": "nan", "x2": "-inf"}"#.to_vec(),
        br#"{"x1": "NaN", "x2": "Infinity"}"#.to_vec(),
        br#"{"x1": NaN, "x2": Infinity}"#.to_vec(),
        b"{\"x1\": 1, \"x2\": 2}\0".to_vec(),
        b"\xff\xfe{}".to_vec(),
        br#"{"x1": {"x2": 1}, "x2": 2}"#.to_vec(),
        br#"{"": 1}"#.to_vec(),
        br#"{"\ud800": 1}"#.to_vec(),
        b"{}".to_vec(),
        b"null".to_vec(),
    ];
    corpus.extend(noise(2, 64 * 20).chunks(64).map(<[u8]>::to_vec));
    for bytes in &corpus {
        for g in [&seed, &echo] {
            survives(
                &[
                    "run",
                    p(g),
                    "--inputs",
                    "-",
                    "--backend",
                    "interp",
                    "--grad",
                ],
                bytes,
            );
        }
    }
    // Sanity: a well-formed extreme value works and round-trips exactly.
    let out = json(&ok_stdin(
        &["run", p(&seed), "--inputs", "-", "--backend", "interp"],
        br#"{"x1": 1e154, "x2": -0}"#,
    ));
    assert_eq!(num(&out["outputs"]["y"]), 1e154 * 1e154);
    let out = json(&ok_stdin(
        &["run", p(&seed), "--inputs", "-", "--backend", "interp"],
        br#"{"x1": 1e200, "x2": 1}"#,
    ));
    assert_eq!(out["outputs"]["y"], "inf");
}

#[test]
fn backends_agree_on_the_example_programs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gir"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let mut results = Vec::new();
        for args in [
            vec!["run", p(f), "--grad", "--backend", "interp", "--no-opt"],
            vec!["run", p(f), "--grad", "--backend", "interp"],
            vec!["run", p(f), "--grad", "--backend", "jit"],
            vec!["run", p(f), "--grad", "--backend", "jit", "--no-opt"],
        ] {
            results.push((args.clone(), json(&ok(&args))));
        }
        for (args, r) in &results[1..] {
            assert_close(&results[0].1, r, &format!("{}: {args:?}", f.display()));
        }
        // print round-trips.
        let text = ok(&["print", p(f), "--grad", "--opt"]);
        gradlift::ir::text::parse(&text).unwrap();
    }
}

/// Same structure; numbers equal up to a reassociation tolerance.
fn assert_close(a: &Value, b: &Value, ctx: &str) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{ctx}"
            );
            for (k, v) in x {
                assert_close(v, &y[k], ctx);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{ctx}");
            for (u, v) in x.iter().zip(y) {
                assert_close(u, v, ctx);
            }
        }
        (Value::Number(_), Value::Number(_)) => {
            let (u, v) = (num(a), num(b));
            assert!(
                (u - v).abs() <= 1e-5 * u.abs().max(v.abs()).max(1.0),
                "{ctx}: {u} vs {v}"
            );
        }
        _ => assert_eq!(a, b, "{ctx}"),
    }
}

// ---- run --jacobian / --hessian ------------------------------------------------------------

/// `t = Σᵢⱼ a[i]·b[j]` and the outer product `o[i][j] = a[i]·b[j]` (a is a column [2,1]), plus
/// a bool input that has no derivative.
const OUTER: &str = "\
graph @outer {
  %a = input f64[2,1]
  %flag = input bool[]
  %b = input f64[3]
  %o = mul %a, %b : f64[2,3]
  %t = reduce_sum %o : f64[]
  output %t, %o
}
";

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(xs) => xs.iter().flat_map(floats).collect(),
        _ => vec![num(v)],
    }
}

fn shape(v: &Value) -> Vec<usize> {
    match v {
        Value::Array(xs) => {
            let mut s = vec![xs.len()];
            s.extend(shape(&xs[0]));
            s
        }
        _ => vec![],
    }
}

#[test]
fn jacobian_and_hessian_of_the_worked_example() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let inputs = write(&d, "in.json", r#"{"x1": 3, "x2": 4}"#);
    for backend in ["jit", "interp"] {
        for mode in ["fwd", "rev", "auto"] {
            let args = [
                "run",
                p(&seed),
                "--inputs",
                p(&inputs),
                "--jacobian",
                "--mode",
                mode,
                "--backend",
                backend,
            ];
            // ∂y/∂x1 = 2·x1 = 6, ∂y/∂x2 = 1.
            assert_eq!(
                ok(&args),
                "{\"outputs\": {\"y\": 13.0}, \"jacobian\": {\"y\": {\"x1\": 6.0, \"x2\": 1.0}}}\n"
            );
        }
        // ∂²y/∂x1² = 2, ∂²y/∂x2² = 0, ∂²y/∂x1∂x2 = 0; with --grad and --jacobian together.
        let args = [
            "run",
            p(&seed),
            "--inputs",
            p(&inputs),
            "--grad",
            "--jacobian",
            "--hessian",
            "--backend",
            backend,
        ];
        assert_eq!(
            ok(&args),
            "{\"outputs\": {\"y\": 13.0}, \"gradients\": {\"x1\": 6.0, \"x2\": 1.0}, \
             \"jacobian\": {\"y\": {\"x1\": 6.0, \"x2\": 1.0}}, \
             \"hessian\": {\"x1\": 2.0, \"x2\": 0.0}, \"hessian_cross\": {\"x1,x2\": 0.0}}\n"
        );
    }
}

#[test]
fn jacobian_blocks_are_shaped_out_then_in() {
    let d = tmpdir();
    let g = write(&d, "outer.gir", OUTER);
    let (a, b) = ([0.5, -2.0], [1.0, 3.0, -0.25]);
    let inputs = write(
        &d,
        "in.json",
        format!(
            "{{\"a\": [[{:?}], [{:?}]], \"flag\": true, \"b\": {b:?}}}",
            a[0], a[1]
        ),
    );
    for mode in ["fwd", "rev", "auto"] {
        for backend in ["jit", "interp"] {
            let args = [
                "run",
                p(&g),
                "--inputs",
                p(&inputs),
                "--jacobian",
                "--mode",
                mode,
                "--hessian",
                "--backend",
                backend,
            ];
            let out = json(&ok(&args));
            let ctx = format!("{args:?}");
            assert!(out["outputs"].is_object(), "{ctx}");
            let jac = out["jacobian"].as_object().unwrap();
            assert_eq!(jac.len(), 2, "{ctx}");
            for o in ["t", "o"] {
                let keys: Vec<&String> = jac[o].as_object().unwrap().keys().collect();
                assert_eq!(keys, ["a", "b"], "{ctx}: bool inputs have no block");
            }
            // t = Σ a[i]·b[j]: ∂t/∂a[i] = Σb, ∂t/∂b[j] = Σa.
            let (sa, sb): (f64, f64) = (a.iter().sum(), b.iter().sum());
            assert_eq!(shape(&jac["t"]["a"]), [2, 1], "{ctx}");
            assert_eq!(floats(&jac["t"]["a"]), [sb, sb], "{ctx}");
            assert_eq!(floats(&jac["t"]["b"]), [sa, sa, sa], "{ctx}");
            // o[i][j] = a[i]·b[j]: ∂o[i][j]/∂a[k][0] = δik·b[j], ∂o[i][j]/∂b[k] = a[i]·δjk.
            assert_eq!(shape(&jac["o"]["a"]), [2, 3, 2, 1], "{ctx}");
            assert_eq!(shape(&jac["o"]["b"]), [2, 3, 3], "{ctx}");
            let mut want_a = Vec::new();
            let mut want_b = Vec::new();
            for (i, ai) in a.iter().enumerate() {
                for (j, bj) in b.iter().enumerate() {
                    want_a.extend((0..2).map(|k| if k == i { *bj } else { 0.0 }));
                    want_b.extend((0..3).map(|k| if k == j { *ai } else { 0.0 }));
                }
            }
            assert_eq!(floats(&jac["o"]["a"]), want_a, "{ctx}");
            assert_eq!(floats(&jac["o"]["b"]), want_b, "{ctx}");
            // Hessian of t: zero diagonal blocks, a ones cross block of shape a + b.
            assert_eq!(shape(&out["hessian"]["a"]), [2, 1, 2, 1], "{ctx}");
            assert_eq!(floats(&out["hessian"]["a"]), [0.0; 4], "{ctx}");
            assert_eq!(floats(&out["hessian"]["b"]), [0.0; 9], "{ctx}");
            let cross = out["hessian_cross"].as_object().unwrap();
            assert_eq!(cross.keys().collect::<Vec<_>>(), ["a,b"], "{ctx}");
            assert_eq!(shape(&cross["a,b"]), [2, 1, 3], "{ctx}");
            assert_eq!(floats(&cross["a,b"]), [1.0; 6], "{ctx}");
        }
    }
}

#[test]
fn jacobian_and_hessian_errors() {
    let d = tmpdir();
    let seed = write(&d, "seed.gir", SEED);
    let mixed = write(&d, "mixed.gir", MIXED);
    let outer = write(&d, "outer.gir", OUTER);
    // The first output of MIXED is f64[2]: no Hessian.
    let e = fails(&["run", p(&mixed), "--hessian"]);
    assert!(
        e.contains("--hessian") && e.contains("%s") && e.contains("scalar"),
        "{e}"
    );
    // A bool output has no Jacobian.
    let b = write(
        &d,
        "b.gir",
        "graph @b {\n  %x = input f64[2]\n  %c = gt %x, %x : bool[2]\n  output %x, %c\n}\n",
    );
    let e = fails(&["run", p(&b), "--jacobian"]);
    assert!(
        e.contains("--jacobian") && e.contains("%c") && e.contains("bool"),
        "{e}"
    );
    // --mode needs --jacobian, and takes fwd|rev|auto.
    usage(&["run", p(&seed), "--mode", "fwd"]);
    usage(&["run", p(&seed), "--jacobian", "--mode", "sideways"]);
    // A graph without float inputs has empty blocks.
    let nf = write(
        &d,
        "nf.gir",
        "graph @nf {\n  %f = input bool[]\n  %c = const 2.0 : f64[]\n  %y = mul %c, %c : f64[]\n  \
         output %y\n}\n",
    );
    let out = json(&ok(&["run", p(&nf), "--jacobian", "--hessian"]));
    assert_eq!(out["jacobian"]["y"], serde_json::json!({}));
    assert_eq!(out["hessian"], serde_json::json!({}));
    assert_eq!(out["hessian_cross"], serde_json::json!({}));
    // A Jacobian too large for any tensor is a user error, not an allocation.
    let big = write(
        &d,
        "big.gir",
        "graph @big {\n  %x = input f32[100000]\n  %y = exp %x : f32[100000]\n  output %y\n}\n",
    );
    for mode in ["fwd", "rev"] {
        let e = fails(&["run", p(&big), "--jacobian", "--mode", mode]);
        assert!(e.contains("--jacobian") && e.contains("limit"), "{e}");
    }
    // Hostile-ish: every mode on every example survives.
    for mode in ["fwd", "rev", "auto"] {
        survives(
            &["run", p(&outer), "--jacobian", "--mode", mode, "--hessian"],
            b"",
        );
    }
}

#[test]
fn jacobian_modes_and_backends_agree_on_the_example_programs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gir"))
        .collect();
    files.sort();
    for f in &files {
        let mut results = Vec::new();
        for (mode, backend) in [
            ("rev", "interp"),
            ("fwd", "interp"),
            ("auto", "jit"),
            ("fwd", "jit"),
        ] {
            let args = vec![
                "run",
                p(f),
                "--jacobian",
                "--mode",
                mode,
                "--backend",
                backend,
            ];
            let out = ok(&args);
            results.push((args, json(&out)));
        }
        for (args, r) in &results[1..] {
            assert_close(&results[0].1, r, &format!("{}: {args:?}", f.display()));
        }
        // The Jacobian of a scalar first output is its gradient.
        let first = results[0].1["outputs"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone();
        let grad = json(&ok(&["run", p(f), "--grad", "--backend", "interp"]));
        if let Some(gs) = grad["gradients"].as_object() {
            for (input, g) in gs {
                assert_close(
                    g,
                    &results[0].1["jacobian"][&first][input],
                    &f.display().to_string(),
                );
            }
        }
    }
}

/// `gather` by an `i32` input, an `i32` output and the gradient (a `scatter_add`), from JSON
/// integers, on both backends; expectations by hand.
#[test]
fn integer_inputs_and_outputs_and_gather_gradients() {
    let d = tmpdir();
    let g = write(
        &d,
        "take.gir",
        "graph @take {
  %x = input f64[4]
  %idx = input i32[3]
  %t = gather %x, %idx axis=0
  %y = reduce_sum %t
  %a = argmax %t axis=0
  output %y, %a
}
",
    );
    // Index -1 clamps to 0 and 9 to 3: t = [x2, x0, x3].
    let inputs = write(&d, "in.json", r#"{"x": [1, 2, 3, 40], "idx": [2, -1, 9]}"#);
    for backend in ["jit", "interp"] {
        let args = [
            "run",
            p(&g),
            "--inputs",
            p(&inputs),
            "--grad",
            "--backend",
            backend,
        ];
        assert_eq!(
            ok(&args),
            "{\"outputs\": {\"y\": 44.0, \"a\": 2}, \"gradients\": {\"x\": [1.0, 0.0, 1.0, 1.0]}}\n",
            "{backend}"
        );
    }
    for bad in [
        r#"{"x": [1, 2, 3, 4], "idx": [1.5, 0, 0]}"#,
        r#"{"x": [1, 2, 3, 4], "idx": [0, 0, 2147483648]}"#,
    ] {
        let inputs = write(&d, "bad.json", bad);
        let err = fails(&["run", p(&g), "--inputs", p(&inputs)]);
        assert!(err.contains("idx") && err.contains("i32"), "{err}");
    }
}

/// Inputs of every dtype and rank 0–2, a bool, and a scalar loss for `--grad`.
const ALL_KINDS: &str = "\
graph @kinds {
  %a = input f64[]
  %v = input f32[2,3]
  %flag = input bool[3]
  %w = input f64[4]
  %sq = mul %w, %w : f64[4]
  %s = reduce_sum %sq : f64[]
  %t = add %s, %a : f64[]
  %c = cast %v to=f64 : f64[2,3]
  %m = reduce_mean %c : f64[]
  %loss = mul %t, %m : f64[]
  output %loss, %v, %flag
}
";

#[test]
fn print_inputs_shows_the_generated_inputs_and_reads_back_identically() {
    let d = tmpdir();
    let g = write(&d, "kinds.gir", ALL_KINDS);
    let shown = ok(&["run", p(&g), "--print-inputs"]);
    // The format --inputs reads: one object, every input in order, shaped like its type.
    let v = json(&shown);
    assert_eq!(v.as_object().unwrap().len(), 4, "{shown}");
    let at = |k: &str| shown.find(&format!("\"{k}\": ")).unwrap();
    assert!(
        at("a") < at("v") && at("v") < at("flag") && at("flag") < at("w"),
        "{shown}"
    );
    assert_eq!(shape(&v["v"]), [2, 3]);
    assert!(v["flag"].as_array().unwrap().iter().all(Value::is_boolean));
    let floats_shown: Vec<f64> = [&v["a"], &v["v"], &v["w"]]
        .iter()
        .flat_map(|x| floats(x))
        .collect();
    assert!(
        floats_shown.iter().all(|x| (-1.0..1.0).contains(x)),
        "{shown}"
    );
    let file = write(&d, "shown.json", &shown);
    for backend in ["jit", "interp"] {
        let generated = ok(&["run", p(&g), "--grad", "--backend", backend]);
        let fed_back = ok(&[
            "run",
            p(&g),
            "--grad",
            "--backend",
            backend,
            "--inputs",
            p(&file),
        ]);
        assert_eq!(generated, fed_back, "{backend}");
        // The outputs that echo inputs show the same values, so they really were the inputs.
        let out = json(&generated);
        assert_eq!(out["outputs"]["v"], v["v"]);
        assert_eq!(out["outputs"]["flag"], v["flag"]);
    }
    // Given --inputs, it shows those (each float read once into its dtype, printed shortest).
    let given = write(
        &d,
        "given.json",
        r#"{"a": 0.1, "v": [[0.1, 2, -3], [4, "inf", 1e-3]], "flag": [true, false, true],
            "w": [1, 2, 3, 4]}"#,
    );
    let shown = ok(&["run", p(&g), "--inputs", p(&given), "--print-inputs"]);
    assert_eq!(
        shown,
        "{\"a\": 0.1, \"v\": [[0.1, 2.0, -3.0], [4.0, \"inf\", 0.001]], \
         \"flag\": [true, false, true], \"w\": [1.0, 2.0, 3.0, 4.0]}\n"
    );
}

/// A graph of `n` scalar inputs summed by a chain of adds.
fn sum_chain(n: usize) -> String {
    let mut s = String::from("graph @sum {\n");
    for i in 0..n {
        s.push_str(&format!("  %x{i} = input f64[]\n"));
    }
    s.push_str("  %s1 = add %x0, %x1\n");
    for i in 2..n {
        s.push_str(&format!("  %s{i} = add %s{}, %x{i}\n", i - 1));
    }
    s.push_str(&format!("  output %s{}\n}}\n", n - 1));
    s
}

/// Ten thousand inputs and outputs through every path from text to JSON (the naming of
/// gradient outputs, distinct printed outputs, the inputs reader, `--wrt`). Inputs are small
/// integers so the sum is exact; the gradient of a sum is 1 everywhere.
#[test]
fn ten_thousand_inputs_summed_by_a_chain() {
    const N: usize = 10_000;
    let d = tmpdir();
    let g = write(&d, "sum.gir", sum_chain(N));
    let x = |i: usize| (i % 7) as f64 - 3.0;
    let mut inputs = String::from("{");
    for i in 0..N {
        let sep = if i == 0 { "" } else { ", " };
        inputs.push_str(&format!("{sep}\"x{i}\": {}", x(i)));
    }
    inputs.push('}');
    let inputs = write(&d, "in.json", inputs);
    let sum: f64 = (0..N).map(x).sum();
    let out = json(&ok(&["run", p(&g), "--grad", "--inputs", p(&inputs)]));
    assert_eq!(num(&out["outputs"]["s9999"]), sum);
    let grads = out["gradients"].as_object().unwrap();
    assert_eq!(grads.len(), N);
    assert!(grads.values().all(|v| num(v) == 1.0));
    // Every other input by --wrt: only those get gradients.
    let wrt: Vec<String> = (0..N).step_by(2).map(|i| format!("x{i}")).collect();
    let out = json(&ok(&[
        "run",
        p(&g),
        "--grad",
        "--inputs",
        p(&inputs),
        "--backend",
        "interp",
        "--wrt",
        &wrt.join(","),
    ]));
    let grads = out["gradients"].as_object().unwrap();
    assert_eq!(grads.len(), N / 2);
    assert!(grads.contains_key("x9998") && !grads.contains_key("x9999"));
    // Printed with its gradient: 10,000 distinct outputs (all the same value, 1), each named.
    let printed = write(&d, "printed.gir", ok(&["print", p(&g), "--grad", "--opt"]));
    let out = json(&ok(&["run", p(&printed), "--inputs", p(&inputs)]));
    let outs = out["outputs"].as_object().unwrap();
    assert_eq!(outs.len(), N + 1);
    assert_eq!(num(&outs["s9999"]), sum);
    assert!((0..N).all(|i| num(&outs[&format!("grad_x{i}")]) == 1.0));
}

#[test]
fn zero_size_shapes_are_refused_with_the_reason() {
    let d = tmpdir();
    let g = write(
        &d,
        "z.gir",
        "graph @z {\n  %x = input f64[3,0]\n  output %x\n}\n",
    );
    let e = fails(&["run", p(&g)]);
    assert!(e.contains("z.gir:2:20"), "{e}");
    assert!(
        e.contains("no empty tensors") && e.contains("at least one element"),
        "{e}"
    );
    // The builder says the same, naming the input.
    let b = gradlift::GraphBuilder::new("z");
    let x = b.input("x", gradlift::DType::F32, &[4, 0]);
    let e = b.finish(&[("y", -x)]).unwrap_err().to_string();
    assert!(
        e.contains("\"x\"") && e.contains("dimension 1 of [4, 0] is 0"),
        "{e}"
    );
    assert!(e.contains("at least one element"), "{e}");
}

/// An MLP of `layers` tanh layers (width 16, batch 8) and a sum-of-squares loss, as `.gir`.
fn deep_mlp(layers: usize) -> String {
    let mut s = String::from("graph @deep {\n  %x = input f32[8,16]\n");
    let mut h = "x".to_string();
    for i in 0..layers {
        s += &format!(
            "  %w{i} = input f32[16,16]\n  %a{i} = matmul %{h}, %w{i} : f32[8,16]\n  \
             %h{i} = tanh %a{i} : f32[8,16]\n"
        );
        h = format!("h{i}");
    }
    s += &format!("  %sq = mul %{h}, %{h} : f32[8,16]\n  %loss = reduce_sum %sq : f32[]\n");
    s + "  output %loss\n}\n"
}

#[test]
fn memory_budget_recomputes_to_the_same_bits_and_names_the_minimum() {
    let d = tmpdir();
    let g = write(&d, "deep.gir", deep_mlp(12));
    let want = ok(&["run", p(&g), "--grad"]);
    let err = fails(&["run", p(&g), "--grad", "--memory-budget", "0"]);
    let minimum: u64 = err
        .split("smallest feasible budget is ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no minimum in: {err}"));
    let budget = minimum.to_string();
    // Exact recomputation: the printed shortest round trips, so the bits, are the same.
    assert_eq!(
        ok(&["run", p(&g), "--grad", "--memory-budget", &budget]),
        want
    );
    let b = json(&ok(&[
        "bench",
        p(&g),
        "--grad",
        "--json",
        "--memory-budget",
        &budget,
    ]));
    let ws = num(&b["workspace_bytes"]);
    assert!(
        ws <= minimum as f64 && num(&b["memory_budget"]) == minimum as f64,
        "{b}"
    );
    assert!(num(&b["unbudgeted_workspace_bytes"]) > ws, "{b}");
    assert!(
        num(&b["nodes_recomputed"]) > 0.0 && num(&b["flops_recomputed"]) > 0.0,
        "{b}"
    );
    assert!(num(&b["recompute_time_ratio"]) > 0.0, "{b}");
    let plain = json(&ok(&["bench", p(&g), "--grad", "--json"]));
    assert_eq!(num(&plain["nodes_recomputed"]), 0.0, "{plain}");
    let err = fails(&["run", p(&g), "--backend", "interp", "--memory-budget", "9"]);
    assert!(err.contains("--backend jit"), "{err}");
    usage(&["run", p(&g), "--memory-budget", "-1"]);
}
