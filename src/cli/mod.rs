//! The commands behind `gradlift run | print | bench | dot`, and the steps they share: reading a
//! `.gir` file, appending the adjoint (`--grad`, `--wrt`), optimizing, and evaluating.
//!
//! Every user mistake becomes a [`CliError`] (printed by `main` as `error: ...`, exit status 1);
//! nothing here panics on any input. Not here: argument syntax (clap, in `main.rs`), and any
//! graph semantics (the library's).

mod backend;
mod bench;
mod derivs;
mod dot;
mod gradbench;
mod inputs;
mod json_out;

use crate::{Backend, Command, DotArgs, GradArgs, PrintArgs, RunArgs};
use gradlift::ir::text;
use gradlift::opt::{self, OptConfig, OptReport};
use gradlift::{Attrs, Graph, NodeId, Op, Origin, Tensor, TensorType};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

/// A user-facing error: one line, without the `error: ` prefix (which `main` adds).
#[derive(Debug)]
pub struct CliError(String);

impl CliError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> CliError {
        CliError(message.into())
    }

    /// A broken internal invariant: reported, not panicked on.
    pub fn bug(message: impl fmt::Display) -> CliError {
        CliError(format!("internal error (bug): {message}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs one subcommand.
pub fn dispatch(cli: crate::Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run(a) => run(&a),
        Command::Print(a) => print(&a),
        Command::Bench(a) => bench::bench(&a),
        Command::Dot(a) => dot(&a),
        Command::Gradbench(a) => gradbench::run(&a),
    }
}

/// A graph input as the JSON sees it: its name and type.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSig {
    /// The input's name (its value name without `%`).
    pub name: String,
    /// Its declared type.
    pub ty: TensorType,
}

/// The inputs of `g`, in order.
pub fn input_sigs(g: &Graph) -> Vec<InputSig> {
    g.inputs()
        .into_iter()
        .map(|id| InputSig {
            name: g.value_name(id),
            ty: g.ty(id).clone(),
        })
        .collect()
}

/// A graph ready to evaluate or print: outputs are the original outputs followed by one gradient
/// per `wrt` input.
pub struct Prepared {
    /// The graph (after `--grad` and the optimizer, if asked).
    pub graph: Graph,
    /// The original inputs, in order.
    pub inputs: Vec<InputSig>,
    /// Names of the original outputs (the first `outputs.len()` graph outputs).
    pub outputs: Vec<String>,
    /// Names of the differentiated inputs (the remaining graph outputs, in order).
    pub grads: Vec<String>,
    /// Node count before the optimizer (after the adjoint was appended).
    pub nodes_before: usize,
    /// The optimizer's report, if it ran.
    pub report: Option<OptReport>,
}

/// Reads and parses a `.gir` file. Errors name the file, and the line and column for syntax and
/// type errors.
pub fn load(path: &Path) -> Result<Graph, CliError> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| CliError(format!("cannot read {shown}: {e}")))?;
    let src = utf8(bytes, &shown.to_string())?;
    text::parse(&src).map_err(|e| CliError(format!("{shown}:{}:{}: {}", e.line, e.col, e.message)))
}

/// Bytes to a `String`, or an error naming the line and column of the first bad byte.
pub fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, CliError> {
    String::from_utf8(bytes).map_err(|e| {
        let ok = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = ok.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = ok.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        // The prefix is valid UTF-8 by construction; count characters for the column.
        let col = String::from_utf8_lossy(&ok[line_start..]).chars().count() + 1;
        CliError(format!("{what}:{line}:{col}: the file is not valid UTF-8"))
    })
}

/// Parses a file, appends the adjoint if `--grad`, and optimizes if `optimize`.
pub fn prepare(path: &Path, grad: &GradArgs, optimize: bool) -> Result<Prepared, CliError> {
    prepare_graph(load(path)?, path, grad, optimize)
}

