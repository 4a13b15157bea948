//! Three-way differential testing on random graphs (from `random.rs`):
//!
//! 1. **JIT vs interpreter**: every output (forward values and gradients) of the compiled kernel
//!    equals the interpreter's bit for bit, NaN payloads aside (the JIT's documented contract).
//! 2. **Optimized vs unoptimized**: the optimized graph gives the same numbers in the
//!    interpreter (`-0 == +0`: `x + 0 → x` may flip the sign of a zero) and the JIT agrees with
//!    the interpreter on it too.
//! 3. **Gradients vs central finite differences in f64**, on *smooth* cases only: graphs built
//!    from ops that are differentiable everywhere on the guarded domain (see `random.rs`: no
//!    `abs`, `relu`, `max`/`min`, comparisons, `select`, `reduce_max`/`reduce_min`, `cast`;
//!    every restricted-domain operand guarded), all f64. For up to four elements per input, the
//!    gradient is compared with the Richardson-extrapolated central difference of the
//!    differentiated scalar (steps 2e-5 and 1e-5, scaled by `max(1, |x|)`), evaluated by the
//!    interpreter, within a relative 1e-5 plus the roundoff of the differences plus twice the
//!    spread of the two central differences (their own error estimate). The rule for skipping:
//!    if the two central differences disagree with each other by more than 30 times the
//!    tolerance, the function is not smooth at that scale there (or too badly conditioned to
//!    tell) and the element is counted as skipped, not checked. So is an element whose steps
//!    change how many steps a while loop runs (its stacked conditions differ from the base
//!    point's): the loss jumps there, and no step size makes the difference a derivative. Both
//!    first-order derivatives (reverse-mode gradients, forward-mode JVPs along constant tangents,
//!    checked as directional differences) and second-order ones (Hessian-vector products by
//!    reverse over reverse and by forward over reverse, `autodiff::hvp`) are checked.
//!
//! Checks 1 and 2 run on all cases, including unguarded ones whose values overflow to
//! infinities and NaN. A panic anywhere is a failure too.
//!
//! On a failure the case is shrunk to a minimal graph that still fails the same way (drop
//! outputs, lower the derivative order, replace a node by one of its operands of the same type
//! or by a fresh input, prune what no output needs), and the panic message holds the shrunk
//! graph as `.gir` (with the derivatives appended, ready for `gradlift run --inputs`) and its
//! inputs as JSON: a ready-made regression test.
//!
//! Case counts: `GRADLIFT_DIFF_CASES` if set; otherwise 3000 in release builds and 400 in debug
//! builds (where the interpreter is slow). The ignored test `differential_long` runs a million
//! (`cargo test --release differential_long -- --ignored`).
//!

use crate::fuzz_check::same_bits;
use crate::random::{Case, Claim, GenConfig, ORDER_FORWARD, ORDER_REVERSE, generate, input_values};
use gradlift::ir::text;
use gradlift::opt::{self, OptConfig};
use gradlift::{Data, Graph, NodeId, Op, Tensor, interp, jit};
use std::cell::Cell;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

/// What kind of check failed (shrinking keeps the kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The case could not be built or verified.
    Build,
    /// gradlift panicked.
    Panic,
    /// JIT and interpreter disagree.
    JitVsInterp,
    /// Optimized and unoptimized graphs disagree.
    OptVsUnopt,
    /// A gradient disagrees with finite differences.
    Gradient,
}

#[derive(Clone, Debug)]
struct Failure {
    kind: Kind,
    message: String,
}

fn fail(kind: Kind, message: impl Into<String>) -> Failure {
    Failure {
        kind,
        message: message.into(),
    }
}

/// Counters of a run.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    cases: u64,
    smooth_cases: u64,
    fd_checked: u64,
    fd_skipped: u64,
    /// Probes skipped because a step flipped a while loop's condition (a subset of
    /// `fd_skipped`).
    fd_flips: u64,
    nodes: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.cases += o.cases;
        self.smooth_cases += o.smooth_cases;
        self.fd_checked += o.fd_checked;
        self.fd_skipped += o.fd_skipped;
        self.fd_flips += o.fd_flips;
        self.nodes += o.nodes;
    }
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into a [`Kind::Panic`] failure without printing it.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, Failure> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                default(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into());
        fail(Kind::Panic, format!("{what} panicked: {msg}"))
    })
}

