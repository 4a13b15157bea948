//! Loops on the builder: [`GraphBuilder::scan`], `fori_loop`, `while_loop`, and inlining a
//! body graph (what the loop derivative rules build their bodies with).

use super::{BuildError, BuildErrorKind, GraphBuilder, POISON, Var};
use crate::ir::loops::{Exit, Loop};
use crate::ir::{Attrs, Graph, NodeId, Op, TensorType};
use crate::ops::ShapeError;
use crate::tensor::Tensor;
use std::sync::Arc;

/// What a scan body receives at each step, as values of the body's builder.
#[derive(Clone, Debug)]
pub struct ScanStep<'s> {
    /// The carries entering this step.
    pub carry: Vec<Var<'s>>,
    /// This step's slice of each xs (the leading axis removed).
    pub x: Vec<Var<'s>>,
    /// The consts (the same at every step).
    pub consts: Vec<Var<'s>>,
}

/// The results of a scan: the final carries and the stacked ys (leading axis: the step).
#[derive(Clone, Debug)]
pub struct ScanOut<'b> {
    /// The carries after the last step (the initial ones for a loop of length 0).
    pub carry: Vec<Var<'b>>,
    /// Each y of every step, stacked along a new leading axis of size `length`.
    pub ys: Vec<Var<'b>>,
}

/// The values a scan is applied to.
#[derive(Clone, Copy, Debug)]
pub struct ScanArgs<'a, 'b> {
    /// Number of steps.
    pub length: usize,
    /// Run the steps from last to first (step `t` still reads `xs[t]` and writes `ys[t]`).
    pub reverse: bool,
    /// Initial carries.
    pub init: &'a [Var<'b>],
    /// Per-step inputs, each with a leading axis of size `length`.
    pub xs: &'a [Var<'b>],
    /// Values every step reads (a body cannot use the outer builder's values directly).
    pub consts: &'a [Var<'b>],
    /// Carries the loop's VJP may keep at once (binomial checkpointing: memory for this many
    /// carries instead of `length`, at the cost of recomputing steps); `None`: keep all.
    pub checkpoint: Option<usize>,
}