/// [`prepare`] on a graph already read from `path` (named in messages).
pub fn prepare_graph(
    mut g: Graph,
    path: &Path,
    grad: &GradArgs,
    optimize: bool,
) -> Result<Prepared, CliError> {
    let inputs = input_sigs(&g);
    let outputs: Vec<String> = g.outputs().iter().map(|&o| g.value_name(o)).collect();
    let mut grads = Vec::new();
    if grad.grad {
        grads = append_gradients(&mut g, grad.wrt.as_deref(), path)?;
    }
    let nodes_before = g.len();
    let report = optimize.then(|| opt::optimize(&mut g, &OptConfig::default()));
    if input_sigs(&g) != inputs || g.outputs().len() != outputs.len() + grads.len() {
        return Err(CliError::bug(
            "the optimizer changed the graph's inputs or outputs",
        ));
    }
    Ok(Prepared {
        graph: g,
        inputs,
        outputs,
        grads,
        nodes_before,
        report,
    })
}

/// Appends `∂(first output)/∂w` for each `w` (all float inputs, or those named by `--wrt`), names
/// each gradient `grad_<input>` (or a free variant), and makes the outputs the original outputs
/// followed by the gradients. Returns the differentiated inputs' names.
fn append_gradients(
    g: &mut Graph,
    wrt: Option<&[String]>,
    path: &Path,
) -> Result<Vec<String>, CliError> {
    let shown = path.display();
    let Some(&y) = g.outputs().first() else {
        return Err(CliError(format!(
            "{shown}: --grad: the graph has no outputs"
        )));
    };
    let yty = g.ty(y);
    if !yty.is_scalar() || !yty.dtype.is_float() {
        return Err(CliError(format!(
            "{shown}: --grad: the first output %{} has type {yty}; it must be a float scalar \
             (f32[] or f64[]) to be differentiated",
            g.value_name(y)
        )));
    }
    let wrt_ids: Vec<NodeId> = match wrt {
        None => g
            .inputs()
            .into_iter()
            .filter(|&i| g.ty(i).dtype.is_float())
            .collect(),
        Some(names) => {
            let by_name: HashMap<String, NodeId> = g
                .inputs()
                .into_iter()
                .map(|i| (g.value_name(i), i))
                .collect();
            let mut ids = Vec::new();
            let mut listed = HashSet::new();
            for name in names {
                let id = wrt_input(g, &by_name, name, path)?;
                if !listed.insert(id) {
                    return Err(CliError(format!("--wrt: input {name} is listed twice")));
                }
                ids.push(id);
            }
            // Gradients are reported in input order, whatever the order on the command line.
            ids.sort_unstable();
            ids
        }
    };
    let forward_len = g.len();
    let grads = gradlift::autodiff::grad(g, y, &wrt_ids)
        .map_err(|e| CliError(format!("{shown}: --grad: {e}")))?;
    let mut outs = g.outputs().to_vec();
    let mut used: HashSet<NodeId> = outs.iter().copied().collect();
    let mut taken = NameSet::of(g);
    let mut names = Vec::new();
    for (&w, &d) in wrt_ids.iter().zip(&grads) {
        let input = g.value_name(w);
        let fresh = d.index() >= forward_len && g.node(d).name.is_none() && !used.contains(&d);
        let id = if fresh {
            d
        } else {
            copy_node(g, d, Origin::Adjoint(w))?
        };
        let name = taken.fresh(&format!("grad_{input}"));
        g.set_name(id, Some(&name));
        used.insert(id);
        outs.push(id);
        names.push(input);
    }
    g.set_outputs(outs);
    Ok(names)
}

/// The input `name` as a `--wrt` target: it must exist and be a float input.
fn wrt_input(
    g: &Graph,
    by_name: &HashMap<String, NodeId>,
    name: &str,
    path: &Path,
) -> Result<NodeId, CliError> {
    let Some(&id) = by_name.get(name) else {
        let all: Vec<String> = input_sigs(g).into_iter().map(|s| s.name).collect();
        let list = if all.is_empty() {
            "the graph has no inputs".to_string()
        } else {
            format!("its inputs are {}", all.join(", "))
        };
        return Err(CliError(format!(
            "--wrt: {name:?} is not an input of {} ({list})",
            path.display()
        )));
    };
    let dtype = g.ty(id).dtype;
    if !dtype.is_float() {
        return Err(CliError(format!(
            "--wrt: input {name} has dtype {dtype}; only f32 and f64 inputs can be differentiated"
        )));
    }
    Ok(id)
}

