//! A seeded random-graph generator for property and differential tests.
//!
//! [`generate`] builds a forward graph from a seed and a [`GenConfig`]: every non-leaf op,
//! dtypes f32/f64/bool/i32 (bool through comparisons, bool inputs and `select`; i32 through
//! index inputs and constants, `iota`, `argmax`/`argmin` and casts), ranks 0–4,
//! broadcasting between operands of different shapes, DAG reuse (operands picked from recent
//! nodes and, sometimes, from far back), constants, and `cast` between float dtypes. With
//! [`GenConfig::safe`], operands of ops with a restricted domain are guarded so values stay
//! finite and moderate (finite differences are then meaningful):
//!
//! | op | guard on the operand |
//! | --- | --- |
//! | `log`, `sqrt`, `rsqrt`, `log1p`, `recip`, divisor of `div` | `pos(x) = sqrt(x·x + 0.25)` (≥ 0.5, smooth) |
//! | `exp`, `expm1`, `tan`, exponent of `pow` | `tanh(x)` |
//! | second operand of `atan2` (keeps the point off the origin) | `pos(x)` |
//! | base of `pow`, base of `powi` with `n < 0` | `pos(tanh(x))` (in [0.5, 1.12)) |
//! | base of `powi` with `n > 1`, operands of `mul`, `matmul` | `tanh(x)` (half the time for `mul`) |
//!
//! With [`GenConfig::smooth`], only ops that are differentiable everywhere on the guarded
//! domain are generated (no `abs`, `relu`, `max`, `min`, `floor`, `ceil`, `round`, `sign`,
//! comparisons, `select`, `reduce_max`/`reduce_min`, `cast`), in f64 only: these are the graphs whose gradients the
//! differential test checks against central finite differences.
//!
//! The first output of a generated graph is always a float scalar "loss" (a sum of reductions
//! of late float nodes), so derivative passes can be appended by [`Case::build`]: reverse mode,
//! reverse over reverse (the gradient of `Σ_k sum(∂loss/∂x_k · w_k)` with constant weights, a
//! Hessian-vector product), forward mode (a JVP along constant tangents), or forward over
//! reverse (`autodiff::hvp`, the same Hessian-vector product by the other route).
//!
//! With [`GenConfig::syntax`], the graphs are for the text format rather than for evaluation:
//! constants of every dtype with special and extreme values (NaN, infinities, subnormals,
//! random bit patterns, `i32::MIN`), first operands of any dtype, a random graph name, and
//! value names of both forms (words and digits) or none, on inputs, intermediate nodes and
//! outputs. Values are then neither finite nor moderate.
//!
//! Input values come from [`input_values`], seeded by the input's *name*, so a shrunk graph
//! that keeps an input sees the same values for it.

#![allow(dead_code)] // each test module uses a part of the generator

use gradlift::ir::{Attrs, DType, Graph, GroupParam, NodeId, Op, TensorType};
use gradlift::{Data, Tensor, autodiff};
use std::collections::HashSet;

pub use gradlift::testutil::Rng;

/// Input and constant shapes: ranks 0 to 4, with size-1 axes for broadcasting.
pub const SHAPES: [&[usize]; 13] = [
    &[],
    &[1],
    &[3],
    &[2, 3],
    &[1, 3],
    &[2, 1],
    &[3, 2],
    &[2, 2, 3],
    &[2, 1, 3],
    &[1, 2, 1],
    &[2, 1, 3, 2],
    &[1, 2, 1, 2],
    &[2, 2, 1, 3],
];

/// The highest rank the generator creates.
pub const MAX_RANK: usize = 4;

/// Ops that are differentiable everywhere on the guarded domain (used by smooth cases).
pub const SMOOTH_OPS: [Op; 32] = [
    Op::Neg,
    Op::Exp,
    Op::Log,
    Op::Sqrt,
    Op::Rsqrt,
    Op::Sin,
    Op::Cos,
    Op::Tanh,
    Op::Sigmoid,
    Op::Recip,
    Op::Log1p,
    Op::Expm1,
    Op::Tan,
    Op::Erf,
    Op::Powi,
    Op::Add,
    Op::Sub,
    Op::Mul,
    Op::Div,
    Op::Pow,
    Op::Atan2,
    Op::ReduceSum,
    Op::ReduceMean,
    Op::Reshape,
    Op::Transpose,
    Op::Broadcast,
    Op::Slice,
    Op::Concat,
    Op::Cumsum,
    Op::Matmul,
    Op::Gather,
    Op::ScatterAdd,
];

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Ops attempted (most succeed; some combinations are skipped).
    pub steps: usize,
    /// Guard restricted domains (see the module docs).
    pub safe: bool,
    /// Only smooth ops, f64 only (implies `safe`).
    pub smooth: bool,
    /// Derivatives appended by [`Case::build`], one of the `ORDER_*` constants.
    pub order: u8,
    /// Cover the text format instead of keeping values finite (see the module docs).
    pub syntax: bool,
    /// Generate loops (`scan`, see [`crate::random_loops`]).
    pub loops: bool,
}