impl GraphBuilder {
    /// A loop (`lax.scan`): runs `body` `length` times. `body` gets a fresh builder and the
    /// step's values ([`ScanStep`]) and returns `(new carries, ys)`; the new carries must have
    /// the initial carries' types. The body is built once, whatever `length` is.
    ///
    /// ```
    /// use gradlift::{DType, GraphBuilder, Tensor, interp};
    /// let b = GraphBuilder::new("cumprod");
    /// let xs = b.input("xs", DType::F64, &[4]);
    /// let one = b.scalar(DType::F64, 1.0);
    /// let out = b.scan(4, &[one], &[xs], &[], |_, s| {
    ///     let p = s.carry[0] * s.x[0];
    ///     (vec![p], vec![p])
    /// });
    /// let g = b.finish(&[("prod", out.carry[0]), ("partial", out.ys[0])]).unwrap();
    /// let xs = Tensor::from_f64(vec![4], vec![1.0, 2.0, 3.0, 4.0]);
    /// let r = interp::run(&g, &[xs]).unwrap();
    /// assert_eq!(r[0].scalar_value(), Some(24.0));
    /// assert_eq!(r[1].to_f64_vec(), vec![1.0, 2.0, 6.0, 24.0]);
    /// ```
    #[track_caller]
    pub fn scan<'b, F>(
        &'b self,
        length: usize,
        init: &[Var<'b>],
        xs: &[Var<'b>],
        consts: &[Var<'b>],
        body: F,
    ) -> ScanOut<'b>
    where
        F: for<'s> FnOnce(&'s GraphBuilder, &ScanStep<'s>) -> (Vec<Var<'s>>, Vec<Var<'s>>),
    {
        let args = ScanArgs {
            length,
            reverse: false,
            init,
            xs,
            consts,
            checkpoint: None,
        };
        self.scan_with(args, body)
    }

    /// [`GraphBuilder::scan`] with every option ([`ScanArgs`]).
    #[track_caller]
    pub fn scan_with<'b, F>(&'b self, a: ScanArgs<'_, 'b>, body: F) -> ScanOut<'b>
    where
        F: for<'s> FnOnce(&'s GraphBuilder, &ScanStep<'s>) -> (Vec<Var<'s>>, Vec<Var<'s>>),
    {
        self.scan_exit(a, None, body)
    }

    /// [`GraphBuilder::scan_with`] with an [`Exit`] (checked by the shape rule).
    #[track_caller]
    fn scan_exit<'b, F>(&'b self, a: ScanArgs<'_, 'b>, exit: Option<Exit>, body: F) -> ScanOut<'b>
    where
        F: for<'s> FnOnce(&'s GraphBuilder, &ScanStep<'s>) -> (Vec<Var<'s>>, Vec<Var<'s>>),
    {
        let failed = |b: &'b GraphBuilder| ScanOut {
            carry: vec![b.var(POISON); a.init.len()],
            ys: Vec::new(),
        };
        if self.foreign("scan", &[a.init, a.xs, a.consts])
            || a.init
                .iter()
                .chain(a.xs)
                .chain(a.consts)
                .any(|v| v.id == POISON)
        {
            return failed(self);
        }
        let mut tys: Vec<TensorType> = Vec::new();
        tys.extend(a.init.iter().map(|v| v.ty()));
        for x in a.xs {
            let t = x.ty();
            if t.shape.first() != Some(&a.length) {
                self.fail(ShapeError::new(
                    Op::Scan,
                    format!(
                        "xs {} has no leading axis of the loop's length {}",
                        t, a.length
                    ),
                ));
                return failed(self);
            }
            tys.push(TensorType::new(t.dtype, t.shape[1..].to_vec()));
        }
        tys.extend(a.consts.iter().map(|v| v.ty()));
        let (n_carry, n_xs) = (a.init.len(), a.xs.len());
        let graph = match build_body(&self.graph().name, &tys, n_carry, n_xs, body) {
            Ok(g) => g,
            Err(e) => {
                self.record(e);
                return failed(self);
            }
        };
        let lp = Loop {
            length: a.length,
            reverse: a.reverse,
            n_carry,
            n_xs,
            body: graph,
            checkpoint: a.checkpoint,
            recompute: None,
            exit,
        };
        let operands: Vec<Var<'b>> = a.init.iter().chain(a.xs).chain(a.consts).copied().collect();
        let results = self.push_loop(lp, &operands);
        let ys = results[n_carry.min(results.len())..].to_vec();
        let mut carry = results;
        carry.truncate(n_carry);
        ScanOut { carry, ys }
    }

    /// Appends one `scan` node per result of `lp` (consecutive: one group) and returns them.
    #[track_caller]
    pub(crate) fn push_loop<'b>(&'b self, lp: Loop, operands: &[Var<'b>]) -> Vec<Var<'b>> {
        let n = lp.body.outputs().len();
        let lp = Arc::new(lp);
        (0..n)
            .map(|result| {
                let attrs = Attrs::Scan {
                    body: lp.clone(),
                    result,
                };
                self.push(Op::Scan, operands, attrs)
            })
            .collect()
    }

    /// `for i in lo..hi { carry = body(i, carry) }`: a scan over the step index (an `i32`
    /// scalar; `cast` it for arithmetic). Returns the final carries (`init` when `hi <= lo`).
    #[track_caller]
    pub fn fori_loop<'b, F>(
        &'b self,
        lo: i32,
        hi: i32,
        init: &[Var<'b>],
        consts: &[Var<'b>],
        body: F,
    ) -> Vec<Var<'b>>
    where
        F: for<'s> FnOnce(&'s GraphBuilder, Var<'s>, &ScanStep<'s>) -> Vec<Var<'s>>,
    {
        if hi <= lo {
            return init.to_vec();
        }
        let steps: Vec<i32> = (lo..hi).collect();
        let index = self.constant(Tensor::from_i32(vec![steps.len()], steps));
        let out = self.scan(index.shape()[0], init, &[index], consts, |s, step| {
            (body(s, step.x[0], step), Vec::new())
        });
        out.carry
    }

    /// A bounded `while`: `while cond(carry) { carry = body(carry) }`, at most `max_steps`
    /// times. `cond` returns a `bool` scalar. The loop stops at the first step whose condition
    /// is false ([`Exit::While`]: its body also outputs `cond` as a y), so it costs the steps
    /// it runs, and its derivatives run as many steps: forward mode exits at the same step,
    /// reverse mode reverses only the steps that ran. The results are bitwise those of running
    /// all `max_steps` steps with a body that keeps the carries once the condition is false.
    ///
    /// ```
    /// use gradlift::{DType, GraphBuilder, interp};
    /// let b = GraphBuilder::new("halve");
    /// let x = b.input("x", DType::F64, &[]);
    /// let one = b.scalar(DType::F64, 1.0);
    /// let out = b.while_loop(1000, &[x], &[one], |_, s| s.carry[0].gt(s.consts[0]), |s, st| {
    ///     vec![st.carry[0] * s.scalar(DType::F64, 0.5)]
    /// });
    /// let g = b.finish(&[("y", out[0])]).unwrap();
    /// let x = gradlift::Tensor::scalar_f64(40.0);
    /// assert_eq!(interp::run(&g, &[x]).unwrap()[0].scalar_value(), Some(0.625));
    /// ```
    #[track_caller]
    pub fn while_loop<'b, C, F>(
        &'b self,
        max_steps: usize,
        init: &[Var<'b>],
        consts: &[Var<'b>],
        cond: C,
        body: F,
    ) -> Vec<Var<'b>>
    where
        C: for<'s> FnOnce(&'s GraphBuilder, &ScanStep<'s>) -> Var<'s>,
        F: for<'s> FnOnce(&'s GraphBuilder, &ScanStep<'s>) -> Vec<Var<'s>>,
    {
        self.while_loop_with(max_steps, None, init, consts, cond, body)
    }

    /// [`GraphBuilder::while_loop`] whose reverse-mode derivative keeps at most `checkpoint`
    /// carries at once (binomial checkpointing over the steps that ran, as
    /// [`ScanArgs::checkpoint`]).
    #[track_caller]
    pub fn while_loop_with<'b, C, F>(
        &'b self,
        max_steps: usize,
        checkpoint: Option<usize>,
        init: &[Var<'b>],
        consts: &[Var<'b>],
        cond: C,
        body: F,
    ) -> Vec<Var<'b>>
    where
        C: for<'s> FnOnce(&'s GraphBuilder, &ScanStep<'s>) -> Var<'s>,
        F: for<'s> FnOnce(&'s GraphBuilder, &ScanStep<'s>) -> Vec<Var<'s>>,
    {
        let args = ScanArgs {
            length: max_steps,
            reverse: false,
            init,
            xs: &[],
            consts,
            checkpoint,
        };
        // The condition is the first y: output `n_carry`.
        let exit = (max_steps > 0).then_some(Exit::While(init.len()));
        let out = self.scan_exit(args, exit, |s, step| {
            let go = cond(s, step);
            let next = body(s, step);
            let ys = if max_steps > 0 { vec![go] } else { Vec::new() };
            (next, ys)
        });
        out.carry
    }

    /// Appends a copy of `g`'s nodes with its inputs replaced by `args` and returns the values
    /// of its outputs. Custom regions are copied along.
    #[track_caller]
    pub(crate) fn inline<'b>(&'b self, g: &Graph, args: &[Var<'b>]) -> Vec<Var<'b>> {
        let mut map: Vec<NodeId> = Vec::with_capacity(g.len());
        let mut next = args.iter();
        let base = self.graph().len();
        for n in g.nodes() {
            let v = match n.op {
                Op::Input => *next.next().expect("one argument per input"),
                Op::Const => {
                    let t = n.attrs.as_const().expect("const value").clone();
                    self.constant(t)
                }
                op => {
                    let ins: Vec<Var<'b>> =
                        n.inputs.iter().map(|x| self.var(map[x.index()])).collect();
                    self.push(op, &ins, n.attrs.clone())
                }
            };
            map.push(v.id);
        }
        if self.error().is_none() {
            let mut gm = self.graph.borrow_mut();
            for r in g.custom_regions() {
                let mut r = r.clone();
                let at = |x: NodeId| map[x.index()];
                r.output = at(r.output);
                r.first = at(r.first).max(NodeId(base as u32));
                r.inputs = r.inputs.iter().map(|&x| at(x)).collect();
                gm.add_custom_region(r);
            }
        }
        g.outputs()
            .iter()
            .map(|o| self.var(map[o.index()]))
            .collect()
    }

    /// Records an error that happened elsewhere (in a body's builder) as this builder's.
    pub(super) fn record(&self, e: BuildError) {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
    }
}

/// Builds a loop body of the given input types with the user's closure, checking that the
/// carries come out with their types.
#[track_caller]
fn build_body<F>(
    outer: &str,
    tys: &[TensorType],
    n_carry: usize,
    n_xs: usize,
    body: F,
) -> Result<Graph, BuildError>
where
    F: for<'s> FnOnce(&'s GraphBuilder, &ScanStep<'s>) -> (Vec<Var<'s>>, Vec<Var<'s>>),
{
    let bb = GraphBuilder::new(&format!("{outer}_body"));
    let vars: Vec<Var<'_>> = (tys.iter().enumerate())
        .map(|(k, t)| {
            let (role, i) = if k < n_carry {
                ("carry", k)
            } else if k < n_carry + n_xs {
                ("x", k - n_carry)
            } else {
                ("const", k - n_carry - n_xs)
            };
            bb.input(&format!("{role}{i}"), t.dtype, &t.shape)
        })
        .collect();
    let step = ScanStep {
        carry: vars[..n_carry].to_vec(),
        x: vars[n_carry..n_carry + n_xs].to_vec(),
        consts: vars[n_carry + n_xs..].to_vec(),
    };
    let (carry, ys) = body(&bb, &step);
    bb.check()?;
    let fail = |m: String| BuildError {
        error: BuildErrorKind::Shape(ShapeError::new(Op::Scan, m)),
        location: std::panic::Location::caller().to_string(),
    };
    if carry.len() != n_carry {
        return Err(fail(format!(
            "the body returned {} carries for {n_carry} initial carries",
            carry.len()
        )));
    }
    for (k, (c, t)) in carry.iter().zip(tys).enumerate() {
        if !std::ptr::eq(c.b, &bb) || c.ty() != *t {
            let got = if std::ptr::eq(c.b, &bb) {
                c.ty().to_string()
            } else {
                "a value of another builder".into()
            };
            return Err(fail(format!(
                "carry {k} must stay {t}, the body returned {got}"
            )));
        }
    }
    let outs: Vec<(String, Var<'_>)> = (carry.iter().enumerate())
        .map(|(k, &v)| (format!("carry{k}_out"), v))
        .chain(ys.iter().enumerate().map(|(k, &v)| (format!("y{k}"), v)))
        .collect();
    let named: Vec<(&str, Var<'_>)> = outs.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    bb.finish(&named)
}