/// Appends an identity `reshape` of `id` (a distinct value with the same contents).
fn copy_node(g: &mut Graph, id: NodeId, origin: Origin) -> Result<NodeId, CliError> {
    let shape = g.ty(id).shape.clone();
    let copy = g
        .push(Op::Reshape, vec![id], Attrs::Shape { shape })
        .map_err(CliError::bug)?;
    g.set_origin(copy, origin);
    Ok(copy)
}

/// The value names used in a graph, built once so naming many new values stays linear.
struct NameSet(HashSet<String>);

impl NameSet {
    /// Every name a node of `g` has.
    fn of(g: &Graph) -> NameSet {
        NameSet(
            g.nodes()
                .iter()
                .filter_map(|n| n.name.as_deref().map(String::from))
                .collect(),
        )
    }

    /// `base`, or `base_2`, `base_3`, ...: the first name not yet taken, which it then takes.
    fn fresh(&mut self, base: &str) -> String {
        let name = if self.0.contains(base) {
            (2..)
                .map(|i| format!("{base}_{i}"))
                .find(|n| !self.0.contains(n))
                .unwrap_or_else(|| base.to_string())
        } else {
            base.to_string()
        };
        self.0.insert(name.clone());
        name
    }
}

/// Gives every repeated output its own identity copy, so the graph is a valid `.gir` (outputs are
/// distinct values). `names[i]` is the name wanted for output `i`.
fn distinct_outputs(g: &mut Graph, names: &[String]) -> Result<(), CliError> {
    let mut outs = g.outputs().to_vec();
    let mut seen = HashSet::new();
    let mut taken = NameSet::of(g);
    for (i, out) in outs.iter_mut().enumerate() {
        if !seen.insert(*out) {
            let copy = copy_node(g, *out, Origin::None)?;
            let name = taken.fresh(names.get(i).map_or("out", String::as_str));
            g.set_name(copy, Some(&name));
            *out = copy;
        }
    }
    g.set_outputs(outs);
    Ok(())
}

/// The graph with repeated outputs removed (what the backends compile), and for each original
/// output position its index among the distinct outputs.
pub fn dedup_outputs(g: &Graph) -> (Graph, Vec<usize>) {
    let mut uniq: Vec<NodeId> = Vec::new();
    let mut index: HashMap<NodeId, usize> = HashMap::new();
    let map = g
        .outputs()
        .iter()
        .map(|&o| {
            *index.entry(o).or_insert_with(|| {
                uniq.push(o);
                uniq.len() - 1
            })
        })
        .collect();
    let mut d = g.clone();
    d.set_outputs(uniq);
    (d, map)
}

/// Default cap on tensor memory for `run`/`bench`, overridable with `GRADLIFT_MAX_BYTES`.
const DEFAULT_MAX_BYTES: u128 = 4 << 30;

/// Refuses graphs whose values would need more memory than the limit (an upper bound: the sum
/// of every node's value), so a huge declared shape is an error instead of an out-of-memory
/// abort.
pub fn check_memory(g: &Graph) -> Result<(), CliError> {
    let limit = match std::env::var("GRADLIFT_MAX_BYTES") {
        Ok(s) => s
            .trim()
            .parse::<u128>()
            .map_err(|_| CliError(format!("GRADLIFT_MAX_BYTES={s:?} is not a number of bytes")))?,
        Err(_) => DEFAULT_MAX_BYTES,
    };
    let total: u128 = g
        .nodes()
        .iter()
        .map(|n| n.ty.numel() as u128 * n.ty.dtype.size_bytes() as u128)
        .sum();
    if total > limit {
        return Err(CliError(format!(
            "the graph's values need up to {total} bytes, more than the limit of {limit} bytes \
             (set GRADLIFT_MAX_BYTES to raise it)"
        )));
    }
    Ok(())
}

