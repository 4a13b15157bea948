//! `gradlift gradbench`: a GradBench tool. Reads the eval's JSON-lines messages on stdin and
//! answers each on stdout, as the protocol in GradBench's CONTRIBUTING.md says: `start` (tool
//! name and configuration), `define` (`success` for the modules `gradlift::gradbench`
//! implements, `success: false` with an `error` otherwise), `evaluate` (the `output` and one
//! `evaluate` timing per run, at least `min_runs` runs and until `min_seconds` have passed),
//! and an acknowledgement of anything else (`analysis`).
//!
//! Graph building (with differentiation), optimization and compilation are timed separately
//! (`build`, `optimize`, `compile`) and happen once per module, function and input shape (the
//! JIT's once-per-process set-up is done at `start`, see [`jit::warm_up`]; with
//! `--multithreaded`, kernels run and functions compile on every core, otherwise on one): the
//! compiled kernel is cached under the eval's shape key, and its first call, which touches its
//! fresh workspace and output buffers, is timed as `warmup`. `evaluate` times only the kernel
//! call.
//! A request that fails (bad input, unknown function, a panic) answers `success: false` with
//! an `error`; the session goes on.

use super::CliError;
use crate::GradbenchArgs;
use gradlift::gradbench::{self, Task, Value};
use gradlift::jit::{self, Buf, BufMut, JitConfig, Kernel, Workspace};
use gradlift::opt::{self, OptConfig};
use serde_json::{Map, Value as Json, json};
use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// A compiled kernel with its reusable workspace and output buffers.
struct Compiled {
    kernel: Kernel,
    ws: Workspace,
    outs: Vec<Vec<f64>>,
}

/// The tool's state across messages.
struct Tool {
    cfg: JitConfig,
    multithreaded: bool,
    verbose: bool,
    cache: HashMap<String, Compiled>,
}

