//! `gradlift gradbench` end to end: protocol messages in, responses out, and every eval's
//! outputs checked against an oracle written here (closed forms, direct scalar loops, central
//! finite differences of those loops), never against the tool's own output.

mod nested;
mod scans;

use serde_json::{Value as Json, json};
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs one tool session on `lines` (one message per line) and returns the response lines.
fn session(lines: &[String], extra_args: &[&str]) -> Vec<Json> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradlift"))
        .arg("gradbench")
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gradlift");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for l in lines {
            writeln!(stdin, "{l}").expect("write");
        }
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("response is JSON"))
        .collect()
}

/// Evaluates `module.function` on `input` (after a define) and returns the response.
fn evaluate(module: &str, function: &str, input: Json) -> Json {
    let msgs = [
        json!({"id": 0, "kind": "start"}).to_string(),
        json!({"id": 1, "kind": "define", "module": module}).to_string(),
        json!({"id": 2, "kind": "evaluate", "module": module, "function": function, "input": input})
            .to_string(),
    ];
    let mut r = session(&msgs, &[]);
    assert_eq!(r.len(), 3);
    assert_eq!(r[1]["success"], json!(true), "{}", r[1]);
    r.pop().expect("three responses")
}

/// The `output` of a successful evaluation.
fn output(module: &str, function: &str, input: Json) -> Json {
    let r = evaluate(module, function, input);
    assert_eq!(r["success"], json!(true), "{r}");
    r["output"].clone()
}

fn num(j: &Json) -> f64 {
    j.as_f64().unwrap_or_else(|| panic!("not a number: {j}"))
}

fn flat(j: &Json) -> Vec<f64> {
    match j {
        Json::Array(xs) => xs.iter().flat_map(flat).collect(),
        x => vec![num(x)],
    }
}

/// `|a − b| ≤ tol·max(1, |a| + |b|)` elementwise.
fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0f64).max(a.abs() + b.abs()),
            "[{i}]: got {a}, want {b}"
        );
    }
}

/// A deterministic stream of numbers in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// Central differences of `f` at `x`.
fn fd(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let h = 1e-6;
    (0..x.len())
        .map(|i| {
            let (mut a, mut b) = (x.to_vec(), x.to_vec());
            a[i] += h;
            b[i] -= h;
            (f(&a) - f(&b)) / (2.0 * h)
        })
        .collect()
}

fn rows(flat: &[f64], cols: usize) -> Json {
    json!(flat.chunks(cols).map(<[f64]>::to_vec).collect::<Vec<_>>())
}

#[test]
fn protocol_start_define_analysis_and_errors() {
    let msgs = [
        json!({"id": 0, "kind": "start", "eval": "x"}).to_string(),
        json!({"id": 1, "kind": "define", "module": "hello"}).to_string(),
        json!({"id": 2, "kind": "define", "module": "nonesuch"}).to_string(),
        json!({"id": 3, "kind": "evaluate", "module": "hello", "function": "cube", "input": 1.0})
            .to_string(),
        json!({"id": 4, "kind": "evaluate", "module": "lse", "function": "primal", "input": {"y": [1.0]}})
            .to_string(),
        "this is not json".to_string(),
        json!({"id": 5, "kind": "analysis", "of": 3, "valid": false, "error": "no"}).to_string(),
        json!({"id": 6, "kind": "evaluate", "module": "det", "function": "primal",
               "input": {"A": [1.0, 2.0, 3.0], "ell": 2}})
        .to_string(),
        json!({"id": 7, "kind": "evaluate", "module": "ode", "function": "gradient",
               "input": {"x": [1.0], "s": 200_000_000}})
        .to_string(),
    ];
    let r = session(&msgs, &[]);
    assert_eq!(r.len(), msgs.len());
    assert_eq!(r[0]["id"], json!(0));
    assert_eq!(r[0]["tool"], json!("gradlift"));
    assert_eq!(r[1], json!({"id": 1, "success": true}));
    assert_eq!(r[2]["success"], json!(false));
    assert!(
        r[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("nonesuch"))
    );
    assert!(
        r[3]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cube") && e.contains("square"))
    );
    assert!(
        r[4]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no field `x`"))
    );
    assert_eq!(r[5]["success"], json!(false));
    assert_eq!(r[6], json!({"id": 5}));
    assert!(
        r[7]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ell² = 4")),
        "{}",
        r[7]
    );
    assert!(
        r[8]["error"]
            .as_str()
            .is_some_and(|e| e.contains("too large")),
        "{}",
        r[8]
    );
}