/// Equal as numbers (`-0 == +0`), NaN equal to NaN.
fn same_numbers(a: &Tensor, b: &Tensor) -> bool {
    a.ty() == b.ty()
        && a.to_f64_vec()
            .iter()
            .zip(b.to_f64_vec())
            .all(|(&x, y)| x == y || (x.is_nan() && y.is_nan()))
}

/// JIT outputs on `g` equal the interpreter's `want`.
fn check_jit(g: &Graph, inputs: &[Tensor], want: &[Tensor], what: &str) -> Result<(), Failure> {
    let got = guarded("jit", || -> Result<Vec<Tensor>, String> {
        // `exact_math`: bitwise agreement (the default fast math is checked node by node in
        // `simd.rs`: a few ULP can be amplified without bound by ill-conditioned graphs).
        let cfg = jit::JitConfig {
            exact_math: true,
            ..jit::JitConfig::default()
        };
        let k = jit::compile_with(g, &cfg).map_err(|e| format!("compile: {e:?}"))?;
        k.run(inputs).map_err(|e| format!("call: {e}"))
    })?
    .map_err(|e| fail(Kind::JitVsInterp, format!("{what}: {e}")))?;
    for (k, (a, b)) in got.iter().zip(want).enumerate() {
        if !same_bits(a, b) {
            return Err(fail(
                Kind::JitVsInterp,
                format!("{what}: output {k}: jit {a:?} != interp {b:?}"),
            ));
        }
    }
    Ok(())
}

/// The graph computing only output `k` of `g` (for finite differences).
fn only_output(g: &Graph, k: usize) -> Graph {
    let mut h = g.clone();
    h.set_outputs(vec![g.outputs()[k]]);
    opt::dce::eliminate_dead_nodes(&mut h);
    h
}

/// `|ad - fd|` is acceptable: relative 1e-5, plus the roundoff of the differences.
fn fd_tolerance(ad: f64, fd: f64, fscale: f64, h: f64) -> f64 {
    1e-5 * ad.abs().max(fd.abs()) + 64.0 * f64::EPSILON * fscale / h + 1e-9
}

/// One central-difference probe: the derivative of `eval` (a function of the step `t`, where
/// `t = 0` is the base point) compared with `ad`. Returns `Ok(true)` if checked, `Ok(false)` if
/// skipped (not smooth at the step size, or non-finite), and a failure message otherwise.
fn probe(
    ad: f64,
    scale: f64,
    eval: &dyn Fn(f64) -> Result<f64, Failure>,
) -> Result<Result<bool, String>, Failure> {
    let h = 2e-5 * scale.max(1.0);
    let (p1, m1) = (eval(h)?, eval(-h)?);
    let (p2, m2) = (eval(h / 2.0)?, eval(-h / 2.0)?);
    let d1 = (p1 - m1) / (2.0 * h);
    let d2 = (p2 - m2) / h;
    let fscale = p1.abs().max(m1.abs()).max(p2.abs()).max(m2.abs());
    if !(d1.is_finite() && d2.is_finite() && ad.is_finite()) {
        return Ok(Ok(false));
    }
    let rich = (4.0 * d2 - d1) / 3.0;
    let tol = fd_tolerance(ad, rich, fscale, h / 2.0);
    let spread = (d1 - d2).abs();
    if spread > 30.0 * tol {
        return Ok(Ok(false)); // not smooth (or too ill-conditioned) at this scale
    }
    // The two estimates' spread measures the differences' own error (truncation, or roundoff
    // in intermediate values much larger than `f` itself), so it widens the tolerance.
    if (ad - rich).abs() > tol + 2.0 * spread {
        return Ok(Err(format!(
            "derivative {ad} but finite differences give {rich} (h={h}: {d1}, h/2: {d2})"
        )));
    }
    Ok(Ok(true))
}

