use super::*;
use crate::ir::{DType, GraphBuilder, Op};
use crate::{Tensor, interp};

fn opt(g: &mut Graph) -> OptReport {
    optimize(
        g,
        &OptConfig {
            verify: true,
            ..OptConfig::default()
        },
    )
}

fn eval(g: &Graph, xs: &[f64]) -> Vec<f64> {
    let ins: Vec<Tensor> = xs.iter().map(|&x| x.into()).collect();
    interp::run(g, &ins)
        .unwrap()
        .iter()
        .flat_map(|t| t.to_f64_vec())
        .collect()
}

#[test]
fn identities_are_removed_and_values_kept() {
    let b = GraphBuilder::new("g");
    let x = b.input("x", DType::F64, &[]);
    let y = b.input("y", DType::F64, &[]);
    let e = ((x * 1.0 + 0.0) / 1.0 - 0.0).exp(); // → exp(x)
    let z = -(-(y * -1.0)); // → -y
    let w = (e + z) * (z + e); // commutative operands: the two sums merge
    let mut g = b.finish(&[("w", w)]).unwrap();
    let before = eval(&g, &[0.3, 2.0]);
    let r = opt(&mut g);
    // x, y, exp x, neg y, add, mul
    assert_eq!(g.len(), 6, "{}\n{r}", crate::ir::text::print(&g));
    assert_eq!(eval(&g, &[0.3, 2.0]), before);
    assert_eq!(r.stop, StopReason::FixedPoint);
}

#[test]
fn constants_fold_and_outputs_keep_names() {
    let b = GraphBuilder::new("g");
    let x = b.input("x", DType::F64, &[]);
    let c = b.scalar(DType::F64, 2.0).exp() * 3.0;
    let y = x * c;
    let mut g = b.finish(&[("y", y), ("c", c)]).unwrap();
    opt(&mut g);
    let c_id = g.outputs()[1];
    assert_eq!(g.node(c_id).op, Op::Const);
    assert_eq!(g.value_name(c_id), "c");
    assert_eq!(g.value_name(g.outputs()[0]), "y");
    assert_eq!(
        eval(&g, &[0.5]),
        vec![0.5 * (2f64.exp() * 3.0), 2f64.exp() * 3.0]
    );
}

#[test]
fn output_aliasing_an_input_is_kept() {
    let b = GraphBuilder::new("g");
    let x = b.input("x", DType::F64, &[]);
    let y = x * 1.0;
    let mut g = b.finish(&[("y", y)]).unwrap();
    opt(&mut g);
    // y cannot become x (x is an input with its own name), so the mul stays.
    assert_eq!(g.outputs().len(), 1);
    assert_eq!(g.value_name(g.outputs()[0]), "y");
    assert_eq!(eval(&g, &[4.0]), vec![4.0]);
}

#[test]
fn x_times_zero_is_not_folded() {
    let b = GraphBuilder::new("g");
    let x = b.input("x", DType::F64, &[]);
    let mut g = b.finish(&[("y", x * 0.0)]).unwrap();
    opt(&mut g);
    assert!(eval(&g, &[f64::INFINITY])[0].is_nan());
}

#[test]
fn transposes_compose() {
    let b = GraphBuilder::new("g");
    let x = b.input("x", DType::F64, &[2, 3, 4]);
    let t = x.transpose(&[1, 2, 0]).transpose(&[2, 0, 1]); // identity
    let u = x.transpose(&[1, 0, 2]).transpose(&[0, 2, 1]);
    let mut g = b.finish(&[("t", t.exp()), ("u", u)]).unwrap();
    let inputs = [Tensor::from_fn(&g.ty(g.inputs()[0]).clone(), |i| i as f64)];
    let before = interp::run(&g, &inputs).unwrap();
    opt(&mut g);
    assert_eq!(interp::run(&g, &inputs).unwrap(), before);
    assert_eq!(
        g.nodes().iter().filter(|n| n.op == Op::Transpose).count(),
        1
    );
}

#[test]
fn dce_keeps_unused_inputs() {
    let b = GraphBuilder::new("g");
    let x = b.input("x", DType::F64, &[]);
    let _unused = b.input("u", DType::F64, &[]);
    let _dead = x.sin();
    let mut g = b.finish(&[("y", x.exp())]).unwrap();
    opt(&mut g);
    assert_eq!(g.inputs().len(), 2);
    assert_eq!(g.len(), 3);
}

#[test]
fn custom_derivative_regions_survive_optimization() {
    // y = lying(x) + 0 with a rule that says d/dx = 3x (true: 2x); after optimizing, the
    // gradient must still come from the user's rule, and an unused region is dropped.
    let op = crate::ops::custom::CustomOp::new("lying", |_, x| x[0] * x[0] * 1.0)
        .with_vjp(|_, call, ct| vec![Some(ct * call.inputs[0] * 3.0)]);
    let b = GraphBuilder::new("c");
    let _dead_pad = b.input("x0", DType::F64, &[]).sin();
    let x = b.input("x", DType::F64, &[]);
    let _unused = b.custom(&op, &[x]);
    let y = b.custom(&op, &[x]) + 0.0;
    let mut g = b.finish(&[("y", y)]).unwrap();
    assert_eq!(g.custom_regions().len(), 2);
    opt(&mut g);
    assert_eq!(
        g.custom_regions().len(),
        1,
        "{}",
        crate::ir::text::print(&g)
    );
    let (yid, xid) = (g.outputs()[0], g.input_named("x").unwrap());
    let dx = crate::autodiff::grad(&mut g, yid, &[xid]).unwrap()[0];
    g.set_outputs(vec![yid, dx]);
    let out = interp::run(&g, &[0.0.into(), 2.0.into()]).unwrap();
    assert_eq!(out[0].scalar_value(), Some(4.0));
    assert_eq!(out[1].scalar_value(), Some(6.0)); // the user's (deliberately wrong) rule
}

#[test]
fn a_sum_over_no_axes_keeps_its_sign_of_zero() {
    // The interpreter sums from +0.0, so reduce_sum(-0.0) over no axes is +0.0; atan2 turns
    // that sign into 0 vs -π. The optimizer must not drop the sum.
    let b = GraphBuilder::new("g");
    let x = b.input("x", DType::F64, &[2]);
    let s = x.reduce(Op::ReduceSum, Some(&[]), false);
    let m = x.reduce(Op::ReduceMax, Some(&[]), false);
    let y = b.push(Op::Atan2, &[s, s], crate::ir::Attrs::None).sum();
    let z = b.push(Op::Atan2, &[m, m], crate::ir::Attrs::None).sum();
    let mut g = b.finish(&[("y", y), ("z", z)]).unwrap();
    let x0 = [Tensor::from_f64(vec![2], vec![-0.0, 1.0])];
    let before = interp::run(&g, &x0).unwrap();
    opt(&mut g);
    let after = interp::run(&g, &x0).unwrap();
    assert!(before[0].bits_eq(&after[0]) && before[1].bits_eq(&after[1]));
    assert_eq!(before[0].scalar_value(), Some(std::f64::consts::FRAC_PI_4));
}