#[test]
fn runs_and_compile_timings_once_per_shape() {
    let ev = |id: u64, x: Vec<f64>| {
        json!({"id": id, "kind": "evaluate", "module": "lse", "function": "primal",
               "input": {"x": x, "min_runs": 3, "min_seconds": 0}})
        .to_string()
    };
    let msgs = [
        ev(0, vec![1.0, 2.0]),
        ev(1, vec![3.0, 4.0]),
        ev(2, vec![1.0, 2.0, 3.0]),
    ];
    let r = session(&msgs, &["--multithreaded"]);
    let names = |resp: &Json| -> Vec<String> {
        resp["timings"]
            .as_array()
            .expect("timings")
            .iter()
            .map(|t| t["name"].as_str().expect("name").to_string())
            .collect()
    };
    let count = |resp: &Json, n: &str| names(resp).iter().filter(|x| *x == n).count();
    for resp in &r {
        assert_eq!(count(resp, "evaluate"), 3, "{resp}");
    }
    assert_eq!(count(&r[0], "compile"), 1);
    assert_eq!(
        count(&r[1], "compile"),
        0,
        "same shape: the kernel is cached"
    );
    assert_eq!(count(&r[2], "compile"), 1, "a new shape compiles");
    close(
        &[num(&r[1]["output"])],
        &[4.0 + (1.0 + (-1.0f64).exp()).ln()],
        1e-14,
    );
}

#[test]
fn hello_square_and_double() {
    assert_eq!(num(&output("hello", "square", json!(3.0))), 9.0);
    assert_eq!(num(&output("hello", "double", json!(3.0))), 6.0);
}

#[test]
fn lse_primal_and_gradient_against_closed_forms() {
    let x = Lcg(1)
        .vec(37)
        .iter()
        .map(|v| 200.0 * v - 100.0)
        .collect::<Vec<_>>();
    let m = x.iter().copied().fold(f64::MIN, f64::max);
    let s: f64 = x.iter().map(|v| (v - m).exp()).sum();
    let input = json!({"x": x, "min_runs": 1, "min_seconds": 0});
    close(
        &[num(&output("lse", "primal", input.clone()))],
        &[m + s.ln()],
        1e-13,
    );
    let softmax: Vec<f64> = x.iter().map(|v| (v - m).exp() / s).collect();
    close(&flat(&output("lse", "gradient", input)), &softmax, 1e-13);
}

fn llsq_ref(x: &[f64], n: usize) -> f64 {
    (0..n)
        .map(|i| {
            let t = -1.0 + i as f64 * 2.0 / (n as f64 - 1.0);
            let s = if t > 0.0 {
                1.0
            } else if t < 0.0 {
                -1.0
            } else {
                0.0
            };
            let p: f64 = x
                .iter()
                .enumerate()
                .map(|(j, c)| c * t.powi(j as i32))
                .sum();
            (s - p) * (s - p)
        })
        .sum::<f64>()
        / 2.0
}

#[test]
fn llsq_primal_and_gradient_against_direct_sums() {
    let x = Lcg(2).vec(7);
    let n = 11;
    let input = json!({"x": x, "n": n, "min_runs": 1, "min_seconds": 0});
    close(
        &[num(&output("llsq", "primal", input.clone()))],
        &[llsq_ref(&x, n)],
        1e-12,
    );
    close(
        &flat(&output("llsq", "gradient", input)),
        &fd(|v| llsq_ref(v, n), &x),
        1e-7,
    );
}