/// Checks every claim of a smooth case against central differences.
fn check_gradients(
    case: &Case,
    g: &Graph,
    claims: &[Claim],
    inputs: &[Tensor],
    values: &[Tensor],
    stats: &mut Stats,
) -> Result<(), Failure> {
    let mut per_f: Vec<(usize, Graph)> = Vec::new();
    for c in claims {
        if !per_f.iter().any(|(f, _)| *f == c.f()) {
            per_f.push((c.f(), only_output(g, c.f())));
        }
    }
    // A while loop whose trip count depends on the inputs makes the loss piecewise smooth: a
    // difference step that changes a trip count crosses a jump. The generator keeps the nodes
    // of the stacked conditions of such loops (loops in bodies have input-independent trip
    // counts in smooth cases), so a step is comparable with the base point exactly when every
    // one of them is bitwise the same; otherwise the probe reads NaN and is skipped.
    let conds = crate::random_loops::while_conditions(g);
    let mut trips = g.clone();
    trips.set_outputs(conds.clone());
    opt::dce::eliminate_dead_nodes(&mut trips);
    let base_trips = interp::run(&trips, inputs).map_err(|e| fail(Kind::Build, e.to_string()))?;
    let flips = Cell::new(0);
    let run = |gf: &Graph, ins: &[Tensor]| -> Result<f64, Failure> {
        if !conds.is_empty() {
            let t = interp::run(&trips, ins).map_err(|e| fail(Kind::Build, e.to_string()))?;
            if t.iter().zip(&base_trips).any(|(a, b)| !same_bits(a, b)) {
                flips.set(flips.get() + 1);
                return Ok(f64::NAN);
            }
        }
        let out = interp::run(gf, ins).map_err(|e| fail(Kind::Build, e.to_string()))?;
        Ok(out[0].scalar_value().unwrap_or(f64::NAN))
    };
    let mut r = crate::random::Rng(case.seed ^ 0xFD);
    let seen = Cell::new(0);
    let mut record = |res: Result<bool, String>, what: String| -> Result<(), Failure> {
        if flips.get() > seen.get() {
            seen.set(flips.get());
            stats.fd_flips += 1;
        }
        match res {
            Ok(true) => stats.fd_checked += 1,
            Ok(false) => stats.fd_skipped += 1,
            Err(m) => return Err(fail(Kind::Gradient, format!("{what}: {m}"))),
        }
        Ok(())
    };
    for c in claims {
        let gf = &per_f
            .iter()
            .find(|(f, _)| *f == c.f())
            .expect("built above")
            .1;
        match c {
            Claim::Partial { f, x, d } => {
                let xv = inputs[*x].to_f64_vec();
                let ad = values[*d].to_f64_vec();
                let n = xv.len();
                let picks: Vec<usize> = if n <= 4 {
                    (0..n).collect()
                } else {
                    (0..4).map(|_| r.below(n)).collect()
                };
                for j in picks {
                    let eval = |delta: f64| -> Result<f64, Failure> {
                        let mut ins = inputs.to_vec();
                        let Data::F64(v) = ins[*x].data_mut() else {
                            return Err(fail(Kind::Build, "smooth cases are f64"));
                        };
                        v[j] += delta;
                        run(gf, &ins)
                    };
                    let res = probe(ad[j], xv[j].abs(), &eval)?;
                    record(res, format!("d(out{f})/d(input {x}) element {j}"))?;
                }
            }
            Claim::Directional { f, d, dirs } => {
                let ad = values[*d].scalar_value().unwrap_or(f64::NAN);
                let eval = |t: f64| -> Result<f64, Failure> {
                    let mut ins = inputs.to_vec();
                    for (k, dir) in dirs {
                        let Data::F64(v) = ins[*k].data_mut() else {
                            return Err(fail(Kind::Build, "smooth cases are f64"));
                        };
                        for (x, dx) in v.iter_mut().zip(dir.to_f64_vec()) {
                            *x += t * dx;
                        }
                    }
                    run(gf, &ins)
                };
                let res = probe(ad, 1.0, &eval)?;
                record(res, format!("JVP of out{f} (output {d})"))?;
            }
        }
    }
    Ok(())
}

