//! NaN provenance (checked mode): `interp::run_checked`, `JitConfig::check_finite` and
//! `gradlift run --check-finite`, plus the workspace cap (`JitConfig::max_workspace_bytes`).
//!
//! Expected culprits are worked out by hand from the graphs below (e.g. `log(-1)` is the first
//! NaN; the adjoint of `sqrt` at 0 divides 0 by 0), and the two backends are compared with each
//! other on random graphs.

use crate::random::{GenConfig, generate, input_values};
use gradlift::finite::NonFinite;
use gradlift::interp::{self, EvalError};
use gradlift::ir::text;
use gradlift::jit::{self, CallError, JitConfig, JitError};
use gradlift::{Graph, Op, Tensor};
use std::path::Path;
use std::process::Command;

const LOG_SUM: &str = "\
graph @g {
  %x = input f64[3]
  %l = log %x
  %m = mul %l, %l
  %s = reduce_sum %m
  output %s
}
";

fn checked_jit(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, Box<NonFinite>> {
    let cfg = JitConfig {
        check_finite: true,
        ..JitConfig::default()
    };
    match jit::compile_with(g, &cfg).unwrap().run(inputs) {
        Ok(o) => Ok(o),
        Err(CallError::NonFinite(r)) => Err(r),
        Err(e) => panic!("unexpected call error {e}"),
    }
}

fn checked_interp(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, Box<NonFinite>> {
    match interp::run_checked(g, inputs) {
        Ok(o) => Ok(o),
        Err(EvalError::NonFinite(r)) => Err(r),
        Err(e) => panic!("unexpected eval error {e}"),
    }
}

#[test]
fn both_backends_stop_at_the_node_that_made_the_nan() {
    let g = text::parse(LOG_SUM).unwrap();
    let l = g.nodes().iter().position(|n| n.op == Op::Log).unwrap();
    // log(-1) at element 1 is the first culprit; `mul` and `reduce_sum` only propagate it.
    let x = Tensor::from_f64(vec![3], vec![2.0, -1.0, 0.0]);
    for r in [
        checked_interp(&g, std::slice::from_ref(&x)),
        checked_jit(&g, std::slice::from_ref(&x)),
    ] {
        let r = r.unwrap_err();
        assert_eq!(
            (r.node.index(), r.op, r.index.clone()),
            (l, Op::Log, vec![1])
        );
        assert!(r.value.is_nan());
        assert_eq!(r.operands[0].values, vec![-1.0]);
        assert_eq!(
            r.describe(&g, Some("f.gir")),
            "non-finite value (nan) produced by %l = log %x at f.gir:3 (element [1]; operands: \
             %x = -1)"
        );
    }
    // A NaN input is not a new non-finite value: nothing stops, the NaN propagates.
    let x = Tensor::from_f64(vec![3], vec![2.0, f64::NAN, 1.0]);
    for r in [
        checked_interp(&g, std::slice::from_ref(&x)),
        checked_jit(&g, std::slice::from_ref(&x)),
    ] {
        assert!(r.unwrap()[0].scalar_value().unwrap().is_nan());
    }
    // Finite everywhere: the checked kernel computes what the plain one does.
    let x = Tensor::from_f64(vec![3], vec![2.0, 0.5, 1.0]);
    let want = interp::run(&g, std::slice::from_ref(&x)).unwrap();
    assert_eq!(checked_jit(&g, std::slice::from_ref(&x)).unwrap(), want);
    assert_eq!(checked_interp(&g, &[x]).unwrap(), want);
}

#[test]
fn adjoint_culprits_name_their_forward_node() {
    // y = sqrt(x)², dy/dx = (1·r + 1·r)·0.5 / r: at x = 0 that is 0/0.
    let src = "graph @g {\n  %x = input f64[]\n  %r = sqrt %x\n  %y = mul %r, %r\n  output %y\n}\n";
    let mut g = text::parse(src).unwrap();
    let (x, y) = (g.inputs()[0], g.outputs()[0]);
    let d = gradlift::autodiff::grad(&mut g, y, &[x]).unwrap()[0];
    g.set_outputs(vec![y, d]);
    let zero = Tensor::scalar_f64(0.0);
    for r in [
        checked_interp(&g, std::slice::from_ref(&zero)),
        checked_jit(&g, std::slice::from_ref(&zero)),
    ] {
        let r = r.unwrap_err();
        assert_eq!(r.op, Op::Div);
        let m = r.describe(&g, Some("f.gir"));
        assert!(m.contains("(adjoint of %r = sqrt %x at f.gir:3)"), "{m}");
        assert!(m.starts_with("non-finite value (nan) produced by %"), "{m}");
    }
}

#[test]
fn overflow_in_a_reduction_is_reported_with_its_operands() {
    let src = "graph @g {\n  %x = input f32[2,2]\n  %s = reduce_sum %x axes=[1]\n  output %s\n}\n";
    let g = text::parse(src).unwrap();
    let x = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3e38, 3e38]);
    for r in [
        checked_interp(&g, std::slice::from_ref(&x)),
        checked_jit(&g, std::slice::from_ref(&x)),
    ] {
        let r = r.unwrap_err();
        assert_eq!(
            (r.op, r.index.clone(), r.value),
            (Op::ReduceSum, vec![1], f64::INFINITY)
        );
        assert_eq!(r.operands[0].count, 2);
    }
}

