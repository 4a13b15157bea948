//! Integer tensors, indexing and random numbers through the whole pipeline: the JIT against the
//! interpreter (bitwise, with `exact_math` and by default, on one thread and on many), gradient
//! graphs through `gather`/`scatter_add`, and statistical sanity of the random streams.

use crate::fuzz_check::same_bits;
use gradlift::jit::{self, JitConfig};
use gradlift::{DType, Graph, GraphBuilder, Tensor, interp};

/// Every output of `g` on `inputs`: the interpreter's, and the JIT's with `exact_math` on
/// one thread and with threads on every loop (both bitwise equal to the interpreter's), and by
/// default (within the JIT's documented tolerance, here 1e-12 relative for f64 and 1e-5 for
/// f32: vectorized transcendentals and reassociated sums). Returns the interpreter's.
fn agree(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    let want = interp::run(g, inputs).expect("interpreter runs");
    let exact = JitConfig {
        exact_math: true,
        ..JitConfig::default()
    };
    let configs = [
        (exact.clone(), true),
        (
            JitConfig {
                parallel_min_elements: 0,
                threads: 4,
                ..exact
            },
            true,
        ),
        (JitConfig::default(), false),
    ];
    for (cfg, bitwise) in configs {
        let k = jit::compile_with(g, &cfg).unwrap_or_else(|e| panic!("compile: {e:?}"));
        let got = k.run(inputs).expect("kernel runs");
        for (i, (w, o)) in want.iter().zip(&got).enumerate() {
            let ok = if bitwise {
                same_bits(w, o)
            } else {
                let tol = if w.dtype() == DType::F32 { 1e-5 } else { 1e-12 };
                w.ty() == o.ty()
                    && w.to_f64_vec().iter().zip(o.to_f64_vec()).all(|(&a, b)| {
                        (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol * a.abs().max(1.0)
                    })
            };
            assert!(ok, "{cfg:?} output {i}\n want {w:?}\n got  {o:?}");
        }
    }
    want
}

fn ramp(shape: &[usize], scale: f64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f64(
        shape.to_vec(),
        (0..n)
            .map(|i| ((i * 7919) % 97) as f64 * scale - 3.0)
            .collect(),
    )
}

#[test]
fn integer_elementwise_chains_fuse_with_floats() {
    let b = GraphBuilder::new("ints");
    let x = b.input("x", DType::F32, &[3, 5]);
    let idx = b.input("idx", DType::I32, &[5]);
    let c = (x * 3.0).cast(DType::I32); // truncation toward zero
    let lt = c.lt(idx); // broadcast i32 comparison
    let s = b.select(lt, c, idx.broadcast_to(&[3, 5]));
    let f = s.cast(DType::F32) + x;
    let e = idx.equal(c).cast(DType::I32);
    let g = b.finish(&[("s", s), ("f", f), ("e", e)]).unwrap();
    let xv = Tensor::from_fn(&gradlift::TensorType::new(DType::F32, vec![3, 5]), |i| {
        (i as f64 - 7.0) * 0.37
    });
    let iv = Tensor::from_i32(vec![5], vec![-2, 0, 1, 3, i32::MAX]);
    let out = agree(&g, &[xv.clone(), iv]);
    // Spot values by hand: x[0] = -2.59, 3x = -7.77 → -7 < -2, kept.
    assert_eq!(out[0].to_f64_vec()[0], -7.0);
    // x[14] = 2.59, 3x = 7.77 → 7 < i32::MAX, kept.
    assert_eq!(out[0].to_f64_vec()[14], 7.0);
    // Casts saturate, and NaN casts to 0, as Rust's `as`.
    let b = GraphBuilder::new("sat");
    let x = b.input("x", DType::F64, &[4]);
    let g = b.finish(&[("c", x.cast(DType::I32))]).unwrap();
    let xv = Tensor::from_f64(vec![4], vec![1e300, -1e300, f64::NAN, -2.9]);
    let out = agree(&g, &[xv]);
    assert_eq!(
        out[0].to_f64_vec(),
        [2147483647.0, -2147483648.0, 0.0, -2.0]
    );
}

#[test]
fn argmax_and_argmin_agree_on_nans_and_ties() {
    let b = GraphBuilder::new("arg");
    let x = b.input("x", DType::F64, &[5, 4]);
    let g = b
        .finish(&[
            ("mx0", x.argmax(0)),
            ("mn0", x.argmin(0)),
            ("mx1", x.argmax(1)),
            ("mn1", x.argmin(1)),
        ])
        .unwrap();
    let nan = f64::NAN;
    #[rustfmt::skip]
    let xv = Tensor::from_f64(vec![5, 4], vec![
        1.0, nan, 2.0, -0.0,
        3.0, 5.0, 2.0, 0.0,
        3.0, nan, 0.0, 0.0,
        -1.0, 9.0, 2.0, nan,
        -1.0, 9.0, f64::INFINITY, f64::NEG_INFINITY,
    ]);
    let out = agree(&g, &[xv]);
    assert_eq!(out[0].to_f64_vec(), [1.0, 0.0, 4.0, 3.0]);
    assert_eq!(out[1].to_f64_vec(), [3.0, 0.0, 2.0, 3.0]);
    assert_eq!(out[2].to_f64_vec(), [1.0, 1.0, 1.0, 3.0, 2.0]);
    assert_eq!(out[3].to_f64_vec(), [1.0, 3.0, 1.0, 3.0, 3.0]);
}

#[test]
fn gather_and_scatter_gradients_compile_bitwise() {
    // loss = Σ w ⊙ gather(tanh(x), idx, 1) + Σ v ⊙ scatter_add(x², idx2, 0, 3): the adjoint
    // of each is the other, with repeated and out-of-range indices.
    let b = GraphBuilder::new("grad");
    let x = b.input("x", DType::F64, &[4, 6]);
    let idx = b.input("idx", DType::I32, &[2, 5]);
    let idx2 = b.input("idx2", DType::I32, &[4]);
    let w = b.constant(ramp(&[4, 2, 5, 1], 0.1));
    let t = x.tanh().reshape(&[4, 6, 1]).gather(idx, 1) * w;
    let v = b.constant(ramp(&[3, 6], 0.05));
    let s = (x * x).scatter_add(idx2, 0, 3) * v;
    let loss = t.sum() + s.sum();
    let dx = b.grad(loss, &[x]).unwrap()[0];
    let g = b.finish(&[("loss", loss), ("dx", dx)]).unwrap();
    let iv = Tensor::from_i32(vec![2, 5], vec![0, 5, 5, -4, 17, 2, 3, 1, 1, 0]);
    let iv2 = Tensor::from_i32(vec![4], vec![2, 2, -1, 7]);
    agree(&g, &[ramp(&[4, 6], 0.07), iv.clone(), iv2.clone()]);
    // And forward mode through both: the JVP along a direction equals ⟨∇, direction⟩.
    let b = GraphBuilder::from_graph(g.clone());
    let xi = b.var(g.inputs()[0]);
    let dir = b.constant(ramp(&[4, 6], 0.01));
    let loss_id = b.var(g.outputs()[0]);
    let dx_id = b.var(g.outputs()[1]);
    let jv = b.jvp(&[loss_id], &[xi], &[dir]).unwrap()[0];
    let dot = (dx_id * dir).sum();
    let g2 = b.finish(&[("jv", jv), ("dot", dot)]).unwrap();
    let out = agree(&g2, &[ramp(&[4, 6], 0.07), iv, iv2]);
    let (a, d) = (out[0].to_f64_vec()[0], out[1].to_f64_vec()[0]);
    assert!((a - d).abs() <= 1e-12 * (1.0 + d.abs()), "{a} vs {d}");
}

#[test]
fn large_gathers_and_scatters_match_with_threads() {
    let b = GraphBuilder::new("big");
    let x = b.input("x", DType::F32, &[1000, 8]);
    let idx = b.input("idx", DType::I32, &[70_000]);
    let rows = x.gather(idx, 0); // [70000, 8]
    let back = (rows * 2.0).scatter_add(idx, 0, 1000);
    let g = b.finish(&[("rows", rows), ("back", back)]).unwrap();
    let xv = Tensor::from_fn(&gradlift::TensorType::new(DType::F32, vec![1000, 8]), |i| {
        ((i * 31) % 1013) as f64 * 0.001
    });
    let iv = Tensor::from_i32(
        vec![70_000],
        (0..70_000).map(|i: i32| (i * 7_919) % 1_003 - 1).collect(),
    );
    agree(&g, &[xv, iv]);
}

#[test]
fn random_bits_are_a_function_of_seed_and_counter_only() {
    let b = GraphBuilder::new("rng");
    let seed = b.input("seed", DType::I32, &[]);
    let ctr = b.input("ctr", DType::I32, &[]);
    let u32s = b.random_uniform(seed, ctr, DType::F32, &[257, 199]);
    let u64s = b.random_uniform(seed, ctr, DType::F64, &[50_001]);
    let normal = b.random_normal(seed, ctr, DType::F64, &[20_000]);
    let g = b
        .finish(&[("u32", u32s), ("u64", u64s), ("n", normal)])
        .unwrap();
    let scalar = |v: i32| Tensor::from_i32(vec![], vec![v]);
    let a = agree(&g, &[scalar(42), scalar(0)]);
    let again = agree(&g, &[scalar(42), scalar(0)]);
    let other = agree(&g, &[scalar(42), scalar(1)]);
    for k in 0..3 {
        assert!(same_bits(&a[k], &again[k]));
        let same = a[k]
            .to_f64_vec()
            .iter()
            .zip(other[k].to_f64_vec())
            .filter(|(p, q)| **p == *q)
            .count();
        assert!(
            same < 10,
            "output {k}: another counter repeats {same} values"
        );
    }
    // Uniform on [0, 1): in range, mean 1/2 and variance 1/12 within a few standard errors.
    for u in &a[..2] {
        let v = u.to_f64_vec();
        assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)));
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        assert!(
            (mean - 0.5).abs() < 5.0 * (1.0 / 12.0 / n).sqrt(),
            "mean {mean}"
        );
        assert!((var - 1.0 / 12.0).abs() < 0.005, "variance {var}");
    }
    // Box–Muller normals: mean 0, variance 1.
    let v = a[2].to_f64_vec();
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    assert!(mean.abs() < 5.0 / n.sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 0.05, "variance {var}");
}

