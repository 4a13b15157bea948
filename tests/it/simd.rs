//! The JIT's vector code: accuracy of the vectorized transcendentals against Rust's `f32`/`f64`
//! methods (libm), agreement of fused, vectorized and threaded kernels with the interpreter on
//! random graphs with long shapes, and determinism of threaded kernels.
//!
//! Sweeps are long in release builds (`cargo test --release`) and shortened in debug builds.

use crate::random::{Rng, agree, random_graph, random_graph_shaped, random_inputs};
use gradlift::jit::{self, Buf, BufMut, JitConfig, Kernel};
use gradlift::{Attrs, DType, Data, Graph, NodeId, Op, Tensor, TensorType, interp};

const RELEASE: bool = !cfg!(debug_assertions);

// ---- ULP accuracy ---------------------------------------------------------------------------

/// The functions with a vector implementation (sigmoid through its `exp`).
const FUNCS: [Op; 8] = [
    Op::Exp,
    Op::Expm1,
    Op::Log,
    Op::Log1p,
    Op::Sin,
    Op::Cos,
    Op::Tanh,
    Op::Sigmoid,
];

/// The documented bound (ULP against Rust's methods, measured by the sweep below; the table
/// is in the `jit` module docs) of each function.
fn ulp_bound(op: Op, d: DType) -> u64 {
    match (op, d) {
        (Op::Exp | Op::Log | Op::Log1p | Op::Sin | Op::Cos, _) => 1,
        (Op::Expm1, _) => 2,
        // f64 sigmoid: 4 ULP, reached by about 1 in 10⁵ arguments of [-40, 40] (the sweep's
        // samples stop at 3; a random graph found one).
        _ => 4,
    }
}

fn ref64(op: Op, x: f64) -> f64 {
    match op {
        Op::Exp => x.exp(),
        Op::Expm1 => x.exp_m1(),
        Op::Log => x.ln(),
        Op::Log1p => x.ln_1p(),
        Op::Sin => x.sin(),
        Op::Cos => x.cos(),
        Op::Tanh => x.tanh(),
        Op::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        _ => unreachable!(),
    }
}

fn ref32(op: Op, x: f32) -> f32 {
    match op {
        Op::Exp => x.exp(),
        Op::Expm1 => x.exp_m1(),
        Op::Log => x.ln(),
        Op::Log1p => x.ln_1p(),
        Op::Sin => x.sin(),
        Op::Cos => x.cos(),
        Op::Tanh => x.tanh(),
        Op::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        _ => unreachable!(),
    }
}

/// Distance in units in the last place; NaN is 0 from NaN and infinitely far from numbers,
/// and zeros must have the same sign.
fn ulps64(a: f64, b: f64) -> u64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() {
            0
        } else {
            u64::MAX
        };
    }
    if a == 0.0 && b == 0.0 {
        return if a.to_bits() == b.to_bits() {
            0
        } else {
            u64::MAX
        };
    }
    let ord = |x: f64| {
        let i = x.to_bits() as i64;
        if i < 0 { i64::MIN - i } else { i }
    };
    ord(a).abs_diff(ord(b))
}

fn ulps32(a: f32, b: f32) -> u64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() {
            0
        } else {
            u64::MAX
        };
    }
    if a == 0.0 && b == 0.0 {
        return if a.to_bits() == b.to_bits() {
            0
        } else {
            u64::MAX
        };
    }
    let ord = |x: f32| {
        let i = x.to_bits() as i32;
        i64::from(if i < 0 { i32::MIN - i } else { i })
    };
    ord(a).abs_diff(ord(b))
}

/// A kernel computing `op` elementwise over `n` values of `d`.
fn unary_kernel(op: Op, d: DType, n: usize) -> Kernel {
    let mut g = Graph::new(format!("{op}"));
    let x = g.add_input("x", TensorType::new(d, vec![n])).unwrap();
    let y = g.push(op, vec![x], Attrs::None).unwrap();
    g.set_outputs(vec![y]);
    jit::compile(&g).unwrap()
}

/// Worst case of one function on one set of arguments: (ULP, argument, got, want); the
/// values are read through `Debug` in failure messages.
#[derive(Clone, Copy, Debug, Default)]
#[allow(dead_code)]
struct Worst {
    ulps: u64,
    x: f64,
    got: f64,
    want: f64,
}

