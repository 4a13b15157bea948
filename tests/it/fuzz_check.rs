//! The properties the cargo-fuzz targets check, as plain functions over bytes, shared with the
//! normal test suite: `fuzz/fuzz_targets/*.rs` include this file by path, and `hostile.rs` runs
//! every saved fuzz input (`tests/hostile/fuzz/`) through the same functions, so each crash the
//! fuzzer ever found stays a regression test.
//!
//! - [`parse_roundtrip`]: the `.gir` reader on arbitrary bytes never panics; whatever it accepts
//!   verifies, prints, reads back as the same graph, and prints identically (printing is
//!   canonical).
//! - [`pipeline`]: "parse → grad/jvp → optimize → compile → call" on arbitrary bytes: nothing panics,
//!   a verified graph always compiles (resource limits aside), the JIT, the interpreter and
//!   the unoptimized graph agree on inputs derived from the bytes, and in checked mode (NaN
//!   provenance) both backends stop at the same node and element. Graphs with loops are
//!   skipped when their loops would run more than [`MAX_PIPELINE_LOOP_WORK`] body nodes.
//!
//! Both functions panic (with the offending `.gir` text) when a property fails: that is how
//! libFuzzer and the test harness notice. They depend on nothing but `gradlift` and `std`.
//!
//! Not here: coverage guidance (libFuzzer's), or any claim about numerical accuracy beyond
//! "the two backends agree" (the differential test checks gradients against finite
//! differences).

#![allow(dead_code)] // each includer uses one of the two entry points

use gradlift::ir::text;
use gradlift::jit::{self, JitConfig, JitError};
use gradlift::opt::{self, OptConfig};
use gradlift::{DType, Data, Graph, NodeId, Op, Tensor, interp};

/// The largest total number of bytes of all values of a graph the pipeline evaluates (the
/// interpreter keeps values alive; the fuzzer's RSS limit is 2 GiB).
pub const MAX_PIPELINE_BYTES: usize = 8 << 20;

/// The most nodes a graph may have for the pipeline to compile it (keeps one execution fast).
pub const MAX_PIPELINE_NODES: usize = 4000;

/// The most body nodes all loops of a graph may run, steps times body size summed over every
/// loop and nesting level (a one-line `length=2000000000` would keep one execution busy for
/// minutes).
pub const MAX_PIPELINE_LOOP_WORK: usize = 200_000;

/// Steps times body nodes of every loop of `g`, nested loops multiplied out, saturating
/// (bodies are walked from an explicit stack).
fn loop_work(g: &Graph) -> usize {
    let mut total = 0usize;
    let mut stack: Vec<(&Graph, usize)> = vec![(g, 1)];
    while let Some((h, times)) = stack.pop() {
        for n in h.nodes() {
            if let gradlift::Attrs::Scan { body, .. } = &n.attrs {
                let runs = times.saturating_mul(body.length.max(1));
                total = total.saturating_add(runs.saturating_mul(body.body.len()));
                stack.push((&body.body, runs));
                if let Some(rc) = &body.recompute {
                    stack.push((&rc.forward.body, runs.saturating_mul(2)));
                }
            }
        }
    }
    total
}

/// Parses arbitrary bytes (as UTF-8, lossily) and checks the round trip.
///
/// # Panics
/// If the parser panics, or accepts a graph that fails verification or does not round-trip.
pub fn parse_roundtrip(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    let Ok(g) = text::parse(&src) else { return };
    if let Err(e) = gradlift::ir::verify(&g) {
        panic!("the parser accepted an invalid graph: {e}\n--- input ---\n{src}");
    }
    let printed = text::print(&g);
    let back = match text::parse(&printed) {
        Ok(b) => b,
        Err(e) => panic!("printed text does not parse: {e}\n--- printed ---\n{printed}"),
    };
    assert!(
        back.same(&g),
        "parse(print(g)) differs from g\n--- input ---\n{src}\n--- printed ---\n{printed}"
    );
    let again = text::print(&back);
    assert_eq!(again, printed, "printing is not canonical");
}