/// All checks on one case.
fn check(case: &Case) -> Result<Stats, Failure> {
    let mut stats = Stats {
        cases: 1,
        ..Stats::default()
    };
    let (g, claims) = guarded("build", || case.build())?.map_err(|e| fail(Kind::Build, e))?;
    gradlift::ir::verify(&g).map_err(|e| fail(Kind::Build, e.to_string()))?;
    stats.nodes = g.len() as u64;
    let inputs = input_values(&g, case.seed);
    let want = guarded("interp", || interp::run(&g, &inputs))?
        .map_err(|e| fail(Kind::Build, e.to_string()))?;
    check_jit(&g, &inputs, &want, "unoptimized")?;

    let mut o = g.clone();
    guarded("optimize", || {
        opt::optimize(
            &mut o,
            &OptConfig {
                verify: true,
                ..OptConfig::default()
            },
        )
    })?;
    let opt_want = guarded("interp (optimized)", || interp::run(&o, &inputs))?
        .map_err(|e| fail(Kind::OptVsUnopt, e.to_string()))?;
    if opt_want.len() != want.len() {
        return Err(fail(Kind::OptVsUnopt, "the optimizer changed the outputs"));
    }
    for (k, (a, b)) in opt_want.iter().zip(&want).enumerate() {
        if !same_numbers(a, b) {
            return Err(fail(
                Kind::OptVsUnopt,
                format!("output {k}: optimized {a:?} != unoptimized {b:?}"),
            ));
        }
    }
    check_jit(&o, &inputs, &opt_want, "optimized")?;

    if case.smooth && !claims.is_empty() {
        stats.smooth_cases += 1;
        check_gradients(case, &g, &claims, &inputs, &want, &mut stats)?;
    }
    Ok(stats)
}

// ---- shrinking -----------------------------------------------------------------------------

/// What replaces a node while shrinking.
#[derive(Clone, Copy)]
enum Subst {
    /// One of its operands (of the same type).
    Operand(NodeId),
    /// A fresh input of its type.
    Input,
}

/// `g` with node `n` replaced, pruned to what the outputs need (unused inputs dropped), outputs
/// renamed `out0`, `out1`, ...
fn substitute(g: &Graph, n: Option<(NodeId, Subst)>, outputs: &[NodeId]) -> Option<Graph> {
    let operands = |i: usize| -> Vec<NodeId> {
        match n {
            Some((m, Subst::Operand(x))) if m.index() == i => vec![x],
            Some((m, Subst::Input)) if m.index() == i => Vec::new(),
            _ => g.nodes()[i].inputs.clone(),
        }
    };
    let mut live = vec![false; g.len()];
    for o in outputs {
        live[o.index()] = true;
    }
    for i in (0..g.len()).rev() {
        if live[i] {
            for x in operands(i) {
                live[x.index()] = true;
            }
        }
    }
    let mut new = Graph::new(g.name.clone());
    let mut map: Vec<Option<NodeId>> = vec![None; g.len()];
    for i in 0..g.len() {
        if !live[i] {
            continue;
        }
        let node = &g.nodes()[i];
        map[i] = Some(match n {
            Some((m, Subst::Operand(x))) if m.index() == i => map[x.index()]?,
            Some((m, Subst::Input)) if m.index() == i => {
                new.add_input(&format!("s{i}"), node.ty.clone()).ok()?
            }
            _ => match node.op {
                Op::Input => new
                    .add_input(&g.value_name(NodeId(i as u32)), node.ty.clone())
                    .ok()?,
                Op::Const => new.add_const(node.attrs.as_const()?.clone()),
                op => {
                    let ins: Option<Vec<NodeId>> =
                        node.inputs.iter().map(|x| map[x.index()]).collect();
                    new.push(op, ins?, node.attrs.clone()).ok()?
                }
            },
        });
    }
    let outs: Option<Vec<NodeId>> = outputs.iter().map(|o| map[o.index()]).collect();
    let names: Vec<String> = (0..outputs.len()).map(|k| format!("out{k}")).collect();
    let named: Vec<(&str, NodeId)> = names.iter().map(String::as_str).zip(outs?).collect();
    new.set_named_outputs(&named).ok()?;
    Some(new)
}