/// No derivatives.
pub const ORDER_NONE: u8 = 0;
/// Reverse mode: the gradient of the loss.
pub const ORDER_REVERSE: u8 = 1;
/// Reverse over reverse: also the gradient of `s2 = Σ_k sum(∂loss/∂x_k · w_k)`, a
/// Hessian-vector product.
pub const ORDER_REVERSE_REVERSE: u8 = 2;
/// Forward mode: the JVP of the loss along constant tangents.
pub const ORDER_FORWARD: u8 = 3;
/// Forward over reverse: the gradient and `autodiff::hvp` (the same Hessian-vector product as
/// [`ORDER_REVERSE_REVERSE`], by the other route), plus `s2` for checking it.
pub const ORDER_FORWARD_REVERSE: u8 = 4;

/// A generated test case: a forward graph and the derivatives to append.
#[derive(Clone, Debug)]
pub struct Case {
    /// The forward graph. Output 0 is a float scalar when `order > 0`. Outputs are named
    /// `out0`, `out1`, ...
    pub forward: Graph,
    /// One of the `ORDER_*` constants (see [`GenConfig::order`]).
    pub order: u8,
    /// Built from smooth ops only (eligible for the finite-difference check).
    pub smooth: bool,
    /// Seed of the input values and of the second-order weights.
    pub seed: u64,
}

/// What a derivative output of a built case claims to be.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// Output `d` is `∂(output f)/∂(input x)` (inputs in `Graph::inputs` order).
    Partial {
        /// Output index of the differentiated scalar.
        f: usize,
        /// Index of the input.
        x: usize,
        /// Output index of the gradient.
        d: usize,
    },
    /// Output `d` (a scalar) is the derivative of output `f` along the direction `dirs`: for
    /// each float input `(index, tangent)`, `Σ_x ⟨∂f/∂x, tangent⟩`.
    Directional {
        /// Output index of the differentiated scalar.
        f: usize,
        /// Output index of the directional derivative.
        d: usize,
        /// The tangent of each float input.
        dirs: Vec<(usize, Tensor)>,
    },
}