fn worst64(op: Op, xs: &[f64]) -> Worst {
    let k = unary_kernel(op, DType::F64, xs.len());
    let mut y = vec![0.0f64; xs.len()];
    let mut ws = k.workspace();
    k.call(&[Buf::F64(xs)], &mut [BufMut::F64(&mut y)], &mut ws)
        .unwrap();
    let mut w = Worst::default();
    for (&x, &got) in xs.iter().zip(&y) {
        let want = ref64(op, x);
        let u = ulps64(got, want);
        if u > w.ulps || (u == w.ulps && w.ulps == 0 && w.x == 0.0) {
            w = Worst {
                ulps: u,
                x,
                got,
                want,
            };
        }
    }
    w
}

fn worst32(op: Op, xs: &[f32]) -> Worst {
    let k = unary_kernel(op, DType::F32, xs.len());
    let mut y = vec![0.0f32; xs.len()];
    let mut ws = k.workspace();
    k.call(&[Buf::F32(xs)], &mut [BufMut::F32(&mut y)], &mut ws)
        .unwrap();
    let mut w = Worst::default();
    for (&x, &got) in xs.iter().zip(&y) {
        let want = ref32(op, x);
        let u = ulps32(got, want);
        if u > w.ulps {
            w = Worst {
                ulps: u,
                x: f64::from(x),
                got: f64::from(got),
                want: f64::from(want),
            };
        }
    }
    w
}

/// Special arguments: zeros, infinities, NaN, subnormals, the edges of the fast ranges, and
/// the overflow/underflow thresholds of every function.
fn specials64() -> Vec<f64> {
    let mut v = vec![
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 2.0,
        -f64::MIN_POSITIVE / 3.0,
        5e-324,
        -5e-324,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        1.0,
        -1.0,
        2.0,
        0.5,
        -0.5,
        1e-300,
        1e-20,
        -1e-20,
        -1.0 + f64::EPSILON / 2.0,
        -1.0 + 1e-10,
    ];
    for t in [
        708.0f64, 709.0, 709.7, 709.78, 710.0, -708.0, -708.4, -709.0, -744.0, -745.1, -746.0,
        -37.0, -37.5, -40.0, -41.0, 20.0, 22.0, 19.0, 1048576.0, 1048577.0, 1e6, 1e10, 1e22, 1e300,
    ] {
        v.extend([t, -t, t.next_up(), t.next_down()]);
    }
    for k in 1..40 {
        let x = f64::from(k) * std::f64::consts::FRAC_PI_2;
        v.extend([x, x.next_up(), x.next_down(), -x]);
    }
    v
}

fn specials32() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::MIN_POSITIVE / 2.0,
        1e-45,
        -1e-45,
        f32::MAX,
        f32::MIN,
        f32::EPSILON,
        1.0,
        -1.0,
        0.5,
        1e-30,
        -1e-30,
        -1.0 + f32::EPSILON / 2.0,
    ];
    for t in [
        87.0f32, 87.3, 88.0, 88.7, 88.72, 89.0, -87.0, -87.3, -88.0, -103.0, -104.0, -105.0, -17.0,
        -17.5, 9.0, 9.5, 10.0, 1048576.0, 1048577.0, 1e6, 1e10, 1e30,
    ] {
        v.extend([t, -t, t.next_up(), t.next_down()]);
    }
    for k in 1..40 {
        let x = k as f32 * std::f32::consts::FRAC_PI_2;
        v.extend([x, x.next_up(), x.next_down(), -x]);
    }
    v
}

/// Arguments: specials, every `stride`-th bit pattern, and dense random samples of the
/// ranges where most arguments fall.
fn args64(seed: u64) -> Vec<f64> {
    let mut v = specials64();
    let stride: u64 = if RELEASE { 1 << 40 } else { 1 << 48 };
    let mut bits = 0x5555u64;
    while let Some(b) = bits.checked_add(stride) {
        v.push(f64::from_bits(b));
        bits = b;
    }
    let n = if RELEASE { 1 << 20 } else { 1 << 12 };
    let mut r = Rng(seed);
    for (lo, hi) in [
        (-1.0, 1.0),
        (-10.0, 10.0),
        (-750.0, 750.0),
        (-1e-3, 1e-3),
        (0.0, 2.0),
        (-1.0, 0.0),
        (-1e5, 1e5),
    ] {
        v.extend((0..n).map(|_| r.uniform(lo, hi)));
    }
    v
}