/// Reads the `--inputs` file (or standard input for `-`) and converts it, or generates inputs.
pub fn read_inputs(arg: Option<&Path>, sigs: &[InputSig]) -> Result<Vec<Tensor>, CliError> {
    let Some(path) = arg else {
        return Ok(inputs::random_inputs(sigs));
    };
    let (what, bytes) = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| CliError(format!("cannot read inputs from standard input: {e}")))?;
        ("<stdin>".to_string(), buf)
    } else {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| CliError(format!("cannot read inputs file {shown}: {e}")))?;
        (shown, bytes)
    };
    let src = utf8(bytes, &what)?;
    inputs::parse_inputs(&src, &what, sigs)
}

/// Evaluates `g`'s outputs on `inputs` with the chosen backend (`jit`: the JIT's options).
pub fn evaluate(
    g: &Graph,
    inputs: &[Tensor],
    backend: Backend,
    jit: backend::JitOpts,
) -> Result<Vec<Tensor>, CliError> {
    let (d, map) = dedup_outputs(g);
    let outs = match backend {
        Backend::Interp => gradlift::interp::run(&d, inputs).map_err(CliError::bug)?,
        Backend::Jit => backend::run_jit(&d, inputs, jit)?,
    };
    if outs.len() != d.outputs().len() {
        return Err(CliError::bug(
            "the backend returned the wrong number of outputs",
        ));
    }
    Ok(map.into_iter().map(|i| outs[i].clone()).collect())
}

/// Writes `text` to stdout; a closed pipe or full disk is an error, not a panic.
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError(format!("cannot write the output: {e}")))
}

/// [`evaluate`] in checked mode: a node that produced a non-finite value from finite operands
/// is an error naming it (its statement, its line in `path`, the forward node of an adjoint).
pub fn evaluate_checked(
    g: &Graph,
    inputs: &[Tensor],
    backend: Backend,
    jit: backend::JitOpts,
    path: &Path,
) -> Result<Vec<Tensor>, CliError> {
    let (d, map) = dedup_outputs(g);
    let outs = match backend {
        Backend::Interp => match gradlift::interp::run_checked(&d, inputs) {
            Ok(o) => Ok(o),
            Err(gradlift::interp::EvalError::NonFinite(r)) => Err(Ok(r)),
            Err(e) => Err(Err(CliError::bug(e))),
        },
        Backend::Jit => backend::run_jit_checked(&d, inputs, jit),
    };
    let outs = match outs {
        Ok(o) => o,
        Err(Ok(report)) => {
            let file = path.display().to_string();
            return Err(CliError(report.describe(&d, Some(&file))));
        }
        Err(Err(e)) => return Err(e),
    };
    if outs.len() != d.outputs().len() {
        return Err(CliError::bug(
            "the backend returned the wrong number of outputs",
        ));
    }
    Ok(map.into_iter().map(|i| outs[i].clone()).collect())
}

fn run(a: &RunArgs) -> Result<(), CliError> {
    // The optimizer runs after every derivative (gradient, Jacobian, Hessian) is appended.
    // Checked mode evaluates the graph as written: the optimizer would renumber nodes and fold
    // constants, hiding where a value came from.
    let mut p = prepare(&a.file, &a.grad, false)?;
    if a.print_inputs {
        check_memory(&p.graph)?;
        let inputs = read_inputs(a.inputs.as_deref(), &p.inputs)?;
        let mut s = String::new();
        json_out::object(&mut s, p.inputs.iter().map(|i| &i.name).zip(&inputs));
        s.push('\n');
        return emit(&s);
    }
    let derivs = derivs::append(&mut p.graph, p.outputs.len(), &a.derivs, &a.file)?;
    if !a.no_opt && !a.check_finite {
        let outputs = p.graph.outputs().len();
        p.report = Some(opt::optimize(&mut p.graph, &OptConfig::default()));
        if input_sigs(&p.graph) != p.inputs || p.graph.outputs().len() != outputs {
            return Err(CliError::bug(
                "the optimizer changed the graph's inputs or outputs",
            ));
        }
    }
    check_memory(&p.graph)?;
    let inputs = read_inputs(a.inputs.as_deref(), &p.inputs)?;
    if a.budget.bytes.is_some() && a.backend != Backend::Jit {
        return Err(CliError(
            "--memory-budget bounds a JIT kernel's workspace: use it with --backend jit".into(),
        ));
    }
    let jit = backend::JitOpts {
        threads: a.threads.n,
        memory_budget: a.budget.bytes,
    };
    let values = if a.check_finite {
        evaluate_checked(&p.graph, &inputs, a.backend, jit, &a.file)?
    } else {
        evaluate(&p.graph, &inputs, a.backend, jit)?
    };
    let (outs, rest) = values.split_at(p.outputs.len().min(values.len()));
    let (grads, rest) = rest.split_at(p.grads.len().min(rest.len()));
    let mut s = String::from("{\"outputs\": ");
    json_out::object(&mut s, p.outputs.iter().zip(outs));
    if a.grad.grad {
        s.push_str(", \"gradients\": ");
        json_out::object(&mut s, p.grads.iter().zip(grads));
    }
    derivs.write_json(&mut s, rest)?;
    s.push_str("}\n");
    emit(&s)
}

