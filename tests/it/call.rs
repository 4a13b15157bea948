//! Calling kernels: donated buffers (against the interpreter, on graphs built to break an
//! unsafe in-place write), buffers by name, scalars by value, and the errors of each.

use crate::fuzz_check::same_bits;
use gradlift::jit::{self, Buf, BufMut, CallError, JitConfig, JitError, Kernel};
use gradlift::testutil::Rng;
use gradlift::{Attrs, DType, Data, Graph, GraphBuilder, Op, Tensor, TensorType, interp};

/// Deterministic inputs in [-2, 2), distinct per element.
fn inputs_for(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut r = Rng(seed);
    g.inputs()
        .iter()
        .map(|&i| {
            let ty = g.ty(i).clone();
            let mut t = Tensor::splat(&ty, 0.0);
            match t.data_mut() {
                Data::F32(v) => v.iter_mut().for_each(|x| *x = r.uniform(-2.0, 2.0) as f32),
                Data::F64(v) => v.iter_mut().for_each(|x| *x = r.uniform(-2.0, 2.0)),
                Data::Bool(v) => v.iter_mut().for_each(|x| *x = r.chance(1, 2)),
                Data::I32(v) => v.iter_mut().for_each(|x| *x = r.below(5) as i32 - 2),
            }
            t
        })
        .collect()
}

/// Calls `k` through the positional path with each donated input's value placed in its
/// output's buffer (the only copy of it the kernel gets); returns the outputs.
pub(crate) fn call_donated(k: &Kernel, inputs: &[Tensor]) -> Vec<Tensor> {
    let mut outs: Vec<Tensor> = k
        .output_types()
        .iter()
        .map(|t| Tensor::splat(t, 0.0))
        .collect();
    let donors: Vec<usize> = k.donations().map(|(i, _)| i).collect();
    for (i, o) in k.donations() {
        outs[o] = inputs[i].clone();
    }
    let ins: Vec<Buf<'_>> = inputs
        .iter()
        .enumerate()
        .filter(|(k, _)| !donors.contains(k))
        .map(|(_, t)| Buf::from(t))
        .collect();
    let mut bufs: Vec<BufMut<'_>> = outs.iter_mut().map(BufMut::from).collect();
    let mut ws = k.workspace();
    k.call(&ins, &mut bufs, &mut ws).expect("buffers fit");
    drop(bufs);
    outs
}

/// One adversarial graph: what it donates and how many pairs the planner may (by the rules in
/// `jit::donate`, worked out by hand) compute in place.
struct Case {
    name: &'static str,
    graph: Graph,
    donate: Vec<(&'static str, &'static str)>,
    in_place: u64,
}