fn args32(seed: u64) -> Vec<f32> {
    let mut v = specials32();
    let stride: u64 = if RELEASE { 1 << 7 } else { 1 << 14 };
    let mut bits = 0x55u64;
    while bits < 1 << 32 {
        v.push(f32::from_bits(bits as u32));
        bits += stride;
    }
    let n = if RELEASE { 1 << 20 } else { 1 << 12 };
    let mut r = Rng(seed);
    for (lo, hi) in [
        (-1.0, 1.0),
        (-10.0, 10.0),
        (-100.0, 100.0),
        (-1e-3, 1e-3),
        (0.0, 2.0),
        (-1.0, 0.0),
        (-1e5, 1e5),
    ] {
        v.extend((0..n).map(|_| r.uniform(lo, hi) as f32));
    }
    v
}

#[test]
fn vectorized_transcendentals_are_within_their_ulp_bounds() {
    let (a64, a32) = (args64(1), args32(2));
    let mut table = String::from("function   f32 ULP   f64 ULP\n");
    let mut failures = Vec::new();
    for op in FUNCS {
        let w32 = worst32(op, &a32);
        let w64 = worst64(op, &a64);
        table += &format!("{:<10} {:>7} {:>9}\n", op.name(), w32.ulps, w64.ulps);
        for (d, w) in [(DType::F32, w32), (DType::F64, w64)] {
            if w.ulps > ulp_bound(op, d) {
                failures.push(format!("{op} {d}: {w:?}"));
            }
        }
    }
    println!("{table}");
    assert!(failures.is_empty(), "{table}\n{failures:#?}");
}

#[test]
fn special_values_come_out_as_libm_gives_them() {
    // Every special argument, in each lane position and in the tail (lengths 1..=9).
    for op in FUNCS {
        for n in 1..=9 {
            let xs: Vec<f64> = specials64().into_iter().cycle().take(n * 40).collect();
            let w = worst64(op, &xs);
            assert!(w.ulps <= ulp_bound(op, DType::F64), "{op} f64 n={n}: {w:?}");
            let xs: Vec<f32> = specials32().into_iter().cycle().take(n * 40).collect();
            let w = worst32(op, &xs);
            assert!(w.ulps <= ulp_bound(op, DType::F32), "{op} f32 n={n}: {w:?}");
        }
        // Exact cases.
        let k = unary_kernel(op, DType::F64, 6);
        let xs = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e-310,
        ];
        let out = k.run(&[Tensor::from_f64(vec![6], xs.to_vec())]).unwrap();
        let Data::F64(y) = out[0].data() else {
            unreachable!()
        };
        for (x, got) in xs.iter().zip(y) {
            let want = ref64(op, *x);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{op}({x:e}) = {got:e}, libm {want:e}"
            );
        }
    }
}

// ---- agreement on random graphs -------------------------------------------------------------

fn exact() -> JitConfig {
    JitConfig {
        exact_math: true,
        ..JitConfig::default()
    }
}

/// Long shapes: tails of every length modulo the vector widths, unrolled loops, and (above
/// 2 × 16384 elements) blocks run on several threads.
fn long_shapes() -> Vec<Vec<usize>> {
    let mut v: Vec<Vec<usize>> = vec![
        vec![1],
        vec![3],
        vec![5],
        vec![7],
        vec![17],
        vec![2, 17],
        vec![33, 1],
        vec![1023],
        vec![4, 257],
        vec![3, 5, 7],
    ];
    if RELEASE {
        // (No long leading dimension: `matmul(a, aᵀ)` of the generator would be huge.)
        v.extend([vec![65537], vec![3, 40001], vec![2, 65536]]);
    } else {
        v.extend([vec![32769], vec![2, 16385]]);
    }
    v
}

#[test]
fn exact_math_kernels_equal_the_interpreter_bitwise_on_random_graphs() {
    let cases = if RELEASE { 3000 } else { 400 };
    for seed in 0..cases {
        let g = random_graph(seed, 1 + (seed % 24) as usize, seed % 2 == 0);
        bitwise(&g, seed);
    }
}

