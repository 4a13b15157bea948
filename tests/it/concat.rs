//! Concats read in place (the plan's pieces): slice adjoints (whose zero padding is built from
//! `concat`), concats of three or more pieces on any axis, nested concats, pieces broadcast by
//! elementwise readers, reductions that do and do not reduce a cut axis, batched cotangents,
//! large parallel groups; f32 and f64, optimized and not. With `exact_math` the JIT must equal
//! the interpreter bitwise; by default elementwise outputs are bitwise too and sums (always of
//! non-negative terms here) are within the documented summation bound `n·ε·Σ|xᵢ|`.

use crate::fuzz_check::same_bits;
use crate::random::{Rng, input_values};
use gradlift::jit::{self, JitConfig};
use gradlift::opt::{self, OptConfig};
use gradlift::{DType, Graph, GraphBuilder, Op, Tensor, TensorType, Var, interp};

fn exact() -> JitConfig {
    JitConfig {
        exact_math: true,
        ..JitConfig::default()
    }
}

/// How an output may differ from the interpreter's without `exact_math`.
#[derive(Clone, Copy)]
enum Tol {
    /// A sum of `n` non-negative terms per element: within `(n + 1)·ε·|y|` (for such terms
    /// `Σ|xᵢ|` is the sum itself; one more ε for the rounding of `y`).
    Sum(usize),
    /// A `reduce_max`/`reduce_min`: equal as numbers (the sign of a zero may differ).
    Extreme,
}

/// Compiles `g` (and its optimized form) with `cfg`, runs it on `ins` and compares every
/// output with the interpreter: bitwise, except the outputs listed in `tol` when `cfg` is not
/// exact.
fn check_cfg(g: &Graph, ins: &[Tensor], tol: &[(usize, Tol)], cfg: &JitConfig) {
    let mut o = g.clone();
    opt::optimize(&mut o, &OptConfig::default());
    for g in [g, &o] {
        let want = interp::run(g, ins).expect("interpreter runs");
        let k = jit::compile_with(g, cfg).unwrap_or_else(|e| panic!("{}: {e:?}", g.name));
        let got = k.run(ins).expect("kernel runs");
        for (i, (w, o)) in want.iter().zip(&got).enumerate() {
            let ok = match tol.iter().find(|s| s.0 == i) {
                Some(&(_, Tol::Extreme)) if !cfg.exact_math => {
                    w.ty() == o.ty()
                        && w.to_f64_vec()
                            .iter()
                            .zip(o.to_f64_vec())
                            .all(|(&a, b)| a == b || (a.is_nan() && b.is_nan()))
                }
                Some(&(_, Tol::Sum(n))) if !cfg.exact_math => {
                    let eps = if w.dtype() == DType::F32 {
                        f64::from(f32::EPSILON)
                    } else {
                        f64::EPSILON
                    };
                    w.ty() == o.ty()
                        && w.to_f64_vec().iter().zip(o.to_f64_vec()).all(|(&a, b)| {
                            (a - b).abs() <= (n + 1) as f64 * eps * a.abs().max(b.abs())
                        })
                }
                _ => same_bits(w, o),
            };
            let mode = if cfg.exact_math { "exact" } else { "default" };
            assert!(
                ok,
                "{} ({mode}): output {i}\n want {w:?}\n got  {o:?}\n{}",
                g.name,
                gradlift::ir::text::print(g)
            );
        }
    }
}

fn check(g: &Graph, ins: &[Tensor], tol: &[(usize, Tol)]) {
    check_cfg(g, ins, tol, &exact());
    check_cfg(g, ins, tol, &JitConfig::default());
}

/// A random shape of rank 1 to 4 with one long axis (so that boxes have vector loops, unrolled
/// bodies and tails) at a random position.
fn shape(r: &mut Rng) -> Vec<usize> {
    let rank = 1 + r.below(4);
    let mut s: Vec<usize> = (0..rank).map(|_| 1 + r.below(5)).collect();
    let long = r.below(rank);
    s[long] = 1 + r.below(70);
    s
}

/// `[start, stop)` per axis: the whole axis one time in three, else a random non-empty range.
fn window(r: &mut Rng, s: &[usize]) -> (Vec<usize>, Vec<usize>) {
    s.iter()
        .map(|&d| {
            if r.one_in(3) {
                (0, d)
            } else {
                let a = r.below(d);
                (a, a + 1 + r.below(d - a))
            }
        })
        .unzip()
}

/// A shape that broadcasts to `s`: some axes 1, maybe fewer leading axes.
fn broadcastable(r: &mut Rng, s: &[usize]) -> Vec<usize> {
    let drop = r.below(s.len() + 1);
    s[drop..]
        .iter()
        .map(|&d| if r.one_in(2) { 1 } else { d })
        .collect()
}