/// Runs the protocol loop until stdin closes.
pub fn run(args: &GradbenchArgs) -> Result<(), CliError> {
    let cfg = if args.multithreaded {
        JitConfig::default()
    } else {
        // One thread: kernel calls stay on the calling thread (the loops are still cut into
        // the same chunks, so the outputs equal `--multithreaded`'s bit for bit), and
        // functions compile serially. (Compiling on every core, as `--multithreaded` does,
        // halves a large graph's compile time on an idle machine but lost on a loaded one,
        // where the compile waits for a worker thread to be scheduled: benches/README.md.)
        JitConfig {
            kernel_threads: NonZeroUsize::new(1),
            threads: 1,
            ..JitConfig::default()
        }
    };
    let mut tool = Tool {
        cfg,
        multithreaded: args.multithreaded,
        verbose: args.verbose,
        cache: HashMap::new(),
    };
    let io_err = |e: io::Error| CliError::new(format!("gradbench: {e}"));
    // Buffered: a response with millions of timings is written in many small pieces.
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    for line in io::stdin().lock().lines() {
        let line = line.map_err(io_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let (response, timings) = tool.respond(&line);
        write_response(&mut out, &response, timings.as_ref()).map_err(io_err)?;
        out.flush().map_err(io_err)?;
    }
    Ok(())
}

impl Tool {
    /// The response to one message line, and the timings it carries (written apart: see
    /// [`Timings`]).
    fn respond(&mut self, line: &str) -> (Json, Option<Timings>) {
        let msg: Json = match serde_json::from_str(line) {
            Ok(m) => m,
            Err(e) => {
                return (
                    failure(Json::Null, format!("message is not JSON: {e}")),
                    None,
                );
            }
        };
        let id = msg.get("id").cloned().unwrap_or(Json::Null);
        let response = match msg.get("kind").and_then(Json::as_str) {
            Some("start") => {
                self.warm_up();
                json!({
                    "id": id,
                    "tool": "gradlift",
                    "config": { "multithreaded": self.multithreaded },
                })
            }
            Some("define") => match msg.get("module").and_then(Json::as_str) {
                Some(m) if gradbench::has_module(m) => json!({ "id": id, "success": true }),
                Some(m) => failure(id, gradbench::GbError::UnknownModule(m.into()).to_string()),
                None => failure(id, "define: the message has no string `module`".into()),
            },
            Some("evaluate") => {
                let result = catch_unwind(AssertUnwindSafe(|| self.evaluate(&msg)));
                return match result {
                    Ok(Ok((output, timings))) => (
                        json!({ "id": id, "success": true, "output": output }),
                        Some(timings),
                    ),
                    Ok(Err(e)) => (failure(id, e), None),
                    Err(_) => (
                        failure(id, "internal error (bug): the evaluation panicked".into()),
                        None,
                    ),
                };
            }
            _ => json!({ "id": id }),
        };
        (response, None)
    }

    /// The JIT's once-per-process set-up (see [`jit::warm_up`]), done at `start` so that the
    /// first input's `compile` timing measures that input's compilation like every other
    /// one. Its time is printed with `--verbose`; a failure is printed always and changes
    /// nothing else (the first compile then does the set-up, and reports any real error).
    fn warm_up(&self) {
        match jit::warm_up(&self.cfg) {
            Ok(d) if self.verbose => {
                eprintln!(
                    "gradlift gradbench: JIT set-up (once per process) {:.1} ms",
                    ms(d)
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!("gradlift gradbench: JIT set-up failed: {e}"),
        }
    }

    /// Runs one `evaluate` message: its output and timings.
    fn evaluate(&mut self, msg: &Json) -> Result<(Json, Timings), String> {
        let field = |k: &str| {
            msg.get(k)
                .and_then(Json::as_str)
                .ok_or_else(|| format!("evaluate: the message has no string `{k}`"))
        };
        let (module, function) = (field("module")?, field("function")?);
        let raw = msg
            .get("input")
            .ok_or("evaluate: the message has no `input`")?;
        let (min_runs, min_seconds) = runs(raw)?;
        let input = to_value(raw);
        let task = gradbench::prepare(module, function, &input).map_err(|e| e.to_string())?;
        let Task {
            key,
            inputs,
            build,
            decode,
        } = task;
        let mut timings = Timings::default();
        let fresh = !self.cache.contains_key(&key);
        if fresh {
            let c = self.compile(&key, build, &mut timings)?;
            self.cache.insert(key.clone(), c);
        }
        let c = self
            .cache
            .get_mut(&key)
            .ok_or("internal error (bug): kernel missing from the cache")?;
        let bufs: Vec<Buf<'_>> = inputs.iter().map(|v| Buf::F64(v)).collect();
        if fresh {
            // The first call faults in the pages of the new workspace and output buffers (for
            // `ba` at a million observations, several times a later call): a one-time cost
            // per shape, like compilation, so it is timed apart.
            let mut outs: Vec<BufMut<'_>> = c.outs.iter_mut().map(|v| BufMut::F64(v)).collect();
            let t = Instant::now();
            c.kernel
                .call(&bufs, &mut outs, &mut c.ws)
                .map_err(|e| format!("kernel call failed: {e}"))?;
            timings.phases.push(("warmup", t.elapsed()));
        }
        let mut total = Duration::ZERO;
        let mut n = 0;
        while n < min_runs || total.as_secs_f64() < min_seconds {
            let mut outs: Vec<BufMut<'_>> = c.outs.iter_mut().map(|v| BufMut::F64(v)).collect();
            let t = Instant::now();
            c.kernel
                .call(&bufs, &mut outs, &mut c.ws)
                .map_err(|e| format!("kernel call failed: {e}"))?;
            let dt = t.elapsed();
            total += dt;
            n += 1;
            timings.evaluate.push(nanos(dt));
        }
        let output = decode(c.outs.clone()).map_err(|e| e.to_string())?;
        Ok((to_json(output), timings))
    }

    /// Builds, optimizes and compiles the graph of `key`, pushing one timing per phase.
    fn compile(
        &self,
        key: &str,
        build: gradbench::BuildFn,
        timings: &mut Timings,
    ) -> Result<Compiled, String> {
        let t = Instant::now();
        let mut g = build().map_err(|e| e.to_string())?;
        let built = t.elapsed();
        let nodes_built = g.len();
        let t = Instant::now();
        opt::optimize(&mut g, &OptConfig::default());
        let optimized = t.elapsed();
        let t = Instant::now();
        let kernel = jit::compile_with(&g, &self.cfg)
            .map_err(|e| format!("JIT compilation of {key} failed: {e}"))?;
        let compiled = t.elapsed();
        timings.phases.extend([
            ("build", built),
            ("optimize", optimized),
            ("compile", compiled),
        ]);
        if self.verbose {
            eprintln!(
                "gradlift gradbench: {key}: {nodes_built} nodes built, {} after optimization; \
                 build {:.1} ms, optimize {:.1} ms, compile {:.1} ms",
                g.len(),
                ms(built),
                ms(optimized),
                ms(compiled)
            );
        }
        let outs = kernel
            .output_types()
            .iter()
            .map(|t| vec![0.0; t.numel()])
            .collect();
        let ws = kernel.workspace();
        Ok(Compiled { kernel, ws, outs })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// An `evaluate` response's timings: the phases, then one `evaluate` entry per run. Kept as
/// durations and written straight to the output: a call of ~0.1 µs runs tens of millions of
/// times within a `min_seconds` of 1, and a JSON value per run took gigabytes.
#[derive(Default)]
struct Timings {
    phases: Vec<(&'static str, Duration)>,
    /// Nanoseconds per run.
    evaluate: Vec<u64>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Writes `response` as one line, with `timings` (if any) as its `timings` field.
fn write_response(
    out: &mut impl Write,
    response: &Json,
    timings: Option<&Timings>,
) -> io::Result<()> {
    let Some(t) = timings else {
        return writeln!(out, "{response}");
    };
    let text = response.to_string();
    // A JSON object's text ends with its closing brace; the timings go before it.
    let open = text.strip_suffix('}').unwrap_or(&text);
    write!(out, "{open},\"timings\":[")?;
    let phases = t.phases.iter().map(|&(name, d)| (name, nanos(d)));
    let entries = phases.chain(t.evaluate.iter().map(|&ns| ("evaluate", ns)));
    for (i, (name, ns)) in entries.enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(out, "{sep}{{\"name\":\"{name}\",\"nanoseconds\":{ns}}}")?;
    }
    writeln!(out, "]}}")
}

fn failure(id: Json, error: String) -> Json {
    json!({ "id": id, "success": false, "error": error })
}

/// `min_runs` and `min_seconds` of an input object (one run and no minimum time when absent,
/// as for `hello`, whose input is a bare number).
fn runs(input: &Json) -> Result<(usize, f64), String> {
    let Some(obj) = input.as_object() else {
        return Ok((1, 0.0));
    };
    let min_runs = match obj.get("min_runs") {
        None => 1,
        Some(v) => v
            .as_u64()
            .and_then(|r| usize::try_from(r).ok())
            .ok_or_else(|| {
                format!("bad input: `min_runs` must be a non-negative integer, got {v}")
            })?,
    };
    let min_seconds = match obj.get("min_seconds") {
        None => 0.0,
        Some(v) => v
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                format!("bad input: `min_seconds` must be a non-negative number, got {v}")
            })?,
    };
    Ok((min_runs.max(1), min_seconds))
}

/// JSON to the evals' JSON-free tree (serde_json bounds the nesting depth when parsing).
fn to_value(j: &Json) -> Value {
    match j {
        Json::Number(n) => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
        Json::Array(xs) => Value::Array(xs.iter().map(to_value).collect()),
        Json::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
        Json::String(_) => Value::Other("a string"),
        Json::Bool(b) => Value::Bool(*b),
        Json::Null => Value::Other("null"),
    }
}

/// An eval's output as JSON (non-finite numbers become `null`, which the eval reports).
fn to_json(v: Value) -> Json {
    match v {
        Value::Num(x) => json!(x),
        Value::Bool(b) => json!(b),
        Value::Array(xs) => Json::Array(xs.into_iter().map(to_json).collect()),
        Value::Object(fs) => Json::Object(
            fs.into_iter()
                .map(|(k, v)| (k, to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Other(_) => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_one_json_line_with_its_timings_in_order() {
        let timings = Timings {
            phases: vec![("compile", Duration::from_nanos(7))],
            evaluate: vec![3, 5],
        };
        let mut out = Vec::new();
        write_response(&mut out, &json!({"id": 2, "success": true}), Some(&timings)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        let back: Json = serde_json::from_str(&text).unwrap();
        let expected = json!({"id": 2, "success": true, "timings": [
            {"name": "compile", "nanoseconds": 7},
            {"name": "evaluate", "nanoseconds": 3},
            {"name": "evaluate", "nanoseconds": 5},
        ]});
        assert_eq!(back, expected);
        let mut plain = Vec::new();
        write_response(&mut plain, &json!({"id": 1}), None).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), "{\"id\":1}\n");
    }
}
