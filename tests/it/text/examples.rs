//! The example programs in `ir/`: they parse, round-trip, differentiate and compute known values.

use super::*;

/// A deterministic input for every graph input: floats in [-1, 1), alternating bools.
pub(super) fn example_inputs(g: &Graph) -> Vec<Tensor> {
    let mut rng = gradlift::testutil::Rng(0x2545_F491_4F6C_DD1D);
    g.inputs()
        .iter()
        .map(|&i| {
            Tensor::from_fn(g.ty(i), |k| {
                if g.ty(i).dtype == DType::Bool {
                    (k % 2) as f64
                } else {
                    rng.uniform(-1.0, 1.0)
                }
            })
        })
        .collect()
}

#[test]
fn example_programs_parse_round_trip_and_differentiate() {
    let dir = root().join("ir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gir"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in ["seed", "rosenbrock", "mlp", "softmax_xent"] {
        assert!(
            names.iter().any(|n| n == required),
            "ir/{required}.gir missing"
        );
    }
    for path in &files {
        let src = std::fs::read_to_string(path).unwrap();
        assert!(src.starts_with("# "), "{}: header comment", path.display());
        let (mut g, _) = round_trip(&src);
        assert_eq!(*g.name, *path.file_stem().unwrap().to_string_lossy());
        let y = g.outputs()[0];
        let ty = g.ty(y).clone();
        assert!(ty.is_scalar() && ty.dtype.is_float(), "{}", path.display());
        let wrt: Vec<NodeId> = g
            .inputs()
            .into_iter()
            .filter(|&i| g.ty(i).dtype.is_float())
            .collect();
        let grads = gradlift::autodiff::grad(&mut g, y, &wrt)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut outs = vec![y];
        for (&w, &d) in wrt.iter().zip(&grads) {
            // Outputs are named (the parser names an unnamed `%26` output "26").
            if g.node(d).name.is_none() && !outs.contains(&d) {
                let name = format!("d_{}", g.value_name(w));
                g.set_name(d, Some(&name));
            }
            if !outs.contains(&d) {
                outs.push(d);
            }
        }
        g.set_outputs(outs);
        verify(&g).unwrap();
        let vals = gradlift::interp::run(&g, &example_inputs(&g)).unwrap();
        for v in &vals {
            assert!(
                v.to_f64_vec().iter().all(|x| x.is_finite()),
                "{}: non-finite value",
                path.display()
            );
        }
        // The differentiated graph prints and reads back too.
        let printed = text::print(&g);
        assert!(parse_ok(&printed).same(&g), "{}", path.display());
    }
}

#[test]
fn seed_and_rosenbrock_compute_known_values() {
    let read = |f: &str| std::fs::read_to_string(root().join("ir").join(f)).unwrap();
    let g = parse_ok(&read("seed.gir"));
    let out = gradlift::interp::run(&g, &[3.0.into(), 4.0.into()]).unwrap();
    assert_eq!(out[0].scalar_value(), Some(13.0));
    let g = parse_ok(&read("rosenbrock.gir"));
    let ones = Tensor::from_f64(vec![1000], vec![1.0; 1000]);
    let zeros = Tensor::from_f64(vec![1000], vec![0.0; 1000]);
    assert_eq!(
        gradlift::interp::run(&g, &[ones]).unwrap()[0].scalar_value(),
        Some(0.0)
    );
    assert_eq!(
        gradlift::interp::run(&g, &[zeros]).unwrap()[0].scalar_value(),
        Some(999.0)
    );
    // x = 2 everywhere: each term is 100 * (2 - 4)^2 + (1 - 2)^2 = 401.
    let twos = Tensor::from_f64(vec![1000], vec![2.0; 1000]);
    assert_eq!(
        gradlift::interp::run(&g, &[twos]).unwrap()[0].scalar_value(),
        Some(999.0 * 401.0)
    );
}