/// Size for shrinking (lexicographic; every accepted step makes it strictly smaller).
fn size(c: &Case) -> (usize, usize, u8, usize) {
    let g = &c.forward;
    let compute = g
        .nodes()
        .iter()
        .filter(|n| !matches!(n.op, Op::Input | Op::Const))
        .count();
    (compute, g.len(), c.order, g.outputs().len())
}

/// Smaller variants of a case.
fn candidates(c: &Case) -> Vec<Case> {
    let g = &c.forward;
    let with = |forward: Graph, order: u8| Case {
        forward,
        order,
        smooth: c.smooth,
        seed: c.seed,
    };
    let mut out = Vec::new();
    if c.order > 0 {
        out.push(with(g.clone(), c.order - 1));
    }
    let outs = g.outputs().to_vec();
    let keep_first = usize::from(c.order > 0);
    if outs.len() > 1 {
        for k in (keep_first..outs.len()).rev() {
            let mut o = outs.clone();
            o.remove(k);
            if let Some(h) = substitute(g, None, &o) {
                out.push(with(h, c.order));
            }
        }
    }
    for i in (0..g.len()).rev() {
        let node = &g.nodes()[i];
        if matches!(node.op, Op::Input | Op::Const) {
            continue;
        }
        let id = NodeId(i as u32);
        for &x in &node.inputs {
            if g.ty(x) == &node.ty
                && let Some(h) = substitute(g, Some((id, Subst::Operand(x))), &outs)
            {
                out.push(with(h, c.order));
            }
        }
        if let Some(h) = substitute(g, Some((id, Subst::Input)), &outs) {
            out.push(with(h, c.order));
        }
    }
    out
}

/// Shrinks a failing case to a local minimum that fails with the same kind.
fn shrink(mut case: Case, mut failure: Failure) -> (Case, Failure) {
    let kind = failure.kind;
    let mut budget = 2000usize;
    'outer: loop {
        for cand in candidates(&case) {
            if size(&cand) >= size(&case) {
                continue;
            }
            if budget == 0 {
                break 'outer;
            }
            budget -= 1;
            if let Err(f) = check(&cand)
                && f.kind == kind
            {
                case = cand;
                failure = f;
                continue 'outer;
            }
        }
        break;
    }
    (case, failure)
}

/// One tensor as JSON (the CLI's `--inputs` format).
fn json_value(t: &Tensor) -> String {
    fn num(x: f64, f32: bool) -> String {
        if x.is_nan() {
            "\"nan\"".into()
        } else if x.is_infinite() {
            if x > 0.0 {
                "\"inf\"".into()
            } else {
                "\"-inf\"".into()
            }
        } else if f32 {
            format!("{:?}", x as f32)
        } else {
            format!("{x:?}")
        }
    }
    let v = t.to_f64_vec();
    let is_f32 = t.dtype() == gradlift::DType::F32;
    let is_bool = t.dtype() == gradlift::DType::Bool;
    let elem = |x: f64| {
        if is_bool {
            (x != 0.0).to_string()
        } else {
            num(x, is_f32)
        }
    };
    let shape = t.shape();
    if shape.is_empty() {
        return elem(v[0]);
    }
    let mut s = String::new();
    let mut idx = vec![0usize; shape.len()];
    for (k, &x) in v.iter().enumerate() {
        // Open a bracket for every axis whose index is 0 from the first such axis on.
        let opens = idx.iter().rev().take_while(|&&i| i == 0).count();
        if k > 0 {
            s.push_str(", ");
        }
        s.push_str(&"[".repeat(opens));
        s.push_str(&elem(x));
        let mut closes = 0;
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
            closes += 1;
        }
        s.push_str(&"]".repeat(closes));
    }
    s
}