fn case<'b>(
    name: &'static str,
    b: &'b GraphBuilder,
    outs: &[(&str, gradlift::Var<'b>)],
    donate: &[(&'static str, &'static str)],
    in_place: u64,
) -> Case {
    Case {
        name,
        graph: b.finish(outs).expect("valid graph"),
        donate: donate.to_vec(),
        in_place,
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let d = DType::F32;
    // Elementwise, reading the input at the element it writes: in place.
    let b = GraphBuilder::new("axpy");
    let (w, gr) = (b.input("w", d, &[37]), b.input("g", d, &[37]));
    v.push(case(
        "axpy",
        &b,
        &[("w_next", w - 0.1 * gr)],
        &[("w", "w_next")],
        1,
    ));
    // A reader of the old value in the update's loop after the store (the loss is built
    // after the update, so it joins that loop later): copied. (The loop loads `w` once per
    // element before either member runs, so this one would survive in place; the rule does
    // not look that deep.)
    let b = GraphBuilder::new("read_after_store");
    let w = b.input("w", d, &[5, 7]);
    let w_next = w * 0.5 + 1.0;
    let loss = (w * w).sum();
    v.push(case(
        "read_after_store",
        &b,
        &[("w_next", w_next), ("loss", loss)],
        &[("w", "w_next")],
        0,
    ));
    // The old value read by a loop after the update's (it needs the update's sum first):
    // copied. In place, the loss would read the new values.
    let b = GraphBuilder::new("read_in_a_later_loop");
    let w = b.input("w", d, &[5, 7]);
    let w_next = w * 0.5 + 1.0;
    let loss = (w_next.sum() * w).sum();
    v.push(case(
        "read_in_a_later_loop",
        &b,
        &[("w_next", w_next), ("loss", loss)],
        &[("w", "w_next")],
        0,
    ));
    // A reduction of the input, read by the update in a later loop: in place.
    let b = GraphBuilder::new("centered");
    let w = b.input("w", d, &[6, 9]);
    v.push(case(
        "centered",
        &b,
        &[("w_next", w - w.sum_axes_keepdims(&[1]))],
        &[("w", "w_next")],
        1,
    ));
    // Reads the transposed input in the loop that writes: copied.
    let b = GraphBuilder::new("symmetrize");
    let w = b.input("w", d, &[8, 8]);
    v.push(case(
        "symmetrize",
        &b,
        &[("w_next", w + w.transpose(&[1, 0]))],
        &[("w", "w_next")],
        0,
    ));
    // A transpose as the output (a copy reading the input while writing it): copied.
    let b = GraphBuilder::new("transpose");
    let w = b.input("w", d, &[6, 6]);
    v.push(case(
        "transpose",
        &b,
        &[("w_next", w.transpose(&[1, 0]))],
        &[("w", "w_next")],
        0,
    ));
    // A matmul writing its own operand: copied. (64³ elements: the GEMM path.)
    let b = GraphBuilder::new("square");
    let w = b.input("w", d, &[64, 64]);
    v.push(case(
        "square",
        &b,
        &[("w_next", w.matmul(w))],
        &[("w", "w_next")],
        0,
    ));
    // A matmul reading the input runs first, then an elementwise update: in place.
    let b = GraphBuilder::new("matmul_then_update");
    let (w, x) = (b.input("w", d, &[16, 16]), b.input("x", d, &[16, 16]));
    v.push(case(
        "matmul_then_update",
        &b,
        &[("w_next", w - 0.01 * x.matmul(w))],
        &[("w", "w_next")],
        1,
    ));
    // A rotation (shifted reads of the input) through slices and a concat: copied.
    let b = GraphBuilder::new("rotate");
    let w = b.input("w", d, &[10]);
    let r = b.concat(&[w.slice(&[3], &[10]), w.slice(&[0], &[3])], 0);
    v.push(case(
        "rotate",
        &b,
        &[("w_next", r + 0.0)],
        &[("w", "w_next")],
        0,
    ));
    // Two donated inputs swapped. Outputs that are inputs under new names are identity
    // copies, run in output order: `a_next` (reading c) writes a's buffer before `c_next`
    // reads a, so a is copied first; c is read before `c_next` writes it: in place.
    let b = GraphBuilder::new("swap");
    let (a, c) = (b.input("a", d, &[4]), b.input("c", d, &[4]));
    v.push(case(
        "swap",
        &b,
        &[("a_next", c), ("c_next", a)],
        &[("a", "a_next"), ("c", "c_next")],
        1,
    ));
    // An output that is the donated input itself (an input node among the outputs, copied
    // after the code ran, here onto itself): nothing to write.
    let mut g = Graph::new("identity");
    let w = g.add_input("w", TensorType::new(d, vec![3])).unwrap();
    let x = g.add_input("x", TensorType::new(d, vec![3])).unwrap();
    let y = g.push(Op::Mul, vec![w, x], Attrs::None).unwrap();
    g.set_outputs(vec![w, y]);
    v.push(Case {
        name: "identity",
        graph: g,
        donate: vec![("w", "w")],
        in_place: 1,
    });
    // Another output is the old value, copied from the input after the code ran: copied.
    let mut g = Graph::new("keeps_old");
    let w = g.add_input("w", TensorType::new(d, vec![3])).unwrap();
    let y = g.push(Op::Neg, vec![w], Attrs::None).unwrap();
    g.set_outputs(vec![w, y]);
    let y_name: &'static str = Box::leak(g.value_name(y).into_boxed_str());
    v.push(Case {
        name: "keeps_old",
        graph: g,
        donate: vec![("w", y_name)],
        in_place: 0,
    });
    // Adam-like: two state buffers and the parameters, all donated, updated in one loop.
    let b = GraphBuilder::new("adam");
    let (p, m, s, gr) = (
        b.input("p", DType::F64, &[33]),
        b.input("m", DType::F64, &[33]),
        b.input("s", DType::F64, &[33]),
        b.input("g", DType::F64, &[33]),
    );
    let m2 = 0.9 * m + 0.1 * gr;
    // (`s * s`: the random state may be negative.)
    let s2 = 0.999 * (s * s) + 0.001 * gr * gr;
    let p2 = p - 0.01 * m2 / (s2.sqrt() + 1e-8);
    v.push(case(
        "adam",
        &b,
        &[("p_next", p2), ("m_next", m2), ("s_next", s2)],
        &[("p", "p_next"), ("m", "m_next"), ("s", "s_next")],
        3,
    ));
    v
}

#[test]
fn donated_calls_equal_the_interpreter_bitwise_on_adversarial_graphs() {
    for c in cases() {
        let inputs = inputs_for(&c.graph, 7);
        let want = interp::run(&c.graph, &inputs).expect("interpreter");
        let cfg = JitConfig {
            exact_math: true,
            ..JitConfig::default()
        }
        .donating(&c.donate);
        let k = jit::compile_with(&c.graph, &cfg).expect("compiles");
        let st = k.stats();
        assert_eq!(
            (st.donated_in_place, st.donated_copied),
            (c.in_place, c.donate.len() as u64 - c.in_place),
            "{}: which pairs are computed in place",
            c.name
        );
        for (path, got) in [
            ("positional", call_donated(&k, &inputs)),
            ("run", k.run(&inputs).expect("run")),
        ] {
            for (o, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    same_bits(g, w),
                    "{} ({path}), output {o}: {g:?} vs {w:?}",
                    c.name
                );
            }
        }
        // The default configuration (GEMM, vector math): the undonated kernel's bits.
        let plain = jit::compile(&c.graph).expect("compiles");
        let k = jit::compile_with(&c.graph, &JitConfig::default().donating(&c.donate)).unwrap();
        let want_default = plain.run(&inputs).expect("run");
        for (g, w) in call_donated(&k, &inputs).iter().zip(&want_default) {
            assert!(same_bits(g, w), "{} (default)", c.name);
        }
        // Checked mode plans every node alone; donation still gives the same bits.
        let checked = jit::compile_with(
            &c.graph,
            &JitConfig {
                check_finite: true,
                ..cfg.clone()
            },
        )
        .expect("compiles");
        for (g, w) in call_donated(&checked, &inputs).iter().zip(&want) {
            assert!(same_bits(g, w), "{} (checked)", c.name);
        }
    }
}

#[test]
fn donated_parallel_loops_with_transcendentals_equal_the_undonated_kernel() {
    // 2^17 elements: chunks on threads; `exp` in a vector loop may rerun a chunk with libm, so
    // by default the update cannot overwrite its input; with exact math it can.
    let b = GraphBuilder::new("big");
    let (w, gr) = (
        b.input("w", DType::F32, &[1 << 17]),
        b.input("g", DType::F32, &[1 << 17]),
    );
    let g = b
        .finish(&[("w_next", w - 0.01 * (gr * w).exp())])
        .expect("valid graph");
    let inputs = inputs_for(&g, 3);
    let want = interp::run(&g, &inputs).expect("interpreter");
    for (exact, in_place) in [(false, 0), (true, 1)] {
        let base = JitConfig {
            exact_math: exact,
            ..JitConfig::default()
        };
        let plain = jit::compile_with(&g, &base).expect("compiles");
        let k = jit::compile_with(&g, &base.clone().donating(&[("w", "w_next")])).unwrap();
        assert_eq!(k.stats().groups_parallel, 1);
        assert_eq!(k.stats().donated_in_place, in_place, "exact {exact}");
        let got = call_donated(&k, &inputs);
        assert!(same_bits(&got[0], &plain.run(&inputs).unwrap()[0]));
        if exact {
            assert!(same_bits(&got[0], &want[0]));
        }
    }
}

#[test]
fn a_donated_training_loop_equals_the_interpreter_step_after_step() {
    // SGD on a least-squares loss; the loss is of the parameters passed in.
    let b = GraphBuilder::new("sgd");
    let w = b.input("w", DType::F64, &[4, 3]);
    let x = b.input("x", DType::F64, &[8, 4]);
    let y = b.input("y", DType::F64, &[8, 3]);
    let lr = b.input("lr", DType::F64, &[]);
    let loss = x.matmul(w).mse(y);
    let gw = b.grad(loss, &[w]).unwrap()[0];
    let g = b
        .finish(&[("loss", loss), ("w_next", w - lr * gw)])
        .unwrap();
    let k = jit::compile_with(
        &g,
        &JitConfig {
            exact_math: true,
            ..JitConfig::default()
        }
        .donating(&[("w", "w_next")]),
    )
    .unwrap();
    let mut ins = inputs_for(&g, 11);
    ins[3] = Tensor::scalar_f64(0.05);
    let (mut w_buf, mut loss, mut ws) = (ins[0].clone(), 0.0f64, k.workspace());
    for step in 0..5 {
        let want = interp::run(&g, &ins).unwrap();
        k.call_named(
            &[
                ("x", (&ins[1]).into()),
                ("y", (&ins[2]).into()),
                ("lr", 0.05.into()),
            ],
            &mut [("loss", (&mut loss).into()), ("w", (&mut w_buf).into())],
            &mut ws,
        )
        .unwrap();
        assert_eq!(
            loss.to_bits(),
            want[0].scalar_value().unwrap().to_bits(),
            "step {step}"
        );
        assert!(same_bits(&w_buf, &want[1]), "step {step}");
        ins[0] = want[1].clone();
    }
}

fn step_kernel() -> Kernel {
    let b = GraphBuilder::new("step");
    let w = b.input("w", DType::F32, &[3]);
    let x = b.input("x", DType::F32, &[3]);
    let lr = b.input("lr", DType::F32, &[]);
    let loss = (w * x).sum();
    let g = b.finish(&[("loss", loss), ("w_next", w - lr * x)]).unwrap();
    jit::compile_with(&g, &JitConfig::default().donating(&[("w", "w_next")])).unwrap()
}

#[test]
fn names_scalars_and_iterators_reach_the_same_slots() {
    let k = step_kernel();
    assert_eq!(
        (
            k.input_index("x"),
            k.input_index("lr"),
            k.output_index("w_next")
        ),
        (Ok(1), Ok(2), Ok(1))
    );
    let x = [1.0f32, -2.0, 0.5];
    let mut ws = k.workspace();
    // Hand computation: loss = w·x, w_next = w - lr·x.
    let (mut w, mut loss) = ([2.0f32, 1.0, 4.0], 0.0f32);
    k.call_named(
        &[("lr", 0.5f32.into()), ("x", (&x[..]).into())],
        &mut [
            ("w_next", (&mut w[..]).into()),
            ("loss", (&mut loss).into()),
        ],
        &mut ws,
    )
    .unwrap();
    assert_eq!((loss, w), (2.0, [1.5, 2.0, 3.75]));
    // The same step positionally (a scalar by reference), then through iterators.
    let lr = 0.5f32;
    k.call(
        &[(&x[..]).into(), (&lr).into()],
        &mut [(&mut loss).into(), (&mut w[..]).into()],
        &mut ws,
    )
    .unwrap();
    assert_eq!((loss, w), (1.5 - 4.0 + 1.875, [1.0, 3.0, 3.5]));
    let mut state = vec![vec![0f32], w.to_vec()];
    k.call_iter(
        [Buf::from(&x[..]), Buf::from(1.0f32)],
        state.iter_mut().map(BufMut::from),
        &mut ws,
    )
    .unwrap();
    assert_eq!(state, vec![vec![1.0 - 6.0 + 1.75], vec![0.0, 5.0, 3.0]]);
}

#[test]
fn bad_names_and_buffers_are_typed_errors_naming_the_buffer() {
    let k = step_kernel();
    let mut ws = k.workspace();
    let x = [0f32; 3];
    let (mut w, mut loss) = ([0f32; 3], 0f32);
    let mut call = |ins: &[(&str, Buf<'_>)], w_name: &str, w: &mut [f32]| {
        k.call_named(
            ins,
            &mut [("loss", (&mut loss).into()), (w_name, w.into())],
            &mut ws,
        )
    };
    let lr = ("lr", Buf::from(0.1f32));
    let e = call(&[("z", (&x[..]).into()), lr], "w", &mut w).unwrap_err();
    assert_eq!(e, CallError::UnknownInput { name: "z".into() });
    assert!(e.to_string().contains("%z"), "{e}");
    let e = call(&[("x", (&x[..]).into()), lr], "v", &mut w).unwrap_err();
    assert_eq!(e, CallError::UnknownOutput { name: "v".into() });
    let e = call(&[("x", (&x[..2]).into()), lr], "w", &mut w).unwrap_err();
    assert!(
        matches!(&e, CallError::InputBuffer { name, len: 2, .. } if name == "x"),
        "{e:?}"
    );
    assert!(e.to_string().contains("%x"), "{e}");
    let e = call(
        &[("x", (&x[..]).into()), ("lr", 0.1f64.into())],
        "w",
        &mut w,
    )
    .unwrap_err();
    assert!(
        matches!(&e, CallError::InputBuffer { name, dtype: DType::F64, .. } if name == "lr"),
        "{e:?}"
    );
    let e = call(&[("x", (&x[..]).into()), lr, lr], "w", &mut w).unwrap_err();
    assert_eq!(e, CallError::DuplicateBuffer { name: "lr".into() });
    let e = call(&[("x", (&x[..]).into())], "w", &mut w).unwrap_err();
    assert_eq!(e, CallError::MissingInput { name: "lr".into() });
    let e = call(
        &[("x", (&x[..]).into()), lr, ("w", (&x[..]).into())],
        "w",
        &mut w,
    );
    assert_eq!(
        e.unwrap_err(),
        CallError::DonatedInput {
            input: "w".into(),
            output: "w_next".into()
        }
    );
    let e = call(&[("x", (&x[..]).into()), lr], "w", &mut w[..1]).unwrap_err();
    assert!(
        matches!(&e, CallError::OutputBuffer { name, len: 1, .. } if name == "w_next"),
        "{e:?}"
    );
    let e = k
        .call_named(&[("x", (&x[..]).into()), lr], &mut [], &mut ws)
        .unwrap_err();
    assert_eq!(
        e,
        CallError::MissingOutput {
            name: "loss".into()
        }
    );
    // Positional: donated inputs are left out of the count.
    let e = k
        .call(
            &[(&x[..]).into(), (&x[..]).into(), 0.1f32.into()],
            &mut [],
            &mut ws,
        )
        .unwrap_err();
    assert_eq!(
        e,
        CallError::InputCount {
            expected: 2,
            got: 3
        }
    );
    let e = k
        .call_iter([Buf::from(&x[..])], std::iter::empty(), &mut ws)
        .unwrap_err();
    assert_eq!(
        e,
        CallError::InputCount {
            expected: 2,
            got: 1
        }
    );
}

#[test]
fn impossible_donations_are_compile_errors() {
    let b = GraphBuilder::new("g");
    let w = b.input("w", DType::F32, &[3]);
    let v = b.input("v", DType::F32, &[4]);
    let g = b
        .finish(&[("a", w * 2.0), ("b", v * 2.0), ("c", w.cast(DType::F64))])
        .unwrap();
    let err =
        |pairs: &[(&str, &str)]| match jit::compile_with(&g, &JitConfig::default().donating(pairs))
            .unwrap_err()
        {
            JitError::Donation { reason, .. } => reason,
            e => panic!("{e:?}"),
        };
    assert!(err(&[("q", "a")]).contains("no input is named %q"));
    assert!(err(&[("w", "q")]).contains("no output is named %q"));
    assert!(err(&[("w", "b")]).contains("f32[3]"));
    assert!(err(&[("w", "c")]).contains("f64[3]"));
    assert!(err(&[("w", "a"), ("w", "a")]).contains("already donated"));
    let e = jit::compile_with(&g, &JitConfig::default().donating(&[("w", "b")])).unwrap_err();
    assert!(
        e.to_string().contains("%w") && e.to_string().contains("%b"),
        "{e}"
    );
}

#[test]
fn many_named_inputs_are_found_in_any_order() {
    // 20 inputs: past the short-list scan, names go through the hash map.
    let b = GraphBuilder::new("many");
    let xs: Vec<_> = (0..20)
        .map(|i| b.input(&format!("x{i}"), DType::F64, &[]))
        .collect();
    let y = xs
        .iter()
        .enumerate()
        .fold(b.scalar(DType::F64, 0.0), |acc, (i, &x)| {
            acc + x * (i as f64 + 1.0)
        });
    let k = jit::compile(&b.finish(&[("y", y)]).unwrap()).unwrap();
    let names: Vec<String> = (0..20).rev().map(|i| format!("x{i}")).collect();
    let ins: Vec<(&str, Buf<'_>)> = names
        .iter()
        .map(|n| (n.as_str(), Buf::from(n[1..].parse::<f64>().unwrap())))
        .collect();
    let mut y = 0.0f64;
    k.call_named(&ins, &mut [("y", (&mut y).into())], &mut k.workspace())
        .unwrap();
    // Σ i·(i+1) for i < 20 = 2660, exact in f64.
    assert_eq!(y, 2660.0);
    assert_eq!(k.input_index("x17"), Ok(17));
    assert_eq!(
        k.input_index("x20"),
        Err(CallError::UnknownInput { name: "x20".into() })
    );
}