/// The log posterior, written from the eval's definition with scalar loops.
fn gmm_ref(d: usize, k: usize, x: &[f64], p: &[f64]) -> f64 {
    let n = x.len() / d;
    let ld = d * (d - 1) / 2;
    let (alpha, rest) = p.split_at(k);
    let (mu, rest) = rest.split_at(k * d);
    let (q, l) = rest.split_at(k * d);
    let lse = |v: &[f64]| {
        let m = v.iter().copied().fold(f64::MIN, f64::max);
        m + v.iter().map(|a| (a - m).exp()).sum::<f64>().ln()
    };
    let mut total = 0.0;
    for i in 0..n {
        let mut beta = vec![0.0; k];
        for (c, bc) in beta.iter_mut().enumerate() {
            let qk = &q[c * d..(c + 1) * d];
            let lk = &l[c * ld..(c + 1) * ld];
            let xc: Vec<f64> = (0..d).map(|j| x[i * d + j] - mu[c * d + j]).collect();
            // Q = diag(exp q) + strictly lower part filled column by column.
            let mut qx: Vec<f64> = (0..d).map(|j| qk[j].exp() * xc[j]).collect();
            let mut idx = 0;
            for (col, &xv) in xc.iter().enumerate() {
                for q_row in qx.iter_mut().skip(col + 1) {
                    *q_row += lk[idx] * xv;
                    idx += 1;
                }
            }
            *bc = alpha[c] + qk.iter().sum::<f64>() - 0.5 * qx.iter().map(|v| v * v).sum::<f64>();
        }
        total += lse(&beta);
    }
    let df = d as f64;
    let (m, gamma, nw) = (0.0, 1.0f64, df + 1.0);
    let lgamma_terms: f64 = (1..=d)
        .map(|j| ln_gamma(0.5 * nw + 0.5 * (1.0 - j as f64)))
        .sum();
    let c0 = nw * df * (gamma.ln() - 0.5 * 2f64.ln())
        - (0.25 * df * (df - 1.0) * std::f64::consts::PI.ln() + lgamma_terms);
    let frob: f64 =
        q.iter().map(|v| (2.0 * v).exp()).sum::<f64>() + l.iter().map(|v| v * v).sum::<f64>();
    let prior = k as f64 * c0 - 0.5 * gamma * gamma * frob + m * q.iter().sum::<f64>();
    total - n as f64 * (0.5 * df * (2.0 * std::f64::consts::PI).ln() + lse(alpha)) + prior
}

/// `ln Γ(x)` by the Lanczos approximation (g = 7, 9 terms), accurate to ~1e-15 here.
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + 7.5;
    let s: f64 = C[0] + (1..9).map(|i| C[i] / (x + i as f64)).sum::<f64>();
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// A random gmm case: data `x` (`n×d`, in [-1, 1)), packed parameters `p` (alpha, mu, q, l)
/// and the eval's input message for them.
fn gmm_case(d: usize, k: usize, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Json) {
    let mut g = Lcg(seed);
    let x: Vec<f64> = g.vec(n * d).iter().map(|v| 2.0 * v - 1.0).collect();
    let ld = d * (d - 1) / 2;
    let p: Vec<f64> = g
        .vec(k + 2 * k * d + k * ld)
        .iter()
        .map(|v| v - 0.5)
        .collect();
    let (alpha, rest) = p.split_at(k);
    let (mu, rest) = rest.split_at(k * d);
    let (q, l) = rest.split_at(k * d);
    let input = json!({"d": d, "k": k, "n": n, "x": rows(&x, d), "m": 0, "gamma": 1.0,
        "alpha": alpha, "mu": rows(mu, d), "q": rows(q, d), "l": rows(l, ld),
        "min_runs": 1, "min_seconds": 0});
    (x, p, input)
}

#[test]
fn gmm_objective_and_gradient_against_scalar_loops() {
    // d = 5 places ten `l` entries per factor, so a misplaced one changes the result.
    for (d, k, n) in [(3, 2, 4), (5, 3, 6)] {
        let (x, p, input) = gmm_case(d, k, n, 3);
        close(
            &[num(&output("gmm", "objective", input.clone()))],
            &[gmm_ref(d, k, &x, &p)],
            1e-12,
        );
        let jac = output("gmm", "jacobian", input);
        let got: Vec<f64> = ["alpha", "mu", "q", "l"]
            .iter()
            .flat_map(|f| flat(&jac[*f]))
            .collect();
        close(&got, &fd(|v| gmm_ref(d, k, &x, v), &p), 1e-7);
    }
}

#[test]
fn kmeans_cost_and_newton_direction_against_brute_force() {
    let (n, k, d) = (40, 4, 3);
    let pts = Lcg(4).vec(n * d);
    let cen = pts[(n - k) * d..].to_vec();
    let nearest = |i: usize| {
        (0..k)
            .map(|j| {
                (
                    j,
                    (0..d)
                        .map(|a| (pts[i * d + a] - cen[j * d + a]).powi(2))
                        .sum::<f64>(),
                )
            })
            .fold((0, f64::MAX), |b, c| if c.1 < b.1 { c } else { b })
    };
    let cost: f64 = (0..n).map(|i| nearest(i).1).sum();
    let input = json!({"points": rows(&pts, d), "centroids": rows(&cen, d),
        "min_runs": 1, "min_seconds": 0});
    close(
        &[num(&output("kmeans", "cost", input.clone()))],
        &[cost],
        1e-12,
    );
    // dir = J·H⁻¹ = C_j − mean of the points nearest to C_j.
    let mut sum = vec![0.0; k * d];
    let mut cnt = vec![0.0; k];
    for i in 0..n {
        let j = nearest(i).0;
        cnt[j] += 1.0;
        for a in 0..d {
            sum[j * d + a] += pts[i * d + a];
        }
    }
    let want: Vec<f64> = (0..k * d).map(|e| cen[e] - sum[e] / cnt[e / d]).collect();
    close(&flat(&output("kmeans", "dir", input)), &want, 1e-12);
}