/// Deterministic values from the fuzz bytes: each element takes 8 bytes (cycling), read either
/// as a small number in [-4, 4) or, when the top byte says so, as the raw bits of the dtype
/// (so NaN, infinities, subnormals and huge values all occur).
struct ValueSource<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl ValueSource<'_> {
    fn next_u64(&mut self) -> u64 {
        if self.bytes.is_empty() {
            self.pos = self.pos.wrapping_add(1);
            return (self.pos as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        let mut b = [0u8; 8];
        for slot in &mut b {
            *slot = self.bytes[self.pos % self.bytes.len()];
            self.pos = self.pos.wrapping_add(1);
        }
        u64::from_le_bytes(b)
    }

    fn tensor(&mut self, ty: &gradlift::TensorType) -> Tensor {
        let n = ty.numel();
        let data = match ty.dtype {
            DType::Bool => Data::Bool((0..n).map(|_| self.next_u64() & 1 == 1).collect()),
            DType::I32 => Data::I32((0..n).map(|_| self.next_u64() as i32).collect()),
            DType::F32 => Data::F32(
                (0..n)
                    .map(|_| {
                        let u = self.next_u64();
                        if u >> 56 == 0xFF {
                            f32::from_bits(u as u32)
                        } else {
                            ((u >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0) as f32
                        }
                    })
                    .collect(),
            ),
            DType::F64 => Data::F64(
                (0..n)
                    .map(|_| {
                        let u = self.next_u64();
                        if u >> 56 == 0xFF {
                            f64::from_bits(u.rotate_left(8))
                        } else {
                            (u >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0
                        }
                    })
                    .collect(),
            ),
        };
        Tensor::try_new(ty.shape.clone(), data).expect("numel matches the shape")
    }
}

/// Bytes all values of `g` need together, saturating.
fn value_bytes(g: &Graph) -> usize {
    g.nodes().iter().fold(0usize, |acc, n| {
        acc.saturating_add(n.ty.numel().saturating_mul(n.ty.dtype.size_bytes()))
    })
}

/// Bitwise equal, except that any NaN equals any NaN (payloads are not specified).
pub fn same_bits(a: &Tensor, b: &Tensor) -> bool {
    if a.ty() != b.ty() {
        return false;
    }
    match (a.data(), b.data()) {
        (Data::F32(x), Data::F32(y)) => x
            .iter()
            .zip(y)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())),
        (Data::F64(x), Data::F64(y)) => x
            .iter()
            .zip(y)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())),
        (Data::Bool(x), Data::Bool(y)) => x == y,
        (Data::I32(x), Data::I32(y)) => x == y,
        _ => false,
    }
}

/// Equal as numbers (so `-0 == +0`, which `x + 0 → x` may change), NaN equal to NaN.
fn same_numbers(a: &Tensor, b: &Tensor) -> bool {
    a.ty() == b.ty()
        && a.to_f64_vec()
            .iter()
            .zip(b.to_f64_vec())
            .all(|(&x, y)| x == y || (x.is_nan() && y.is_nan()))
}