fn print(a: &PrintArgs) -> Result<(), CliError> {
    let mut p = prepare(&a.file, &a.grad, a.opt)?;
    let names: Vec<String> = p
        .outputs
        .iter()
        .cloned()
        .chain(p.grads.iter().map(|n| format!("grad_{n}")))
        .collect();
    distinct_outputs(&mut p.graph, &names)?;
    emit(&text::print(&p.graph))
}

fn dot(a: &DotArgs) -> Result<(), CliError> {
    let mut p = prepare(&a.file, &a.grad, a.opt)?;
    let (d, _) = dedup_outputs(&p.graph);
    p.graph = d;
    emit(&dot::to_dot(&p.graph))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradlift::DType;

    fn seed() -> Graph {
        let mut g = Graph::new("seed");
        let f = TensorType::scalar(DType::F64);
        let x1 = g.add_input("x1", f.clone()).unwrap();
        let x2 = g.add_input("x2", f).unwrap();
        let v = g.push(Op::Mul, vec![x1, x1], Attrs::None).unwrap();
        let y = g.push(Op::Add, vec![v, x2], Attrs::None).unwrap();
        g.set_name(y, Some("y"));
        g.set_outputs(vec![y]);
        g
    }

    fn grad_args(wrt: Option<&[&str]>) -> GradArgs {
        GradArgs {
            grad: true,
            wrt: wrt.map(|w| w.iter().map(ToString::to_string).collect()),
        }
    }

    fn values(p: &Prepared, x: &[f64]) -> Vec<f64> {
        values_on(p, x, Backend::Interp)
    }

    fn values_on(p: &Prepared, x: &[f64], backend: Backend) -> Vec<f64> {
        let inputs: Vec<Tensor> = x.iter().map(|&v| Tensor::scalar_f64(v)).collect();
        evaluate(&p.graph, &inputs, backend, backend::JitOpts::default())
            .unwrap()
            .iter()
            .map(|t| t.scalar_value().unwrap())
            .collect()
    }

    #[test]
    fn worked_example_gradients() {
        for optimize in [false, true] {
            let p = prepare_graph(seed(), Path::new("s.gir"), &grad_args(None), optimize).unwrap();
            assert_eq!(p.outputs, ["y"]);
            assert_eq!(p.grads, ["x1", "x2"]);
            for (x1, x2) in [(3.0, 4.0), (-1.5, 0.25)] {
                for backend in [Backend::Interp, Backend::Jit] {
                    let v = values_on(&p, &[x1, x2], backend);
                    assert_eq!(v, [x1 * x1 + x2, 2.0 * x1, 1.0], "{backend:?}");
                }
            }
            let names: Vec<String> = p
                .graph
                .outputs()
                .iter()
                .map(|&o| p.graph.value_name(o))
                .collect();
            assert_eq!(names, ["y", "grad_x1", "grad_x2"]);
        }
    }

    #[test]
    fn shared_gradient_nodes_get_distinct_named_outputs() {
        let mut g = Graph::new("g");
        let f = TensorType::scalar(DType::F64);
        let x = g.add_input("x", f.clone()).unwrap();
        let w = g.add_input("w", f).unwrap();
        let y = g.push(Op::Add, vec![x, w], Attrs::None).unwrap();
        g.set_name(y, Some("grad_x"));
        g.set_outputs(vec![y]);
        let p = prepare_graph(g, Path::new("g.gir"), &grad_args(None), false).unwrap();
        let outs = p.graph.outputs();
        assert_eq!(outs.len(), 3);
        assert!(outs[1] != outs[2]);
        let names: Vec<String> = outs.iter().map(|&o| p.graph.value_name(o)).collect();
        assert_eq!(names, ["grad_x", "grad_x_2", "grad_w"]);
        assert_eq!(values(&p, &[2.0, 5.0]), [7.0, 1.0, 1.0]);
    }

    #[test]
    fn grad_errors() {
        let e = |g: Graph, wrt: Option<&[&str]>| {
            prepare_graph(g, Path::new("f.gir"), &grad_args(wrt), false)
                .err()
                .unwrap()
                .to_string()
        };
        let m = e(seed(), Some(&["x3"]));
        assert!(
            m.contains("\"x3\" is not an input") && m.contains("x1, x2"),
            "{m}"
        );
        let m = e(seed(), Some(&["x2", "x2"]));
        assert!(m.contains("twice"), "{m}");
        let mut g = Graph::new("v");
        let a = g
            .add_input("a", TensorType::new(DType::F32, vec![2]))
            .unwrap();
        let b = g
            .add_input("b", TensorType::new(DType::Bool, vec![]))
            .unwrap();
        g.set_outputs(vec![a, b]);
        let m = e(g.clone(), None);
        assert!(
            m.contains("%a") && m.contains("f32[2]") && m.contains("float scalar"),
            "{m}"
        );
        let s = g.push(
            Op::ReduceSum,
            vec![a],
            Attrs::Reduce {
                axes: vec![0],
                keepdims: false,
            },
        );
        g.set_outputs(vec![s.unwrap()]);
        let m = e(g, Some(&["b"]));
        assert!(m.contains("input b has dtype bool"), "{m}");
    }

    #[test]
    fn repeated_outputs_are_copied_for_printing_and_shared_for_evaluation() {
        let mut g = seed();
        let y = g.outputs()[0];
        let x1 = g.inputs()[0];
        g.set_outputs(vec![y, x1, y]);
        let (d, map) = dedup_outputs(&g);
        assert_eq!(d.outputs(), &[y, x1]);
        assert_eq!(map, [0, 1, 0]);
        distinct_outputs(&mut g, &["y".into(), "x1".into(), "y_again".into()]).unwrap();
        let outs = g.outputs().to_vec();
        assert_eq!(&outs[..2], &[y, x1]);
        assert!(outs[2] != y);
        assert_eq!(g.value_name(outs[2]), "y_again");
        let x = [Tensor::scalar_f64(3.0), Tensor::scalar_f64(4.0)];
        for backend in [Backend::Interp, Backend::Jit] {
            let r = evaluate(&g, &x, backend, backend::JitOpts::default()).unwrap();
            let r: Vec<f64> = r.iter().map(|t| t.scalar_value().unwrap()).collect();
            assert_eq!(r, [13.0, 3.0, 13.0], "{backend:?}");
        }
    }

    #[test]
    fn memory_limit_counts_every_value() {
        let mut g = Graph::new("big");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![1 << 30]))
            .unwrap();
        let y = g.push(Op::Neg, vec![x], Attrs::None).unwrap();
        g.set_outputs(vec![y]);
        // 2 values * 2^30 * 4 bytes = 8 GiB > 4 GiB.
        let m = check_memory(&g).unwrap_err().to_string();
        assert!(m.contains("8589934592 bytes"), "{m}");
        assert!(check_memory(&seed()).is_ok());
    }

    #[test]
    fn utf8_errors_give_line_and_column() {
        let m = utf8(b"ab\nc\xc3\xa9d\n\xff".to_vec(), "f")
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("f:3:1:"), "{m}");
        let m = utf8(b"ab\ncd\xe9".to_vec(), "f").unwrap_err().to_string();
        assert!(m.starts_with("f:2:3:"), "{m}");
    }
}
