//! `particle` and `saddle` (nested AD through bounded `while` loops): the eval modules' graphs
//! run by the interpreter against plain-Rust `f64` re-implementations of GradBench's reference
//! algorithm (its `gd.hpp` descent, the Euler loop with the potential's gradient written out by
//! hand and `d/dw` by dual numbers), and the closed-form saddle point.

use super::{evaluate, flat, num, output};
use gradlift::gradbench::particle::{self, Limits, Variant};
use gradlift::gradbench::saddle;
use gradlift::{Tensor, interp};
use serde_json::json;

const VARIANTS: [&str; 4] = ["ff", "fr", "rf", "rr"];

/// An objective's value and gradient at a point.
type ValueGrad<'a> = &'a mut dyn FnMut(&[f64]) -> (f64, Vec<f64>);

/// GradBench's `multivariate_argmin` (`cpp/gradbench/gd.hpp`) on `fg` (value and gradient),
/// returning the minimizer and the number of loop iterations.
fn argmin(fg: ValueGrad<'_>, x0: &[f64]) -> (Vec<f64>, usize) {
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let mut x = x0.to_vec();
    let (mut fx, mut gx) = fg(&x);
    let (mut i, mut eta, mut iters) = (0, 1e-5, 0);
    loop {
        iters += 1;
        if norm(&gx) <= 1e-5 {
            return (x, iters);
        } else if i == 10 {
            eta *= 2.0;
            i = 0;
        } else {
            let xp: Vec<f64> = x.iter().zip(&gx).map(|(a, g)| a - eta * g).collect();
            let d: Vec<f64> = x.iter().zip(&xp).map(|(a, b)| a - b).collect();
            if norm(&d) <= 1e-5 {
                return (x, iters);
            }
            let (fp, gp) = fg(&xp);
            if fp < fx {
                (x, fx, gx) = (xp, fp, gp);
                i += 1;
            } else {
                eta /= 2.0;
                i = 0;
            }
        }
    }
}

/// A number with a tangent (forward mode by hand, for `d/dw` of the trajectory).
#[derive(Clone, Copy, Debug)]
struct Dual(f64, f64);

impl Dual {
    fn c(v: f64) -> Dual {
        Dual(v, 0.0)
    }
    fn add(self, o: Dual) -> Dual {
        Dual(self.0 + o.0, self.1 + o.1)
    }
    fn sub(self, o: Dual) -> Dual {
        Dual(self.0 - o.0, self.1 - o.1)
    }
    fn mul(self, o: Dual) -> Dual {
        Dual(self.0 * o.0, self.1 * o.0 + self.0 * o.1)
    }
    fn div(self, o: Dual) -> Dual {
        Dual(self.0 / o.0, (self.1 * o.0 - self.0 * o.1) / (o.0 * o.0))
    }
    fn sqrt(self) -> Dual {
        let r = self.0.sqrt();
        Dual(r, self.1 / (2.0 * r))
    }
}

/// `x₀(t_f)²` by GradBench's Euler loop and its number of steps, with `∇ₓp = −Σ (x − c)/‖x − c‖³`.
fn trajectory(w: Dual) -> (Dual, usize) {
    let charges = [
        [Dual::c(10.0), Dual::c(10.0).sub(w)],
        [Dual::c(10.0), Dual::c(0.0)],
    ];
    let dt = Dual::c(0.1);
    let (mut x, mut v) = ([Dual::c(0.0), Dual::c(8.0)], [Dual::c(0.75), Dual::c(0.0)]);
    let mut steps = 0;
    loop {
        let next = [x[0].add(dt.mul(v[0])), x[1].add(dt.mul(v[1]))];
        if next[1].0 <= 0.0 {
            break;
        }
        steps += 1;
        let mut acc = [Dual::c(0.0), Dual::c(0.0)];
        for c in &charges {
            let d = [x[0].sub(c[0]), x[1].sub(c[1])];
            let r = d[0].mul(d[0]).add(d[1].mul(d[1])).sqrt();
            let r3 = r.mul(r).mul(r);
            // ẍ = −∇p = Σ (x − c)/r³.
            acc = [acc[0].add(d[0].div(r3)), acc[1].add(d[1].div(r3))];
        }
        x = next;
        v = [v[0].add(dt.mul(acc[0])), v[1].add(dt.mul(acc[1]))];
    }
    let t_f = Dual::c(0.0).sub(x[1]).div(v[1]);
    let x_f = x[0].add(t_f.mul(v[0]));
    (x_f.mul(x_f), steps)
}

/// The reference answer of `particle` from `w0`, the most Euler steps any trajectory took and
/// the descent's iterations.
fn particle_oracle(w0: f64) -> (f64, usize, usize) {
    let mut most = 0;
    let mut fg = |w: &[f64]| {
        let (f, steps) = trajectory(Dual(w[0], 1.0));
        most = most.max(steps);
        (f.0, vec![f.1])
    };
    let (w, iters) = argmin(&mut fg, &[w0]);
    (w[0], most, iters)
}

fn run_particle(v: &str, w0: f64, limits: Limits) -> (f64, f64) {
    let g = particle::graph(Variant::parse(v).unwrap(), limits).unwrap();
    let r = interp::run(&g, &[w0.into()]).unwrap();
    (r[0].scalar_value().unwrap(), r[1].scalar_value().unwrap())
}