/// The report of a (shrunk) failure: the graph as `.gir` and its inputs as JSON.
fn report(original: &Case, case: &Case, f: &Failure) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "differential failure ({:?}), seed {}: shrunk from {} to {} forward nodes (order {}):\n  {}",
        f.kind,
        original.seed,
        original.forward.len(),
        case.forward.len(),
        case.order,
        f.message
    );
    match case.build() {
        Ok((g, claims)) => {
            let _ = writeln!(s, "--- graph (.gir, derivatives appended) ---");
            s.push_str(&text::print(&g));
            let inputs = input_values(&g, case.seed);
            let fields: Vec<String> = g
                .inputs()
                .iter()
                .zip(&inputs)
                .map(|(&i, t)| format!("\"{}\": {}", g.value_name(i), json_value(t)))
                .collect();
            let _ = writeln!(s, "--- inputs (JSON) ---\n{{{}}}", fields.join(", "));
            let _ = writeln!(s, "--- gradient claims (f, x, d) --- {claims:?}");
        }
        Err(e) => {
            let _ = writeln!(s, "(does not build: {e})\n{}", text::print(&case.forward));
        }
    }
    s
}

/// The generator settings for case number `i`: a quarter each of smooth cases (every
/// derivative mode in turn, checked against finite differences), smooth cases again, guarded
/// all-op cases and unguarded all-op cases (every derivative mode, or none).
fn config_for(i: u64) -> GenConfig {
    let steps = 1 + (i / 4 % 24) as usize;
    // Orders 1..=4 for the smooth quarters, 0..=4 for the others.
    let smooth_order = 1 + (i / 4 % 4) as u8;
    let any_order = (i / 4 % 5) as u8;
    match i % 4 {
        0 | 1 => GenConfig {
            steps: if smooth_order == ORDER_REVERSE || smooth_order == ORDER_FORWARD {
                steps
            } else {
                steps.min(12)
            },
            safe: true,
            smooth: true,
            order: smooth_order,
            syntax: false,
            loops: true,
        },
        2 => GenConfig {
            steps,
            safe: true,
            smooth: false,
            order: any_order,
            syntax: false,
            loops: true,
        },
        _ => GenConfig {
            steps,
            safe: false,
            smooth: false,
            order: any_order,
            syntax: false,
            loops: true,
        },
    }
}

/// Runs cases `0..n` on `threads` threads; returns the counters and the shrunk failures.
fn run_cases(n: u64, threads: u64, base_seed: u64) -> (Stats, Vec<String>) {
    // Long runs report progress (cases done, failures so far) every 20000 cases.
    let done = std::sync::atomic::AtomicU64::new(0);
    let failed = std::sync::atomic::AtomicU64::new(0);
    let started = std::time::Instant::now();
    let tick = |failure: bool| {
        use std::sync::atomic::Ordering::Relaxed;
        if failure {
            failed.fetch_add(1, Relaxed);
        }
        let k = done.fetch_add(1, Relaxed) + 1;
        if n >= 100_000 && k.is_multiple_of(20_000) {
            eprintln!(
                "differential progress: {k} of {n} cases, {} failures, {:.0} s",
                failed.load(Relaxed),
                started.elapsed().as_secs_f64()
            );
        }
    };
    let tick = &tick;
    let results: Vec<(Stats, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut stats = Stats::default();
                    let mut failures = Vec::new();
                    let mut i = t;
                    while i < n {
                        let seed = base_seed.wrapping_add(i.wrapping_mul(0x9E37_79B9));
                        let case = generate(seed, &config_for(i));
                        let res = check(&case);
                        tick(res.is_err());
                        match res {
                            Ok(st) => stats += st,
                            Err(f) => {
                                stats.cases += 1;
                                let (small, sf) = shrink(case.clone(), f);
                                failures.push(report(&case, &small, &sf));
                                if failures.len() >= 3 {
                                    break;
                                }
                            }
                        }
                        i += threads;
                    }
                    (stats, failures)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker threads catch panics"))
            .collect()
    });
    let mut stats = Stats::default();
    let mut failures = Vec::new();
    for (s, f) in results {
        stats += s;
        failures.extend(f);
    }
    (stats, failures)
}

