//! `ode` and `lstm`, whose time loops are scans, run by the interpreter (what the tool tests
//! in the parent module check compiled) against the same scalar-loop oracles, at sizes whose
//! loops run zero, one and several full steps.

use super::{Lcg, close, fd, lstm_ref, ode_ref};
use gradlift::gradbench::{self, Value};
use gradlift::{Tensor, interp};

fn obj(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn matrix(flat: &[f64], cols: usize) -> Value {
    Value::Array(flat.chunks(cols).map(|r| Value::list(r.to_vec())).collect())
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Num(x) => vec![*x],
        Value::Array(xs) => xs.iter().flat_map(flat).collect(),
        other => panic!("not numbers: {other:?}"),
    }
}

/// Prepares, builds and runs `module.function` on `input` in the interpreter, and decodes.
fn interpret(module: &str, function: &str, input: &Value) -> Vec<f64> {
    let task = gradbench::prepare(module, function, input).unwrap();
    let g = (task.build)().unwrap();
    let args: Vec<Tensor> = (g.inputs().iter().zip(task.inputs))
        .map(|(&id, v)| Tensor::from_f64(g.ty(id).shape.clone(), v))
        .collect();
    let outs = interp::run(&g, &args).unwrap();
    flat(&(task.decode)(outs.iter().map(Tensor::to_f64_vec).collect()).unwrap())
}

#[test]
fn ode_scan_against_scalar_runge_kutta_in_the_interpreter() {
    for (n, s) in [(5, 6), (4, 1), (2, 3), (1, 2)] {
        let x: Vec<f64> = Lcg(7).vec(n).iter().map(|v| 0.5 + v).collect();
        let input = obj(vec![
            ("x", Value::list(x.clone())),
            ("s", Value::Num(s as f64)),
        ]);
        close(&interpret("ode", "primal", &input), &ode_ref(&x, s), 1e-13);
        let last = |v: &[f64]| *ode_ref(v, s).last().expect("non-empty");
        close(&interpret("ode", "gradient", &input), &fd(last, &x), 1e-7);
    }
}

#[test]
fn lstm_scan_against_scalar_loops_in_the_interpreter() {
    // Full waves (c − 1 − l + 1 of them): none (c − 1 < l), one, several.
    for (l, b, c) in [(3, 2, 3), (2, 3, 3), (2, 2, 6), (1, 3, 4)] {
        let mut g = Lcg(8 + c as u64);
        let p = g.vec(8 * l * b + 3 * b);
        let state = g.vec(2 * l * b);
        let seq: Vec<f64> = g.vec(c * b).iter().map(|v| v.round()).collect();
        let input = obj(vec![
            ("main_params", matrix(&p[..8 * l * b], 4 * b)),
            ("extra_params", matrix(&p[8 * l * b..], b)),
            ("state", matrix(&state, b)),
            ("sequence", matrix(&seq, b)),
        ]);
        let want = lstm_ref(l, b, &p, &state, &seq);
        close(&interpret("lstm", "objective", &input), &[want], 1e-13);
        let grad = fd(|v| lstm_ref(l, b, v, &state, &seq), &p);
        close(&interpret("lstm", "jacobian", &input), &grad, 1e-8);
    }
}
