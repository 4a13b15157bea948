//! Unit tests of lowering: the shape of the emitted code.

use super::staged::{MAX_ROUNDS, MAX_SCRATCH};
use super::*;
use crate::ir::{Attrs, Op, TensorType};
use crate::jit::plan::{Func, PlanConfig};

/// Lowers all of `g` into functions and returns (blocks, CLIF text) of the first one.
fn lowered(g: &Graph) -> (usize, String) {
    lowered_with(g, false)
}

/// Lowers `g` (one serial function); `batch` stages long loops. Math wrappers are
/// imports `0..16`, batched helpers `1000..`.
fn lowered_with(g: &Graph, batch: bool) -> (usize, String) {
    let plan = crate::jit::plan::plan(
        g,
        &PlanConfig {
            max_ops_per_function: usize::MAX,
            parallel_min_elements: usize::MAX,
            exact: false,
            checked: false,
            keep_backward_apart: false,
            max_snapshots: None,
        },
        &Default::default(),
    )
    .unwrap();
    let math: MathIds = crate::ops::MathFn::ALL
        .iter()
        .enumerate()
        .flat_map(|(i, &f)| {
            [
                ((f, DType::F32), 2 * i as u32),
                ((f, DType::F64), 2 * i as u32 + 1),
            ]
        })
        .collect();
    let cc = CallConv::SystemV;
    let mut func = Function::with_name_signature(
        cranelift_codegen::ir::UserFuncName::user(0, 99),
        kernel_signature(types::I64, cc),
    );
    let mut fctx = FunctionBuilderContext::new();
    let target = TargetFrontendConfig {
        default_call_conv: cc,
        pointer_width: target_lexicon::PointerWidth::U64,
        page_size_align_log2: 12,
    };
    let Func::Serial(items) = &plan.funcs[0] else {
        panic!("serial function expected")
    };
    let opts = Opts {
        exact: false,
        fma: true,
        batch,
    };
    let batch_ids: MathIds = crate::jit::batch::symbols()
        .enumerate()
        .map(|(i, (f, d, _, _))| ((f, d), 1000 + i as u32))
        .collect();
    let imports = Imports {
        math,
        batch: batch_ids,
        gemm: [(DType::F32, 1000), (DType::F64, 1001)]
            .into_iter()
            .collect(),
        all_reduce: 2000,
    };
    let env = Env {
        g,
        plan: &plan,
        imports: &imports,
        target,
        opts,
    };
    build_function(&mut func, &mut fctx, &env, Body::Serial(items));
    (func.layout.blocks().count(), func.display().to_string())
}

#[test]
fn scalar_nodes_are_straight_line_and_chains_are_one_vector_loop() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::scalar(DType::F64)).unwrap();
    let y = g.push(Op::Mul, vec![x, x], Attrs::None).unwrap();
    let z = g.push(Op::Exp, vec![y], Attrs::None).unwrap();
    g.set_outputs(vec![z]);
    let (blocks, clif) = lowered(&g);
    assert_eq!(blocks, 1, "{clif}");
    assert!(clif.contains("fmul") && clif.contains("call"), "{clif}");
    // The fused value y is never stored: one store (z).
    assert_eq!(clif.matches("store").count(), 1, "{clif}");

    // (a + a) * s over [2,32] f32: one fused vector loop, no scalar tail (64 = 4 lanes × 4
    // unrolled × 4 iterations).
    let chain = |rows: usize, cols: usize| {
        let mut g = Graph::new("t");
        let a = g
            .add_input("a", TensorType::new(DType::F32, vec![rows, cols]))
            .unwrap();
        let s = g.add_input("s", TensorType::scalar(DType::F32)).unwrap();
        let y = g.push(Op::Add, vec![a, a], Attrs::None).unwrap();
        let z = g.push(Op::Mul, vec![y, s], Attrs::None).unwrap();
        g.set_outputs(vec![z]);
        g
    };
    let (blocks, clif) = lowered(&chain(2, 32));
    assert_eq!(blocks, 1 + 2, "{clif}");
    assert!(clif.contains("f32x4"), "{clif}");
    // Over [2,8], the 16 elements would fill one unrolled iteration: a loop of single vectors
    // instead, one copy of the body (one vector store; scalar stores are `aligned`).
    let (blocks, clif) = lowered(&chain(2, 8));
    assert_eq!(blocks, 1 + 2, "{clif}");
    assert_eq!(clif.matches("store notrap v").count(), 1, "{clif}");
    // Over [2,2], one vector: straight-line code, no loop.
    let (blocks, clif) = lowered(&chain(2, 2));
    assert_eq!(blocks, 1, "{clif}");
    assert_eq!(clif.matches("store notrap v").count(), 1, "{clif}");
}