fn ode_ref(x: &[f64], s: usize) -> Vec<f64> {
    let n = x.len();
    let h = 2.0 / s as f64;
    let f = |y: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|i| if i == 0 { x[0] } else { x[i] * y[i - 1] })
            .collect()
    };
    let mut y = vec![0.0; n];
    let axpy = |y: &[f64], k: &[f64], a: f64| -> Vec<f64> {
        y.iter().zip(k).map(|(u, v)| u + a * v).collect()
    };
    for _ in 0..s {
        let k1 = f(&y);
        let k2 = f(&axpy(&y, &k1, h / 2.0));
        let k3 = f(&axpy(&y, &k2, h / 2.0));
        let k4 = f(&axpy(&y, &k3, h));
        for i in 0..n {
            y[i] += h * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) / 6.0;
        }
    }
    y
}

#[test]
fn ode_primal_and_gradient_against_scalar_runge_kutta() {
    // n < 4 and n = 4 exercise the edges of the four-wide shift.
    for (n, s) in [(5, 6), (4, 3), (2, 3), (1, 2)] {
        let x: Vec<f64> = Lcg(5).vec(n).iter().map(|v| 0.5 + v).collect();
        let input = json!({"x": x, "s": s, "min_runs": 1, "min_seconds": 0});
        let primal = flat(&output("ode", "primal", input.clone()));
        close(&primal, &ode_ref(&x, s), 1e-13);
        let last = |v: &[f64]| *ode_ref(v, s).last().expect("non-empty");
        close(
            &flat(&output("ode", "gradient", input)),
            &fd(last, &x),
            1e-7,
        );
    }
}

/// The LSTM loss, transcribed from the eval's reference with scalar loops.
fn lstm_ref(l: usize, b: usize, p: &[f64], state: &[f64], seq: &[f64]) -> f64 {
    let (main, extra) = p.split_at(8 * l * b);
    let c = seq.len() / b;
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut st = state.to_vec();
    let mut total = 0.0;
    for t in 0..c - 1 {
        let mut inp: Vec<f64> = (0..b).map(|i| seq[t * b + i] * extra[i]).collect();
        for layer in 0..l {
            let (w, bias) = (&main[8 * b * layer..], &main[8 * b * layer + 4 * b..]);
            for i in 0..b {
                let (h, cell) = (st[2 * b * layer + i], st[2 * b * layer + b + i]);
                let f = sig(inp[i] * w[i] + bias[i]);
                let ig = sig(h * w[b + i] + bias[b + i]);
                let o = sig(inp[i] * w[2 * b + i] + bias[2 * b + i]);
                let ch = (h * w[3 * b + i] + bias[3 * b + i]).tanh();
                let cn = cell * f + ig * ch;
                st[2 * b * layer + b + i] = cn;
                st[2 * b * layer + i] = o * cn.tanh();
            }
            inp = st[2 * b * layer..2 * b * layer + b].to_vec();
        }
        let y: Vec<f64> = (0..b)
            .map(|i| inp[i] * extra[b + i] + extra[2 * b + i])
            .collect();
        let lse = (y.iter().map(|v| v.exp()).sum::<f64>() + 2.0).ln();
        total += (0..b)
            .map(|i| seq[(t + 1) * b + i] * (y[i] - lse))
            .sum::<f64>();
    }
    -total / ((c - 1) * b) as f64
}