#[test]
fn exact_math_kernels_equal_the_interpreter_bitwise_on_long_shapes() {
    let shapes = long_shapes();
    let cases = if RELEASE { 300 } else { 40 };
    for seed in 0..cases {
        let g = random_graph_shaped(seed, 2 + (seed % 16) as usize, seed % 3 == 0, &shapes);
        bitwise(&g, seed);
    }
}

fn bitwise(g: &Graph, seed: u64) {
    let ins = random_inputs(g, seed ^ 7);
    let want = interp::run(g, &ins).unwrap();
    let k = jit::compile_with(g, &exact()).unwrap();
    let got = k.run(&ins).unwrap();
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(
            agree(a, b, 0.0),
            "seed {seed} output {i} ({}):\n{}",
            k.stats(),
            describe(g)
        );
    }
}

fn describe(g: &Graph) -> String {
    let mut s = String::new();
    for (i, n) in g.nodes().iter().enumerate() {
        s += &format!("%{i} = {} {:?} {:?} : {}\n", n.op, n.inputs, n.attrs, n.ty);
    }
    s + &format!("outputs {:?}", g.outputs())
}

/// With the default (fast) math every node is checked on its own: the JIT's value of a node
/// against the interpreter's op applied to the JIT's values of its operands. Ops without a
/// transcendental or a reduction must match bitwise; transcendentals within their ULP bound
/// (plus one for libm's own rounding of composite rules); sums within the reassociation bound
/// `n·ε·Σ|x|`; max/min exactly (up to the sign of a zero).
#[test]
fn default_kernels_agree_node_by_node_on_random_graphs() {
    let shapes = long_shapes();
    let cases = if RELEASE { 1500 } else { 150 };
    for seed in 0..cases {
        let mut g = if seed % 2 == 0 {
            random_graph(seed, 1 + (seed % 24) as usize, seed % 4 == 0)
        } else {
            random_graph_shaped(seed, 2 + (seed % 12) as usize, seed % 3 == 0, &shapes)
        };
        node_by_node(&mut g, seed);
    }
}

