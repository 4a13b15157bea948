//! The whole pipeline, end to end: parse → reverse mode → optimize → JIT → call, checked
//! against the reference interpreter and against derivatives computed by hand.
//!
//! Run with `cargo run --release --example demo`.

use gradlift::jit::{self, Buf, BufMut};
use gradlift::{Graph, NodeId, Tensor, autodiff, interp, ir::text, opt};
use std::time::Instant;

/// Appends the gradient of output 0 with respect to every input; outputs become
/// `[y, grad_<input>...]`.
fn with_gradient(mut g: Graph) -> Result<Graph, gradlift::Error> {
    let y = g.outputs()[0];
    let inputs = g.inputs();
    let grads = autodiff::grad(&mut g, y, &inputs)?;
    let mut outs: Vec<(String, NodeId)> = vec![(g.value_name(y), y)];
    for (x, dx) in inputs.iter().zip(grads) {
        outs.push((format!("grad_{}", g.value_name(*x)), dx));
    }
    let outs: Vec<(&str, NodeId)> = outs.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    g.set_named_outputs(&outs)?;
    Ok(g)
}

/// Median nanoseconds per call of `f` over several batches.
fn ns_per_call(mut f: impl FnMut()) -> f64 {
    let mut batch = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        if t.elapsed().as_millis() >= 20 {
            break;
        }
        batch *= 2;
    }
    let mut samples: Vec<f64> = (0..9)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Optimizes, compiles and times one graph on both backends; returns the JIT's outputs.
fn run_both(title: &str, mut g: Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, gradlift::Error> {
    let report = opt::optimize(&mut g, &opt::OptConfig::default());
    println!("{report}");
    let t = Instant::now();
    let kernel = jit::compile(&g)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let jit_out = kernel.run(inputs)?;
    let interp_out = interp::run(&g, inputs)?;
    let worst = jit_out
        .iter()
        .zip(&interp_out)
        .flat_map(|(a, b)| a.to_f64_vec().into_iter().zip(b.to_f64_vec()))
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0, f64::max);
    let mut ws = kernel.workspace();
    let mut outs: Vec<Tensor> = kernel
        .output_types()
        .iter()
        .map(|t| Tensor::splat(t, 0.0))
        .collect();
    let ins: Vec<Buf<'_>> = inputs.iter().map(Buf::from).collect();
    let jit_ns = ns_per_call(|| {
        let mut o: Vec<BufMut<'_>> = outs.iter_mut().map(BufMut::from).collect();
        kernel
            .call(&ins, &mut o, &mut ws)
            .expect("buffers match the kernel");
    });
    let interp_ns = ns_per_call(|| {
        std::hint::black_box(interp::run(&g, inputs).expect("inputs match"));
    });
    println!(
        "{title}: compile {compile_ms:.2} ms | JIT {jit_ns:.0} ns/call | interpreter {interp_ns:.0} ns/call \
         | speedup {:.1}x | max |JIT - interp| (relative) {worst:.1e}\n",
        interp_ns / jit_ns
    );
    Ok(jit_out)
}

fn main() -> Result<(), gradlift::Error> {
    println!("== 1. The worked example: y = x1^2 + x2 ==\n");
    let g = text::parse(include_str!("../../ir/seed.gir"))?;
    println!("{}", text::print(&g));
    let g = with_gradient(g)?;
    println!(
        "-- with its adjoint graph appended (reverse mode, seed ȳ = 1):\n{}",
        text::print(&g)
    );
    let mut shown = g.clone();
    opt::optimize(&mut shown, &opt::OptConfig::default());
    println!("-- after the optimizer:\n{}", text::print(&shown));
    let (x1, x2) = (3.0, 4.0);
    let out = run_both("seed", g, &[x1.into(), x2.into()])?;
    let v: Vec<f64> = out
        .iter()
        .map(|t| t.scalar_value().unwrap_or(f64::NAN))
        .collect();
    println!(
        "   at x1 = {x1}, x2 = {x2}: y = {}, dy/dx1 = {} (2·x1 = {}), dy/dx2 = {} (expected 1)\n",
        v[0],
        v[1],
        2.0 * x1,
        v[2]
    );
    assert_eq!(v, [x1 * x1 + x2, 2.0 * x1, 1.0]);

    println!("== 2. Rosenbrock, n = 1000, value + gradient ==\n");
    let g = with_gradient(text::parse(include_str!("../../ir/rosenbrock.gir"))?)?;
    let n = g.ty(g.inputs()[0]).numel();
    let x: Vec<f64> = (0..n)
        .map(|i| ((i * 37) % 100) as f64 / 50.0 - 1.0)
        .collect();
    let out = run_both("rosenbrock", g, &[Tensor::from_f64(vec![n], x.clone())])?;
    // The gradient by hand: ∂f/∂x_i = -400 x_i (x_{i+1} - x_i²) - 2(1 - x_i) + 200 (x_i - x_{i-1}²).
    let hand: Vec<f64> = (0..n)
        .map(|i| {
            let mut d = 0.0;
            if i + 1 < n {
                d += -400.0 * x[i] * (x[i + 1] - x[i] * x[i]) - 2.0 * (1.0 - x[i]);
            }
            if i > 0 {
                d += 200.0 * (x[i] - x[i - 1] * x[i - 1]);
            }
            d
        })
        .collect();
    let err = out[1]
        .to_f64_vec()
        .iter()
        .zip(&hand)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0, f64::max);
    println!(
        "   f(x) = {:.6}, max relative error of the gradient vs the hand-derived formula: {err:.1e}\n",
        out[0].scalar_value().unwrap_or(f64::NAN)
    );
    assert!(err < 1e-12);

    println!("== 3. A small MLP loss (f32), value + gradient of every parameter ==\n");
    let g = with_gradient(text::parse(include_str!("../../ir/mlp.gir"))?)?;
    let inputs: Vec<Tensor> = g
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            Tensor::from_fn(g.ty(i), |j| {
                (((k * 7919 + j * 104_729) % 200) as f64 / 100.0 - 1.0) * 0.5
            })
        })
        .collect();
    run_both("mlp", g, &inputs)?;
    Ok(())
}