#[test]
fn random_uniform_is_the_published_philox_stream() {
    // With seed 0 and counter 0, block 0 is Philox-4x32-10 of counter 0 under key 0, whose
    // words are Random123's known answer 6627e8d5 e169c58d bc57ac4c 9b00dbd8: the f32 elements
    // are the top 24 bits of each word over 2^24, the f64 element 0 is (word1·2^32 + word0)
    // without its low 11 bits over 2^53.
    let b = GraphBuilder::new("kat");
    let s = b.input("s", DType::I32, &[]);
    let g = b
        .finish(&[
            ("f", b.random_uniform(s, s, DType::F32, &[4])),
            ("d", b.random_uniform(s, s, DType::F64, &[1])),
        ])
        .unwrap();
    let out = agree(&g, &[Tensor::from_i32(vec![], vec![0])]);
    let words: [u32; 4] = [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8];
    let f: Vec<f64> = words
        .iter()
        .map(|w| f64::from(w >> 8) / 16_777_216.0)
        .collect();
    assert_eq!(out[0].to_f64_vec(), f);
    let bits = (u64::from(words[1]) << 32) | u64::from(words[0]);
    assert_eq!(
        out[1].to_f64_vec(),
        [(bits >> 11) as f64 / 9_007_199_254_740_992.0]
    );
}

#[test]
fn the_fuzz_pipeline_property_holds_on_the_indexing_seed() {
    // The fuzz seed: every indexing op, an i32 input made from arbitrary bytes (so indices
    // far out of range), through grad, JVP, the optimizer and the JIT in every flag mix.
    let seed = include_bytes!("../../fuzz/seeds/pipeline/indexing.bin");
    let nul = seed.iter().position(|&b| b == 0).expect("seed has a NUL");
    for flags in 0..8u8 {
        for shift in [0usize, 1, 5] {
            let mut data = seed[..=nul].to_vec();
            data.push(flags);
            data.extend(&seed[nul + 2 + shift..]);
            crate::fuzz_check::pipeline(&data);
        }
    }
}