fn node_by_node(g: &mut Graph, seed: u64) {
    // Every computed node becomes an output (in id order).
    let outs: Vec<NodeId> = (0..g.len())
        .map(|i| NodeId(i as u32))
        .filter(|&id| !matches!(g.node(id).op, Op::Input | Op::Const))
        .collect();
    if outs.is_empty() {
        return;
    }
    g.set_outputs(outs.clone());
    let ins = random_inputs(g, seed ^ 11);
    let k = jit::compile(g).unwrap();
    let got = k.run(&ins).unwrap();
    let mut value: Vec<Option<Tensor>> = vec![None; g.len()];
    for (&id, t) in outs.iter().zip(got) {
        value[id.index()] = Some(t);
    }
    let leaf_vals = interp::run(
        &{
            let mut h = g.clone();
            let leaves: Vec<NodeId> = (0..h.len())
                .map(|i| NodeId(i as u32))
                .filter(|&id| matches!(h.node(id).op, Op::Input | Op::Const))
                .collect();
            h.set_outputs(leaves);
            h
        },
        &ins,
    )
    .unwrap();
    let mut li = 0;
    for (i, v) in value.iter_mut().enumerate() {
        if matches!(g.nodes()[i].op, Op::Input | Op::Const) {
            *v = Some(leaf_vals[li].clone());
            li += 1;
        }
    }
    for &id in &outs {
        let node = g.node(id);
        let args: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|x| value[x.index()].as_ref().unwrap())
            .collect();
        let want = gradlift::ops::eval(node, &args);
        let got = value[id.index()].as_ref().unwrap();
        let ok = match node.op {
            Op::ReduceSum | Op::ReduceMean => {
                // |Σ' - Σ| <= n·ε·Σ|x| per output element (n operand elements each).
                let Attrs::Reduce { axes, keepdims } = &node.attrs else {
                    unreachable!()
                };
                let abs_node = gradlift::Node {
                    op: Op::ReduceSum,
                    inputs: node.inputs.clone(),
                    attrs: Attrs::Reduce {
                        axes: axes.clone(),
                        keepdims: *keepdims,
                    },
                    ty: TensorType::new(DType::F64, node.ty.shape.clone()),
                    name: None,
                    origin: gradlift::Origin::None,
                };
                let absx = Tensor::from_f64(
                    args[0].shape().to_vec(),
                    args[0].to_f64_vec().iter().map(|x| x.abs()).collect(),
                );
                let mags = gradlift::ops::eval(&abs_node, &[&absx]).to_f64_vec();
                let n = (args[0].numel() / node.ty.numel()) as f64;
                let eps = if node.ty.dtype == DType::F32 {
                    f64::from(f32::EPSILON)
                } else {
                    f64::EPSILON
                };
                got.to_f64_vec()
                    .iter()
                    .zip(want.to_f64_vec())
                    .zip(mags)
                    .all(|((&a, b), m)| {
                        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= (n + 2.0) * eps * m
                    })
            }
            Op::Matmul => {
                // Large products go to the tuned GEMM, which sums in another order:
                // |c' - c| <= k·ε·(|A|·|B|) per element (both orders' worst-case rounding).
                let abs = |t: &Tensor| {
                    let v = t.to_f64_vec();
                    Tensor::from_fn(&t.ty(), |i| v[i].abs())
                };
                let mags = gradlift::ops::eval(node, &[&abs(args[0]), &abs(args[1])]).to_f64_vec();
                let k = *args[0].shape().last().unwrap() as f64;
                let eps = if node.ty.dtype == DType::F32 {
                    f64::from(f32::EPSILON)
                } else {
                    f64::EPSILON
                };
                got.to_f64_vec()
                    .iter()
                    .zip(want.to_f64_vec())
                    .zip(mags)
                    .all(|((&a, b), m)| {
                        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= k * eps * m
                    })
            }
            op if FUNCS.contains(&op) => within_ulps(got, &want, ulp_bound(op, node.ty.dtype)),
            // A loop's fast-math error is its body's, compounded over the steps: no per-node
            // bound. Loops are compared bitwise in exact mode (the test above, `props`, the
            // differential test, the fuzz targets).
            Op::Scan => true,
            _ => agree(got, &want, 0.0),
        };
        assert!(
            ok,
            "seed {seed} node %{}: jit {got:?}\n interp {want:?}\n{}",
            id.0,
            describe(g)
        );
    }
}

fn within_ulps(a: &Tensor, b: &Tensor, bound: u64) -> bool {
    match (a.data(), b.data()) {
        (Data::F32(x), Data::F32(y)) => x.iter().zip(y).all(|(&p, &q)| ulps32(p, q) <= bound),
        (Data::F64(x), Data::F64(y)) => x.iter().zip(y).all(|(&p, &q)| ulps64(p, q) <= bound),
        _ => false,
    }
}

// ---- threads ---------------------------------------------------------------------------------

/// The elementwise chain of the benchmarks, value and gradient, over `n` f32 values.
fn chain(n: usize) -> Graph {
    let b = gradlift::GraphBuilder::new("chain");
    let x = b.input("x", DType::F32, &[n]);
    let y = ((x * 1.5 + 0.5).tanh() * x.sigmoid() + (-(x * x)).exp()).sum();
    let d = b.grad(y, &[x]).unwrap();
    b.into_graph(&[y.id(), d[0].id()]).unwrap()
}