fn cases_from_env(default: u64) -> u64 {
    std::env::var("GRADLIFT_DIFF_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

fn run_and_assert(n: u64, threads: u64) {
    let t = std::time::Instant::now();
    let (stats, failures) = run_cases(n, threads, 0xD1FF);
    eprintln!(
        "differential: {} cases ({} smooth with gradients; {} finite-difference checks, {} \
         skipped as not smooth at the step size, {} of them across a while loop's exit), {} \
         nodes, {} failures, {:.1} s",
        stats.cases,
        stats.smooth_cases,
        stats.fd_checked,
        stats.fd_skipped,
        stats.fd_flips,
        stats.nodes,
        failures.len(),
        t.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(stats.cases, n);
    // The check is only meaningful if it checks something.
    assert!(stats.fd_checked >= stats.smooth_cases, "{stats:?}");
}

#[test]
fn differential_random_graphs() {
    let default = if cfg!(debug_assertions) { 400 } else { 3000 };
    run_and_assert(cases_from_env(default), 2);
}

/// The long mode: a million cases (or `GRADLIFT_DIFF_CASES`), on every core.
#[test]
#[ignore = "long mode: cargo test --release differential_long -- --ignored"]
fn differential_long() {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get() as u64);
    run_and_assert(cases_from_env(1_000_000), threads);
}

/// The shrinker and the report work: a planted "bug" (an output that disagrees with itself)
/// is shrunk to a small graph, printed as `.gir` that parses back.
#[test]
fn shrinking_finds_a_small_graph_and_prints_it() {
    // Predicate: the case fails when its forward graph contains an `exp` node.
    let has_exp = |c: &Case| c.forward.nodes().iter().any(|n| n.op == Op::Exp);
    let mut seed = 0;
    // The planted bug must be live: an `exp` no output depends on is dropped by every
    // candidate, and nothing could shrink.
    let live_exp = |c: &Case| {
        substitute(&c.forward, None, c.forward.outputs())
            .is_some_and(|g| g.nodes().iter().any(|n| n.op == Op::Exp))
    };
    let case = loop {
        let c = generate(seed, &config_for(2 + 4 * 20));
        if live_exp(&c) && c.forward.len() > 15 {
            break c;
        }
        seed += 1;
    };
    let mut cur = case.clone();
    'outer: loop {
        for cand in candidates(&cur) {
            if size(&cand) < size(&cur) && has_exp(&cand) {
                cur = cand;
                continue 'outer;
            }
        }
        break;
    }
    // Minimal: an input (or fresh input), the exp, and what the loss needs around it.
    assert!(cur.forward.len() < case.forward.len());
    assert!(cur.forward.len() <= 6, "{}", text::print(&cur.forward));
    let r = report(&case, &cur, &fail(Kind::Gradient, "planted"));
    let gir = r
        .split("--- graph (.gir, derivatives appended) ---\n")
        .nth(1)
        .and_then(|s| s.split("--- inputs").next())
        .expect("report has the graph");
    let back = text::parse(gir).expect("the report's graph parses");
    assert!(back.nodes().iter().any(|n| n.op == Op::Exp));
    assert!(r.contains("--- inputs (JSON) ---\n{"), "{r}");
}

/// The finite-difference check is sensitive: a gradient off by 0.1% fails it.
#[test]
fn finite_differences_catch_a_wrong_gradient() {
    let mut caught = 0;
    for i in 0..40u64 {
        let case = generate(i, &config_for(4 * (i % 12)));
        let (g, claims) = case.build().unwrap();
        if claims.is_empty() {
            continue;
        }
        let inputs = input_values(&g, case.seed);
        let mut values = interp::run(&g, &inputs).unwrap();
        let mut stats = Stats::default();
        check_gradients(&case, &g, &claims, &inputs, &values, &mut stats).unwrap();
        // Corrupt every claimed gradient element that is not tiny.
        for c in &claims {
            let (Claim::Partial { d, .. } | Claim::Directional { d, .. }) = c;
            if let Data::F64(v) = values[*d].data_mut() {
                for x in v.iter_mut() {
                    if x.abs() > 1e-3 {
                        *x *= 1.001;
                    }
                }
            }
        }
        let before = stats.fd_checked;
        if check_gradients(&case, &g, &claims, &inputs, &values, &mut stats).is_err() {
            caught += 1;
        } else {
            // Only possible if no checked element was large enough to corrupt.
            assert_eq!(stats.fd_checked, 2 * before, "case {i}");
        }
    }
    assert!(
        caught >= 20,
        "only {caught} of 40 corrupted gradients caught"
    );
}

#[test]
fn json_values_nest_by_shape() {
    let t = Tensor::from_f64(vec![2, 1, 2], vec![1.0, -0.5, f64::NAN, 2.0]);
    assert_eq!(json_value(&t), "[[[1.0, -0.5]], [[\"nan\", 2.0]]]");
    assert_eq!(
        json_value(&Tensor::scalar_f64(f64::NEG_INFINITY)),
        "\"-inf\""
    );
    let b = Tensor::new(vec![2], Data::Bool(vec![true, false]));
    assert_eq!(json_value(&b), "[true, false]");
}

/// The generator reaches what the differential test claims to cover: every op, every dtype,
/// ranks 0 to 4, broadcasting between differently shaped operands, values with several users,
/// first- and second-order gradient claims, forward-mode (JVP) claims, and loops in smooth
/// cases (whose derivatives are checked against finite differences), nested ones too.
#[test]
fn generator_covers_ops_dtypes_ranks_and_derivatives() {
    use gradlift::DType;
    let mut ops = std::collections::HashSet::new();
    let mut dtypes = std::collections::HashSet::new();
    let mut ranks = std::collections::HashSet::new();
    let (mut broadcasts, mut reused, mut second_order, mut forward) = (0, 0, 0, 0);
    let (mut smooth_loops, mut nested) = (0, 0);
    for i in 0..400u64 {
        let case = generate(i * 7919, &config_for(i));
        let scan_bodies: Vec<&Graph> = (case.forward.nodes().iter())
            .filter_map(|n| gradlift::ir::loops::scan_attrs(&n.attrs).map(|(lp, _)| &lp.body))
            .collect();
        if case.smooth && !scan_bodies.is_empty() {
            smooth_loops += 1;
        }
        if scan_bodies
            .iter()
            .any(|b| b.nodes().iter().any(|n| n.op == Op::Scan))
        {
            nested += 1;
        }
        let (g, claims) = case.build().unwrap();
        let uses = g.use_counts();
        for (k, n) in g.nodes().iter().enumerate() {
            ops.insert(n.op);
            dtypes.insert(n.ty.dtype);
            ranks.insert(n.ty.rank());
            if n.inputs.len() == 2
                && gradlift::ops::rules(n.op).props.elementwise
                && g.ty(n.inputs[0]).shape != g.ty(n.inputs[1]).shape
            {
                broadcasts += 1;
            }
            if uses[k] > 1 && n.op != Op::Const {
                reused += 1;
            }
        }
        if claims.iter().any(|c| c.f() > 0) {
            second_order += 1;
        }
        if claims
            .iter()
            .any(|c| matches!(c, Claim::Directional { .. }))
        {
            forward += 1;
        }
    }
    let missing: Vec<Op> = Op::ALL
        .iter()
        .copied()
        .filter(|o| !ops.contains(o))
        .collect();
    assert!(missing.is_empty(), "ops never generated: {missing:?}");
    for d in [DType::F32, DType::F64, DType::Bool] {
        assert!(dtypes.contains(&d), "{d}");
    }
    for r in 0..=4 {
        assert!(ranks.contains(&r), "rank {r} never generated");
    }
    assert!(
        broadcasts > 100 && reused > 400 && second_order > 50 && forward > 30,
        "{broadcasts} {reused} {second_order} {forward}"
    );
    assert!(smooth_loops > 20 && nested > 3, "{smooth_loops} {nested}");
}