/// `y = Σⱼ Σ (sⱼ·wⱼ − sⱼ²/2)²` over random (multi-axis) slices `sⱼ` of one input `x` and
/// broadcast weights `wⱼ`, and `∂y/∂x`: a sum of zero-padded cotangents, one nested concat per
/// sliced axis. Returns the graph and the number of terms of `y`.
fn slices_case(seed: u64, dtype: DType) -> (Graph, usize) {
    let mut r = Rng(seed);
    let s = shape(&mut r);
    let b = GraphBuilder::new(&format!("slices_{seed}_{dtype}"));
    let x = b.input("x", dtype, &s);
    let mut y: Option<Var<'_>> = None;
    let mut terms = 0;
    for j in 0..1 + r.below(3) {
        let (start, stop) = window(&mut r, &s);
        let sl = x.slice(&start, &stop);
        let ss: Vec<usize> = start.iter().zip(&stop).map(|(a, b)| b - a).collect();
        terms += ss.iter().product::<usize>();
        let w = b.input(&format!("w{j}"), dtype, &broadcastable(&mut r, &ss));
        let part = (sl * w - sl * sl * 0.5).powi(2).sum();
        y = Some(match y {
            None => part,
            Some(a) => a + part,
        });
    }
    let y = y.expect("at least one slice");
    let gx = b.grad(y, &[x]).expect("differentiable")[0];
    (b.into_graph(&[y.id(), gx.id()]).expect("valid"), terms)
}

#[test]
fn slice_adjoints_match_the_interpreter() {
    for seed in 0..120u64 {
        for dtype in [DType::F32, DType::F64] {
            let (g, terms) = slices_case(seed, dtype);
            let ins = input_values(&g, seed);
            check(&g, &ins, &[(0, Tol::Sum(terms))]);
        }
    }
}

#[test]
fn batched_slice_adjoints_match_the_interpreter() {
    // The cotangent carries a leading batch axis, so every pad is a concat one axis further in.
    for seed in 0..40u64 {
        for dtype in [DType::F32, DType::F64] {
            let mut r = Rng(seed ^ 0x5EED);
            let s = shape(&mut r);
            let (start, stop) = window(&mut r, &s);
            let ss: Vec<usize> = start.iter().zip(&stop).map(|(a, b)| b - a).collect();
            let k = 1 + r.below(4);
            let b = GraphBuilder::new(&format!("batched_{seed}_{dtype}"));
            let x = b.input("x", dtype, &s);
            let w = b.input("w", dtype, &broadcastable(&mut r, &ss));
            let sl = x.slice(&start, &stop);
            let out = sl * sl * w;
            let mut cs = vec![k];
            cs.extend(&ss);
            let ct = b.input("ct", dtype, &cs);
            let gx = b
                .vjp_batched(&[out], &[x], &[ct], k)
                .expect("differentiable")[0];
            let g = b.into_graph(&[out.id(), gx.id()]).expect("valid");
            let ins = input_values(&g, seed);
            check(&g, &ins, &[]);
        }
    }
}