impl Claim {
    /// The output index of the differentiated scalar.
    pub fn f(&self) -> usize {
        match self {
            Claim::Partial { f, .. } | Claim::Directional { f, .. } => *f,
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Appends `Σ_k sum(g_k · w_k)` (cast to `dtype`) for constant weights `w_k` drawn from `r`;
/// returns it and the weight nodes.
fn weighted_sum(
    g: &mut Graph,
    grads: &[NodeId],
    dtype: DType,
    r: &mut Rng,
) -> Result<(NodeId, Vec<NodeId>), String> {
    let mut s2: Option<NodeId> = None;
    let mut ws = Vec::new();
    for &d in grads {
        let ty = g.ty(d).clone();
        let w = g.add_const(Tensor::from_fn(&ty, |_| r.uniform(-1.0, 1.0)));
        ws.push(w);
        let p = g.push(Op::Mul, vec![d, w], Attrs::None).map_err(err)?;
        let axes = (0..ty.rank()).collect();
        let s = g
            .push(
                Op::ReduceSum,
                vec![p],
                Attrs::Reduce {
                    axes,
                    keepdims: false,
                },
            )
            .map_err(err)?;
        let s = if ty.dtype == dtype {
            s
        } else {
            g.push(Op::Cast, vec![s], Attrs::Cast { to: dtype })
                .map_err(err)?
        };
        s2 = Some(match s2 {
            None => s,
            Some(a) => g.push(Op::Add, vec![a, s], Attrs::None).map_err(err)?,
        });
    }
    Ok((s2.ok_or("no gradients")?, ws))
}

impl Case {
    /// The forward graph with the derivative passes appended, and what each derivative output
    /// claims to be. Outputs: the forward outputs, then by order: the gradient per float input
    /// (reverse); `s2` and its gradients (reverse over reverse); the JVP of the loss (forward);
    /// the gradients, `s2` and `hvp` (forward over reverse). Every output is a distinct named
    /// node.
    ///
    /// # Errors
    /// Whatever `autodiff` or the graph API reports (a bug: generated cases are valid).
    pub fn build(&self) -> Result<(Graph, Vec<Claim>), String> {
        let mut g = self.forward.clone();
        let mut outs: Vec<NodeId> = g.outputs().to_vec();
        let mut claims = Vec::new();
        let wrt: Vec<(usize, NodeId)> = g
            .inputs()
            .into_iter()
            .enumerate()
            .filter(|&(_, i)| g.ty(i).dtype.is_float())
            .collect();
        let ids: Vec<NodeId> = wrt.iter().map(|&(_, i)| i).collect();
        if self.order == ORDER_NONE || outs.is_empty() || ids.is_empty() {
            return finish(g, outs, claims);
        }
        let loss = outs[0];
        let ld = g.ty(loss).dtype;
        let mut r = Rng(self.seed ^ 0x005E_C04D);
        if self.order == ORDER_FORWARD {
            let mut dirs = Vec::new();
            let mut tangents = Vec::new();
            for &(k, x) in &wrt {
                let ty = g.ty(x).clone();
                let t = Tensor::from_fn(&ty, |_| r.uniform(-1.0, 1.0));
                tangents.push(g.add_const(t.clone()));
                dirs.push((k, t));
            }
            let dy = autodiff::jvp(&mut g, &[loss], &ids, &tangents).map_err(err)?[0];
            claims.push(Claim::Directional {
                f: 0,
                d: outs.len(),
                dirs,
            });
            outs.push(dy);
            return finish(g, outs, claims);
        }
        let grads = autodiff::grad(&mut g, loss, &ids).map_err(err)?;
        for (&(k, _), &d) in wrt.iter().zip(&grads) {
            claims.push(Claim::Partial {
                f: 0,
                x: k,
                d: outs.len(),
            });
            outs.push(d);
        }
        if self.order == ORDER_REVERSE {
            return finish(g, outs, claims);
        }
        let (s2, weights) = weighted_sum(&mut g, &grads, ld, &mut r)?;
        let f = outs.len();
        outs.push(s2);
        let second = if self.order == ORDER_FORWARD_REVERSE {
            autodiff::hvp(&mut g, loss, &ids, &weights).map_err(err)?
        } else {
            autodiff::grad(&mut g, s2, &ids).map_err(err)?
        };
        for (&(k, _), &d) in wrt.iter().zip(&second) {
            claims.push(Claim::Partial {
                f,
                x: k,
                d: outs.len(),
            });
            outs.push(d);
        }
        finish(g, outs, claims)
    }
}

/// Names the outputs `out0`, `out1`, ...: `set_named_outputs` copies shared or input outputs so
/// every output is a distinct node.
fn finish(
    mut g: Graph,
    outs: Vec<NodeId>,
    claims: Vec<Claim>,
) -> Result<(Graph, Vec<Claim>), String> {
    let names: Vec<String> = (0..outs.len()).map(|k| format!("out{k}")).collect();
    let named: Vec<(&str, NodeId)> = names.iter().map(String::as_str).zip(outs).collect();
    g.set_named_outputs(&named).map_err(err)?;
    Ok((g, claims))
}

/// Picks a node satisfying `pred`, preferring recent ones and sometimes reaching far back.
pub(crate) fn pick_where(
    r: &mut Rng,
    g: &Graph,
    pred: impl Fn(&TensorType) -> bool,
) -> Option<NodeId> {
    let cands: Vec<usize> = (0..g.len()).filter(|&i| pred(&g.nodes()[i].ty)).collect();
    if cands.is_empty() {
        return None;
    }
    let k = if r.one_in(3) {
        r.below(cands.len())
    } else {
        cands.len() - 1 - r.below(cands.len().min(4))
    };
    Some(NodeId(cands[k] as u32))
}

thread_local! {
    /// Results with more elements than this are skipped (see [`random_graph_shaped`]).
    static MAX_NUMEL: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

pub(crate) fn push(g: &mut Graph, op: Op, inputs: Vec<NodeId>, attrs: Attrs) -> Option<NodeId> {
    let tys: Vec<&TensorType> = inputs.iter().map(|&i| g.ty(i)).collect();
    if gradlift::ops::infer(op, &tys, &attrs).is_ok_and(|t| t.numel() > MAX_NUMEL.get()) {
        return None;
    }
    g.push(op, inputs, attrs).ok()
}

pub(crate) fn tanh(g: &mut Graph, x: NodeId) -> NodeId {
    push(g, Op::Tanh, vec![x], Attrs::None).expect("tanh of a float")
}

/// `sqrt(x·x + 0.25)`: smooth and at least 0.5.
fn pos(g: &mut Graph, x: NodeId) -> NodeId {
    let d = g.ty(x).dtype;
    let sq = push(g, Op::Mul, vec![x, x], Attrs::None).expect("x*x");
    let c = g.add_scalar(d, 0.25);
    let s = push(g, Op::Add, vec![sq, c], Attrs::None).expect("+0.25");
    push(g, Op::Sqrt, vec![s], Attrs::None).expect("sqrt")
}

fn random_perm(r: &mut Rng, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, r.below(i + 1));
    }
    p
}

/// A random shape `b` can have to broadcast with `a` (an existing shape, a suffix of it, or
/// `a` with some axes set to 1).
fn broadcast_partner(r: &mut Rng, a: &[usize]) -> Vec<usize> {
    match r.below(3) {
        0 => a[r.below(a.len() + 1)..].to_vec(),
        1 => a.iter().map(|&d| if r.one_in(2) { 1 } else { d }).collect(),
        _ => a.to_vec(),
    }
}

/// An `i32` constant of `shape` with indices in `-1..=n` (the ends are clamped).
fn index_const(r: &mut Rng, g: &mut Graph, shape: Vec<usize>, n: usize) -> NodeId {
    let ty = TensorType::new(DType::I32, shape);
    let mut rr = Rng(r.next_u64());
    g.add_const(Tensor::from_fn(&ty, |_| rr.below(n + 2) as f64 - 1.0))
}

/// Operands and attributes for the indexing ops and `random_uniform` applied to `a` (or, for
/// `iota` and `random_uniform`, with a random result type), or `None` to skip.
fn indexing(
    r: &mut Rng,
    g: &mut Graph,
    op: Op,
    a: NodeId,
    dtype: DType,
    shapes: &[Vec<usize>],
) -> Option<(Vec<NodeId>, Attrs)> {
    let ta = g.ty(a).clone();
    let rank = ta.rank();
    let shape = shapes[r.below(shapes.len())].clone();
    Some(match op {
        Op::Gather => {
            let axis = r.below(rank);
            let idx = match pick_where(r, g, |t| t.dtype == DType::I32) {
                Some(i) if r.one_in(2) => i,
                _ => index_const(r, g, shape, ta.shape[axis]),
            };
            (vec![a, idx], Attrs::Axis { axis })
        }
        Op::ScatterAdd => {
            let axis = r.below(rank + 1);
            let k = r.below(rank - axis + 1).min(2);
            let size = 1 + r.below(4);
            let idx = index_const(r, g, ta.shape[axis..axis + k].to_vec(), size);
            (vec![a, idx], Attrs::Scatter { axis, size })
        }
        Op::Argmax | Op::Argmin => (
            vec![a],
            Attrs::Axis {
                axis: r.below(rank),
            },
        ),
        Op::Iota => {
            if shape.is_empty() {
                return None;
            }
            let d = if r.one_in(2) { DType::I32 } else { dtype };
            let axis = r.below(shape.len());
            let ty = TensorType::new(d, shape);
            (vec![], Attrs::Iota { ty, axis })
        }
        Op::RandomUniform => {
            let seed = g.add_const(Tensor::from_i32(vec![], vec![r.below(1000) as i32]));
            let counter = g.add_const(Tensor::from_i32(vec![], vec![r.below(3) as i32]));
            let ty = TensorType::new(dtype, shape);
            (vec![seed, counter], Attrs::Random { ty })
        }
        _ => unreachable!("indexing ops only"),
    })
}

/// A float that is often special: signed zeros, tiny, huge, subnormal, infinite, NaN.
fn random_f64(r: &mut Rng) -> f64 {
    const SPECIAL: [f64; 10] = [
        0.0,
        -0.0,
        1.0,
        0.1,
        1e-7,
        1e300,
        5e-324,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    if r.chance(1, 2) {
        SPECIAL[r.below(SPECIAL.len())]
    } else {
        let x = f64::from_bits(r.next_u64());
        if x.is_nan() { f64::NAN } else { x }
    }
}

/// A constant of type `ty` with [`random_f64`] values (splat a third of the time).
fn random_const(r: &mut Rng, ty: &TensorType) -> Tensor {
    let n = ty.numel();
    let splat = r.chance(1, 3);
    let first = random_f64(r);
    let mut vals: Vec<f64> = (0..n)
        .map(|_| if splat { first } else { random_f64(r) })
        .collect();
    let data = match ty.dtype {
        DType::F64 => Data::F64(vals),
        DType::F32 => {
            // NaN payloads do not survive text, so every NaN is the canonical one.
            let canon = |y: f32| if y.is_nan() { f32::NAN } else { y };
            let first = canon(first as f32);
            Data::F32(
                vals.iter_mut()
                    .map(|x| match (splat, r.chance(1, 2)) {
                        (true, _) => first,
                        (false, true) => canon(f32::from_bits(r.next_u64() as u32)),
                        (false, false) => canon(*x as f32),
                    })
                    .collect(),
            )
        }
        DType::Bool => {
            let b = r.chance(1, 2);
            Data::Bool(
                (0..n)
                    .map(|_| if splat { b } else { r.chance(1, 2) })
                    .collect(),
            )
        }
        DType::I32 => Data::I32(
            vals.iter()
                .map(|_| match r.below(4) {
                    0 => i32::MIN,
                    1 => i32::MAX,
                    _ => r.below(9) as i32 - 4,
                })
                .collect(),
        ),
    };
    Tensor::new(ty.shape.clone(), data)
}

/// A fresh value name, a word with a digit or only digits, or `None` after four clashes.
fn random_name(r: &mut Rng, used: &mut HashSet<String>, digits: bool) -> Option<String> {
    const WORDS: [&str; 8] = ["x", "y", "loss", "_t", "h1", "Grad_2", "input", "output"];
    for _ in 0..4 {
        let name = if digits {
            r.below(40).to_string()
        } else {
            format!("{}{}", WORDS[r.below(WORDS.len())], r.below(5))
        };
        if used.insert(name.clone()) {
            return Some(name);
        }
    }
    None
}

/// An input's name: `plain`, or in syntax mode a drawn one (the fallback ends in `_`, which
/// drawn names never do).
fn input_name(r: &mut Rng, used: &mut HashSet<String>, syntax: bool, plain: String) -> String {
    let name = if syntax {
        let digits = r.one_in(3);
        random_name(r, used, digits).unwrap_or(plain + "_")
    } else {
        plain
    };
    used.insert(name.clone());
    name
}

/// Names a third of the nodes (syntax mode).
pub(crate) fn maybe_name(r: &mut Rng, g: &mut Graph, used: &mut HashSet<String>, id: NodeId) {
    if r.one_in(3)
        && let Some(name) = random_name(r, used, false)
    {
        g.set_name(id, Some(&name));
    }
}

/// Generates a case (see the module docs).
pub fn generate(seed: u64, cfg: &GenConfig) -> Case {
    let shapes: Vec<Vec<usize>> = SHAPES.iter().map(|s| s.to_vec()).collect();
    generate_with(seed, cfg, &shapes)
}

/// [`generate`] with input and constant shapes drawn from `shapes`.
pub fn generate_with(seed: u64, cfg: &GenConfig, shapes: &[Vec<usize>]) -> Case {
    let mut r = Rng(seed);
    let smooth = cfg.smooth;
    let safe = cfg.safe || smooth;
    let dtype = if smooth || r.one_in(2) {
        DType::F64
    } else {
        DType::F32
    };
    let other = if dtype == DType::F64 {
        DType::F32
    } else {
        DType::F64
    };
    let syntax = cfg.syntax;
    let mut g = Graph::new(if syntax {
        format!("g{}", r.below(100))
    } else {
        "random".to_string()
    });
    let mut used: HashSet<String> = HashSet::new();
    let n_inputs = 1 + r.below(3);
    for i in 0..n_inputs {
        let shape = shapes[r.below(shapes.len())].clone();
        let name = input_name(&mut r, &mut used, syntax, format!("x{i}"));
        g.add_input(&name, TensorType::new(dtype, shape))
            .expect("fresh name");
    }
    if !smooth && r.one_in(3) {
        let shape = shapes[r.below(shapes.len())].clone();
        let name = input_name(&mut r, &mut used, syntax, "flag".into());
        g.add_input(&name, TensorType::new(DType::Bool, shape))
            .expect("fresh name");
    }
    if !smooth && r.one_in(3) {
        let shape = shapes[r.below(shapes.len())].clone();
        let name = input_name(&mut r, &mut used, syntax, "idx".into());
        g.add_input(&name, TensorType::new(DType::I32, shape))
            .expect("fresh name");
    }
    if r.one_in(2) {
        let shape = shapes[r.below(shapes.len())].clone();
        let ty = TensorType::new(dtype, shape);
        let t = if syntax {
            random_const(&mut r, &ty)
        } else {
            let mut rr = Rng(r.next_u64());
            Tensor::from_fn(&ty, |_| rr.uniform(-2.0, 2.0))
        };
        g.add_const(t);
    }
    let mut ops: Vec<Op> = if smooth {
        SMOOTH_OPS.to_vec()
    } else {
        Op::ALL[2..].to_vec()
    };
    if smooth && cfg.loops {
        ops.push(Op::Scan);
    }
    let is_float = |t: &TensorType| t.dtype.is_float();
    let mut ctx = Ctx {
        cfg,
        safe,
        dtype,
        other,
        shapes,
        ops,
        used,
        depth: 0,
    };
    for _ in 0..cfg.steps {
        random_step(&mut r, &mut g, &mut ctx);
    }
    let mut used = ctx.used;
    // Outputs: the loss (a sum of reductions of up to three late float nodes, in `dtype`), then
    // up to three late nodes of any dtype.
    let n = g.len();
    let late_float: Vec<NodeId> = (0..n)
        .rev()
        .filter(|&i| is_float(&g.nodes()[i].ty) && g.nodes()[i].op != Op::Input)
        .take(1 + r.below(3))
        .map(|i| NodeId(i as u32))
        .collect();
    let mut loss: Option<NodeId> = None;
    let terms: Vec<NodeId> = if late_float.is_empty() {
        vec![g.inputs()[0]]
    } else {
        late_float
    };
    for f in terms {
        let rank = g.ty(f).rank();
        let s = push(
            &mut g,
            Op::ReduceSum,
            vec![f],
            Attrs::Reduce {
                axes: (0..rank).collect(),
                keepdims: false,
            },
        )
        .expect("sum of a float node");
        let s = if g.ty(s).dtype == dtype {
            s
        } else {
            push(&mut g, Op::Cast, vec![s], Attrs::Cast { to: dtype }).expect("cast")
        };
        loss = Some(match loss {
            None => s,
            Some(l) => push(&mut g, Op::Add, vec![l, s], Attrs::None).expect("add scalars"),
        });
    }
    let mut outs = vec![loss.expect("at least one term")];
    let m = g.len();
    for k in 1..m.min(4) {
        let id = NodeId((m - 1 - k) as u32);
        if g.node(id).op != Op::Input && r.one_in(2) {
            outs.push(id);
        }
    }
    if syntax {
        // Outputs are always named: keep a node's name, else its index, a word or digits.
        for (k, &o) in outs.iter().enumerate() {
            if g.node(o).name.is_none() {
                let name = if r.one_in(2) && used.insert(o.0.to_string()) {
                    o.0.to_string()
                } else {
                    let digits = r.one_in(2);
                    random_name(&mut r, &mut used, digits).unwrap_or(format!("out{k}_"))
                };
                g.set_name(o, Some(&name));
            }
        }
        g.set_outputs(outs);
    } else {
        let names: Vec<String> = (0..outs.len()).map(|k| format!("out{k}")).collect();
        let named: Vec<(&str, NodeId)> = names.iter().map(String::as_str).zip(outs).collect();
        g.set_named_outputs(&named).expect("fresh output names");
    }
    Case {
        forward: g,
        order: cfg.order,
        smooth,
        seed,
    }
}

/// What every step of one graph shares.
pub(crate) struct Ctx<'c> {
    pub cfg: &'c GenConfig,
    pub safe: bool,
    /// The float dtype of the graph, and the other one.
    pub dtype: DType,
    pub other: DType,
    pub shapes: &'c [Vec<usize>],
    /// The ops drawn from.
    pub ops: Vec<Op>,
    /// Names taken (syntax mode).
    pub used: HashSet<String>,
    /// How deep in loop bodies this graph is (0: the generated graph).
    pub depth: usize,
}

/// Appends one random op (or a constant, in syntax mode) to `g`, or nothing when the drawn
/// combination does not apply.
pub(crate) fn random_step(r: &mut Rng, g: &mut Graph, ctx: &mut Ctx<'_>) {
    let (cfg, safe, dtype, other, shapes) = (ctx.cfg, ctx.safe, ctx.dtype, ctx.other, ctx.shapes);
    let (smooth, syntax) = (cfg.smooth, cfg.syntax);
    let used = &mut ctx.used;
    if syntax && r.one_in(6) {
        // A constant of any dtype, sometimes of an existing node's type.
        let ty = if r.one_in(2) {
            g.ty(NodeId(r.below(g.len()) as u32)).clone()
        } else {
            let dtypes = [DType::F32, DType::F64, DType::Bool, DType::I32];
            TensorType::new(dtypes[r.below(4)], shapes[r.below(shapes.len())].clone())
        };
        let t = random_const(r, &ty);
        let id = g.add_const(t);
        maybe_name(r, g, used, id);
        return;
    }
    let op = ctx.ops[r.below(ctx.ops.len())];
    if op == Op::Scan {
        if cfg.loops && ctx.depth < crate::random_loops::MAX_DEPTH {
            crate::random_loops::push_scan(r, g, ctx);
        }
        return;
    }
    // The first operand: a float node (any dtype for data movement and select branches, and
    // in syntax mode, where ill-typed picks are skipped).
    let Some(mut a) = pick_where(r, g, |t| match op {
        Op::Reshape | Op::Transpose | Op::Broadcast | Op::Slice | Op::Concat => true,
        Op::Cast => true,
        Op::Iota | Op::RandomUniform => true,
        Op::Gather | Op::Argmax | Op::Argmin => (syntax || t.dtype.is_float()) && t.rank() > 0,
        _ => syntax || t.dtype.is_float(),
    }) else {
        return;
    };
    let ta = g.ty(a).clone();
    let rank = ta.rank();
    // A partner of the same dtype whose shape broadcasts with `a`'s, or a fresh constant.
    let partner = |r: &mut Rng, g: &mut Graph| -> NodeId {
        let want = broadcast_partner(r, &ta.shape);
        let found = pick_where(r, g, |t| {
            t.dtype == ta.dtype && gradlift::ir::broadcast_shapes(&t.shape, &ta.shape).is_some()
        });
        match found {
            Some(b) if !r.one_in(4) => b,
            _ => {
                let ty = TensorType::new(ta.dtype, want);
                if syntax {
                    return g.add_const(random_const(r, &ty));
                }
                let mut rr = Rng(r.next_u64());
                g.add_const(Tensor::from_fn(&ty, |_| rr.uniform(-2.0, 2.0)))
            }
        }
    };
    let (inputs, attrs) = match op {
        Op::Powi => {
            let n = r.below(7) as i32 - 3;
            if safe {
                a = if n < 0 {
                    let t = tanh(g, a);
                    pos(g, t)
                } else if n > 1 {
                    tanh(g, a)
                } else {
                    a
                };
            }
            (vec![a], Attrs::Powi { n })
        }
        Op::Gather | Op::ScatterAdd | Op::Argmax | Op::Argmin | Op::Iota | Op::RandomUniform => {
            match indexing(r, g, op, a, dtype, shapes) {
                Some(x) => x,
                None => return,
            }
        }
        // The world group: these graphs run on one process as well as on two ranks.
        Op::NumRanks => (vec![], Attrs::world(GroupParam::To(dtype))),
        Op::AxisIndex => (vec![], Attrs::world(GroupParam::To(dtype))),
        Op::AllReduceSum | Op::AllReduceMean | Op::Pvary => {
            (vec![a], Attrs::world(GroupParam::None))
        }
        Op::CollectiveBroadcast => (vec![a], Attrs::world(GroupParam::Root(0))),
        // Their shapes need explicit groups, which fix the number of ranks: one rank's,
        // `[[0]]` (the test on two ranks skips these graphs).
        Op::AllGather | Op::ReduceScatter if rank > 0 => {
            let groups = gradlift::ir::Groups::new(vec![vec![0]]).expect("one group of rank 0");
            let param = GroupParam::Axis(r.below(rank));
            (vec![a], Attrs::Group { groups, param })
        }
        Op::AllGather | Op::ReduceScatter => return,
        Op::Cast if !smooth && r.one_in(6) => (vec![a], Attrs::Cast { to: DType::I32 }),
        Op::Cast => {
            let to = if ta.dtype == DType::Bool || r.one_in(3) {
                if r.one_in(2) { dtype } else { other }
            } else if ta.dtype == DType::F64 {
                DType::F32
            } else {
                DType::F64
            };
            (vec![a], Attrs::Cast { to })
        }
        Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin => {
            let axes = if r.one_in(4) {
                (0..rank).collect()
            } else {
                (0..rank).filter(|_| r.one_in(2)).collect()
            };
            (
                vec![a],
                Attrs::Reduce {
                    axes,
                    keepdims: r.one_in(2),
                },
            )
        }
        Op::Reshape => {
            let n = ta.numel();
            let shape = match r.below(4) {
                0 => vec![n],
                1 => ta.shape.iter().rev().copied().collect(),
                2 if n.is_multiple_of(2) && n > 2 => vec![2, n / 2],
                2 => vec![1, n],
                _ => {
                    let mut s = ta.shape.clone();
                    if s.len() < MAX_RANK {
                        s.insert(r.below(s.len() + 1), 1);
                    }
                    s
                }
            };
            (vec![a], Attrs::Shape { shape })
        }
        Op::Transpose => (
            vec![a],
            Attrs::Perm {
                perm: random_perm(r, rank),
            },
        ),
        Op::Broadcast => {
            let mut shape: Vec<usize> = ta
                .shape
                .iter()
                .map(|&d| if d == 1 { 1 + r.below(3) } else { d })
                .collect();
            if shape.len() < MAX_RANK && r.one_in(2) {
                shape.insert(0, 2);
            }
            (vec![a], Attrs::Shape { shape })
        }
        Op::Slice => {
            let mut start = Vec::with_capacity(rank);
            let mut stop = Vec::with_capacity(rank);
            for &d in &ta.shape {
                let s = r.below(d);
                start.push(s);
                stop.push(s + 1 + r.below(d - s));
            }
            (vec![a], Attrs::Slice { start, stop })
        }
        Op::Concat => {
            if rank == 0 {
                return;
            }
            let axis = r.below(rank);
            let b = pick_where(r, g, |t| {
                t.dtype == ta.dtype
                    && t.rank() == rank
                    && (0..rank).all(|i| i == axis || t.shape[i] == ta.shape[i])
            })
            .unwrap_or(a);
            let mut ins = vec![a, b];
            if r.one_in(3) {
                ins.push(a);
            }
            (ins, Attrs::Axis { axis })
        }
        Op::Cumsum => {
            if rank == 0 {
                return;
            }
            (
                vec![a],
                Attrs::Cumsum {
                    axis: r.below(rank),
                    reverse: r.one_in(2),
                },
            )
        }
        Op::Select => {
            let Some(c) = pick_where(r, g, |t| {
                t.dtype == DType::Bool
                    && gradlift::ir::broadcast_shapes(&t.shape, &ta.shape).is_some()
            }) else {
                return;
            };
            let b = partner(r, g);
            (vec![c, a, b], Attrs::None)
        }
        Op::Matmul => {
            if rank < 2 {
                return;
            }
            let k = ta.shape[rank - 1];
            let found = pick_where(r, g, |t| {
                t.dtype == ta.dtype && t.rank() >= 2 && t.shape[t.rank() - 2] == k
            });
            let b = match found {
                Some(b) if !r.one_in(3) => b,
                _ => {
                    let mut perm: Vec<usize> = (0..rank).collect();
                    perm.swap(rank - 2, rank - 1);
                    match push(g, Op::Transpose, vec![a], Attrs::Perm { perm }) {
                        Some(t) => t,
                        None => return,
                    }
                }
            };
            if safe {
                let ta2 = tanh(g, a);
                let tb = tanh(g, b);
                (vec![ta2, tb], Attrs::None)
            } else {
                (vec![a, b], Attrs::None)
            }
        }
        Op::Exp | Op::Expm1 | Op::Tan if safe => (vec![tanh(g, a)], Attrs::None),
        Op::Atan2 if safe => {
            let b = partner(r, g);
            (vec![a, pos(g, b)], Attrs::None)
        }
        Op::Log | Op::Sqrt | Op::Rsqrt | Op::Log1p | Op::Recip if safe => {
            (vec![pos(g, a)], Attrs::None)
        }
        Op::Div if safe => {
            let b = partner(r, g);
            (vec![a, pos(g, b)], Attrs::None)
        }
        Op::Pow if safe => {
            let b = partner(r, g);
            let t = tanh(g, a);
            let base = pos(g, t);
            (vec![base, tanh(g, b)], Attrs::None)
        }
        Op::Mul if safe && r.one_in(2) => {
            let b = partner(r, g);
            let t = tanh(g, a);
            (vec![t, tanh(g, b)], Attrs::None)
        }
        _ => match gradlift::ops::rules(op).arity {
            gradlift::ops::Arity::Exact(1) => (vec![a], Attrs::None),
            _ => {
                let b = partner(r, g);
                (vec![a, b], Attrs::None)
            }
        },
    };
    // Invalid combinations are skipped.
    if let Some(id) = push(g, op, inputs, attrs)
        && syntax
    {
        maybe_name(r, g, used, id);
    }
}

/// A random graph with `steps` attempted ops (the property tests' entry point): the forward
/// outputs, and with `with_grad` the reverse-mode gradient of the loss as well.
pub fn random_graph(seed: u64, steps: usize, with_grad: bool) -> Graph {
    random_graph_loops(seed, steps, with_grad, true)
}

/// [`random_graph`], with or without loops.
pub fn random_graph_loops(seed: u64, steps: usize, with_grad: bool, loops: bool) -> Graph {
    let cfg = GenConfig {
        steps,
        safe: !seed.is_multiple_of(4),
        smooth: false,
        order: u8::from(with_grad),
        syntax: false,
        loops,
    };
    generate(seed, &cfg)
        .build()
        .expect("generated cases build")
        .0
}

/// [`random_graph`] with input and constant shapes drawn from `shapes` (for example long ones
/// that exercise vector tails, unrolling and threads). Ops whose result would have more than
/// four times the elements of the largest shape are skipped (`matmul(a, aᵀ)` of a long `a`).
pub fn random_graph_shaped(
    seed: u64,
    steps: usize,
    with_grad: bool,
    shapes: &[Vec<usize>],
) -> Graph {
    let cfg = GenConfig {
        steps,
        safe: !seed.is_multiple_of(4),
        smooth: false,
        order: u8::from(with_grad),
        syntax: false,
        loops: true,
    };
    let max = 4 * shapes
        .iter()
        .map(|s| s.iter().product::<usize>())
        .max()
        .unwrap_or(1);
    let before = MAX_NUMEL.replace(max);
    let g = generate_with(seed, &cfg, shapes)
        .build()
        .expect("generated cases build")
        .0;
    MAX_NUMEL.set(before);
    g
}

/// Values for one input: seeded by the case seed and the input's name, uniform in [-2, 2)
/// (bools at random).
pub fn input_value(seed: u64, name: &str, ty: &TensorType) -> Tensor {
    let mut h: u64 = seed ^ 0xC0FF_EE00;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
    }
    let mut r = Rng(h);
    match ty.dtype {
        DType::Bool => Tensor::from_fn(ty, |_| f64::from(u8::from(r.one_in(2)))),
        _ => Tensor::from_fn(ty, |_| r.uniform(-2.0, 2.0)),
    }
}

/// Values for every input of `g` (see [`input_value`]).
pub fn input_values(g: &Graph, seed: u64) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .map(|&i| input_value(seed, &g.value_name(i), g.ty(i)))
        .collect()
}

/// Random input values for `g` (the property tests' entry point).
pub fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    input_values(g, seed)
}

/// Values agree: same shape and dtype, NaN where the other is NaN, else within `rel` relative
/// tolerance (0 means bitwise up to the sign of zero).
pub fn agree(a: &Tensor, b: &Tensor, rel: f64) -> bool {
    a.ty() == b.ty()
        && a.to_f64_vec().iter().zip(b.to_f64_vec()).all(|(&x, y)| {
            (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= rel * x.abs().max(y.abs())
        })
}