#[test]
fn threaded_kernels_are_deterministic_and_independent_of_the_thread_count() {
    let n = if RELEASE { 1 << 20 } else { 1 << 17 };
    let g = chain(n);
    let k = jit::compile(&g).unwrap();
    assert!(k.stats().groups_parallel >= 1, "{}", k.stats());
    let mut r = Rng(5);
    let xs: Vec<f32> = (0..n).map(|_| r.uniform(-3.0, 3.0) as f32).collect();
    let run = |k: &Kernel| {
        let mut y = [0f32];
        let mut dx = vec![0f32; n];
        let mut ws = k.workspace();
        k.call(
            &[Buf::F32(&xs)],
            &mut [BufMut::F32(&mut y), BufMut::F32(&mut dx)],
            &mut ws,
        )
        .unwrap();
        (
            y[0].to_bits(),
            dx.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        )
    };
    let first = run(&k);
    for _ in 0..20 {
        assert!(run(&k) == first, "a threaded run differed");
    }
    // One worker thread: the same blocks in the same combination order.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert!(pool.install(|| run(&k)) == first, "one thread differed");
    // And the values are right: exact math agrees with the interpreter bitwise; the default
    // kernel's blocked vector sum is at least as close to an f64 sum of the terms as the
    // interpreter's sequential f32 sum, and its gradient is close elementwise.
    let want = interp::run(&g, &[Tensor::from_f32(vec![n], xs.clone())]).unwrap();
    let e = jit::compile_with(&g, &exact()).unwrap();
    let ex = run(&e);
    let (Data::F32(wy), Data::F32(wd)) = (want[0].data(), want[1].data()) else {
        unreachable!()
    };
    assert_eq!(ex.0, wy[0].to_bits());
    assert!(wd.iter().zip(&ex.1).all(|(a, b)| a.to_bits() == *b));
    let exact_sum: f64 = xs
        .iter()
        .map(|&x| {
            let t = (1.5 * x + 0.5).tanh();
            let s = 1.0 / (1.0 + (-x).exp());
            f64::from(t * s + (-(x * x)).exp())
        })
        .sum();
    let y = f64::from(f32::from_bits(first.0));
    let w = f64::from(wy[0]);
    assert!(
        (y - exact_sum).abs() <= (w - exact_sum).abs().max(1e-6 * exact_sum),
        "jit {y}, interpreter {w}, f64 sum {exact_sum}"
    );
    for (&a, &b) in wd.iter().zip(&first.1) {
        let b = f32::from_bits(b);
        assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
    }
}

// ---- batched transcendentals ----------------------------------------------------------------

/// The arguments where the vector `op` hands the lane to libm (see the vmath docs): in
/// ordinary vector loops the whole block then reruns with libm, in staged loops only that
/// element does.
fn libm_lane(op: Op, d: DType, x: f64) -> bool {
    let (exp_fast, exp_ovf, exp_unf, em1_hi) = match d {
        DType::F32 => (87.0, 88.73, -104.0, 88.0),
        _ => (708.0, 709.79, -745.2, 709.0),
    };
    let exp_bad = |x: f64| x.abs() > exp_fast && x <= exp_ovf && x >= exp_unf;
    let min_normal = match d {
        DType::F32 => f64::from(f32::MIN_POSITIVE),
        _ => f64::MIN_POSITIVE,
    };
    match op {
        Op::Exp => exp_bad(x),
        Op::Sigmoid => exp_bad(-x),
        Op::Expm1 => x > em1_hi && x <= exp_ovf,
        Op::Log => x > 0.0 && x < min_normal,
        Op::Sin | Op::Cos => x.abs() > 2f64.powi(20) && x.is_finite(),
        _ => false,
    }
}

fn tensor_of(d: DType, xs: &[f64]) -> Tensor {
    match d {
        DType::F32 => Tensor::from_f32(vec![xs.len()], xs.iter().map(|&v| v as f32).collect()),
        _ => Tensor::from_f64(vec![xs.len()], xs.to_vec()),
    }
}

fn unbatched() -> JitConfig {
    JitConfig {
        batch_math: false,
        ..JitConfig::default()
    }
}

/// `a` and `b` are the same bits, except that any NaN equals any NaN (which NaN an
/// operation returns depends on its operand order, which the two code paths don't share); on
/// failure, names the first element that differs.
fn assert_same_bits(a: &[Tensor], b: &[Tensor], input: &Tensor, what: &str) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let (xv, yv, iv) = (x.to_f64_vec(), y.to_f64_vec(), input.to_f64_vec());
        let differ =
            |j: usize| xv[j].to_bits() != yv[j].to_bits() && !(xv[j].is_nan() && yv[j].is_nan());
        let first = (0..xv.len()).find(|&j| differ(j));
        assert!(
            x.ty() == y.ty() && first.is_none(),
            "{what}: output {i} differs with batching, first at {first:?} (x, got, want): {:?}",
            first.map(|j| (iv.get(j), xv[j], yv[j]))
        );
    }
}