#[test]
fn vector_transcendentals_have_a_cold_libm_pass() {
    let mut g = Graph::new("t");
    let x = g
        .add_input("x", TensorType::new(DType::F64, vec![8]))
        .unwrap();
    let y = g.push(Op::Exp, vec![x], Attrs::None).unwrap();
    g.set_outputs(vec![y]);
    let (_, clif) = lowered(&g);
    assert!(
        clif.contains("vany_true") && clif.contains("cold"),
        "{clif}"
    );
    assert!(
        clif.contains("= fma v") && clif.contains("load.f64x2"),
        "{clif}"
    );
}

/// A long loop with a batchable call and a call depending on it: the first is staged
/// (its argument stored, one helper call per segment, its result loaded), the second
/// stays a vector polynomial in the loop; short loops are not staged.
#[test]
fn long_loops_stage_calls_through_batched_helpers() {
    let graph = |n: usize| {
        let mut g = Graph::new("t");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![n]))
            .unwrap();
        let e = g.push(Op::Exp, vec![x], Attrs::None).unwrap();
        let t = g.push(Op::Tanh, vec![e], Attrs::None).unwrap();
        g.set_outputs(vec![t]);
        g
    };
    let (_, clif) = lowered_with(&graph(3000), true);
    // exp (f32) is helper 0: `u0:1000`; tanh (f32) is `u0:1004`, in round 1 (its
    // argument is exp's result).
    let callee = |name: &str| {
        clif.lines()
            .find(|l| l.contains(&format!("= {name} ")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{name} is imported: {clif}"))
            .to_string()
    };
    let (exp, tanh) = (callee("u0:1000"), callee("u0:1004"));
    // Both run in the helpers: no polynomial is left in the loop.
    assert!(
        clif.contains("stack_addr") && !clif.contains("= fma v"),
        "{clif}"
    );
    // Two segment emissions (full segments, the remainder), each calling each helper once,
    // exp before tanh.
    let calls: Vec<&str> = clif
        .lines()
        .filter_map(|l| l.trim().strip_prefix("call "))
        .filter_map(|l| l.split('(').next())
        .filter(|c| *c == exp || *c == tanh)
        .collect();
    assert_eq!(calls, [&exp, &tanh, &exp, &tanh], "{clif}");
    let (_, short) = lowered_with(&graph(1000), true);
    assert!(
        !short.contains("u0:1000") && !short.contains("stack_addr"),
        "{short}"
    );
    let (_, off) = lowered_with(&graph(3000), false);
    assert!(!off.contains("u0:1000"), "{off}");
}

/// A chain of dependent calls is batched round by round, `MAX_ROUNDS` deep; deeper calls
/// stay in the loop (as vector polynomials).
#[test]
fn dependent_calls_are_batched_up_to_max_rounds() {
    let n = 2048; // two full chunks, emitted once inside the chunk loop
    let mut g = Graph::new("t");
    let x = g
        .add_input("x", TensorType::new(DType::F32, vec![n]))
        .unwrap();
    let mut y = x;
    for _ in 0..MAX_ROUNDS + 2 {
        y = g.push(Op::Sin, vec![y], Attrs::None).unwrap();
    }
    g.set_outputs(vec![y]);
    let (_, clif) = lowered_with(&g, true);
    // The helper of sin (f32) is `u0:(1000 + its index in batch::symbols())`.
    let idx = crate::jit::batch::symbols()
        .position(|(f, d, _, _)| f == MathFn::Sin && d == DType::F32)
        .unwrap();
    let name = format!("= u0:{} ", 1000 + idx);
    let helper = clif
        .lines()
        .find(|l| l.contains(&name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the helper is imported: {clif}"));
    assert_eq!(
        clif.matches(&format!("call {helper}(")).count(),
        MAX_ROUNDS,
        "{clif}"
    );
    // The two deepest calls are in the loop: vector polynomials (fma) remain.
    assert!(clif.contains("= fma v"), "{clif}");
}

/// At most `MAX_SCRATCH` calls per segment are batched (bounded stack use); the rest stay
/// in the loop.
#[test]
fn staged_segments_use_a_bounded_scratch() {
    let n = 2048;
    let mut g = Graph::new("t");
    let x = g
        .add_input("x", TensorType::new(DType::F64, vec![n]))
        .unwrap();
    let mut acc = g.push(Op::Exp, vec![x], Attrs::None).unwrap();
    for _ in 0..MAX_SCRATCH + 4 {
        let y = g.push(Op::Mul, vec![x, acc], Attrs::None).unwrap();
        let e = g.push(Op::Exp, vec![y], Attrs::None).unwrap();
        let z = g.push(Op::Tanh, vec![x], Attrs::None).unwrap();
        acc = g.push(Op::Add, vec![e, z], Attrs::None).unwrap();
    }
    g.set_outputs(vec![acc]);
    let (_, clif) = lowered_with(&g, true);
    assert_eq!(clif.matches("explicit_slot").count(), MAX_SCRATCH, "{clif}");
}