#[test]
fn particle_variants_match_the_reference_algorithm() {
    let (want, euler, iters) = particle_oracle(0.0);
    // GradBench's expected output (validated to 1e-4 there; here the same iterates).
    assert!((want - 0.2071918746486116).abs() < 1e-9, "{want}");
    // Limits just above the need keep the interpreter quick; they only bound the loops.
    let limits = Limits {
        euler_steps: euler + 2,
        descent_steps: iters + 2,
    };
    for v in VARIANTS {
        let (w, ok) = run_particle(v, 0.0, limits);
        assert_eq!(ok, 1.0, "{v}");
        assert!((w - want).abs() < 1e-10, "{v}: {w} vs {want}");
    }
}

#[test]
fn particle_reaching_a_limit_is_flagged_not_answered() {
    let (_, euler, iters) = particle_oracle(0.0);
    let short_euler = Limits {
        euler_steps: euler - 1,
        descent_steps: iters + 2,
    };
    assert_eq!(run_particle("rf", 0.0, short_euler).1, 0.0);
    let short_descent = Limits {
        euler_steps: euler + 2,
        descent_steps: iters - 1,
    };
    assert_eq!(run_particle("fr", 0.0, short_descent).1, 0.0);
}

/// The reference answer of `saddle` from `start`, and the most iterations of any descent.
fn saddle_oracle(start: [f64; 2]) -> (Vec<f64>, usize) {
    let f =
        |p1: &[f64], p2: &[f64]| (p1[0] * p1[0] + p1[1] * p1[1]) - (p2[0] * p2[0] + p2[1] * p2[1]);
    let mut most = 0;
    let mut inner = |p1: &[f64]| {
        // argmax_{p₂} f = argmin of −f, whose gradient is 2p₂.
        let mut neg = |p2: &[f64]| (-f(p1, p2), vec![2.0 * p2[0], 2.0 * p2[1]]);
        let (p2, n) = argmin(&mut neg, &start);
        most = most.max(n);
        p2
    };
    // ∇_{p₁} max_{p₂} f = 2p₁: the inner argmax does not depend on p₁.
    let mut outer = |p1: &[f64]| {
        let p2 = inner(p1);
        (f(p1, &p2), vec![2.0 * p1[0], 2.0 * p1[1]])
    };
    let (r1, n) = argmin(&mut outer, &start);
    let r2 = inner(&r1);
    ([r1, r2].concat(), most.max(n))
}

#[test]
fn saddle_matches_the_reference_algorithm_and_the_closed_form() {
    let start = [1.0, 1.0];
    let (want, most) = saddle_oracle(start);
    // The oracle reproduces GradBench's expected output; the saddle point of ‖p₁‖² − ‖p₂‖²
    // is the origin, which the descent reaches within 1e-4.
    assert!((want[0] - 8.246324826140356e-06).abs() < 1e-15, "{want:?}");
    assert!(want.iter().all(|a| a.abs() < 1e-4), "{want:?}");
    let run = |v: &str, limit: usize| {
        let g = saddle::graph(Variant::parse(v).unwrap(), limit).unwrap();
        interp::run(&g, &[Tensor::from_f64(vec![2], start.to_vec())]).unwrap()
    };
    // One variant here (both modes, nested): the interpreter takes most of a minute on the
    // ~170 × 170 nested iterations; the tool tests run all four compiled.
    let r = run("rf", most + 2);
    assert_eq!(r[1].scalar_value(), Some(1.0));
    let got = r[0].to_f64_vec();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "{got:?} vs {want:?}");
    }
    let r = run("rr", 20);
    assert_eq!(
        r[1].scalar_value(),
        Some(0.0),
        "a too-small limit is flagged"
    );
}

#[test]
fn particle_through_the_tool_all_variants() {
    let (want, _, _) = particle_oracle(0.0);
    let input = json!({"w": 0.0, "min_runs": 1, "min_seconds": 0});
    for v in VARIANTS {
        let got = num(&output("particle", v, input.clone()));
        assert!((got - want).abs() < 1e-10, "{v}: {got} vs {want}");
    }
}

#[test]
fn particle_that_never_lands_is_an_error_not_an_answer() {
    // With w = 2 the first charge sits on the particle's path and flings it away: the
    // reference tools would loop forever.
    let r = evaluate(
        "particle",
        "ff",
        json!({"w": 2.0, "min_runs": 1, "min_seconds": 0}),
    );
    assert_eq!(r["success"], json!(false), "{r}");
    let e = r["error"].as_str().unwrap_or_default();
    assert!(e.contains("no convergence") && e.contains("Euler"), "{e}");
}

#[test]
fn saddle_through_the_tool_all_variants() {
    let (want, _) = saddle_oracle([1.0, 1.0]);
    let input = json!({"start": [1.0, 1.0], "min_runs": 1, "min_seconds": 0});
    for v in VARIANTS {
        let got = flat(&output("saddle", v, input.clone()));
        assert_eq!(got.len(), 4);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{v}: {got:?} vs {want:?}");
        }
    }
}