#[test]
fn lstm_objective_and_gradient_against_scalar_loops() {
    let (l, b, c) = (3, 4, 6); // more layers than time steps minus one exercises every wave edge
    let mut g = Lcg(6);
    let p = g.vec(8 * l * b + 3 * b);
    let state = g.vec(2 * l * b);
    let seq: Vec<f64> = g.vec(c * b).iter().map(|v| v.round()).collect();
    let input = json!({"main_params": rows(&p[..8 * l * b], 4 * b),
        "extra_params": rows(&p[8 * l * b..], b), "state": rows(&state, b),
        "sequence": rows(&seq, b), "min_runs": 1, "min_seconds": 0});
    let want = lstm_ref(l, b, &p, &state, &seq);
    close(
        &[num(&output("lstm", "objective", input.clone()))],
        &[want],
        1e-13,
    );
    let grad = fd(|v| lstm_ref(l, b, v, &state, &seq), &p);
    close(&flat(&output("lstm", "jacobian", input)), &grad, 1e-8);
}

/// The determinant by cofactor expansion along the first row (the eval's definition).
fn det_ref(a: &[f64], n: usize) -> f64 {
    if n == 1 {
        return a[0];
    }
    (0..n)
        .map(|c| {
            let minor: Vec<f64> = (1..n)
                .flat_map(|r| (0..n).filter(move |&j| j != c).map(move |j| (r, j)))
                .map(|(r, j)| a[r * n + j])
                .collect();
            let sign = if c % 2 == 0 { 1.0 } else { -1.0 };
            sign * a[c] * det_ref(&minor, n - 1)
        })
        .sum()
}

#[test]
fn det_primal_and_gradient_against_cofactor_expansion() {
    for ell in [1, 2, 4, 5, 7] {
        let a = Lcg(7 + ell as u64).vec(ell * ell);
        let input = json!({"A": a, "ell": ell, "min_runs": 1, "min_seconds": 0});
        close(
            &[num(&output("det", "primal", input.clone()))],
            &[det_ref(&a, ell)],
            1e-13,
        );
        // ∂det/∂A[r][c] is the cofactor: the expansion is linear in each entry, so a unit
        // difference quotient is exact up to rounding.
        let cof: Vec<f64> = (0..ell * ell)
            .map(|e| {
                let (mut hi, mut lo) = (a.clone(), a.clone());
                hi[e] += 1.0;
                lo[e] -= 1.0;
                (det_ref(&hi, ell) - det_ref(&lo, ell)) / 2.0
            })
            .collect();
        close(&flat(&output("det", "gradient", input)), &cof, 1e-12);
    }
}

/// `--multithreaded` changes no bit: a gmm sized so that its loops over `[n, k, d]` (240,000
/// elements) pass the chunking threshold answers with the same text on one thread and on all
/// cores, and its objective matches the scalar loops.
#[test]
fn multithreaded_outputs_equal_single_threaded_ones() {
    let (d, k, n) = (3, 4, 20_000);
    let (x, p, input) = gmm_case(d, k, n, 17);
    let msgs: Vec<String> = ["objective", "jacobian"]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({"id": i, "kind": "evaluate", "module": "gmm", "function": f, "input": input})
                .to_string()
        })
        .collect();
    let one = session(&msgs, &[]);
    let all = session(&msgs, &["--multithreaded"]);
    for (a, b) in one.iter().zip(&all) {
        assert_eq!(a["success"], json!(true), "{a}");
        assert_eq!(a["output"], b["output"]);
    }
    let want = gmm_ref(d, k, &x, &p);
    close(&[num(&one[0]["output"])], &[want], 1e-10);
}

/// One observation's weighted reprojection error, transcribed from the eval's definition
/// (ADBench's `computeReprojError`): `cam` 11, `x` 3, then `w`, `feat` 2.
fn ba_ref(params: &[f64], feat: [f64; 2]) -> [f64; 2] {
    let (cam, x, w) = (&params[..11], &params[11..14], params[14]);
    let r = &cam[0..3];
    let xo: Vec<f64> = (0..3).map(|i| x[i] - cam[3 + i]).collect();
    let cross = |a: &[f64], b: &[f64]| {
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    };
    let sq: f64 = r.iter().map(|v| v * v).sum();
    let mut xc = [0.0; 3];
    if sq != 0.0 {
        let th = sq.sqrt();
        let wv: Vec<f64> = r.iter().map(|v| v / th).collect();
        let wxp = cross(&wv, &xo);
        let tmp = (0..3).map(|i| wv[i] * xo[i]).sum::<f64>() * (1.0 - th.cos());
        for i in 0..3 {
            xc[i] = xo[i] * th.cos() + wxp[i] * th.sin() + wv[i] * tmp;
        }
    } else {
        let rxp = cross(r, &xo);
        for i in 0..3 {
            xc[i] = xo[i] + rxp[i];
        }
    }
    let (u, v) = (xc[0] / xc[2], xc[1] / xc[2]);
    let rsq = u * u + v * v;
    let l = 1.0 + cam[9] * rsq + cam[10] * rsq * rsq;
    [
        w * (u * l * cam[6] + cam[7] - feat[0]),
        w * (v * l * cam[6] + cam[8] - feat[1]),
    ]
}