/// Long loops compute `exp`, `expm1` and `tanh` through batched helpers (wider vectors than
/// Cranelift's) that run the in-loop algorithms operation for operation, so on arguments
/// that need no libm fallback a kernel with `batch_math` equals the same kernel without it
/// bit for bit: special values the vector code selects (±0, ±inf, NaN, overflow, underflow)
/// in every position, chunk remainders and partial vectors, calls that depend on other
/// calls (which stay in the loop), reductions and gradients, 2-D loops, threaded blocks.
#[test]
fn batched_transcendentals_equal_the_in_loop_code_bitwise() {
    let same = |g: &Graph, ins: &[Tensor], what: &str| {
        let a = jit::compile(g).unwrap().run(ins).unwrap();
        let b = jit::compile_with(g, &unbatched())
            .unwrap()
            .run(ins)
            .unwrap();
        assert_same_bits(&a, &b, &ins[0], what);
    };
    let lens = if RELEASE {
        vec![1024, 1025, 3 * 1024 + 7, 70_001]
    } else {
        vec![1024, 3 * 1024 + 7]
    };
    let mut r = Rng(11);
    for d in [DType::F32, DType::F64] {
        // Values the vector code selects (not libm): ±0, ±inf, NaN, tiny, overflow and
        // underflow of every function, and the saturation points of tanh and expm1.
        let mut specials = vec![0.0, -0.0, f64::INFINITY, -f64::INFINITY, f64::NAN];
        let big = match d {
            DType::F32 => {
                specials.extend([
                    1e-30, -1e-30, 1e10, -1e10, 120.0, -120.0, 9.5, -9.6, -17.9, -18.5,
                ]);
                80.0
            }
            _ => {
                specials.extend([
                    1e-300, -1e-300, 1e300, -1e300, 800.0, -800.0, 20.0, -20.5, -39.9, -40.5,
                ]);
                700.0
            }
        };
        for &n in &lens {
            let mut xs: Vec<f64> = specials.iter().copied().cycle().take(n / 3).collect();
            while xs.len() < n {
                let scale = [1.0, 10.0, big][xs.len() % 3];
                xs.push(r.uniform(-scale, scale));
            }
            let x = tensor_of(d, &xs);
            for op in [
                Op::Exp,
                Op::Expm1,
                Op::Tanh,
                Op::Sigmoid,
                Op::Log,
                Op::Log1p,
                Op::Sin,
                Op::Cos,
            ] {
                let mut g = Graph::new("batched");
                let i = g.add_input("x", TensorType::new(d, vec![n])).unwrap();
                let y = g.push(op, vec![i], Attrs::None).unwrap();
                g.set_outputs(vec![y]);
                // Arguments the in-loop code sends to libm make it rerun their whole block
                // (the other test below covers them): none here.
                let x = if xs.iter().any(|&v| libm_lane(op, d, v)) {
                    let ok: Vec<f64> = xs
                        .iter()
                        .map(|&v| if libm_lane(op, d, v) { 0.75 } else { v })
                        .collect();
                    tensor_of(d, &ok)
                } else {
                    x.clone()
                };
                same(&g, std::slice::from_ref(&x), &format!("{op} {d} n={n}"));
            }
            // Dependent calls, a reduction and a gradient in one loop.
            let b = gradlift::GraphBuilder::new("mixed");
            let v = b.input("x", d, &[n]);
            let t = (v * 0.01).exp().tanh() + (v * 0.5).sigmoid() * (v * 0.1).expm1().tanh();
            let s = t.sum();
            let gr = b.grad(s, &[v]).unwrap();
            let g = b.into_graph(&[t.id(), s.id(), gr[0].id()]).unwrap();
            same(&g, std::slice::from_ref(&x), &format!("mixed {d} n={n}"));
            // The same with the logarithms and the trigonometric functions (softplus-like and
            // periodic terms, where they are finite), value, sum and gradient.
            let b = gradlift::GraphBuilder::new("mixed2");
            let v = b.input("x", d, &[n]);
            let t = (v * 0.01).exp().log1p() + (v * v + 1.0).log() * (v * 0.3).sin()
                - (v * 0.2).cos().tanh();
            let s = t.sum();
            let gr = b.grad(s, &[v]).unwrap();
            let g = b.into_graph(&[t.id(), s.id(), gr[0].id()]).unwrap();
            // Huge finite arguments would send sin/cos blocks to libm (see above).
            let ok: Vec<f64> = xs
                .iter()
                .map(|&v| {
                    if v.is_finite() && v.abs() > 1e5 {
                        0.5
                    } else {
                        v
                    }
                })
                .collect();
            same(&g, &[tensor_of(d, &ok)], &format!("mixed2 {d} n={n}"));
        }
        // More independent calls than a chunk has scratch areas for.
        let b = gradlift::GraphBuilder::new("many");
        let v = b.input("x", d, &[2500]);
        let mut acc = v.tanh();
        for k in 0..24 {
            acc = acc + (v * (0.1 * f64::from(k))).exp() * (v + f64::from(k)).tanh();
        }
        let g = b.into_graph(&[acc.id()]).unwrap();
        let ins = random_inputs(&g, 4);
        same(&g, &ins, &format!("many {d}"));
        // A 2-D loop whose rows are staged, with a broadcast row operand.
        let (rows, cols) = (3, 1500);
        let b = gradlift::GraphBuilder::new("rows");
        let a = b.input("a", d, &[rows, cols]);
        let c = b.input("c", d, &[cols]);
        let y = (a * c).exp() + (a - c).tanh();
        let red = y.sum_axes(&[1]);
        let g = b.into_graph(&[y.id(), red.id()]).unwrap();
        let ins = random_inputs(&g, 3);
        same(&g, &ins, &format!("rows {d}"));
    }
}