/// On random unguarded graphs (which do make NaN and infinities), the checked JIT and the
/// checked interpreter agree on whether, where and at which element they stop.
#[test]
fn checked_backends_agree_on_random_graphs() {
    let mut stopped = 0;
    let n = if cfg!(debug_assertions) { 150 } else { 600 };
    for seed in 0..n {
        let cfg = GenConfig {
            steps: 1 + (seed % 20) as usize,
            safe: false,
            smooth: false,
            order: (seed % 3) as u8,
            syntax: false,
            loops: true,
        };
        let (g, _) = generate(seed, &cfg).build().unwrap();
        let mut inputs = input_values(&g, seed);
        // Scale some inputs up so overflow happens too.
        if seed % 2 == 0
            && let Some(t) = inputs.first_mut()
        {
            let ty = t.ty();
            let v = t.to_f64_vec();
            *t = Tensor::from_fn(&ty, |i| v[i] * 1e30);
        }
        let a = checked_interp(&g, &inputs);
        let b = checked_jit(&g, &inputs);
        match (a, b) {
            (Ok(x), Ok(y)) => assert_eq!(x.len(), y.len()),
            (Err(x), Err(y)) => {
                stopped += 1;
                assert_eq!(
                    (x.node, &x.index),
                    (y.node, &y.index),
                    "seed {seed}\n{}",
                    text::print(&g)
                );
            }
            (x, y) => panic!(
                "seed {seed}: interp {:?} vs jit {:?}\n{}",
                x.err(),
                y.err(),
                text::print(&g)
            ),
        }
    }
    assert!(
        stopped >= n / 10,
        "only {stopped} of {n} graphs made a NaN or infinity"
    );
}

#[test]
fn workspace_cap_is_a_clear_error() {
    // Two f64[1000] intermediates that are both live: at least 16000 bytes of workspace. (They
    // are read after a reduction over them, so they cannot stay in registers of one fused
    // loop.)
    let src = "graph @g {\n  %x = input f64[1000]\n  %a = exp %x\n  %b = sin %x\n  \
               %m = reduce_sum %a\n  %c = mul %a, %m\n  %d = mul %c, %b\n  \
               %s = reduce_sum %d\n  output %s\n}\n";
    let g = text::parse(src).unwrap();
    let cfg = JitConfig {
        max_workspace_bytes: 1000,
        ..JitConfig::default()
    };
    let e = jit::compile_with(&g, &cfg).unwrap_err();
    let JitError::TooLarge { what } = &e else {
        panic!("{e:?}")
    };
    assert!(
        what.contains("1000 bytes") && what.contains("max_workspace_bytes"),
        "{what}"
    );
    let k = jit::compile(&g).unwrap();
    assert!(k.workspace_bytes() >= 16000 && k.workspace_bytes() <= 1 << 20);
    assert_eq!(JitConfig::default().max_workspace_bytes, 4 << 30);
}