/// `concat` of 3 to 5 pieces along a random axis: inputs, splat and non-splat constants,
/// slices (views), computed values and a nested concat along another axis. Readers: an
/// elementwise op with a broadcast operand, a `select` on a concat of bools, a sum over axes
/// the pieces do not cut (fused with the pieces) and one over the concat axis (after the
/// pieces), a max over the concat axis read straight from the concat (which needs it in
/// memory) and over other axes (pieces), and sometimes the concat itself as an output.
fn concat_case(seed: u64, dtype: DType) -> (Graph, Vec<(usize, Tol)>) {
    let mut r = Rng(seed);
    let s = shape(&mut r);
    let rank = s.len();
    let axis = r.below(rank);
    let b = GraphBuilder::new(&format!("concat_{seed}_{dtype}_axis{axis}"));
    let nested_axis = (axis + 1 + r.below(rank)) % rank;
    let mut parts = Vec::new();
    let mut masks = Vec::new();
    let mut total = 0;
    for p in 0..3 + r.below(3) {
        let long = r.one_in(2);
        let len = 1 + r.below(if long { 40 } else { 3 });
        total += len;
        let mut ps = s.clone();
        ps[axis] = len;
        let t = TensorType::new(dtype, ps.clone());
        let v = match r.below(6) {
            0 => b.input(&format!("p{p}"), dtype, &ps),
            1 => b.constant(Tensor::splat(&t, if r.one_in(2) { 0.0 } else { 1.5 })),
            2 => b.constant(Tensor::from_fn(&t, |i| i as f64 * 0.25 - 1.0)),
            3 => {
                // A slice of a larger input, transposed on the way (a strided view).
                let mut big: Vec<usize> = ps.iter().map(|&d| d + 2).collect();
                big.reverse();
                let perm: Vec<usize> = (0..rank).rev().collect();
                let q = b.input(&format!("q{p}"), dtype, &big).transpose(&perm);
                let start = vec![1; rank];
                let stop: Vec<usize> = ps.iter().map(|&d| d + 1).collect();
                q.slice(&start, &stop)
            }
            4 => {
                let a = b.input(&format!("a{p}"), dtype, &ps);
                a * a - 0.5
            }
            _ => {
                // A nested concat along another axis (when that axis can be split).
                let d = ps[nested_axis];
                if nested_axis != axis && d >= 2 {
                    let cut = 1 + r.below(d - 1);
                    let mut s1 = ps.clone();
                    s1[nested_axis] = cut;
                    let mut s2 = ps.clone();
                    s2[nested_axis] = d - cut;
                    let t1 = b.input(&format!("n{p}"), dtype, &s1);
                    let t2 = b.constant(Tensor::splat(&TensorType::new(dtype, s2), 0.0));
                    b.concat(&[t1 * 2.0, t2], nested_axis)
                } else {
                    b.input(&format!("p{p}"), dtype, &ps)
                }
            }
        };
        let m = b.input(&format!("m{p}"), dtype, &ps);
        masks.push(m.gt(v));
        parts.push(v);
    }
    let c = b.concat(&parts, axis);
    let mut full = s.clone();
    full[axis] = total;
    let v = b.input("v", dtype, &broadcastable(&mut r, &full));
    let w = b.input("w", dtype, &broadcastable(&mut r, &full));
    let e = c * v + w;
    let sel = b.select(b.concat(&masks, axis), c, v);
    let sq = (c * v - w).powi(2);
    // Sum over axes other than the concat's (and the nested one's) axis: fused with pieces.
    let kept: Vec<usize> = (0..rank)
        .filter(|&a| a != axis && a != nested_axis && r.one_in(2))
        .collect();
    let n_kept: usize = kept.iter().map(|&a| full[a]).product();
    let fused_sum = sq.sum_axes(&kept);
    // Sum over the concat axis: the concat is materialized for it.
    let cut_sum = sq.sum_axes(&[axis]);
    // A second concat of the same parts (one graph node per concat, unless CSE merges them).
    let cut_max = b
        .concat(&parts, axis)
        .reduce(Op::ReduceMax, Some(&[axis]), false);
    let kept_max = c.reduce(Op::ReduceMin, Some(&kept), true);
    let mut outs = vec![
        e.id(),
        sel.id(),
        fused_sum.id(),
        cut_sum.id(),
        cut_max.id(),
        kept_max.id(),
    ];
    if r.one_in(3) {
        outs.push(c.id());
    }
    let g = b.into_graph(&outs).expect("valid");
    let tol = vec![
        (2, Tol::Sum(n_kept)),
        (3, Tol::Sum(total)),
        (4, Tol::Extreme),
        (5, Tol::Extreme),
    ];
    (g, tol)
}

#[test]
fn concats_of_many_pieces_match_the_interpreter() {
    for seed in 0..150u64 {
        for dtype in [DType::F32, DType::F64] {
            let (g, tol) = concat_case(seed, dtype);
            let ins = input_values(&g, seed);
            check(&g, &ins, &tol);
        }
    }
}

#[test]
fn large_pieces_in_parallel_groups_match_the_interpreter() {
    // Boxes large enough to run in blocks on several threads: a Rosenbrock along axis 1, a
    // two-axis slice adjoint, and a concat along axis 0 read by an elementwise op and by a
    // row sum (the reduction keeps the cut axis, so it runs in the boxes, serially).
    for dtype in [DType::F32, DType::F64] {
        let (m, n) = (400, 260);
        let b = GraphBuilder::new(&format!("large_{dtype}"));
        let x = b.input("x", dtype, &[m, n]);
        let y = b.input("y", dtype, &[m, n]);
        let hi = x.slice(&[0, 1], &[m, n]);
        let lo = x.slice(&[0, 0], &[m, n - 1]);
        let inner = x.slice(&[3, 2], &[m - 3, n - 10]);
        let yi = y.slice(&[3, 2], &[m - 3, n - 10]);
        let f1 = ((hi - lo * lo).powi(2) * 100.0 + (1.0 - lo).powi(2)).sum();
        let f2 = (inner * yi).powi(2).sum();
        let f = f1 + f2;
        let gx = b.grad(f, &[x]).expect("differentiable")[0];
        let c = b.concat(&[x, y, x * y], 0);
        let e = c * 2.0 + 1.0;
        let rows = c.powi(2).sum_axes(&[1]);
        let g = b
            .into_graph(&[f.id(), gx.id(), e.id(), rows.id()])
            .expect("valid");
        let ins = input_values(&g, 7);
        let terms = m * (n - 1) + (m - 6) * (n - 12);
        let tol = [(0, Tol::Sum(2 * terms)), (3, Tol::Sum(n))];
        check(&g, &ins, &tol);
        let k = jit::compile(&g).expect("compiles");
        assert!(k.stats().groups_parallel > 0, "{:?}", k.stats());
        for threads in [1, 3] {
            let cfg = JitConfig {
                threads,
                ..JitConfig::default()
            };
            check_cfg(&g, &ins, &tol, &cfg);
        }
    }
}