/// Where the vector code needs libm, a staged loop gives libm's value for that element alone
/// (an ordinary vector loop reruns its whole block with libm): every element is either the
/// in-loop fast value (checked against a kernel run on the same input with the libm-range
/// arguments replaced) or, for the libm-range arguments, the value of the libm path (an
/// `exact_math` kernel).
#[test]
fn batched_transcendentals_use_libm_exactly_where_the_vector_code_cannot() {
    let n = 4096 + 5;
    let mut r = Rng(12);
    for d in [DType::F32, DType::F64] {
        for op in [Op::Exp, Op::Expm1, Op::Sigmoid, Op::Log, Op::Sin, Op::Cos] {
            let (lo, hi) = match (op, d) {
                (Op::Exp, DType::F32) => (87.0, 88.7),
                (Op::Exp, _) => (708.0, 709.7),
                (Op::Expm1, DType::F32) => (88.0, 88.7),
                (Op::Expm1, _) => (709.0, 709.7),
                (Op::Sigmoid, DType::F32) => (-88.7, -87.0),
                (Op::Sigmoid, _) => (-709.7, -708.0),
                // Positive subnormals.
                (Op::Log, DType::F32) => (1e-44, 1.1e-38),
                (Op::Log, _) => (1e-320, 2.2e-308),
                // Beyond 2^20.
                _ => (-1e9, 1e9),
            };
            let xs: Vec<f64> = (0..n)
                .map(|i| {
                    if i % 7 == 3 {
                        r.uniform(lo, hi)
                    } else {
                        r.uniform(-5.0, 5.0)
                    }
                })
                .collect();
            assert!(xs.iter().any(|&x| libm_lane(op, d, x)));
            let cleaned: Vec<f64> = xs
                .iter()
                .map(|&x| if libm_lane(op, d, x) { 0.25 } else { x })
                .collect();
            let mut g = Graph::new("libm");
            let i = g.add_input("x", TensorType::new(d, vec![n])).unwrap();
            let y = g.push(op, vec![i], Attrs::None).unwrap();
            g.set_outputs(vec![y]);
            let x = tensor_of(d, &xs);
            let got = jit::compile(&g)
                .unwrap()
                .run(std::slice::from_ref(&x))
                .unwrap();
            let fast = jit::compile_with(&g, &unbatched())
                .unwrap()
                .run(&[tensor_of(d, &cleaned)])
                .unwrap();
            let slow = jit::compile_with(&g, &exact())
                .unwrap()
                .run(std::slice::from_ref(&x))
                .unwrap();
            let (got, fast, slow) = (
                got[0].to_f64_vec(),
                fast[0].to_f64_vec(),
                slow[0].to_f64_vec(),
            );
            for j in 0..n {
                let want = if libm_lane(op, d, xs[j]) {
                    slow[j]
                } else {
                    fast[j]
                };
                assert_eq!(
                    got[j].to_bits(),
                    want.to_bits(),
                    "{op} {d} at {j}: x = {}",
                    xs[j]
                );
            }
        }
    }
}