fn gradlift_bin() -> Command {
    match std::env::var_os("GRADLIFT_BIN") {
        Some(p) => Command::new(p),
        None => Command::new(env!("CARGO_BIN_EXE_gradlift")),
    }
}

#[test]
fn cli_check_finite_reports_the_line() {
    let d = std::env::temp_dir().join(format!("gradlift-check-finite-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("log.gir");
    std::fs::write(&f, LOG_SUM).unwrap();
    let inputs = d.join("in.json");
    std::fs::write(&inputs, r#"{"x": [2, -1, 3]}"#).unwrap();
    let fs = f.to_str().unwrap();
    let is = inputs.to_str().unwrap();
    for backend in ["jit", "interp"] {
        for grad in [false, true] {
            let mut args = vec![
                "run",
                fs,
                "--inputs",
                is,
                "--check-finite",
                "--backend",
                backend,
            ];
            if grad {
                args.push("--grad");
            }
            let o = gradlift_bin().args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
            assert_eq!(
                err.trim_end(),
                format!(
                    "error: non-finite value (nan) produced by %l = log %x at {fs}:3 (element \
                     [1]; operands: %x = -1)"
                ),
                "{args:?}"
            );
            assert!(o.stdout.is_empty());
            // Without --check-finite the same run succeeds and prints the NaN.
            args.retain(|a| *a != "--check-finite");
            let o = gradlift_bin().args(&args).output().unwrap();
            assert_eq!(o.status.code(), Some(0), "{args:?}");
            assert!(String::from_utf8_lossy(&o.stdout).contains("\"nan\""));
        }
    }
    // Finite inputs: --check-finite changes nothing.
    std::fs::write(&inputs, r#"{"x": [2, 1, 3]}"#).unwrap();
    let plain = gradlift_bin()
        .args(["run", fs, "--inputs", is])
        .output()
        .unwrap();
    let checked = gradlift_bin()
        .args(["run", fs, "--inputs", is, "--check-finite"])
        .output()
        .unwrap();
    assert_eq!(checked.status.code(), Some(0));
    assert_eq!(plain.stdout, checked.stdout);
    // The hostile corpus's NaN-making examples stop with the message form.
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/gir/ok-div-zero.gir");
    let o = gradlift_bin()
        .args([
            "run",
            ex.to_str().unwrap(),
            "--check-finite",
            "--backend",
            "interp",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: non-finite value (") && err.contains("= div %x, %z at "),
        "{err}"
    );
}

/// The optimizer renumbers nodes; adjoint origins must follow, so provenance stays right after
/// optimization (otherwise they would point at whatever node took the old number).
#[test]
fn adjoint_origins_survive_optimization() {
    use gradlift::Origin;
    let src = "graph @g {\n  %x = input f64[3]\n  %dead = exp %x\n  %a = sin %x\n  \
               %b = mul %a, %a\n  %c = log %b\n  %s = reduce_sum %c\n  output %s\n}\n";
    let mut g = text::parse(src).unwrap();
    let (x, s) = (g.inputs()[0], g.outputs()[0]);
    let d = gradlift::autodiff::grad(&mut g, s, &[x]).unwrap()[0];
    g.set_outputs(vec![s, d]);
    let fwd_ops = |g: &Graph| -> Vec<Op> {
        let mut v: Vec<Op> = g
            .nodes()
            .iter()
            .filter_map(|n| match n.origin {
                Origin::Adjoint(f) => {
                    let fwd = &g.nodes()[f.index()];
                    assert!(
                        !matches!(fwd.origin, Origin::Adjoint(_)),
                        "{f} is an adjoint node"
                    );
                    Some(fwd.op)
                }
                _ => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let before = fwd_ops(&g);
    assert!(
        before.contains(&Op::Log) && before.contains(&Op::Sin),
        "{before:?}"
    );
    gradlift::opt::optimize(&mut g, &gradlift::opt::OptConfig::default());
    let after = fwd_ops(&g);
    assert!(
        after.iter().all(|op| before.contains(op)),
        "{before:?} vs {after:?}"
    );
    assert!(after.contains(&Op::Log), "{after:?}");
}