#[test]
fn ba_objective_and_sparse_jacobian_against_scalar_reference() {
    let (n, m, p) = (2usize, 3usize, 5usize);
    let mut rng = Lcg(41);
    let x = vec![0.3, -0.2, 4.0];
    let (w, feat) = (0.7, [0.4, -0.3]);
    // A rotation, and the exact zero the eval's reference treats as a separate branch (central
    // differences step off it, into the general formula, whose derivative there is the limit).
    for rot in [[0.2, -0.3, 0.25], [0.0; 3]] {
        let mut cam = rot.to_vec();
        cam.extend([0.1, 0.2, -0.3, 2.0, 0.05, -0.04]);
        cam.extend(rng.vec(2).iter().map(|v| v * 0.1));
        let input = json!({"n": n, "m": m, "p": p, "cam": cam, "x": x, "w": w, "feat": feat,
                           "min_runs": 1, "min_seconds": 0});
        let mut params = cam.clone();
        params.extend(&x);
        params.push(w);
        let obj = output("ba", "objective", input.clone());
        close(
            &flat(&obj["reproj_error"]["elements"]),
            &ba_ref(&params, feat),
            1e-13,
        );
        assert_eq!(obj["reproj_error"]["repeated"], json!(p as f64));
        close(&[num(&obj["w_err"]["element"])], &[1.0 - w * w], 1e-15);
        assert_eq!(obj["w_err"]["repeated"], json!(p as f64));

        let jac = output("ba", "jacobian", input);
        // CSR of the (3p) x (11n + 3m + p) matrix: 15 nonzeros in each of the 2p reprojection
        // rows, one in each weight row; the first 30 entries of each list and the last.
        let mut rows: Vec<f64> = (0..30)
            .map(|i| if i <= 2 * p { 15 * i } else { 30 * p + i - 2 * p } as f64)
            .collect();
        rows.push((31 * p) as f64);
        assert_eq!(flat(&jac["rows"]), rows);
        // Observation 0 sees camera 0 and point 0.
        let row_cols: Vec<f64> = (0..11).chain(22..25).chain([31]).map(f64::from).collect();
        let mut cols = [row_cols.clone(), row_cols].concat();
        cols.push((11 * n + 3 * m + p - 1) as f64);
        assert_eq!(flat(&jac["cols"]), cols);
        let mut vals = Vec::new();
        for k in 0..2 {
            vals.extend(fd(|q| ba_ref(q, feat)[k], &params));
        }
        vals.push(-2.0 * w);
        close(&flat(&jac["vals"]), &vals, 1e-7);
    }
}

#[test]
fn ba_bad_input_is_an_error() {
    let input = json!({"n": 1, "m": 1, "p": 1, "cam": [1.0, 2.0], "x": [0.0, 0.0, 1.0],
                       "w": 1.0, "feat": [0.0, 0.0], "min_runs": 1, "min_seconds": 0});
    let r = evaluate("ba", "jacobian", input);
    assert_eq!(r["success"], json!(false));
    let e = r["error"].as_str().unwrap_or_default();
    assert!(e.contains("`cam` has 2 numbers, expected 11"), "{e}");
}

type M4 = [[f64; 4]; 4];