/// Runs the whole pipeline on arbitrary bytes. Layout: the `.gir` text up to the first NUL
/// byte; after it, one flags byte (bit 0: append the gradient of the first output, bit 1: run
/// the optimizer, bit 2: append the forward-mode JVP of every float output) and the bytes that
/// input values are made from.
///
/// # Panics
/// On any panic inside gradlift, a compile failure of a verified graph other than
/// [`JitError::TooLarge`], or a disagreement between the JIT and the interpreter, or between the
/// optimized and the unoptimized graph.
pub fn pipeline(data: &[u8]) {
    let (src, rest) = match data.iter().position(|&b| b == 0) {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &[][..]),
    };
    let flags = rest.first().copied().unwrap_or(0b11);
    let values = rest.get(1..).unwrap_or(&[]);
    let Ok(src) = std::str::from_utf8(src) else {
        return;
    };
    let Ok(mut g) = text::parse(src) else { return };
    if g.len() > MAX_PIPELINE_NODES || loop_work(&g) > MAX_PIPELINE_LOOP_WORK {
        return;
    }
    let forward_outputs = g.outputs().len();
    if flags & 1 == 1
        && let Some(&y) = g.outputs().first()
    {
        let wrt: Vec<NodeId> = g
            .inputs()
            .into_iter()
            .filter(|&i| g.ty(i).dtype.is_float())
            .collect();
        // A non-scalar or bool output is a user error; anything else must work.
        match gradlift::autodiff::grad(&mut g, y, &wrt) {
            Ok(grads) => {
                let mut outs = g.outputs().to_vec();
                for d in grads {
                    if !outs.contains(&d) {
                        outs.push(d);
                    }
                }
                g.set_outputs(outs);
            }
            Err(e) => {
                let yty = g.ty(y);
                assert!(
                    !yty.is_scalar() || !yty.dtype.is_float(),
                    "grad failed on a float scalar output: {e}\n{src}"
                );
            }
        }
    }
    if flags & 4 == 4 {
        // Forward mode: the JVP of every float output along all-ones tangents.
        let wrt: Vec<NodeId> = g
            .inputs()
            .into_iter()
            .filter(|&i| g.ty(i).dtype.is_float())
            .collect();
        let ys: Vec<NodeId> = g
            .outputs()
            .iter()
            .copied()
            .filter(|&o| g.ty(o).dtype.is_float())
            .collect();
        if !wrt.is_empty() && !ys.is_empty() {
            let tangents: Vec<NodeId> = wrt
                .iter()
                .map(|&w| {
                    let ty = g.ty(w).clone();
                    g.add_const(Tensor::from_fn(&ty, |_| 1.0))
                })
                .collect();
            match gradlift::autodiff::jvp(&mut g, &ys, &wrt, &tangents) {
                Ok(ts) => {
                    let mut outs = g.outputs().to_vec();
                    for t in ts {
                        if !outs.contains(&t) {
                            outs.push(t);
                        }
                    }
                    g.set_outputs(outs);
                }
                Err(e) => panic!("jvp failed on float outputs: {e}\n{src}"),
            }
        }
    }
    if let Err(e) = gradlift::ir::verify(&g) {
        panic!(
            "differentiation produced an invalid graph: {e}\n{}",
            text::print(&g)
        );
    }
    if g.len() > MAX_PIPELINE_NODES
        || value_bytes(&g) > MAX_PIPELINE_BYTES
        || loop_work(&g) > MAX_PIPELINE_LOOP_WORK
    {
        return;
    }
    let unopt = g.clone();
    if flags & 2 == 2 {
        opt::optimize(
            &mut g,
            &OptConfig {
                verify: true,
                ..OptConfig::default()
            },
        );
        assert_eq!(
            g.outputs().len(),
            unopt.outputs().len(),
            "optimizer lost outputs"
        );
    }
    let mut vs = ValueSource {
        bytes: values,
        pos: 0,
    };
    let inputs: Vec<Tensor> = g.inputs().iter().map(|&i| vs.tensor(g.ty(i))).collect();
    let want = match interp::run(&g, &inputs) {
        Ok(w) => w,
        Err(e) => panic!("interpreter rejected well-typed inputs: {e}"),
    };
    if flags & 2 == 2 {
        let base = interp::run(&unopt, &inputs).expect("same inputs");
        for (k, (a, b)) in want.iter().zip(&base).enumerate() {
            assert!(
                same_numbers(a, b),
                "output {k} (of {forward_outputs} forward outputs): optimized {a:?} != \
                 unoptimized {b:?}\ninputs: {inputs:?}\n--- unoptimized ---\n{}--- optimized \
                 ---\n{}",
                text::print(&unopt),
                text::print(&g)
            );
        }
    }
    // `exact_math`: bitwise agreement (the default fast math is checked node by node in
    // `simd.rs`). One compile thread: scoped worker threads can still be tearing down their
    // thread-locals when an iteration ends, which LeakSanitizer reports as a (false) leak.
    let cfg = JitConfig {
        verifier: true,
        exact_math: true,
        threads: 1,
        ..JitConfig::default()
    };
    let kernel = match jit::compile_with(&g, &cfg) {
        Ok(k) => k,
        Err(JitError::TooLarge { .. }) => return,
        Err(e) => panic!(
            "a verified graph failed to compile: {e:?}\n{}",
            text::print(&g)
        ),
    };
    let got = match kernel.run(&inputs) {
        Ok(o) => o,
        Err(e) => panic!("kernel rejected well-typed inputs: {e}"),
    };
    assert_eq!(got.len(), want.len());
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(
            same_bits(a, b),
            "output {k}: jit {a:?} != interp {b:?}\ninputs: {inputs:?}\n{}",
            text::print(&g)
        );
    }
    // Checked mode: both backends stop at the same node and element, or neither stops (and
    // then the checked kernel computed the same values).
    let checked_cfg = JitConfig {
        check_finite: true,
        ..cfg
    };
    if let Ok(k) = jit::compile_with(&g, &checked_cfg) {
        let by_jit = k.run(&inputs);
        let by_interp = interp::run_checked(&g, &inputs);
        match (by_interp, by_jit) {
            (Ok(a), Ok(b)) => {
                for (x, y) in a.iter().zip(&b) {
                    assert!(same_bits(x, y), "checked jit {y:?} != checked interp {x:?}");
                }
            }
            (Err(interp::EvalError::NonFinite(a)), Err(jit::CallError::NonFinite(b))) => {
                assert_eq!(
                    (a.node, &a.index),
                    (b.node, &b.index),
                    "checked backends stopped at different places\n{}",
                    text::print(&g)
                );
                // The report describes itself without panicking.
                let _ = a.describe(&g, Some("fuzz.gir"));
            }
            (a, b) => panic!(
                "checked backends disagree: interp {:?} vs jit {:?}\n{}",
                a.err(),
                b.err(),
                text::print(&g)
            ),
        }
    }
    // Outputs the graph lists as plain inputs or constants come back unchanged.
    for (k, &o) in g.outputs().iter().enumerate() {
        if g.node(o).op == Op::Input {
            let pos = g.inputs().iter().position(|&i| i == o).expect("an input");
            assert!(same_bits(&got[k], &inputs[pos]), "input passthrough {k}");
        }
    }
}