fn mm4(a: &M4, b: &M4) -> M4 {
    let mut c = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            c[i][j] = (0..4).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

fn mm3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// A hand model: 22 bones in the real model's tree, random transforms, weights and positions.
struct Hand {
    parents: Vec<i32>,
    rel: Vec<M4>,
    inv: Vec<M4>,
    pos: Vec<[f64; 4]>,
    weights: Vec<Vec<f64>>,
    mirrored: bool,
}

impl Hand {
    fn random(nv: usize, rng: &mut Lcg, mirrored: bool) -> Hand {
        let parents = vec![
            -1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19, 0,
        ];
        let mut mat = || -> M4 {
            let mut m = [[0.0; 4]; 4];
            for (i, r) in m.iter_mut().enumerate() {
                for (j, x) in r.iter_mut().enumerate() {
                    *x = if i == 3 {
                        f64::from(j == 3)
                    } else {
                        rng.next() - 0.5
                    };
                }
            }
            m
        };
        let rel: Vec<M4> = (0..22).map(|_| mat()).collect();
        let inv: Vec<M4> = (0..22).map(|_| mat()).collect();
        let pos = (0..nv)
            .map(|_| [rng.next(), rng.next(), rng.next(), 1.0])
            .collect();
        let weights = (0..nv).map(|_| rng.vec(22)).collect();
        Hand {
            parents,
            rel,
            inv,
            pos,
            weights,
            mirrored,
        }
    }

    fn json(&self, tri: &[[usize; 3]]) -> Json {
        json!({"bone_count": 22, "bone_names": vec!["b"; 22], "parents": self.parents,
               "base_relatives": self.rel, "inverse_base_absolutes": self.inv,
               "base_positions": self.pos, "weights": self.weights, "triangles": tri,
               "is_mirrored": self.mirrored})
    }

    /// The posed vertices, transcribed from the eval's definition (ADBench's
    /// `get_skinned_vertex_positions` and `apply_global_transform`).
    fn vertices(&self, theta: &[f64]) -> Vec<[f64; 3]> {
        // to_pose_params: columns 0–2 global, then one column of three angles per bone.
        let mut pose = vec![[0.0; 3]; 25];
        let mut t = 6;
        for f in 0..5 {
            for (j, k) in [2, 1, 1].into_iter().enumerate() {
                for angle in pose[5 + 4 * f + j].iter_mut().take(k) {
                    *angle = theta[t];
                    t += 1;
                }
            }
        }
        let mut abs: Vec<M4> = Vec::new();
        for i in 0..22 {
            let a = pose[i + 3];
            let (tx, ty, tz) = (a[0], a[2], a[1]);
            let rx = [
                [1.0, 0.0, 0.0],
                [0.0, tx.cos(), -tx.sin()],
                [0.0, tx.sin(), tx.cos()],
            ];
            let ry = [
                [ty.cos(), 0.0, ty.sin()],
                [0.0, 1.0, 0.0],
                [-ty.sin(), 0.0, ty.cos()],
            ];
            let rz = [
                [tz.cos(), -tz.sin(), 0.0],
                [tz.sin(), tz.cos(), 0.0],
                [0.0, 0.0, 1.0],
            ];
            let r = mm3(&mm3(&rz, &ry), &rx);
            let mut tr = [[0.0; 4]; 4];
            tr[3][3] = 1.0;
            for p in 0..3 {
                tr[p][..3].copy_from_slice(&r[p]);
            }
            let rel = mm4(&self.rel[i], &tr);
            let p = self.parents[i];
            abs.push(if p < 0 {
                rel
            } else {
                mm4(&abs[p as usize], &rel)
            });
        }
        let tf: Vec<M4> = (0..22).map(|i| mm4(&abs[i], &self.inv[i])).collect();
        let aa = &theta[0..3];
        let norm = aa.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut rg = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        if norm >= 1e-4 {
            let (x, y, z) = (aa[0] / norm, aa[1] / norm, aa[2] / norm);
            let (s, c) = (norm.sin(), norm.cos());
            rg = [
                [
                    x * x + (1. - x * x) * c,
                    x * y * (1. - c) - z * s,
                    x * z * (1. - c) + y * s,
                ],
                [
                    x * y * (1. - c) + z * s,
                    y * y + (1. - y * y) * c,
                    y * z * (1. - c) - x * s,
                ],
                [
                    x * z * (1. - c) - y * s,
                    z * y * (1. - c) + x * s,
                    z * z + (1. - z * z) * c,
                ],
            ];
        }
        (0..self.pos.len())
            .map(|v| {
                let mut q = [0.0; 3];
                for (b, t) in tf.iter().enumerate() {
                    for (j, qj) in q.iter_mut().enumerate() {
                        let tp: f64 = (0..4).map(|k| t[j][k] * self.pos[v][k]).sum();
                        *qj += tp * self.weights[v][b];
                    }
                }
                if self.mirrored {
                    q[0] = -q[0];
                }
                std::array::from_fn(|j| (0..3).map(|k| rg[j][k] * q[k]).sum::<f64>() + theta[3 + j])
            })
            .collect()
    }
}

/// The errors `points − model points` (complicated when `tri` is given: barycentric `us`).
fn ht_ref(
    hand: &Hand,
    theta: &[f64],
    us: &[f64],
    corr: &[usize],
    pts: &[[f64; 3]],
    tri: Option<&[[usize; 3]]>,
) -> Vec<f64> {
    let v = hand.vertices(theta);
    let mut err = Vec::new();
    for (i, &c) in corr.iter().enumerate() {
        for j in 0..3 {
            let model = match tri {
                None => v[c][j],
                Some(t) => {
                    let (u0, u1) = (us[2 * i], us[2 * i + 1]);
                    u0 * v[t[c][0]][j] + u1 * v[t[c][1]][j] + (1.0 - u0 - u1) * v[t[c][2]][j]
                }
            };
            err.push(pts[i][j] - model);
        }
    }
    err
}

#[test]
fn ht_objective_and_jacobian_against_scalar_reference() {
    let mut rng = Lcg(5);
    let nv = 6;
    let tri = [[0, 1, 2], [3, 4, 5], [5, 0, 3]];
    let corr = [2, 0, 1, 2];
    let pts: Vec<[f64; 3]> = (0..4)
        .map(|_| [rng.next(), rng.next(), rng.next()])
        .collect();
    for (mirrored, complicated) in [(false, false), (true, true), (false, true)] {
        let hand = Hand::random(nv, &mut rng, mirrored);
        let theta: Vec<f64> = rng.vec(26).iter().map(|t| t - 0.5).collect();
        let us: Vec<f64> = if complicated {
            rng.vec(8).iter().map(|u| u * 0.5).collect()
        } else {
            Vec::new()
        };
        let tri_ref = complicated.then_some(&tri[..]);
        let corr_v: Vec<usize> = if complicated {
            corr[..].to_vec()
        } else {
            vec![5, 0, 3, 5]
        };
        let input = json!({"theta": theta, "us": us.chunks(2).collect::<Vec<_>>(),
            "data": {"model": hand.json(&tri), "correspondences": corr_v, "points": pts},
            "min_runs": 1, "min_seconds": 0});
        let f = |th: &[f64], u: &[f64]| ht_ref(&hand, th, u, &corr_v, &pts, tri_ref);
        close(
            &flat(&output("ht", "objective", input.clone())),
            &f(&theta, &us),
            1e-12,
        );
        // Columns: d/du₀ and d/du₁ of each row's own point (complicated), then d/dθ.
        let np = corr_v.len();
        let mut cols: Vec<Vec<f64>> = Vec::new();
        if complicated {
            for a in 0..2 {
                let mut col = Vec::new();
                for i in 0..np {
                    let g = |du: f64| {
                        let mut u = us.clone();
                        u[2 * i + a] += du;
                        f(&theta, &u)
                    };
                    let (hi, lo) = (g(1e-6), g(-1e-6));
                    col.extend((3 * i..3 * i + 3).map(|r| (hi[r] - lo[r]) / 2e-6));
                }
                cols.push(col);
            }
        }
        for j in 0..26 {
            let g = |dt: f64| {
                let mut th = theta.clone();
                th[j] += dt;
                f(&th, &us)
            };
            let (hi, lo) = (g(1e-6), g(-1e-6));
            cols.push((0..3 * np).map(|r| (hi[r] - lo[r]) / 2e-6).collect());
        }
        let want: Vec<f64> = (0..3 * np)
            .flat_map(|r| cols.iter().map(move |c| c[r]))
            .collect();
        let jac = output("ht", "jacobian", input);
        assert_eq!(jac.as_array().map(Vec::len), Some(3 * np));
        close(&flat(&jac), &want, 1e-6);
    }
}

#[test]
fn ht_bad_input_is_an_error() {
    let mut hand = Hand::random(3, &mut Lcg(2), false);
    hand.parents[4] = 7;
    let input = json!({"theta": vec![0.1; 26], "us": [],
        "data": {"model": hand.json(&[]), "correspondences": [0], "points": [[0.0, 0.0, 0.0]]},
        "min_runs": 1, "min_seconds": 0});
    let r = evaluate("ht", "objective", input.clone());
    assert_eq!(r["success"], json!(false));
    let e = r["error"].as_str().unwrap_or_default();
    assert!(e.contains("bone 4 has parent 7"), "{e}");
    hand.parents[4] = 3;
    let mut input = input;
    input["data"]["model"] = hand.json(&[]);
    input["data"]["correspondences"] = json!([3]);
    let e = evaluate("ht", "objective", input)["error"].clone();
    assert!(
        e.as_str()
            .unwrap_or_default()
            .contains("correspondence (a vertex) is 3, expected below 3"),
        "{e}"
    );
}
